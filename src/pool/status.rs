//! What every address of the pool is doing right now: free, held by a harper-shard run (and
//! which one, from its record), or busy with a listener that is not ours. `pool status` shows
//! it, and an acquire that gave up waiting quotes it, so the person reading the CI log sees
//! who holds what.
//!
//! Looking takes each free slot's lock for an instant, never sweeps and never writes.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use serde_json::json;

use super::Pool;
use super::probe::{self, Busy};
use super::record::{self, Record};
use crate::process::ports::{self, Holder};
use crate::table::Table;

/// One address and what holds it.
#[derive(Debug, Clone)]
pub struct Slot {
    pub addr: Ipv4Addr,
    pub state: SlotState,
    /// The record beside the lock: the holder when held, what the next owner sweeps when free.
    pub record: Option<Record>,
    /// A record that is there but could not be read.
    pub record_error: Option<String>,
}

#[derive(Debug, Clone)]
pub enum SlotState {
    Free,
    /// A harper-shard process holds the lock.
    Held,
    /// Nobody holds the lock, but a port is in use by someone else.
    Busy {
        port_name: &'static str,
        port: u16,
        busy: Busy,
        holders: Vec<Holder>,
    },
    /// The slot's lock file cannot be used (a directory, a FIFO, a link): the pool skips it.
    Unusable {
        error: String,
    },
}

impl SlotState {
    fn word(&self) -> &'static str {
        match self {
            SlotState::Free => "free",
            SlotState::Held => "held",
            SlotState::Busy { .. } => "busy",
            SlotState::Unusable { .. } => "unusable",
        }
    }
}

/// Looks at every address of `pool`, probing `ports` on those no run holds.
pub fn survey(pool: &Pool, ports: &[(&'static str, u16)]) -> Vec<Slot> {
    let mut slots = Vec::new();
    for addr in pool.spec().addresses() {
        let state = match pool.is_held(addr) {
            Err(e) => SlotState::Unusable { error: format!("{e:#}") },
            Ok(true) => SlotState::Held,
            Ok(false) => match probe::check_all(addr, ports) {
                Ok(()) => SlotState::Free,
                Err((port_name, port, busy)) => {
                    SlotState::Busy { port_name, port, busy, holders: ports::holders(addr, port) }
                }
            },
        };
        let (record, record_error) = match record::read(pool.dir(), addr) {
            Ok(r) => (r, None),
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        slots.push(Slot { addr, state, record, record_error });
    }
    slots
}

impl Slot {
    /// The state column: what a person needs to know about this address.
    fn state_text(&self) -> String {
        match (&self.state, &self.record) {
            (SlotState::Free, None) => "free".into(),
            (SlotState::Free, Some(_)) => "free (a record left by a run that died or did not tear down cleanly; swept on the next acquire)".into(),
            (SlotState::Held, Some(r)) if !r.owner.is_alive() => "held (the recorded owner is gone)".into(),
            (SlotState::Held, _) => "held by a run".into(),
            (SlotState::Busy { port_name, port, busy, holders }, record) => {
                let who = holders.first().map(|h| format!(" by {h}")).unwrap_or_default();
                let left = if record.is_some() { "; the recorded run died or did not tear down cleanly: swept on the next acquire" } else { "" };
                format!("busy: port {port} ({port_name}) {busy}{who}{left}")
            }
            (SlotState::Unusable { error }, _) => format!("unusable, skipped by every run: {error}"),
        }
    }
}

/// The slots as a table, one row per address, what the record lists under it. The columns are
/// at least as wide as an address, a pid and a time, so that tables of two runs line up.
pub fn table(slots: &[Slot]) -> String {
    let header = ["ADDRESS", "OWNER", "SHARD", "SINCE", "STATE"];
    let rows: Vec<[String; 5]> = slots
        .iter()
        .map(|slot| {
            let (owner, shard, since) = match &slot.record {
                Some(r) => (
                    r.owner.pid.to_string(),
                    r.shard.clone(),
                    humantime::format_rfc3339_seconds(r.since_time()).to_string(),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            [slot.addr.to_string(), owner, shard, since, slot.state_text()]
        })
        .collect();
    let mut table = Table::new(&header).at_least(&[15, 9, 20, 20]);
    for row in &rows {
        table.fit(row);
    }
    let under = " ".repeat(table.start(1));
    let mut out = String::new();
    let _ = writeln!(out, "{}", table.line(&header));
    for (slot, row) in slots.iter().zip(&rows) {
        let _ = writeln!(out, "{}", table.line(row));
        if let Some(r) = &slot.record {
            for dir in &r.dirs {
                let _ = writeln!(out, "{under}instance directory {}", dir.display());
            }
        }
        if let Some(e) = &slot.record_error {
            let _ = writeln!(out, "{under}warning: {e}");
        }
    }
    out
}

/// The slots as JSON, for scripts.
pub fn json(slots: &[Slot]) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = slots
        .iter()
        .map(|slot| {
            let mut row = json!({ "address": slot.addr.to_string(), "state": slot.state.word(), "detail": slot.state_text() });
            if let SlotState::Busy { port, holders, .. } = &slot.state {
                row["port"] = json!(port);
                row["holders"] = holders.iter().map(|h| json!({ "pid": h.pid, "command": h.command })).collect();
            }
            if let Some(r) = &slot.record {
                row["owner_pid"] = json!(r.owner.pid);
                row["owner_alive"] = json!(r.owner.is_alive());
                row["shard"] = json!(r.shard);
                row["since"] = json!(humantime::format_rfc3339_seconds(r.since_time()).to_string());
                row["keepers"] = r.keepers.iter().map(|k| json!(k.pid)).collect();
                row["dirs"] = r.dirs.iter().map(|d| json!(d.display().to_string())).collect();
            }
            if let Some(e) = &slot.record_error {
                row["record_error"] = json!(e);
            }
            row
        })
        .collect();
    json!({ "slots": rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_shard_name_widens_its_column_instead_of_pushing_the_state_out_of_line() {
        let slot = |n: u8, shard: Option<&str>| Slot {
            addr: Ipv4Addr::new(127, 0, 0, n),
            state: if shard.is_some() { SlotState::Held } else { SlotState::Free },
            record: shard.map(|s| Record::new("token", s)),
            record_error: None,
        };
        let text = table(&[slot(2, Some("a-shard-name-well-past-twenty-bytes/12")), slot(3, None)]);
        let state_at: Vec<Option<usize>> = text
            .lines()
            .map(|l| ["STATE", "held by a run", "free"].iter().find_map(|w| l.find(w)))
            .collect();
        assert_eq!(state_at.len(), 3, "{text}");
        assert!(
            state_at.iter().all(|at| at.is_some() && *at == state_at[0]),
            "{state_at:?}:\n{text}"
        );
    }
}
