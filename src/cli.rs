//! Command-line definitions. Every flag can also come from a `HARPER_SHARD_<FLAG>` variable, so
//! a CI system that cannot edit the command line can still steer the tool.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::plan::Partition;

#[derive(Debug, Parser)]
#[command(name = "harper-shard", version, about, propagate_version = true)]
pub struct Cli {
    /// More detail on stderr (-v debug, -vv trace). RUST_LOG overrides both.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors and the final table.
    #[arg(short, long, global = true, conflicts_with = "verbose", env = "HARPER_SHARD_QUIET")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
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
    /// Internal: the per-child keeper process.
    #[command(name = "__keeper", hide = true)]
    Keeper(KeeperArgs),
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
    #[arg(long = "plan", env = "HARPER_SHARD_PLAN")]
    pub dry_run: bool,
    /// Run only partition K of N (1-based), balanced by recorded timings.
    #[arg(long, value_name = "K/N", env = "HARPER_SHARD_PARTITION")]
    pub partition: Option<Partition>,
    /// Run only these shards (a split shard's name selects all its parts).
    #[arg(long, value_name = "NAME", num_args = 1.., value_delimiter = ',', env = "HARPER_SHARD_ONLY")]
    pub only: Vec<String>,
    /// Where report.json, junit.xml, timings.json and the logs go.
    #[arg(long, default_value = "harper-shard-report", env = "HARPER_SHARD_REPORT_DIR")]
    pub report_dir: PathBuf,
    /// Output format of the dry run and the final summary.
    #[arg(long, value_enum, default_value_t = Format::Human, env = "HARPER_SHARD_FORMAT")]
    pub format: Format,
    /// Recorded timings used to balance splits and partitions [default: <report-dir>/timings.json].
    #[arg(long, value_name = "FILE", env = "HARPER_SHARD_TIMINGS")]
    pub timings: Option<PathBuf>,
    /// Also publish a check run through the GitHub Checks API (needs GITHUB_TOKEN).
    #[arg(long, env = "HARPER_SHARD_GITHUB_CHECKS")]
    pub github_checks: bool,
    /// The name of the check run.
    #[arg(long, default_value = "harper-shard", env = "HARPER_SHARD_CHECK_NAME")]
    pub check_name: String,
}

#[derive(Debug, Args)]
pub struct MatrixArgs {
    #[command(flatten)]
    pub plan_file: PlanFile,
    /// How many CI jobs to split the plan across.
    #[arg(long, env = "HARPER_SHARD_PARTITIONS")]
    pub partitions: u32,
    /// Recorded timings used to balance the partitions.
    #[arg(long, value_name = "FILE", env = "HARPER_SHARD_TIMINGS")]
    pub timings: Option<PathBuf>,
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
