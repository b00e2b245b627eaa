//! The TCP listeners, bound the way Harper binds them: `SO_REUSEADDR` and `SO_REUSEPORT` on every
//! one, so a second instance co-binds silently and only a plain bind notices.
//!
//! A port that cannot be bound is reported on stderr and skipped, and startup carries on: Harper
//! prints its ready line all the same.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, RawFd};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, poll};
use socket2::{Domain, Protocol, Socket, Type};

use crate::args::Port;
use crate::console;
use crate::rootpath::RootPath;
use crate::signals::{self, Signals};

pub struct Listener {
    pub port: Port,
    socket: TcpListener,
}

impl Listener {
    pub fn raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// The next pending connection, made blocking for its handler thread.
    pub fn accept(&self) -> Option<TcpStream> {
        let (stream, _) = self.socket.accept().ok()?;
        stream.set_nonblocking(false).ok()?;
        Some(stream)
    }
}

pub fn bind_all(ports: &[Port], root: &RootPath) -> Vec<Listener> {
    let mut listeners = Vec::new();
    for port in ports {
        match bind(port) {
            Ok(socket) => {
                root.log(&format!("{} listening on {}", port.key, port.addr));
                listeners.push(Listener { port: port.clone(), socket });
            }
            Err(e) => {
                let message = format!(
                    "Unable to bind to port {} on {}: {e}",
                    port.addr.port(),
                    port.addr.ip()
                );
                console::err_line(&message);
                root.log(&message);
            }
        }
    }
    listeners
}

fn bind(port: &Port) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&SocketAddr::V4(port.addr).into())?;
    socket.listen(128)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// What woke the accept loop.
pub struct Ready {
    pub signal: bool,
    pub listeners: Vec<usize>,
}

/// Blocks until a listener has a connection or a stop signal is pending.
pub fn wait_for_connections(listeners: &[Listener], signals: &Signals) -> Ready {
    let mut fds: Vec<PollFd> =
        listeners.iter().map(|l| PollFd::new(l.socket.as_fd(), PollFlags::POLLIN)).collect();
    fds.push(PollFd::new(signals.fd(), PollFlags::POLLIN));
    loop {
        match poll(&mut fds, signals::timeout(None)) {
            Ok(0) | Err(Errno::EINTR) => {}
            Ok(_) => break,
            // Nothing sensible to do but not to spin.
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
    let readable: Vec<bool> = fds
        .iter()
        .map(|fd| {
            fd.revents().is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLERR))
        })
        .collect();
    Ready {
        signal: readable.last().copied().unwrap_or(false),
        listeners: (0..listeners.len()).filter(|&i| readable[i]).collect(),
    }
}
