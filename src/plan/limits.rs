//! Every bound a plan is held to, in one place: the README's plan section lists them, and the
//! checks in `schema` and `resolve` take them from here.
//!
//! Each bound keeps a value inside what the rest of the tool can do with it: a duration that
//! still adds to a clock, a count that does not allocate per unit past reason, a name that
//! still fits a file name, a string the kernel still takes as one argument.

use std::time::Duration;

/// The largest plan file read.
pub const PLAN_BYTES: u64 = 4 * 1024 * 1024;
/// The largest timings file read.
pub const TIMINGS_BYTES: u64 = 16 * 1024 * 1024;

/// The shortest duration any key takes.
pub const MIN_DURATION: Duration = Duration::from_millis(1);
/// The longest `startup`, `timeout` or `pool.wait`.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest `teardown.grace` or `teardown.port_release`: every shard waits them out at its
/// end, and past a few minutes a process that ignores SIGTERM or a held port is a fault to
/// report, not one to wait for.
pub const MAX_TEARDOWN: Duration = Duration::from_secs(10 * 60);

/// `run.concurrency`: Harper boots mostly on CPU; past this, shards only queue.
pub const MAX_CONCURRENCY: usize = 256;
/// `pool.count`: every address of the pool is a lock file, probed and listed.
pub const MAX_POOL_COUNT: u32 = 1024;
/// `harper.instances`: every on-demand instance is a Harper of its own (~250 MiB) and an
/// address of the pool.
pub const MAX_INSTANCES: u32 = 64;
/// `harper.threads`: Harper's worker threads, 0 (the single-thread mode) to this.
pub const MAX_THREADS: u32 = 64;
/// `split`: every part is a Harper instance of its own.
pub const MAX_SPLIT: u32 = 256;
/// `retries`: each is a whole fresh attempt of the shard; past a few, a failure is a failure.
pub const MAX_RETRIES: u32 = 10;

/// A shard's name, a split suffix (`/12`) included: it names a log folder, a JUnit suite and
/// an environment variable, and must fit every file name derived from it.
pub const NAME_BYTES: usize = 64;

/// The kernel's limit on one argument or one `KEY=value` variable (Linux MAX_ARG_STRLEN,
/// terminating NUL included).
pub const ARG_STRLEN: usize = 128 * 1024;
/// What one process's plan-given arguments and variables may add up to: half of the usual 2 MiB
/// ARG_MAX, so that the environment the tool inherits still fits beside them.
pub const ARGS_TOTAL: usize = 1024 * 1024;

/// A duration as the plan writes it: `24h`, `10m`, `90s`, `1ms`.
pub fn duration_text(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

/// `from 1ms to 24h`, for messages.
pub fn duration_range(max: Duration) -> String {
    format!("from {} to {}", duration_text(MIN_DURATION), duration_text(max))
}
