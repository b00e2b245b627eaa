//! Boot-ahead: with more shards than the concurrency, the next shard's own instance boots before
//! the shard has its turn, while the running shards leave a CPU idle (they wait on Harper, the
//! network or the disk), and memory allows. The shard then waits for its turn with Harper
//! ready, and its commands start as soon as a running shard ends. One shard at a time boots
//! ahead, and it has the next turn.
//!
//! README "Boot-ahead" is the contract; docs/decisions.md says why the rule is what it is.

use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, oneshot};

use super::context::Context;
use super::events::EventKind;
use crate::plan::schema::BootAhead;
use crate::plan::{Plan, Shard};

/// How often the CPU's idle time is sampled while a shard waits for its turn.
const SAMPLE: Duration = Duration::from_millis(500);

/// Memory that must stay available (`MemAvailable`) for an instance to boot ahead: a Harper
/// instance's resident size after its boot is 200–300 MiB (BENCHMARKS.md, "Boot-ahead").
const MEMORY: u64 = 1 << 30;

/// A shard's place under the concurrency limit.
pub enum Turn {
    /// It has its turn.
    Held(OwnedSemaphorePermit),
    /// It boots ahead: the scheduler hands it the next turn through this channel, or drops the
    /// channel when the run is cancelled first.
    Ahead(oneshot::Receiver<OwnedSemaphorePermit>),
}

/// Why a shard that booted ahead never had its turn.
pub struct NoTurn;

impl Turn {
    /// Has the turn when it booted ahead: waits for it, then says so. A cancelled run ends
    /// the wait ([`NoTurn`]), as it does when the turn comes after the cancellation (the shard
    /// that failed under `fail_fast` gives its turn back only after cancelling).
    pub async fn take(&mut self, cx: &Context) -> Result<(), NoTurn> {
        let Turn::Ahead(next) = self else { return Ok(()) };
        let permit = tokio::select! {
            biased;
            () = cx.cancelled() => return Err(NoTurn),
            permit = next => permit.map_err(|_| NoTurn)?,
        };
        *self = Turn::Held(permit);
        cx.emit.emit(EventKind::TurnTaken { shard: cx.id, attempt: cx.attempt });
        if cx.cancel.borrow().is_some() {
            return Err(NoTurn);
        }
        Ok(())
    }

    pub fn is_ahead(&self) -> bool {
        matches!(self, Turn::Ahead(_))
    }
}

/// Whether and when a waiting shard may boot ahead.
pub struct Gate {
    when: BootAhead,
    /// The pool has an address for every instance the running shards may start, and one more.
    room: bool,
    idle: Idle,
}

/// The addresses the pool must have for a shard to boot ahead: every running shard's own and
/// its on-demand instances' (`harper.instances`), and one more. With fewer, a running shard's
/// `ctl start` could wait for the address the shard ahead holds while that shard waits for the
/// running one's turn.
fn room_needed(plan: &Plan, shards: &[Shard]) -> usize {
    let most = shards.iter().map(|s| s.harper.instances as usize).max().unwrap_or(0);
    plan.run.concurrency.saturating_mul(1 + most).saturating_add(1)
}

/// What `--plan` says of boot-ahead for the selected `shards`.
pub fn said(plan: &Plan, shards: &[Shard]) -> String {
    let when = match plan.run.boot_ahead {
        BootAhead::Off => return "off".to_owned(),
        BootAhead::Auto => "auto: the next shard's instance boots while a CPU is idle",
        BootAhead::Always => "always: the next shard's instance boots while a shard runs",
    };
    let needed = room_needed(plan, shards);
    if shards.len() <= plan.run.concurrency {
        format!("{when}; not used: no shard waits for a turn")
    } else if !shards.iter().any(|s| s.harper.boot) {
        format!("{when}; not used: no shard boots an instance of its own")
    } else if (plan.pool.count as usize) < needed {
        format!(
            "{when}; not used: the pool has {} addresses, it needs {needed} (concurrency × (1 + \
             harper.instances) + 1)",
            plan.pool.count
        )
    } else {
        when.to_owned()
    }
}

impl Gate {
    pub fn new(plan: &Plan, shards: &[Shard]) -> Gate {
        Gate {
            when: plan.run.boot_ahead,
            room: plan.pool.count as usize >= room_needed(plan, shards),
            idle: Idle::default(),
        }
    }

    /// Returns once `shard` may boot ahead; never when it may not at all (`off`, no instance of
    /// its own, a pool too small).
    pub async fn open(&mut self, shard: &Shard) {
        if self.when == BootAhead::Off || !shard.harper.boot || !self.room {
            return std::future::pending().await;
        }
        // Idle time is measured from now on, never over the wait of an earlier shard.
        self.idle = Idle::default();
        loop {
            let idle = self.idle.sample();
            if allowed(self.when, idle, available_memory()) {
                return;
            }
            tokio::time::sleep(SAMPLE).await;
        }
    }
}

/// The rule: memory for one more instance, and for `auto`, at least one CPU's worth of idle time
/// since the last sample. Where either cannot be read (no `/proc`), `auto` does not boot ahead
/// and `always` does.
fn allowed(when: BootAhead, idle_cpus: Option<f64>, memory: Option<u64>) -> bool {
    let memory_ok = memory.is_none_or(|m| m >= MEMORY);
    match when {
        BootAhead::Off => false,
        BootAhead::Always => memory_ok,
        BootAhead::Auto => memory.is_some() && memory_ok && idle_cpus.is_some_and(|c| c >= 1.0),
    }
}

/// The CPU's idle time between samples, from `/proc/stat`.
#[derive(Default)]
struct Idle {
    last: Option<Ticks>,
}

impl Idle {
    /// CPUs' worth of idle time since the last sample; `None` at the first one, or without
    /// `/proc/stat`.
    fn sample(&mut self) -> Option<f64> {
        let now = std::fs::read_to_string("/proc/stat").ok().and_then(|s| Ticks::parse(&s));
        let last = std::mem::replace(&mut self.last, now);
        now?.idle_cpus_since(&last?)
    }
}

/// The `cpu` line of `/proc/stat`: all time and idle time (iowait included), in ticks, and the
/// number of CPUs.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ticks {
    total: u64,
    idle: u64,
    cpus: usize,
}

impl Ticks {
    fn parse(stat: &str) -> Option<Ticks> {
        let mut lines = stat.lines();
        let fields: Vec<u64> = lines
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        // user nice system idle iowait irq softirq steal [guest guest_nice, counted in user]
        let total = fields.iter().take(8).sum();
        let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
        let cpus = lines.filter(|l| l.starts_with("cpu")).count();
        (cpus > 0).then_some(Ticks { total, idle, cpus })
    }

    fn idle_cpus_since(&self, before: &Ticks) -> Option<f64> {
        let total = self.total.checked_sub(before.total).filter(|t| *t > 0)?;
        let idle = self.idle.checked_sub(before.idle)?;
        Some(idle as f64 / total as f64 * self.cpus as f64)
    }
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    mem_available(&info)
}

fn mem_available(info: &str) -> Option<u64> {
    let line = info.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\n\
                          cpu1 50 0 25 400 25 0 0 0 0 0\nintr 1\n";

    fn ticks(text: &str) -> Ticks {
        Ticks::parse(text).expect("a cpu line")
    }

    #[test]
    fn idle_time_counts_iowait_and_scales_to_cpus() {
        let before = ticks(BEFORE);
        assert_eq!(before, Ticks { total: 1000, idle: 850, cpus: 2 });
        // 100 ticks passed: 40 busy, 50 idle, 10 waiting on I/O → 0.6 of the machine, 1.2 CPUs.
        let after = ticks("cpu  130 0 60 850 60 0 0 0 0 0\ncpu0 1\ncpu1 1\n");
        let idle = after.idle_cpus_since(&before).unwrap();
        assert!((idle - 1.2).abs() < 1e-9, "{idle}");
        // No time passed, or a counter went back (a reset): no answer rather than a wrong one.
        assert_eq!(before.idle_cpus_since(&before), None);
        assert_eq!(before.idle_cpus_since(&after), None);
    }

    #[test]
    fn a_stat_without_a_cpu_line_or_with_junk_is_not_read() {
        for junk in ["", "intr 1\n", "cpu  1 2 x 4\ncpu0 1\n", "cpu  1 2 3\n", "cpu  1 2 3 4\n"] {
            assert_eq!(Ticks::parse(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn mem_available_is_read_in_bytes() {
        let info = "MemTotal:  24000000 kB\nMemFree: 100 kB\nMemAvailable:    2048 kB\n";
        assert_eq!(mem_available(info), Some(2048 * 1024));
        assert_eq!(mem_available("MemFree: 100 kB\n"), None);
        assert_eq!(mem_available("MemAvailable: lots\n"), None);
        assert_eq!(mem_available("MemAvailable: 99999999999999999999 kB\n"), None);
    }

    #[test]
    fn auto_boots_ahead_only_with_a_cpu_idle_and_memory_for_an_instance() {
        let (enough, short) = (Some(MEMORY), Some(MEMORY - 1));
        assert!(allowed(BootAhead::Auto, Some(1.0), enough));
        assert!(!allowed(BootAhead::Auto, Some(0.99), enough));
        assert!(!allowed(BootAhead::Auto, Some(2.0), short));
        assert!(!allowed(BootAhead::Auto, None, enough), "idle time unknown");
        assert!(!allowed(BootAhead::Auto, Some(2.0), None), "memory unknown");
        assert!(allowed(BootAhead::Always, Some(0.0), enough));
        assert!(allowed(BootAhead::Always, None, None));
        assert!(!allowed(BootAhead::Always, Some(2.0), short));
        assert!(!allowed(BootAhead::Off, Some(2.0), enough));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_machine_has_its_idle_time_and_memory_read() {
        // The tool's own platform (Linux) must not fall back to "unknown".
        let mut idle = Idle::default();
        assert_eq!(idle.sample(), None, "the first sample has nothing to compare with");
        std::thread::sleep(Duration::from_millis(30));
        assert!(idle.sample().is_some_and(|c| c >= 0.0));
        assert!(available_memory().is_some_and(|m| m > 0));
    }
}
