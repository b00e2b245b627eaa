//! The binary: parse, dispatch, exit status. Everything else lives in the library.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use harper_shard::cli::{Cli, Command};
use harper_shard::commands;
use harper_shard::report::out;
use harper_shard::report::policy::{Policy, Verbosity};
use harper_shard::report::say::{self, Say};
use harper_shard::supervise::keeper;

fn main() -> ExitCode {
    // The keeper must stay single-threaded: it is dispatched before tracing, clap or tokio.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if keeper::requested(argv.get(1).map(|a| a.as_os_str())) {
        return ExitCode::from(keeper::main(&argv[2..]));
    }
    // Not clap's own exit: its message would be printed raw, past the neutralising writer.
    let matches = match Cli::command().try_get_matches() {
        Ok(matches) => matches,
        Err(e) => return ExitCode::from(say::clap(&e)),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => return ExitCode::from(say::clap(&e)),
    };
    let verbosity = match cli.verbosity(&matches) {
        Ok(verbosity) => verbosity,
        Err(why) => {
            return ExitCode::from(say::clap(
                &Cli::command().error(clap::error::ErrorKind::ArgumentConflict, why),
            ));
        }
    };
    // The output policy, decided here once; everything that prints takes it from here.
    let policy = Policy::detect(verbosity);
    out::init(policy);
    init_tracing(policy);
    let say = Say::new(policy);
    let result = match cli.command {
        Command::Run(args) => commands::run(args, &say),
        Command::Matrix(args) => commands::matrix(args, &say),
        Command::Pool { command } => commands::pool(command, &say),
        Command::Timings { command } => commands::timings(command, &say),
        Command::Cache { command } => commands::cache(command, &say),
        Command::Ctl(args) => harper_shard::ctl::run(args, &say),
        Command::Schema(args) => {
            let schema = if args.control {
                harper_shard::run::protocol::control_schema()
            } else {
                harper_shard::plan::json_schema::plan_schema()
            };
            say.answer(say::json(&schema, true));
            Ok(harper_shard::exit::Exit::Passed)
        }
        // Only reached with flags before it: the real keeper is dispatched above.
        Command::Keeper(_) => Err(harper_shard::exit::Failure::usage(anyhow::anyhow!(
            "`__keeper` is internal: `harper-shard run` starts it, as the first argument and without flags"
        ))),
    };
    match result {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(failure) => {
            say::error(&failure);
            ExitCode::from(failure.exit.code())
        }
    }
}

fn init_tracing(policy: Policy) {
    use tracing_subscriber::EnvFilter;
    let default = match policy.verbosity {
        Verbosity::Quiet => "error",
        Verbosity::Normal => "warn",
        Verbosity::Verbose(1) => "harper_shard=debug",
        Verbosity::Verbose(_) => "harper_shard=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Through the same door as every other line: neutralised, framed under GitHub Actions, drawn
    // above the live lines; coloured only where the console's lines are.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(out::stderr)
        .with_ansi(policy.colour)
        .with_target(false)
        .init();
}
