//! The commands' bodies: each turns parsed arguments into work and an exit status.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use tokio::sync::{mpsc, watch};

use crate::cli::{Format, MatrixArgs, PoolArgs, PoolCommand, RunArgs};
use crate::exit::{Exit, Failure};
use crate::plan::{self, Plan, Timings};
use crate::report::console::{self, Console, Verbosity};
use crate::report::github::{self, GitHub};
use crate::report::junit::Junit;
use crate::report::place::Place;
use crate::report::{self, Reporter, checks, files::Files};
use crate::run::events::EventKind;
use crate::run::{self, Cancel, Emitter};
use crate::{pool, supervise};

/// Loads and resolves a plan against this process's environment.
pub fn load_plan(path: &Path, timings: &Timings) -> Result<Plan, Failure> {
    let (raw, text) = plan::load::load(path).map_err(Failure::usage)?;
    resolve(path, &text, raw, timings)
}

/// Resolves a parsed plan against this process's environment and CPUs.
fn resolve(path: &Path, text: &str, raw: plan::schema::RawPlan, timings: &Timings) -> Result<Plan, Failure> {
    let env = |name: &str| std::env::var(name).ok();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cx = plan::resolve::Context { env: &env, cpus, timings };
    plan::resolve::resolve(path, text, raw, &cx).map_err(Failure::usage)
}

fn read_timings(path: &Path) -> Timings {
    match Timings::read(path) {
        Ok(t) => t.unwrap_or_default(),
        Err(e) => {
            eprintln!("warning: {e:#}; balancing without recorded timings");
            Timings::default()
        }
    }
}

pub fn run(args: RunArgs, verbosity: Verbosity) -> Result<Exit, Failure> {
    let token = take_token();
    let timings_path = args.timings.clone().unwrap_or_else(|| args.report_dir.join("timings.json"));
    let timings = read_timings(&timings_path);
    let plan = load_plan(&args.plan_file.plan_file, &timings)?;
    let selected = plan::select::select(&plan, &args.only, args.partition).map_err(|e| Failure::usage(anyhow::anyhow!(e)))?;
    if args.dry_run {
        match args.format {
            Format::Human => print!("{}", report::plan::human(&plan, &selected, args.partition)),
            Format::Json => println!("{}", report::plan::json(&plan, &selected, args.partition)),
        }
        return Ok(Exit::Passed);
    }
    if selected.is_empty() {
        eprintln!("harper-shard: no shard selected (partition {:?}); nothing to do", args.partition.map(|p| p.to_string()));
        return Ok(Exit::Passed);
    }
    let pool = pool::Pool::open(&pool::default_dir(), &plan.pool).map_err(Failure::infrastructure)?;
    report::files::prepare(&args.report_dir, selected.iter().map(|s| s.name.as_str())).map_err(Failure::infrastructure)?;

    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let exit = runtime.block_on(async {
        let (tx, rx) = mpsc::unbounded_channel();
        let emit = Emitter::new(Instant::now(), tx);
        let on_github = github::detected();
        let console = if std::io::stderr().is_terminal() && !on_github {
            let colour = console::colour_allowed(std::env::var_os("NO_COLOR").as_deref());
            Console::live(std::io::stderr(), verbosity, colour)
        } else {
            Console::new(std::io::stderr(), verbosity)
        };
        let mut reporters: Vec<Box<dyn Reporter>> = vec![Box::new(console)];
        reporters.push(Box::new(Files::new(&args.report_dir, Some(timings), &plan.dir)));
        reporters.push(Box::new(Junit::new(&args.report_dir)));
        if on_github {
            let workspace = std::env::var_os("GITHUB_WORKSPACE").map(PathBuf::from);
            let place = Place::of(&plan.file, workspace.as_deref());
            reporters.push(Box::new(GitHub::new(std::io::stderr(), github::StepFiles::from_env(), place)));
        }
        let reporting = tokio::spawn(report::consume(rx, reporters));
        let (cancel_tx, cancel_rx) = watch::channel(None);
        let signals = tokio::spawn(watch_signals(cancel_tx.clone(), emit.clone()));
        let opts = run::Options { report_dir: args.report_dir.clone(), pool };
        let exit = run::run(&plan, selected, opts, emit, cancel_rx, cancel_tx).await;
        signals.abort();
        let record = reporting.await.unwrap_or_default();
        if args.github_checks {
            let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
            let target = checks::Target::from_env(&env, token, &args.check_name, &args.plan_file.plan_file);
            checks::report(&record, target, on_github, verbosity == Verbosity::Quiet).await;
        }
        if args.format == Format::Json {
            println!("{}", serde_json::to_string_pretty(&record).unwrap_or_default());
        }
        exit
    });
    // Blocking tasks (a pool wait, a port poll) must not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(exit)
}

/// Takes the Checks API token out of this process's environment, so that neither Harper nor a
/// shard command (a test suite, or anything it installs) can read it. Called before any thread
/// exists.
fn take_token() -> Option<String> {
    let token = std::env::var("GITHUB_TOKEN").ok();
    // SAFETY: no other thread runs yet (the async runtime is created later), so nothing can read
    // the environment while it changes.
    unsafe { std::env::remove_var("GITHUB_TOKEN") };
    token
}

/// First SIGINT / SIGTERM: cancel, so that every shard tears down. Second: kill every process
/// group we started, now, and exit.
async fn watch_signals(cancel: watch::Sender<Option<Cancel>>, emit: Emitter) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return;
    };
    let mut first: Option<Cancel> = None;
    loop {
        let (kind, name) = tokio::select! {
            _ = int.recv() => (Cancel::Interrupt, "SIGINT"),
            _ = term.recv() => (Cancel::Terminate, "SIGTERM"),
        };
        match first {
            None => {
                first = Some(kind);
                emit.emit(EventKind::Cancelling { signal: name });
                cancel.send_replace(Some(kind));
            }
            Some(first) => {
                supervise::kill_all_now();
                let code = first.exit().unwrap_or(Exit::Interrupted).code();
                std::process::exit(i32::from(code));
            }
        }
    }
}

pub fn matrix(args: MatrixArgs) -> Result<Exit, Failure> {
    if args.partitions == 0 {
        return Err(Failure::usage(anyhow::anyhow!("--partitions must be at least 1")));
    }
    let timings = args.timings.as_deref().map(read_timings).unwrap_or_default();
    let plan = load_plan(&args.plan_file.plan_file, &timings)?;
    let parts = plan::select::partitions(&plan.shards, args.partitions as usize);
    let include: Vec<serde_json::Value> = parts
        .iter()
        .enumerate()
        .map(|(i, shards)| {
            let names: Vec<&str> = shards.iter().map(|s| s.name.as_str()).collect();
            serde_json::json!({ "partition": format!("{}/{}", i + 1, args.partitions), "shards": names.join(" ") })
        })
        .collect();
    println!("{}", serde_json::json!({ "include": include }));
    Ok(Exit::Passed)
}

pub fn pool(command: PoolCommand) -> Result<Exit, Failure> {
    let (PoolCommand::Status(a) | PoolCommand::Validate(a) | PoolCommand::SetupLoopback(a)) = &command;
    let plan = pool_plan(a)?;
    let spec = plan.pool.clone();
    let ports = plan.shards[0].harper.ports.all();
    match command {
        PoolCommand::Status(args) => {
            let pool = pool::Pool::open(&pool::default_dir(), &spec).map_err(Failure::infrastructure)?;
            let slots = pool::status::survey(&pool, &ports).map_err(Failure::infrastructure)?;
            match args.format {
                Format::Human => {
                    println!("pool directory {}", pool.dir().display());
                    print!("{}", pool::status::table(&slots));
                }
                Format::Json => println!("{}", pool::status::json(&slots)),
            }
            Ok(Exit::Passed)
        }
        PoolCommand::Validate(_) => {
            let pool = pool::Pool::open(&pool::default_dir(), &spec).map_err(Failure::infrastructure)?;
            let missing = pool::loopback::missing(spec.addresses());
            if missing.is_empty() {
                println!("all {} addresses from {} bind; pool directory {} is usable", spec.count, spec.start, pool.dir().display());
                return Ok(Exit::Passed);
            }
            for m in &missing {
                eprintln!("{} cannot be bound: {}", m.addr, m.error);
            }
            if pool::loopback::NEEDS_ALIASES {
                eprintln!(
                    "this system answers only on 127.0.0.1 until each pool address is a loopback alias; \
                     run `harper-shard pool setup-loopback`, or these commands:"
                );
                for m in &missing {
                    eprintln!("  {}", pool::loopback::alias_line(m.addr));
                }
            }
            Err(Failure::infrastructure(anyhow::anyhow!(
                "{} of {} pool addresses cannot be bound; fix them or move the pool (`pool.start`, `pool.count`)",
                missing.len(),
                spec.count
            )))
        }
        PoolCommand::SetupLoopback(_) => {
            if !pool::loopback::NEEDS_ALIASES {
                println!("every 127.0.0.0/8 address already routes to the loopback interface here; nothing to set up");
                return Ok(Exit::Passed);
            }
            let missing = pool::loopback::missing(spec.addresses());
            if missing.is_empty() {
                println!("all {} addresses from {} are already set up", spec.count, spec.start);
                return Ok(Exit::Passed);
            }
            for m in &missing {
                println!("{}", pool::loopback::alias_line(m.addr));
                pool::loopback::add_alias(m.addr).map_err(Failure::infrastructure)?;
            }
            println!("added {} loopback aliases (/32); they last until the next reboot", missing.len());
            Ok(Exit::Passed)
        }
    }
}

/// The plan whose pool and ports the `pool` commands use: the one named, else
/// `harper-shards.yml` here, else the defaults — resolved like any plan, so that the
/// `HARPER_INTEGRATION_TEST_LOOPBACK_POOL_*` fallbacks apply to these commands as they do to runs.
fn pool_plan(args: &PoolArgs) -> Result<Plan, Failure> {
    let default = PathBuf::from("harper-shards.yml");
    match &args.plan_file {
        Some(path) => load_plan(path, &Timings::default()),
        None if default.is_file() => load_plan(&default, &Timings::default()),
        None => {
            let text = "version: 1\nshards:\n  - name: pool\n    run: \"true\"\n";
            let path = Path::new("(built-in defaults)");
            let raw = plan::load::parse(path, text).map_err(Failure::usage)?;
            resolve(path, text, raw, &Timings::default())
        }
    }
}
