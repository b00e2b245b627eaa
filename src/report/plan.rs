//! The dry run (`run --plan`): the resolved plan — defaults, CI scaling, timings, partition and
//! the assignment of every partition, selected shards, commands, ports that would be probed,
//! predicted durations, the version of the runtime Harper would run on — readable or as JSON.

use std::collections::HashMap;
use std::fmt::Write;

use serde::Serialize;

use crate::harper::runtime;
use crate::plan::assignment::AssignmentView;
use crate::plan::partition::Source;
use crate::plan::select::Selection;
use crate::plan::{HarperSource, HarperSpec, Partition, Plan, Runtime};

#[derive(Serialize)]
struct DryRun<'a> {
    plan: &'a Plan,
    /// What each runtime of the selected shards is on this machine, asked once.
    runtimes: Vec<RuntimeView>,
    /// What balancing read besides the plan.
    timings: &'a str,
    partition: Option<Partition>,
    partition_source: Option<&'a Source>,
    assignment: AssignmentView<'a>,
    selected: Vec<&'a str>,
}

/// `timings` says what balancing read besides the plan, in one line.
pub fn json(plan: &Plan, selection: &Selection, timings: &str) -> String {
    let dry = DryRun {
        plan,
        runtimes: runtimes(selection),
        timings,
        partition: selection.partition(),
        partition_source: selection.partition.as_ref().map(|(_, s)| s),
        assignment: selection.assignment.view(),
        selected: selection.shards.iter().map(|s| s.name.as_str()).collect(),
    };
    super::say::json(&dry, true)
}

/// One runtime the selected shards use, and what runs it here.
#[derive(Serialize)]
struct RuntimeView {
    runtime: Runtime,
    /// `None` with `exec`: `bin` is run itself.
    found: Option<&'static runtime::Found>,
}

/// The runtimes of the selected shards, each once, in the order they first appear.
fn runtimes(selection: &Selection) -> Vec<RuntimeView> {
    let mut seen = Vec::new();
    for shard in &selection.shards {
        if !seen.contains(&shard.harper.runtime) {
            seen.push(shard.harper.runtime);
        }
    }
    seen.into_iter().map(|runtime| RuntimeView { runtime, found: runtime::of(runtime) }).collect()
}

/// The runtime line of a shard's Harper: the version it runs on, or what applies to `exec`.
fn describe_runtime(runtime: Runtime) -> String {
    match runtime::of(runtime) {
        Some(found) => found.describe(),
        None => format!(
            "`bin` is run itself (exec); a wrapper that starts node finds {}",
            runtime::node().describe()
        ),
    }
}

pub fn human(plan: &Plan, selection: &Selection, timings: &str) -> String {
    let mut s = String::new();
    let h = humantime::format_duration;
    let _ =
        writeln!(s, "plan      {}  (version 1, dry run: nothing is started)", plan.file.display());
    let _ = writeln!(s, "CI        {}", if plan.ci { "yes: startup caps scaled up" } else { "no" });
    let last = plan.pool.addresses().last().map(|a| a.to_string()).unwrap_or_default();
    let _ = writeln!(
        s,
        "pool      {} … {last} ({} addresses), wait up to {}",
        plan.pool.start,
        plan.pool.count,
        h(plan.pool.wait)
    );
    let _ = writeln!(
        s,
        "run       {} at a time, fail_fast {}, run timeout {}",
        plan.run.concurrency,
        if plan.run.fail_fast { "on" } else { "off" },
        h(plan.run.timeout)
    );
    let _ = writeln!(s, "ahead     {}", crate::run::ahead::said(plan, &selection.shards));
    let _ = writeln!(s, "timings   {timings}");
    if let Some((p, source)) = &selection.partition {
        write_assignment(&mut s, selection, *p, source);
    }
    let part = selection.partition().map(|p| format!(" in partition {p}")).unwrap_or_default();
    let _ =
        writeln!(s, "shards    {} of {} selected{part}", selection.shards.len(), plan.shards.len());
    let mut last_harper: Option<String> = None;
    // Whether a package is in the cache is a look at the disk: once per source, not per shard.
    let mut sources: HashMap<&HarperSource, String> = HashMap::new();
    for shard in &selection.shards {
        let source = sources
            .entry(&shard.harper.source)
            .or_insert_with(|| describe_source(&shard.harper.source));
        let harper = describe_harper(&shard.harper, source);
        let _ = writeln!(s);
        let predicted = match shard.predicted {
            Some(d) => format!("  (predicted {}: {})", super::short(d), shard.basis.describe()),
            None => "  (no history: balanced by file count)".to_owned(),
        };
        let _ = writeln!(s, "  {}/{} {}{predicted}", shard.index, plan.shards.len(), shard.name);
        if let Some(flakes) = shard.flakes {
            let _ = writeln!(s, "      flakes   {} (timings)", flakes.recent());
        }
        for q in &shard.quarantine {
            let _ = writeln!(s, "      quarantined until {} ({}): {}", q.until, q.what(), q.reason);
        }
        if last_harper.as_ref() != Some(&harper) {
            let _ = write!(s, "{harper}");
            last_harper = Some(harper);
        } else {
            let _ = writeln!(s, "      harper   as above");
        }
        for cmd in &shard.commands {
            let _ = writeln!(s, "      $ {cmd}");
        }
        if !shard.files.is_empty() {
            let _ = writeln!(s, "      files    {}", shard.files.len());
        }
        let _ = writeln!(s, "      timeout  {}", h(shard.timeout));
    }
    s
}

/// Where the partition came from, the assignment's digest, and every partition with its
/// predicted total; this job's marked.
fn write_assignment(s: &mut String, selection: &Selection, p: Partition, source: &Source) {
    let a = &selection.assignment;
    let _ = writeln!(s, "partition {p} from {source}");
    let _ = writeln!(
        s,
        "assignment {} (every job of the run must compute it: check with --assignment {})",
        a.digest, a.digest
    );
    for (i, bin) in a.partitions.iter().enumerate() {
        let mark = if i as u32 + 1 == p.index { ">" } else { " " };
        let predicted = bin.predicted.map_or_else(
            || "no prediction".to_owned(),
            |d| format!("predicted {}", super::short(d)),
        );
        let names: Vec<&str> = bin.shards.iter().map(|s| s.name.as_str()).collect();
        let _ = writeln!(
            s,
            "        {mark} {}/{}  {predicted:<18}  {}",
            i + 1,
            a.total,
            crate::plan::name_list(&names)
        );
    }
    if (a.partitions.len() as u32) < a.total {
        let _ = writeln!(
            s,
            "          {}/{} … {}/{}  empty (more partitions than shards)",
            a.partitions.len() + 1,
            a.total,
            a.total,
            a.total
        );
    }
}

fn describe_source(source: &HarperSource) -> String {
    match source {
        HarperSource::Package(spec) => {
            let cached = crate::harper::install::cache_dir()
                .ok()
                .and_then(|c| crate::harper::install::cached(&c, spec));
            match cached {
                Some(found) => format!("{spec} (cached: {})", found.entry.display()),
                None => format!("{spec} (not cached yet: npm installs it on first use)"),
            }
        }
        HarperSource::Bin(path) => path.display().to_string(),
    }
}

/// How the instance boots: from the cached template (and whether it must be built first), or a
/// fresh install.
fn describe_boot(h: &HarperSpec) -> String {
    use crate::harper::{install, template};
    if !h.template {
        return "fresh install into an empty ROOTPATH (template off)".into();
    }
    let Ok(cache) = install::cache_dir() else {
        return "from a template (no cache directory: set HOME or XDG_CACHE_HOME)".into();
    };
    let entry = match &h.source {
        HarperSource::Package(spec) => install::cached(&cache, spec).map(|i| i.entry),
        HarperSource::Bin(path) => Some(path.clone()),
    };
    match entry.map(|e| template::key(h, &e)) {
        Some(key) if template::cached(&cache, &key).is_some() => {
            format!("from the cached template {key} (restart speed)")
        }
        Some(key) => {
            format!("from a template, built first by the first shard that needs it ({key})")
        }
        None => "from a template, built first once Harper is installed".into(),
    }
}

fn describe_harper(h: &HarperSpec, source: &str) -> String {
    let d = humantime::format_duration;
    let ports: Vec<String> = h.ports.all().iter().map(|(n, p)| format!("{n} {p}")).collect();
    let mut s = String::new();
    let _ = writeln!(s, "      harper   {source}");
    let _ = writeln!(s, "      runtime  {}", describe_runtime(h.runtime));
    let _ = writeln!(s, "      boot     {}", describe_boot(h));
    let _ = writeln!(
        s,
        "      ready    `{}`, probe {:?}; startup idle {} / max {}",
        h.ready.marker,
        h.ready.probe,
        d(h.startup.idle),
        d(h.startup.max)
    );
    let _ =
        writeln!(s, "      ports    {} (probed free on the address before use)", ports.join(", "));
    let _ = writeln!(
        s,
        "      teardown grace {}, ports free within {}",
        d(h.teardown.grace),
        d(h.teardown.port_release)
    );
    match h.threads {
        0 => {
            let _ = writeln!(
                s,
                "      threads  0: the single-thread mode, Harper serves from its main thread (boots in about half the time;"
            );
            let _ = writeln!(
                s,
                "               no worker thread: system_information lists none, nothing runs across threads)"
            );
        }
        crate::plan::resolve::DEFAULT_THREADS => {}
        n => {
            let _ = writeln!(s, "      threads  {n} worker threads");
        }
    }
    if !h.args.is_empty() {
        let _ = writeln!(s, "      args     {}", h.args.join(" "));
    }
    if !h.fixtures.is_empty() {
        let names: Vec<String> = h.fixtures.iter().map(|f| f.display().to_string()).collect();
        let _ = writeln!(s, "      fixtures {}", names.join(", "));
    }
    s
}
