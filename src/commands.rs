//! The commands' bodies: each turns parsed arguments into work and an exit status.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use tokio::sync::{mpsc, watch};

use crate::cli::{
    CacheCommand, Format, MatrixArgs, MatrixFormat, PoolArgs, PoolCommand, RunArgs, TimingsCommand,
};
use crate::exit::{Exit, Failure};
use crate::harper::layout::WorkDir;
use crate::plan::select::Selection;
use crate::plan::timings::{PlanNames, RunTimings, TimingsError};
use crate::plan::{self, Partition, Plan, Timings, partition};
use crate::report::buildkite::Buildkite;
use crate::report::console::Console;
use crate::report::github::{self, GitHub};
use crate::report::html::{Assignment, Html};
use crate::report::junit::Junit;
use crate::report::place::Place;
use crate::report::say::{self, Say};
use crate::report::{self, Reporter, checks, files::Files};
use crate::run::events::{EventKind, Warning};
use crate::run::{self, Cancel, Emitter, WeakEmitter};
use crate::{pool, supervise};

/// Loads and resolves a plan against this process's environment.
pub fn load_plan(path: &Path, timings: &Timings) -> Result<Plan, Failure> {
    load_plan_with(path, timings, Overrides::default())
}

/// What `run`'s flags change in the plan's `run` block.
#[derive(Debug, Clone, Copy, Default)]
struct Overrides {
    retries: Option<u32>,
    flaky_fails: bool,
    boot_ahead: Option<plan::schema::BootAhead>,
}

/// [`load_plan`], with `run`'s flags over the plan's `run` block.
fn load_plan_with(path: &Path, timings: &Timings, over: Overrides) -> Result<Plan, Failure> {
    let (raw, text) = plan::load::load(path).map_err(Failure::usage)?;
    resolve(path, &text, raw, timings, over)
}

/// Resolves a parsed plan against this process's environment and CPUs.
fn resolve(
    path: &Path,
    text: &str,
    raw: plan::schema::RawPlan,
    timings: &Timings,
    over: Overrides,
) -> Result<Plan, Failure> {
    let env = |name: &str| std::env::var(name).ok();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cx = plan::resolve::Inputs {
        env: &env,
        cpus,
        timings,
        retries: over.retries,
        flaky_fails: over.flaky_fails,
        boot_ahead: over.boot_ahead,
        today: plan::schema::Day::today(),
    };
    plan::resolve::resolve(path, text, raw, &cx).map_err(Failure::usage)
}

/// The timings `--timings` names, and a line saying what balancing reads besides the plan. None
/// without the flag, or when the file does not exist yet (a first run, a cache miss); anything
/// else that is not timings of this version is exit 2: balancing by a guess would let jobs
/// disagree.
fn read_timings(path: Option<&Path>) -> Result<(Timings, String), Failure> {
    let Some(path) = path else {
        return Ok((
            Timings::default(),
            "none (no --timings): balanced by the plan alone: `weight`, else file counts".into(),
        ));
    };
    match Timings::read(path) {
        Ok(Some(t)) => {
            let said = format!(
                "{}: {} shard(s) and {} file(s) recorded",
                path.display(),
                t.shards.len(),
                t.files.len()
            );
            Ok((t, said))
        }
        Ok(None) => Ok((
            Timings::default(),
            format!("{} does not exist yet: balanced by the plan alone", path.display()),
        )),
        Err(e @ TimingsError::File { .. }) => Err(Failure::usage(anyhow::anyhow!(
            "{e}; --timings must name a regular file of at most {}, or one that does not exist yet",
            plan::file::size_text(plan::limits::TIMINGS_BYTES)
        ))),
        Err(e) => Err(Failure::usage(e)),
    }
}

/// A warning for recorded shards the plan does not have: renamed or removed ones, whose
/// figures are not used (`timings merge` drops them).
fn unknown_timings(plan: &Plan, timings: &Timings, path: Option<&Path>) -> Option<Warning> {
    let unknown = timings
        .unknown_shards(|name| plan.shards.iter().any(|s| s.name == name || s.group == name));
    let shards = unknown.iter().map(|s| (*s).to_owned()).collect();
    path.filter(|_| !unknown.is_empty())
        .map(|path| Warning::UnknownTimings { path: path.to_path_buf(), shards })
}

/// A warning for each `quarantine` entry past its `until`, so that none rots unseen.
fn expired_quarantine(plan: &Plan) -> impl Iterator<Item = Warning> + '_ {
    plan.quarantine.iter().filter(|q| q.expired).map(|q| Warning::QuarantineExpired {
        what: q.what(),
        until: q.until,
        reason: q.reason.clone(),
    })
}

/// This job's partition: the flag (or its variable), else the CI system's parallelism.
fn job_partition(
    flag: Option<Partition>,
) -> Result<Option<(Partition, partition::Source)>, Failure> {
    if let Some(p) = flag {
        return Ok(Some((p, partition::Source::Flag)));
    }
    let env = |name: &str| std::env::var(name).ok();
    partition::from_ci(&env).map_err(|e| Failure::usage(anyhow::anyhow!(e)))
}

/// Every job of a run must compute the same assignment, or refuse. The plan alone gives every
/// job the same; timings do only if every job has the same file, which `--assignment` checks.
fn check_assignment(args: &RunArgs, selection: &Selection, timings: &str) -> Result<(), Failure> {
    let a = &selection.assignment;
    let job =
        selection.partition().map_or_else(|| "this run".to_owned(), |p| format!("partition {p}"));
    match args.assignment.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
        Some(expected) if expected != a.digest => Err(Failure::usage(anyhow::anyhow!(
            "{job} computes assignment {}, not the {expected} it was given: its inputs differ from those of the job that printed {expected}. This job's timings: {timings}. Give every job the same --timings file, --only and partition count (README: CI systems)",
            a.digest,
        ))),
        None if args.timings.is_some() && a.partitions.len() > 1 && !args.dry_run => {
            Err(Failure::usage(anyhow::anyhow!(
                "{job} is balanced by --timings {}, but nothing checks that the other jobs balance by the same file; pass every job --assignment {} (as `harper-shard matrix` prints it), or drop --timings to balance by the plan alone",
                args.timings.as_deref().unwrap_or(Path::new("")).display(),
                a.digest
            )))
        }
        _ => Ok(()),
    }
}

/// What `timings.json` records of this run for `timings merge`, before its figures.
fn run_timings(plan: &Plan, selection: &Selection) -> RunTimings {
    let mut files: Vec<String> = plan
        .shards
        .iter()
        .flat_map(|s| s.files.iter().map(|f| f.to_string_lossy().into_owned()))
        .collect();
    files.sort();
    files.dedup();
    RunTimings {
        partition: selection.partition(),
        assignment: selection.assignment.digest.clone(),
        assigned: selection
            .assignment
            .partitions
            .iter()
            .flat_map(|b| b.shards.iter().map(|s| s.name.clone()))
            .collect(),
        selected: selection.shards.iter().map(|s| s.name.clone()).collect(),
        plan: PlanNames { shards: plan.shards.iter().map(|s| s.name.clone()).collect(), files },
        ..RunTimings::default()
    }
}

pub fn run(args: RunArgs, say: &Say) -> Result<Exit, Failure> {
    let policy = say.policy();
    let token = take_token();
    let (timings, timings_said) = read_timings(args.timings.as_deref())?;
    let plan = load_plan_with(
        &args.plan_file.plan_file,
        &timings,
        Overrides {
            retries: args.retries,
            flaky_fails: args.flaky_fails,
            boot_ahead: args.boot_ahead,
        },
    )?;
    let unknown = unknown_timings(&plan, &timings, args.timings.as_deref());
    let partition = job_partition(args.partition)?;
    let selection = plan::select::select(&plan, &args.only, partition)
        .map_err(|e| Failure::usage(anyhow::anyhow!(e)))?;
    check_assignment(&args, &selection, &timings_said)?;
    let work = WorkDir::from_env().map_err(|e| Failure::usage(anyhow::anyhow!(e)))?;
    // Said with the run's events when there is a run, so that its reports have them too.
    let mut warnings: Vec<Warning> = unknown.into_iter().chain(expired_quarantine(&plan)).collect();
    if args.dry_run || selection.shards.is_empty() {
        for warning in warnings.drain(..) {
            say.warning("harper-shard", warning);
        }
    }
    if args.dry_run {
        match args.format {
            Format::Human => say.answer(report::plan::human(&plan, &selection, &timings_said)),
            Format::Json => say.answer(report::plan::json(&plan, &selection, &timings_said)),
        }
        return Ok(Exit::Passed);
    }
    let run_record = run_timings(&plan, &selection);
    let selected = selection.shards;
    if selected.is_empty() {
        let partition =
            selection.partition.map(|(p, _)| format!(" in partition {p}")).unwrap_or_default();
        say.note(format_args!("no shard selected{partition}; nothing to do"));
        return Ok(Exit::Passed);
    }
    let pool =
        pool::Pool::open(&pool::default_dir(), &plan.pool).map_err(Failure::infrastructure)?;
    work.prepare().map_err(Failure::infrastructure)?;
    if let Some(note) = &work.note {
        say.note(note);
    }
    let report_dir = run::ReportDir::new(&args.report_dir);
    report::files::prepare(&report_dir, selected.iter().map(|s| s.name.as_str()))
        .map_err(Failure::infrastructure)?;

    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let exit = runtime.block_on(async {
        let (tx, rx) = mpsc::unbounded_channel();
        let emit = Emitter::new(Instant::now(), tx);
        for warning in warnings {
            emit.emit(EventKind::Warning { shard: None, warning });
        }
        let console = if policy.live {
            Console::live(std::io::stderr(), policy.verbosity, policy.colour)
        } else {
            Console::new(std::io::stderr(), policy.verbosity)
        };
        let mut reporters: Vec<Box<dyn Reporter>> = vec![Box::new(console)];
        let assignment = run_record.partition.map(|partition| Assignment {
            partition,
            digest: run_record.assignment.clone(),
            assigned: run_record.assigned.len(),
            selected: run_record.selected.len(),
        });
        let flakes = timings.flakes.clone();
        reporters.push(Box::new(Files::new(&report_dir, timings, &plan.dir, run_record)));
        reporters.push(Box::new(Junit::new(&report_dir)));
        reporters.push(Box::new(Html::new(&report_dir, assignment)));
        let place = Place::of(&plan, std::env::var_os("GITHUB_WORKSPACE").map(PathBuf::from).as_deref());
        if policy.github {
            reporters.push(Box::new(GitHub::new(std::io::stderr(), github::StepFiles::from_env(), place.clone())));
        }
        if let Some(buildkite) = Buildkite::detect(std::env::var_os("BUILDKITE").as_deref(), std::env::var_os("PATH").as_deref()) {
            reporters.push(Box::new(buildkite));
        }
        let reporting = tokio::spawn(report::consume(rx, reporters));
        let (cancel_tx, cancel_rx) = watch::channel(None);
        let (signalled_tx, mut signalled) = watch::channel(0u32);
        let _signals = AbortOnDrop(tokio::spawn(watch_signals(cancel_tx.clone(), signalled_tx, emit.downgrade())));
        let opts = run::Options { report_dir, pool, work, flakes };
        let exit = run::run(&plan, selected, opts, emit, cancel_rx.clone(), cancel_tx).await;
        // The reports and the check run. Bounded, and a signal that comes now ends them: a
        // hung API or a FIFO as the step summary must not make the tool unkillable.
        let cancelled = *cancel_rx.borrow();
        let limit = match cancelled.and_then(|c| c.teardown_deadline()) {
            Some(_) => run::budget::REPORT,
            None => AFTER_RUN_LIMIT,
        };
        let signals_so_far = *signalled.borrow();
        let after = async {
            let record = reporting.await.unwrap_or_default();
            if args.github_checks {
                let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
                let target = checks::CheckRunTarget::from_env(&env, token, &args.check_name, place);
                checks::report(&record, target, say).await;
            }
            if args.format == Format::Json {
                say.answer(say::json(&record, true));
            }
        };
        tokio::select! {
            () = after => exit,
            _ = tokio::time::sleep(limit) => {
                say.warning("harper-shard", format_args!("the reports took longer than {}s; exiting without them", limit.as_secs_f32()));
                exit
            }
            _ = signalled.wait_for(|n| *n > signals_so_far) => {
                let signal = cancel_rx.borrow().and_then(Cancel::exit);
                exit.worst(signal.unwrap_or(exit))
            }
        }
    });
    // Blocking tasks (a pool wait, a port poll, a report write) must not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(exit)
}

/// How long the reports and the check run may take after a run that no signal stopped.
const AFTER_RUN_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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

/// First SIGINT, SIGTERM, SIGHUP or SIGQUIT: cancel, so that every shard tears down within
/// the budget. Second: kill every process group we started, now, and exit. `signalled` counts
/// them, for the steps after the run.
async fn watch_signals(
    cancel: watch::Sender<Option<Cancel>>,
    signalled: watch::Sender<u32>,
    emit: WeakEmitter,
) {
    use nix::sys::signal::Signal;
    use tokio::signal::unix::{SignalKind, signal};
    let streams = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
        signal(SignalKind::quit()),
    );
    let (Ok(mut int), Ok(mut term), Ok(mut hup), Ok(mut quit)) = streams else {
        emit.emit(EventKind::Warning { shard: None, warning: Warning::NoSignalHandlers });
        return;
    };
    let mut first: Option<Cancel> = None;
    loop {
        let signal = tokio::select! {
            _ = int.recv() => Signal::SIGINT,
            _ = term.recv() => Signal::SIGTERM,
            _ = hup.recv() => Signal::SIGHUP,
            _ = quit.recv() => Signal::SIGQUIT,
        };
        match first {
            None => {
                let why = Cancel::Signal { signal, at: std::time::Instant::now() };
                first = Some(why);
                emit.emit(EventKind::Cancelling { signal: signal.as_str() });
                cancel.send_modify(|c| {
                    // A timeout or fail_fast may have cancelled first; a signal still sets the
                    // budget and the exit status.
                    if !matches!(c, Some(Cancel::Signal { .. })) {
                        *c = Some(why);
                    }
                });
                // Counted only now, so that whoever wakes on the count finds the cancellation.
                signalled.send_modify(|n| *n += 1);
            }
            Some(first) => {
                supervise::kill_all_now();
                let code = first.exit().map_or(130, Exit::code);
                std::process::exit(i32::from(code));
            }
        }
    }
}

pub fn matrix(args: MatrixArgs, say: &Say) -> Result<Exit, Failure> {
    if args.partitions == 0 {
        return Err(Failure::usage(anyhow::anyhow!("--partitions must be at least 1")));
    }
    let (timings, _) = read_timings(args.timings.as_deref())?;
    let plan = load_plan(&args.plan_file.plan_file, &timings)?;
    if let Some(warning) = unknown_timings(&plan, &timings, args.timings.as_deref()) {
        say.warning("harper-shard", warning);
    }
    // A job past the shard count would have nothing to run: make as many jobs as there are
    // shards at most, numbered `K/M`. The assignment is the one every `--partition K/N` with
    // N past the shard count computes too.
    let jobs = (args.partitions as usize).min(plan.shards.len()) as u32;
    if jobs < args.partitions {
        say.note(format_args!(
            "the plan has {} shards, so the matrix has {jobs} jobs, not {}",
            plan.shards.len(),
            args.partitions
        ));
    }
    let assignment = plan::assignment::assign(&plan.shards, jobs);
    if args.format == MatrixFormat::Env {
        say.answer(format_args!("HARPER_SHARD_ASSIGNMENT={}", assignment.digest));
        return Ok(Exit::Passed);
    }
    let include: Vec<serde_json::Value> = assignment
        .view()
        .partitions
        .into_iter()
        .map(|job| {
            let predicted = job.predicted.map(|s| format!(" (~{})", report::short(std::time::Duration::from_secs_f64(s))));
            serde_json::json!({
                "partition": job.partition,
                "name": format!("{}: {}{}", job.partition, plan::name_list(&job.shards), predicted.unwrap_or_default()),
                "predicted": job.predicted,
                "shards": job.shards.join(" "),
                "assignment": assignment.digest,
            })
        })
        .collect();
    say.answer(say::json(&serde_json::json!({ "include": include }), false));
    Ok(Exit::Passed)
}

pub fn timings(command: TimingsCommand, say: &Say) -> Result<Exit, Failure> {
    let TimingsCommand::Merge(args) = command;
    let mut jobs = Vec::new();
    for path in args.jobs {
        match Timings::read(&path) {
            Ok(Some(timings)) => jobs.push(plan::merge::Job { path, timings }),
            Ok(None) => {
                return Err(Failure::usage(anyhow::anyhow!(
                    "job timings {} do not exist: name each job's <report-dir>/timings.json",
                    path.display()
                )));
            }
            Err(e) => return Err(Failure::usage(e)),
        }
    }
    let previous = match &args.previous {
        Some(path) => Timings::read(path).map_err(Failure::usage)?,
        None => None,
    };
    let merged =
        plan::merge::merge(&jobs, previous).map_err(|e| Failure::usage(anyhow::anyhow!(e)))?;
    for warning in &merged.warnings {
        say.warning("harper-shard", warning);
    }
    say.answer(say::json(&merged.timings, true));
    Ok(Exit::Passed)
}

pub fn cache(command: CacheCommand, say: &Say) -> Result<Exit, Failure> {
    use crate::harper::cache;
    let dir = cache::dir().map_err(Failure::infrastructure)?;
    let size = |bytes: u64| format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0));
    match command {
        CacheCommand::Status { format: Format::Json } => {
            say.answer(say::json(
                &serde_json::json!({ "cache": dir, "entries": cache::survey(&dir) }),
                false,
            ));
        }
        CacheCommand::Status { format: Format::Human } => {
            say.answer(format_args!("cache {}", dir.display()));
            for e in cache::survey(&dir) {
                let detail = e.detail.map(|d| format!("  ({d})")).unwrap_or_default();
                say.answer(format_args!(
                    "{:<9} {:<28} {:>10}{detail}",
                    e.kind,
                    e.name,
                    size(e.bytes)
                ));
            }
        }
        CacheCommand::Clear => {
            let (removed, kept) = cache::clear(&dir);
            for e in &removed {
                say.answer(format_args!("removed {} {} ({})", e.kind, e.name, size(e.bytes)));
            }
            for (e, why) in &kept {
                say.answer(format_args!("kept {} {}: {why}", e.kind, e.name));
            }
        }
    }
    Ok(Exit::Passed)
}

pub fn pool(command: PoolCommand, say: &Say) -> Result<Exit, Failure> {
    let (PoolCommand::Status(a) | PoolCommand::Validate(a) | PoolCommand::SetupLoopback(a)) =
        &command;
    let plan = pool_plan(a)?;
    let spec = plan.pool.clone();
    let ports = plan_ports(&plan);
    match command {
        PoolCommand::Status(args) => {
            let pool =
                pool::Pool::open(&pool::default_dir(), &spec).map_err(Failure::infrastructure)?;
            let slots = pool::status::survey(&pool, &ports);
            match args.format {
                Format::Human => {
                    say.answer(format_args!("pool directory {}", pool.dir().display()));
                    say.answer(pool::status::table(&slots));
                }
                Format::Json => say.answer(say::json(&pool::status::json(&slots), false)),
            }
            Ok(Exit::Passed)
        }
        PoolCommand::Validate(_) => {
            let pool =
                pool::Pool::open(&pool::default_dir(), &spec).map_err(Failure::infrastructure)?;
            let missing = pool::loopback::missing(spec.addresses());
            if missing.is_empty() {
                say.answer(format_args!(
                    "all {} addresses from {} bind; pool directory {} is usable",
                    spec.count,
                    spec.start,
                    pool.dir().display()
                ));
                return Ok(Exit::Passed);
            }
            for m in &missing {
                say.always(format_args!("{} cannot be bound: {}", m.addr, m.error));
            }
            if pool::loopback::NEEDS_ALIASES {
                say.always(
                    "this system answers only on 127.0.0.1 until each pool address is a loopback alias; \
                     run `harper-shard pool setup-loopback`, or these commands:",
                );
                for m in &missing {
                    say.always(format_args!("  {}", pool::loopback::alias_line(m.addr)));
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
                say.answer("every 127.0.0.0/8 address already routes to the loopback interface here; nothing to set up");
                return Ok(Exit::Passed);
            }
            let missing = pool::loopback::missing(spec.addresses());
            if missing.is_empty() {
                say.answer(format_args!(
                    "all {} addresses from {} are already set up",
                    spec.count, spec.start
                ));
                return Ok(Exit::Passed);
            }
            for m in &missing {
                say.answer(pool::loopback::alias_line(m.addr));
                pool::loopback::add_alias(m.addr).map_err(Failure::infrastructure)?;
            }
            say.answer(format_args!(
                "added {} loopback aliases (/32); they last until the next reboot",
                missing.len()
            ));
            Ok(Exit::Passed)
        }
    }
}

/// Every port some shard of the plan listens on, each once, named as the first shard that uses
/// it names it: what a run would probe on an address before handing it out to any shard.
fn plan_ports(plan: &Plan) -> Vec<(&'static str, u16)> {
    let mut ports: Vec<(&'static str, u16)> = Vec::new();
    for (name, port) in plan.shards.iter().flat_map(|s| s.harper.ports.all()) {
        if !ports.iter().any(|(_, p)| *p == port) {
            ports.push((name, port));
        }
    }
    ports
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
            resolve(path, text, raw, &Timings::default(), Overrides::default())
        }
    }
}
