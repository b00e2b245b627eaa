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
    imp::holders_of(addr, &[port]).pop().unwrap_or_default()
}

/// The holders of each of `ports`, in order, found in one pass over the processes: the
/// readiness check asks about five ports at once and must not scan /proc five times.
pub fn holders_of(addr: Ipv4Addr, ports: &[u16]) -> Vec<Vec<Holder>> {
    imp::holders_of(addr, ports)
}

#[cfg(target_os = "linux")]
mod imp {
    use super::Holder;
    use crate::pool::process;
    use std::collections::HashSet;
    use std::fs;
    use std::net::Ipv4Addr;

    const LISTEN: &str = "0A";

    pub fn holders_of(addr: Ipv4Addr, ports: &[u16]) -> Vec<Vec<Holder>> {
        let mut out = vec![Vec::new(); ports.len()];
        let inodes = listening_inodes(addr, ports);
        if inodes.iter().all(HashSet::is_empty) {
            return out;
        }
        let Ok(procs) = fs::read_dir("/proc") else { return out };
        for entry in procs.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let Ok(fds) = fs::read_dir(entry.path().join("fd")) else { continue };
            let held: HashSet<u64> = fds
                .flatten()
                .filter_map(|fd| {
                    let target = fs::read_link(fd.path()).ok()?;
                    let t = target.to_string_lossy().into_owned();
                    t.strip_prefix("socket:[")?.strip_suffix(']')?.parse::<u64>().ok()
                })
                .collect();
            for (i, wanted) in inodes.iter().enumerate() {
                if !wanted.is_disjoint(&held) {
                    out[i].push(Holder { pid, command: process::command(pid), pgid: process::pgid(pid) });
                }
            }
        }
        out
    }

    /// Per port, the inodes of listening TCP sockets bound to `addr:port` or to a wildcard at
    /// that port. Each table is read once: the kernel walks its whole socket hash to produce it,
    /// which costs milliseconds even when it lists nothing.
    fn listening_inodes(addr: Ipv4Addr, ports: &[u16]) -> Vec<HashSet<u64>> {
        let mut inodes = vec![HashSet::new(); ports.len()];
        let host = u32::from_le_bytes(addr.octets());
        let locals: Vec<[String; 4]> = ports
            .iter()
            .map(|port| {
                [
                    format!("{host:08X}:{port:04X}"),
                    format!("00000000:{port:04X}"),
                    format!("00000000000000000000000000000000:{port:04X}"),
                    format!("0000000000000000FFFF0000{host:08X}:{port:04X}"),
                ]
            })
            .collect();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let Ok(text) = fs::read_to_string(table) else { continue };
            for line in text.lines().skip(1) {
                let cols: Vec<&str> = line.split_whitespace().collect();
                if cols.len() < 10 || cols[3] != LISTEN {
                    continue;
                }
                let Ok(inode) = cols[9].parse::<u64>() else { continue };
                for (i, wanted) in locals.iter().enumerate() {
                    if wanted.iter().any(|w| w == cols[1]) {
                        inodes[i].insert(inode);
                    }
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

    pub fn holders_of(_addr: Ipv4Addr, ports: &[u16]) -> Vec<Vec<Holder>> {
        tracing::debug!("port holders are only looked up on Linux");
        vec![Vec::new(); ports.len()]
    }
}
