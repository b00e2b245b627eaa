//! Harper's command line: `--KEY=value` pairs, keys case-insensitive, unknown keys ignored, a key
//! given twice rejected with `config file validation error` (exit 1), as Harper 4.7.29 does.
//!
//! Unlike Harper, a port value may only name a loopback host: the fixture must never bind outside
//! 127.0.0.0/8, so a bare port means 127.0.0.1 rather than every interface, and a port key that is
//! not given is not bound at all (Harper would fall back to its defaults).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;

use crate::Fatal;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Serves `/health` and the operations API.
    Operations,
    /// Answers 404 to everything, like Harper without components.
    Http,
    /// Accepts and closes (MQTT, TLS and replication ports).
    Other,
}

/// The port keys the fixture binds, in binding order.
const PORT_KEYS: &[(&str, Role)] = &[
    ("OPERATIONSAPI_NETWORK_PORT", Role::Operations),
    ("HTTP_PORT", Role::Http),
    ("MQTT_NETWORK_PORT", Role::Other),
    ("MQTT_NETWORK_SECUREPORT", Role::Other),
    ("REPLICATION_SECUREPORT", Role::Other),
    ("REPLICATION_PORT", Role::Other),
    ("HTTP_SECUREPORT", Role::Other),
    ("OPERATIONSAPI_NETWORK_SECUREPORT", Role::Other),
];

#[derive(Clone, Debug)]
pub struct Port {
    pub key: &'static str,
    pub role: Role,
    /// The value as given, e.g. `127.0.0.77:9925`; `get_configuration` echoes it.
    pub given: String,
    pub addr: SocketAddrV4,
}

#[derive(Debug)]
pub struct Config {
    pub root: Option<PathBuf>,
    pub terms_accepted: bool,
    pub username: Option<String>,
    pub password: Option<String>,
    pub authorize_local: bool,
    pub ports: Vec<Port>,
}

impl Config {
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Self, Fatal> {
        let values = key_values(args)?;
        let text = |key: &str| values.get(key).filter(|v| !v.is_empty()).cloned();
        let mut ports = Vec::new();
        for &(key, role) in PORT_KEYS {
            if let Some(given) = text(key) {
                ports.extend(port(key, role, given)?);
            }
        }
        Ok(Config {
            root: text("ROOTPATH").map(PathBuf::from),
            terms_accepted: text("TC_AGREEMENT").is_some_and(|v| v.eq_ignore_ascii_case("yes")),
            username: text("HDB_ADMIN_USERNAME"),
            password: text("HDB_ADMIN_PASSWORD"),
            authorize_local: text("AUTHENTICATION_AUTHORIZELOCAL")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
            ports,
        })
    }

    /// The installer question Harper would ask first, if any answer is missing.
    pub fn missing_answer(&self) -> Option<Question> {
        if !self.terms_accepted {
            Some(Question::Terms)
        } else if self.root.is_none() {
            Some(Question::RootPath)
        } else if self.username.is_none() {
            Some(Question::Username)
        } else if self.password.is_none() {
            Some(Question::Password)
        } else {
            None
        }
    }

    /// The address an instance is known by: the host of its operations port.
    pub fn record_host(&self) -> String {
        let operations = self.ports.iter().find(|p| p.role == Role::Operations);
        operations
            .or(self.ports.first())
            .map_or_else(|| "-".to_string(), |p| p.addr.ip().to_string())
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Question {
    Terms,
    RootPath,
    Username,
    Password,
}

fn key_values(args: impl IntoIterator<Item = String>) -> Result<HashMap<String, String>, Fatal> {
    let mut values = HashMap::new();
    for arg in args {
        let Some(pair) = arg.strip_prefix("--") else {
            continue;
        };
        let (key, value) = pair.split_once('=').unwrap_or((pair, "true"));
        let key = key.to_ascii_uppercase();
        if values.insert(key.clone(), value.to_string()).is_some() {
            return Err(Fatal::new(
                1,
                format!("config file validation error: \"{key}\" is given more than once"),
            ));
        }
    }
    Ok(values)
}

/// `host:port` or `port`; `null` / `false` switch the port off.
fn port(key: &'static str, role: Role, given: String) -> Result<Option<Port>, Fatal> {
    if given.eq_ignore_ascii_case("null") || given.eq_ignore_ascii_case("false") {
        return Ok(None);
    }
    let (host, number) = given.rsplit_once(':').unwrap_or(("127.0.0.1", &given));
    let invalid =
        |why: &str| Fatal::new(1, format!("config file validation error: {key}={given}: {why}"));
    let number: u16 =
        number.parse().map_err(|_| invalid("the port must be an integer from 1 to 65535"))?;
    if number == 0 {
        return Err(invalid("the port must be an integer from 1 to 65535"));
    }
    let host: Ipv4Addr = host.parse().map_err(|_| invalid("the host must be an IPv4 address"))?;
    if !host.is_loopback() {
        return Err(Fatal::usage(format!(
            "{key}={given}: only 127.0.0.0/8 may be bound by the fake server"
        )));
    }
    Ok(Some(Port { key, role, given, addr: SocketAddrV4::new(host, number) }))
}
