//! Who holds a port? On Linux, the listening socket's inode from `/proc/net/tcp{,6}`, then the
//! processes whose file descriptors point at that inode. Elsewhere the answer is "unknown",
//! which every caller handles: naming the holder makes an error better, never possible.

use std::net::Ipv4Addr;

/// A process that holds a listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub command: String,
    /// The process group, to tell our instance's listeners from a squatter's.
    pub pgid: Option<u32>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} ({})", self.pid, self.command)
    }
}

/// The processes listening on `addr:port` (or on the wildcard address at that port).
pub fn holders(addr: Ipv4Addr, port: u16) -> Vec<Holder> {
    imp::holders(addr, port)
}

#[cfg(target_os = "linux")]
mod imp {
    use super::Holder;
    use crate::pool::process;
    use std::collections::HashSet;
    use std::fs;
    use std::net::Ipv4Addr;

    const LISTEN: &str = "0A";

    pub fn holders(addr: Ipv4Addr, port: u16) -> Vec<Holder> {
        let inodes = listening_inodes(addr, port);
        if inodes.is_empty() {
            return Vec::new();
        }
        let Ok(procs) = fs::read_dir("/proc") else { return Vec::new() };
        let mut out = Vec::new();
        for entry in procs.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let Ok(fds) = fs::read_dir(entry.path().join("fd")) else { continue };
            let holds = fds.flatten().any(|fd| {
                fs::read_link(fd.path()).ok().and_then(|target| {
                    let t = target.to_string_lossy().into_owned();
                    t.strip_prefix("socket:[")?.strip_suffix(']')?.parse::<u64>().ok()
                }).is_some_and(|inode| inodes.contains(&inode))
            });
            if holds {
                out.push(Holder { pid, command: process::command(pid), pgid: process::pgid(pid) });
            }
        }
        out
    }

    /// Inodes of listening TCP sockets bound to `addr:port` or to a wildcard at `port`.
    fn listening_inodes(addr: Ipv4Addr, port: u16) -> HashSet<u64> {
        let mut inodes = HashSet::new();
        let want_v4 = format!("{:08X}:{port:04X}", u32::from_le_bytes(addr.octets()));
        let any_v4 = format!("00000000:{port:04X}");
        let any_v6 = format!("00000000000000000000000000000000:{port:04X}");
        let mapped = format!("0000000000000000FFFF0000{:08X}:{port:04X}", u32::from_le_bytes(addr.octets()));
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let Ok(text) = fs::read_to_string(table) else { continue };
            for line in text.lines().skip(1) {
                let cols: Vec<&str> = line.split_whitespace().collect();
                if cols.len() < 10 || cols[3] != LISTEN {
                    continue;
                }
                let local = cols[1];
                if (local == want_v4 || local == any_v4 || local == any_v6 || local == mapped)
                    && let Ok(inode) = cols[9].parse::<u64>()
                {
                    inodes.insert(inode);
                }
            }
        }
        inodes
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::Holder;
    use std::net::Ipv4Addr;

    pub fn holders(_addr: Ipv4Addr, _port: u16) -> Vec<Holder> {
        tracing::debug!("port holders are only looked up on Linux");
        Vec::new()
    }
}
