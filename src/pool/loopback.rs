//! Do the pool's addresses exist on this machine? Linux routes all of 127.0.0.0/8 to `lo`, so
//! every address binds. macOS answers only 127.0.0.1 until each further address is added as an
//! alias of `lo0` — with a /32 netmask: a /8 alias makes mDNSResponder spin. This module finds
//! the missing addresses and builds (and, when asked, runs) the commands that add them; it
//! prints nothing.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::process::Command;

use anyhow::Context;

/// An address that cannot be bound, and why.
#[derive(Debug, Clone)]
pub struct Missing {
    pub addr: Ipv4Addr,
    pub error: String,
}

/// The addresses among `addrs` that cannot be bound (on any free port).
pub fn missing(addrs: impl Iterator<Item = Ipv4Addr>) -> Vec<Missing> {
    addrs
        .filter_map(|addr| match TcpListener::bind(SocketAddrV4::new(addr, 0)) {
            Ok(_) => None,
            Err(e) => Some(Missing { addr, error: e.to_string() }),
        })
        .collect()
}

/// Does this system need loopback aliases for addresses other than 127.0.0.1?
pub const NEEDS_ALIASES: bool = cfg!(target_os = "macos");

/// The command that adds `addr` as a /32 alias of the loopback interface, run through sudo.
pub fn alias_command(addr: Ipv4Addr) -> Vec<String> {
    ["sudo", "ifconfig", "lo0", "alias", &addr.to_string(), "netmask", "255.255.255.255", "up"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

/// The alias command as a person would type it.
pub fn alias_line(addr: Ipv4Addr) -> String {
    alias_command(addr).join(" ")
}

/// Runs the alias command for `addr` (sudo may ask for a password on the terminal).
pub fn add_alias(addr: Ipv4Addr) -> anyhow::Result<()> {
    let argv = alias_command(addr);
    let status = Command::new(&argv[0])
        .args(&argv[1..])
        .status()
        .with_context(|| format!("cannot run `{}`", argv.join(" ")))?;
    if !status.success() {
        anyhow::bail!(
            "`{}` failed ({status}); run it yourself, or ask an administrator",
            argv.join(" ")
        );
    }
    Ok(())
}
