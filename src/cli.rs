//! Command-line definitions. Every flag can also come from a `HARPER_SHARD_<FLAG>` variable, so
//! a CI system that cannot edit the command line can still steer the tool.

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Parser, Subcommand, ValueEnum};

use crate::plan::Partition;
use crate::report::policy::Verbosity;

#[derive(Debug, Parser)]
#[command(name = "harper-shard", version, about, propagate_version = true)]
pub struct Cli {
    /// More detail on stderr (-v debug, -vv trace); the variable takes the level (0, 1, 2).
    /// RUST_LOG overrides both.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, env = "HARPER_SHARD_VERBOSE", value_parser = level)]
    pub verbose: u8,
    /// Only errors and the final table.
    // Not `conflicts_with = "verbose"`: clap counts a variable set to `false` as given, so
    // `HARPER_SHARD_QUIET=false -v` would be refused. [`Cli::verbosity`] decides instead.
    #[arg(short, long, global = true, env = "HARPER_SHARD_QUIET", value_parser = switch)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// `-q` against `-v`: a flag on the command line beats a variable; two flags, or two
    /// variables, that say opposite things are a usage error. A variable set to `false` / `0`
    /// says nothing.
    pub fn verbosity(&self, matches: &ArgMatches) -> Result<Verbosity, String> {
        let on_command_line = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
        match (self.quiet, self.verbose) {
            (false, 0) => Ok(Verbosity::Normal),
            (true, 0) => Ok(Verbosity::Quiet),
            (false, v) => Ok(Verbosity::Verbose(v)),
            (true, v) => match (on_command_line("quiet"), on_command_line("verbose")) {
                (true, false) => Ok(Verbosity::Quiet),
                (false, true) => Ok(Verbosity::Verbose(v)),
                (true, true) => Err("-q/--quiet and -v/--verbose ask for opposite things: give one of them".into()),
                (false, false) => Err(
                    "HARPER_SHARD_QUIET and HARPER_SHARD_VERBOSE ask for opposite things: unset one, or override with -q or -v"
                        .into(),
                ),
            },
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the shards of a plan, each against its own Harper instance.
    Run(RunArgs),
    /// Print a GitHub `strategy.matrix` (JSON) that splits the plan across CI jobs.
    Matrix(MatrixArgs),
    /// Inspect, check or set up the loopback address pool.
    Pool {
        #[command(subcommand)]
        command: PoolCommand,
    },
    /// Combine the timings of every job of a CI run into one file for the next run.
    Timings {
        #[command(subcommand)]
        command: TimingsCommand,
    },
    /// Show or remove what the cache holds: installed Harper packages, boot templates, key sets (JWT and TLS).
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Print the plan's JSON Schema (for editors and linters; docs/plan.schema.json is a copy),
    /// or with --control the control socket's (docs/control.schema.json).
    Schema(SchemaArgs),
    /// Inside a shard's command: stop, start, restart, kill or release an instance through the
    /// shard's control socket, or start a new one (docs/control.md).
    Ctl(CtlArgs),
    /// Internal: the per-child keeper process.
    #[command(name = "__keeper", hide = true)]
    Keeper(KeeperArgs),
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// The control socket's requests and answers (docs/control.md) instead of the plan's.
    #[arg(long)]
    pub control: bool,
}

#[derive(Debug, Args)]
pub struct PlanFile {
    /// The shard plan.
    #[arg(default_value = "harper-shards.yml", env = "HARPER_SHARD_PLAN_FILE")]
    pub plan_file: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub plan_file: PlanFile,
    /// Dry run: validate and resolve everything, print what would happen, start nothing.
    #[arg(long = "plan", env = "HARPER_SHARD_PLAN", value_parser = switch)]
    pub dry_run: bool,
    /// Run only partition K of N (1-based) [default: from CI_NODE_INDEX/CI_NODE_TOTAL,
    /// CIRCLE_NODE_INDEX/CIRCLE_NODE_TOTAL or BUILDKITE_PARALLEL_JOB/BUILDKITE_PARALLEL_JOB_COUNT].
    #[arg(long, value_name = "K/N", env = "HARPER_SHARD_PARTITION")]
    pub partition: Option<Partition>,
    /// The assignment digest `matrix` printed: refuse to run unless this job computes the same.
    #[arg(long, value_name = "DIGEST", env = "HARPER_SHARD_ASSIGNMENT")]
    pub assignment: Option<String>,
    /// Run only these shards (a split shard's name selects all its parts): `--only a,b` or
    /// `--only a --only b`.
    // One value per flag: with `1..` values, `--only sql harper-shards.yml` took the plan's path
    // for a second shard name.
    #[arg(long, value_name = "NAME", num_args = 1, action = clap::ArgAction::Append, value_delimiter = ',', env = "HARPER_SHARD_ONLY")]
    pub only: Vec<String>,
    /// Where report.json, junit.xml, timings.json and the logs go.
    #[arg(long, default_value = "harper-shard-report", env = "HARPER_SHARD_REPORT_DIR")]
    pub report_dir: PathBuf,
    /// Output format of the dry run and the final summary.
    #[arg(long, value_enum, default_value_t = Format::Human, env = "HARPER_SHARD_FORMAT")]
    pub format: Format,
    /// Recorded timings to balance splits and partitions by; without it, the plan alone
    /// (`weight`, file counts) decides. Give every job of a run the same file.
    #[arg(long, value_name = "FILE", env = "HARPER_SHARD_TIMINGS")]
    pub timings: Option<PathBuf>,
    /// Also publish a check run through the GitHub Checks API (needs GITHUB_TOKEN).
    #[arg(long, env = "HARPER_SHARD_GITHUB_CHECKS", value_parser = switch)]
    pub github_checks: bool,
    /// The name of the check run.
    #[arg(long, default_value = "harper-shard", env = "HARPER_SHARD_CHECK_NAME")]
    pub check_name: String,
    /// Try a failed shard up to N more times, each on a fresh instance (0 to 10): replaces the
    /// plan's `run.retries`; a shard's own `retries` still wins.
    #[arg(long, value_name = "N", env = "HARPER_SHARD_RETRIES", value_parser = retries)]
    pub retries: Option<u32>,
    /// A flaky shard (failed, then passed on a retry) fails the run: as `run.flaky: fail`.
    #[arg(long, env = "HARPER_SHARD_FLAKY_FAILS", value_parser = switch)]
    pub flaky_fails: bool,
    /// When the next shard's instance may boot before the shard has its turn (replaces the
    /// plan's `run.boot_ahead`): while the CPU is idle (auto), never (off), or always.
    #[arg(long, value_enum, value_name = "WHEN", env = "HARPER_SHARD_BOOT_AHEAD")]
    pub boot_ahead: Option<crate::plan::schema::BootAhead>,
}

fn retries(text: &str) -> Result<u32, String> {
    crate::plan::schema::Retries::parse(text).map(|r| r.0)
}

#[derive(Debug, Args)]
pub struct MatrixArgs {
    #[command(flatten)]
    pub plan_file: PlanFile,
    /// How many CI jobs to split the plan across.
    #[arg(long, env = "HARPER_SHARD_PARTITIONS")]
    pub partitions: u32,
    /// Recorded timings used to balance the partitions; the jobs need the same file.
    #[arg(long, value_name = "FILE", env = "HARPER_SHARD_TIMINGS")]
    pub timings: Option<PathBuf>,
    /// `json`: a GitHub `strategy.matrix`; `env`: a `HARPER_SHARD_ASSIGNMENT=<digest>` line, for
    /// GitLab's dotenv reports and shells.
    #[arg(long, value_enum, default_value_t = MatrixFormat::Json, env = "HARPER_SHARD_MATRIX_FORMAT")]
    pub format: MatrixFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MatrixFormat {
    Json,
    Env,
}

#[derive(Debug, Subcommand)]
pub enum TimingsCommand {
    /// Print one timings file (JSON, on stdout) made of the `timings.json` of every job of a run,
    /// each figure weighed against the history; refuses jobs that computed different assignments.
    Merge(MergeArgs),
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Every job's `<report-dir>/timings.json`.
    #[arg(value_name = "JOB.json", required = true)]
    pub jobs: Vec<PathBuf>,
    /// The timings the jobs were given (`--timings`): the history to weigh the new figures
    /// against. A file that does not exist is no history.
    #[arg(long, value_name = "OLD.json", env = "HARPER_SHARD_PREVIOUS_TIMINGS")]
    pub previous: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Show every address of the pool: free, held by a run, or busy with a foreign listener.
    Status(PoolArgs),
    /// Check that every address of the pool can be bound.
    Validate(PoolArgs),
    /// Create the loopback aliases the pool needs (macOS); Linux needs none.
    SetupLoopback(PoolArgs),
}

#[derive(Debug, Args)]
pub struct PoolArgs {
    /// The plan whose pool and ports to use; without one, the defaults.
    #[arg(long, env = "HARPER_SHARD_PLAN_FILE")]
    pub plan_file: Option<PathBuf>,
    /// Output format of `pool status`.
    #[arg(long, value_enum, default_value_t = Format::Human, env = "HARPER_SHARD_FORMAT")]
    pub format: Format,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List the installed packages, boot templates and key sets (JWT and TLS), with their sizes.
    Status {
        #[arg(long, value_enum, default_value_t = Format::Human, env = "HARPER_SHARD_FORMAT")]
        format: Format,
    },
    /// Remove everything a running harper-shard is not using right now.
    Clear,
}

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// What to do.
    #[arg(value_enum)]
    pub op: CtlOp,
    /// The instance: `main` (the shard's own, the default) or an id a `start --new` answered with.
    #[arg(long, conflicts_with = "new")]
    pub id: Option<String>,
    /// `start`: a new instance of the shard's own, with its own address (see --set, --name).
    #[arg(long)]
    pub new: bool,
    /// `stop` / `restart`: time between SIGTERM and SIGKILL [default: the plan's teardown.grace].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub grace: Option<std::time::Duration>,
    /// `start --new`: a Harper key of the plan, its value as JSON
    /// (`--set 'config={"logging":{"level":"debug"}}'`), or as a string when it is not JSON.
    /// `start` of a stopped instance: the Harper it boots next (`--set package=harperdb@4.7.29`
    /// or `--set bin=PATH`). A relative `bin` is taken from the current folder.
    #[arg(long, value_name = "KEY=VALUE", num_args = 1, action = clap::ArgAction::Append)]
    pub set: Vec<String>,
    /// `start --new`: a label for the reports.
    #[arg(long)]
    pub name: Option<String>,
    /// Print the answer as it came, one JSON line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CtlOp {
    Status,
    Start,
    Stop,
    Restart,
    Kill,
    Release,
}

#[derive(Debug, Args)]
pub struct KeeperArgs {
    /// Arguments understood by the keeper itself; see `supervise::keeper`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<std::ffi::OsString>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
}

/// A switch's variable: `true` / `1` / `yes` / `on`, or `false` / `0` / `no` / `off` / empty.
/// Empty is `false`, as an unset variable is: CI systems often pass unset inputs as `""`.
fn switch(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err("use true or false (also 1/0, yes/no, on/off)".into()),
    }
}

/// `HARPER_SHARD_VERBOSE`: a level (`0`, `1` for -v, `2` for -vv) or a switch (`true` is 1).
fn level(text: &str) -> Result<u8, String> {
    match text.trim().parse::<u8>() {
        Ok(n) => Ok(n),
        Err(_) => {
            switch(text).map(u8::from).map_err(|_| "use a level (0, 1, 2) or true / false".into())
        }
    }
}
