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
    use std::collections::HashSet;
    use std::net::{IpAddr, Ipv4Addr};

    use procfs::net::TcpState;
    use procfs::process::FDTarget;

    use super::Holder;
    use crate::process::{command, pgid};

    pub fn holders_of(addr: Ipv4Addr, ports: &[u16]) -> Vec<Vec<Holder>> {
        let mut out = vec![Vec::new(); ports.len()];
        let inodes = listening_inodes(addr, ports);
        if inodes.iter().all(HashSet::is_empty) {
            return out;
        }
        let Ok(all) = procfs::process::all_processes() else { return out };
        for p in all.flatten() {
            let Ok(fds) = p.fd() else { continue };
            let held: HashSet<u64> = fds
                .flatten()
                .filter_map(|fd| match fd.target {
                    FDTarget::Socket(inode) => Some(inode),
                    _ => None,
                })
                .collect();
            let Ok(pid) = u32::try_from(p.pid) else { continue };
            for (i, wanted) in inodes.iter().enumerate() {
                if !wanted.is_disjoint(&held) {
                    out[i].push(Holder { pid, command: command(pid), pgid: pgid(pid) });
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
        let tables = [procfs::net::tcp(), procfs::net::tcp6()];
        for entry in tables.into_iter().flatten().flatten().filter(|e| e.state == TcpState::Listen)
        {
            for (i, port) in ports.iter().enumerate() {
                if entry.local_address.port() == *port && reaches(entry.local_address.ip(), addr) {
                    inodes[i].insert(entry.inode);
                }
            }
        }
        inodes
    }

    /// Does a listener bound to `bound` take connections to `addr`: bound to it, to a wildcard,
    /// or to its IPv4-mapped IPv6 form?
    pub(super) fn reaches(bound: IpAddr, addr: Ipv4Addr) -> bool {
        match bound {
            IpAddr::V4(v4) => v4 == addr || v4.is_unspecified(),
            IpAddr::V6(v6) => v6.is_unspecified() || v6.to_ipv4_mapped() == Some(addr),
        }
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::process::pgid;
    use std::net::{IpAddr, Ipv6Addr, TcpListener};

    /// A listener of this process is named with our pid and group; seen from another address
    /// it is not there.
    #[test]
    fn a_listener_is_held_by_this_process_and_not_seen_from_another_address() {
        let mine = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = mine.local_addr().expect("its address").port();
        let me = std::process::id();
        let found = holders_of(Ipv4Addr::LOCALHOST, &[port, port]);
        for held in &found {
            assert_eq!(
                held,
                &[Holder { pid: me, command: crate::process::command(me), pgid: pgid(me) }]
            );
        }
        assert!(
            holders(Ipv4Addr::new(127, 0, 0, 2), port).is_empty(),
            "another address's listener was named"
        );
    }

    #[test]
    fn a_wildcard_or_mapped_listener_reaches_the_address_and_another_address_does_not() {
        let addr = Ipv4Addr::new(127, 0, 0, 7);
        assert!(imp::reaches(IpAddr::V4(addr), addr));
        assert!(imp::reaches(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr));
        assert!(imp::reaches(IpAddr::V6(Ipv6Addr::UNSPECIFIED), addr));
        assert!(imp::reaches(IpAddr::V6(addr.to_ipv6_mapped()), addr));
        assert!(!imp::reaches(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 8)), addr));
        assert!(!imp::reaches(IpAddr::V6(Ipv6Addr::LOCALHOST), addr));
    }
}
