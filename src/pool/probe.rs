//! Is a port on an address free? Two questions, both needed because Harper sets SO_REUSEPORT on
//! every listener: a bind *without* SO_REUSEPORT fails on any listener (a co-bind would
//! succeed silently), and a connect must be refused (nothing accepts there). SO_REUSEADDR is
//! set so that sockets in TIME_WAIT from the last instance do not count as busy.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

/// Why a port is not free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Busy {
    /// A bind without SO_REUSEPORT failed: something listens (or is bound) there.
    Bound(String),
    /// A connect was accepted: something serves there.
    Accepting,
    /// The address itself cannot be used (not configured on this machine).
    Unavailable(String),
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Busy::Bound(e) => write!(f, "bound ({e})"),
            Busy::Accepting => write!(f, "accepting connections"),
            Busy::Unavailable(e) => write!(f, "address unavailable ({e})"),
        }
    }
}

/// Checks one port once.
pub fn check(addr: Ipv4Addr, port: u16) -> Result<(), Busy> {
    let target = SocketAddr::V4(SocketAddrV4::new(addr, port));
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| Busy::Unavailable(e.to_string()))?;
    socket.set_reuse_address(true).map_err(|e| Busy::Unavailable(e.to_string()))?;
    if let Err(e) = socket.bind(&target.into()) {
        return Err(match e.kind() {
            io::ErrorKind::AddrInUse => Busy::Bound(e.to_string()),
            _ => Busy::Unavailable(e.to_string()),
        });
    }
    drop(socket);
    match TcpStream::connect_timeout(&target, Duration::from_millis(200)) {
        Ok(_) => Err(Busy::Accepting),
        Err(_) => Ok(()),
    }
}

/// Checks every port; returns the first busy one.
pub fn check_all(
    addr: Ipv4Addr,
    ports: &[(&'static str, u16)],
) -> Result<(), (&'static str, u16, Busy)> {
    for &(name, port) in ports {
        check(addr, port).map_err(|busy| (name, port, busy))?;
    }
    Ok(())
}

/// Polls until every port is free or `limit` has passed; the ports still busy at the end.
pub fn wait_free(
    addr: Ipv4Addr,
    ports: &[(&'static str, u16)],
    limit: Duration,
) -> Vec<(&'static str, u16, Busy)> {
    let deadline = Instant::now() + limit;
    loop {
        let busy: Vec<_> = ports
            .iter()
            .filter_map(|&(name, port)| check(addr, port).err().map(|b| (name, port, b)))
            .collect();
        if busy.is_empty() || Instant::now() >= deadline {
            return busy;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
