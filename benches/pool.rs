//! Acquire + release of a pool address: harper-shard's pool (a `flock` per address, a record,
//! the conflict canary) against a re-implementation of the documented algorithm of today's
//! TypeScript harness pool, measured side by side in one run.
//!
//! `cargo bench --bench pool` prints, for each: the latency of one uncontended acquire +
//! release (median, p99); the cycles per second that 64 processes contending for 4 addresses
//! complete together, and how evenly; and the hand-off time — from the moment a held address
//! is released to the moment a process already waiting for it has it. The other processes are
//! this same binary, re-executed with `HARPER_SHARD_BENCH_ROLE` set.
//!
//! Both sides probe the same ports on the addresses they hand out, so the difference is the
//! pool mechanism, not the canary.

use std::fs::OpenOptions;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harper_shard::plan::PoolSpec;
use harper_shard::pool::{Claim, Lease, Pool, probe};

const ROLE: &str = "HARPER_SHARD_BENCH_ROLE";
const DIR: &str = "HARPER_SHARD_BENCH_DIR";
const UNTIL: &str = "HARPER_SHARD_BENCH_UNTIL";
const START_AT: &str = "HARPER_SHARD_BENCH_START";

/// Addresses no test uses.
const POOL_START: Ipv4Addr = Ipv4Addr::new(127, 0, 91, 2);
const POOL_COUNT: u32 = 4;
const PORTS: [(&str, u16); 5] =
    [("operations", 9925), ("http", 9926), ("mqtt", 1883), ("mqtts", 8883), ("replication", 9933)];

const UNCONTENDED_ROUNDS: usize = 10;
const UNCONTENDED_PER_ROUND: usize = 100;
const CONTENDERS: usize = 64;
const CONTENDED_FOR: Duration = Duration::from_secs(5);
const HANDOFFS: usize = 20;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    match std::env::var(ROLE).as_deref() {
        Ok("ours") => contend(&mut Ours::open(&dir_from_env(), POOL_COUNT)),
        Ok("baseline") => contend(&mut Baseline::open(&dir_from_env(), POOL_COUNT)),
        Ok("handoff-ours") => take_once(&mut Ours::open(&dir_from_env(), 1)),
        Ok("handoff-baseline") => take_once(&mut Baseline::open(&dir_from_env(), 1)),
        _ => measure(),
    }
}

/// One way of handing out pool addresses.
trait Slots {
    /// Takes an address (waiting as long as it takes); its index. `waiting` is called each time
    /// a look at the pool found no address free.
    fn take_or(&mut self, waiting: &dyn Fn()) -> usize;
    fn take(&mut self) -> usize {
        self.take_or(&|| {})
    }
    fn give_back(&mut self, i: usize);
    fn cycle(&mut self) {
        let i = self.take();
        self.give_back(i);
    }
}

/// harper-shard's pool, as the run uses it.
struct Ours {
    pool: Pool,
    held: Option<Lease>,
}

impl Ours {
    fn open(dir: &Path, count: u32) -> Ours {
        let spec = PoolSpec { start: POOL_START, count, wait: Duration::from_secs(600) };
        Ours { pool: Pool::open(dir, &spec).expect("open the pool"), held: None }
    }
}

impl Slots for Ours {
    fn take_or(&mut self, waiting: &dyn Fn()) -> usize {
        let claim = Claim { token: "bench-token", shard: "bench", avoid: &[] };
        // The pool asks whether to give up after each look that found nothing.
        let cancelled = || {
            waiting();
            false
        };
        let lease = self.pool.acquire(claim, &PORTS, &cancelled, &|_| {}).expect("acquire");
        let i = (u32::from(lease.addr) - u32::from(POOL_START)) as usize;
        self.held = Some(lease);
        i
    }

    fn give_back(&mut self, _i: usize) {
        if let Some(lease) = self.held.take() {
            lease.release();
        }
    }
}

/// A re-implementation, for measurement only, of the documented algorithm of the TypeScript
/// harness pool (docs/pool-baseline.md): one lock file for the whole pool created with O_EXCL, a 1 s sleep
/// whenever it is taken or the pool is full, a JSON array of owner pids (null = free), a lock
/// older than 10 s (mtime) taken as stale, dead owners swept only when the pool is full, with
/// EPERM taken as dead. Its canary probes the same ports as ours.
struct Baseline {
    lock: PathBuf,
    state: PathBuf,
    count: usize,
}

const BASELINE_SLEEP: Duration = Duration::from_secs(1);
const BASELINE_STALE: Duration = Duration::from_secs(10);

impl Baseline {
    fn open(dir: &Path, count: u32) -> Baseline {
        std::fs::create_dir_all(dir).expect("create the baseline dir");
        Baseline {
            lock: dir.join("pool.lock"),
            state: dir.join("pool.json"),
            count: count as usize,
        }
    }

    fn lock(&self) {
        loop {
            match OpenOptions::new().write(true).create_new(true).open(&self.lock) {
                Ok(_) => return,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = std::fs::metadata(&self.lock)
                        .and_then(|m| m.modified())
                        .map(|t| t.elapsed().unwrap_or_default() > BASELINE_STALE)
                        .unwrap_or(false);
                    if stale {
                        let _ = std::fs::remove_file(&self.lock);
                    } else {
                        std::thread::sleep(BASELINE_SLEEP);
                    }
                }
                Err(e) => panic!("baseline lock: {e}"),
            }
        }
    }

    fn unlock(&self) {
        let _ = std::fs::remove_file(&self.lock);
    }

    fn read(&self) -> Vec<Option<u32>> {
        std::fs::read(&self.state)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| vec![None; self.count])
    }

    fn write(&self, slots: &[Option<u32>]) {
        std::fs::write(&self.state, serde_json::to_vec(slots).unwrap())
            .expect("write the baseline state");
    }

    fn acquire(&self, waiting: &dyn Fn()) -> usize {
        let me = std::process::id();
        loop {
            self.lock();
            let mut slots = self.read();
            let free = (0..slots.len())
                .find(|&i| slots[i].is_none() && probe::check_all(addr(i), &PORTS).is_ok());
            if let Some(i) = free {
                slots[i] = Some(me);
                self.write(&slots);
                self.unlock();
                return i;
            }
            // Full: sweep owners that look dead (EPERM counts as dead), then try again.
            let mut swept = false;
            for slot in slots.iter_mut() {
                if let Some(pid) = *slot {
                    let alive =
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None)
                            .is_ok();
                    if !alive {
                        *slot = None;
                        swept = true;
                    }
                }
            }
            if swept {
                self.write(&slots);
            }
            self.unlock();
            if !swept {
                waiting();
                std::thread::sleep(BASELINE_SLEEP);
            }
        }
    }

    fn release(&self, i: usize) {
        self.lock();
        let mut slots = self.read();
        slots[i] = None;
        self.write(&slots);
        self.unlock();
    }
}

impl Slots for Baseline {
    fn take_or(&mut self, waiting: &dyn Fn()) -> usize {
        self.acquire(waiting)
    }

    fn give_back(&mut self, i: usize) {
        self.release(i);
    }
}

fn addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(POOL_START) + i as u32)
}

fn dir_from_env() -> PathBuf {
    PathBuf::from(std::env::var_os(DIR).expect("the bench dir"))
}

fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

fn env_instant(name: &str) -> Duration {
    Duration::from_nanos(std::env::var(name).expect(name).parse().expect("nanoseconds"))
}

/// A contending process: cycles from the common start until the common end, then prints how
/// many cycles it completed in between.
fn contend(slots: &mut dyn Slots) {
    let (start, until) = (env_instant(START_AT), env_instant(UNTIL));
    while unix_now() < start {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut cycles = 0u64;
    loop {
        slots.cycle();
        if unix_now() >= until {
            break;
        }
        cycles += 1;
    }
    println!("{cycles}");
}

fn measure() {
    let root = std::env::temp_dir().join(format!("hs-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let (ours_dir, base_dir) = (root.join("ours"), root.join("baseline"));

    println!(
        "pool of {POOL_COUNT} addresses from {POOL_START}, canary on {} ports, both sides",
        PORTS.len()
    );
    let mut ours = Ours::open(&ours_dir, POOL_COUNT);
    let mut base = Baseline::open(&base_dir, POOL_COUNT);
    // Alternate rounds so that drift in the machine's load hits both sides alike.
    let (mut lat_ours, mut lat_base) = (Vec::new(), Vec::new());
    for _ in 0..UNCONTENDED_ROUNDS {
        time_cycles(&mut ours, &mut lat_ours);
        time_cycles(&mut base, &mut lat_base);
    }
    let (m_ours, p_ours) = (percentile(&mut lat_ours, 50.0), percentile(&mut lat_ours, 99.0));
    let (m_base, p_base) = (percentile(&mut lat_base, 50.0), percentile(&mut lat_base, 99.0));
    println!("uncontended acquire+release, {} cycles each:", lat_ours.len());
    println!(
        "  harper-shard flock pool   median {:>9.1} µs   p99 {:>9.1} µs",
        micros(m_ours),
        micros(p_ours)
    );
    println!(
        "  baseline (TS algorithm)   median {:>9.1} µs   p99 {:>9.1} µs",
        micros(m_base),
        micros(p_base)
    );
    println!(
        "  ratio baseline/ours       median {:>9.2}x     p99 {:>9.2}x",
        ratio(m_base, m_ours),
        ratio(p_base, p_ours)
    );

    let (rate_ours, spread_ours) = contended("ours", &ours_dir);
    let (rate_base, spread_base) = contended("baseline", &base_dir);
    println!(
        "{CONTENDERS} processes contending for {POOL_COUNT} addresses, {}s each:",
        CONTENDED_FOR.as_secs()
    );
    println!(
        "  harper-shard flock pool   {rate_ours:>9.1} cycles/s   per process min/median/max {spread_ours}"
    );
    println!(
        "  baseline (TS algorithm)   {rate_base:>9.1} cycles/s   per process min/median/max {spread_base}"
    );
    println!("  ratio ours/baseline       {:>9.1}x", rate_ours / rate_base.max(f64::MIN_POSITIVE));

    let mut hand_ours =
        handoffs("handoff-ours", &mut Ours::open(&root.join("h-ours"), 1), &root.join("h-ours"));
    let mut hand_base = handoffs(
        "handoff-baseline",
        &mut Baseline::open(&root.join("h-base"), 1),
        &root.join("h-base"),
    );
    let (h_ours, hp_ours) = (percentile(&mut hand_ours, 50.0), percentile(&mut hand_ours, 100.0));
    let (h_base, hp_base) = (percentile(&mut hand_base, 50.0), percentile(&mut hand_base, 100.0));
    println!("hand-off of a released address to a process waiting for it, {HANDOFFS} each:");
    println!(
        "  harper-shard flock pool   median {:>9.1} ms   max {:>9.1} ms",
        millis(h_ours),
        millis(hp_ours)
    );
    println!(
        "  baseline (TS algorithm)   median {:>9.1} ms   max {:>9.1} ms",
        millis(h_base),
        millis(hp_base)
    );
    println!("  ratio baseline/ours       median {:>9.1}x", ratio(h_base, h_ours));
    let _ = std::fs::remove_dir_all(&root);
}

/// A waiting process: takes the one address, saying on stderr once it found it taken, prints
/// when it had it, gives it back.
fn take_once(slots: &mut dyn Slots) {
    let said = std::cell::Cell::new(false);
    let i = slots.take_or(&|| {
        if !said.replace(true) {
            eprintln!("{WAITING}");
        }
    });
    println!("{}", unix_now().as_nanos());
    slots.give_back(i);
}

/// What a hand-off waiter says once it has found the address taken.
const WAITING: &str = "waiting";

/// Holds the one address, starts a process that waits for it, releases at a moment that
/// varies against any polling period, and measures until the waiter has it.
fn handoffs(role: &str, holder: &mut dyn Slots, dir: &Path) -> Vec<Duration> {
    let exe = std::env::current_exe().unwrap();
    (0..HANDOFFS)
        .map(|n| {
            let i = holder.take();
            let mut waiter = Command::new(&exe)
                .env(ROLE, role)
                .env(DIR, dir)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a waiter");
            let mut said =
                std::io::BufReader::new(waiter.stderr.take().expect("the waiter's stderr"));
            let mut line = String::new();
            std::io::BufRead::read_line(&mut said, &mut line).expect("read the waiter's stderr");
            assert_eq!(line.trim(), WAITING, "the waiter did not find the address taken");
            // Not a synchronisation (the line above is): the release moment is spread evenly
            // over a second, the longest polling period measured.
            std::thread::sleep(Duration::from_millis((n as u64 * 53) % 1000));
            let released = unix_now();
            holder.give_back(i);
            let out = waiter.wait_with_output().expect("wait for the waiter");
            let took: u128 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("a time");
            Duration::from_nanos((took.saturating_sub(released.as_nanos())) as u64)
        })
        .collect()
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn time_cycles(slots: &mut dyn Slots, into: &mut Vec<Duration>) {
    for _ in 0..UNCONTENDED_PER_ROUND {
        let started = Instant::now();
        slots.cycle();
        into.push(started.elapsed());
    }
}

/// Runs `CONTENDERS` processes of `role` for `CONTENDED_FOR`; total cycles per second and the
/// per-process spread.
fn contended(role: &str, dir: &Path) -> (f64, String) {
    let start = unix_now() + Duration::from_millis(1500);
    let until = start + CONTENDED_FOR;
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..CONTENDERS)
        .map(|_| {
            Command::new(&exe)
                .env(ROLE, role)
                .env(DIR, dir)
                .env(START_AT, start.as_nanos().to_string())
                .env(UNTIL, until.as_nanos().to_string())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a contender")
        })
        .collect();
    let mut counts: Vec<u64> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().expect("wait for a contender");
            assert!(out.status.success(), "a contender failed");
            String::from_utf8_lossy(&out.stdout).trim().parse().expect("a count")
        })
        .collect();
    counts.sort_unstable();
    let total: u64 = counts.iter().sum();
    let spread = format!("{}/{}/{}", counts[0], counts[counts.len() / 2], counts[counts.len() - 1]);
    (total as f64 / CONTENDED_FOR.as_secs_f64(), spread)
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    let i = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[i]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}
