//! Across CI jobs: every job of a run computes the same assignment or refuses, so that every
//! shard and every split part's file runs exactly once. Each partition is a separate process of
//! the real binary on the fake server, with a timings cache of its own in its report directory
//! (what a job restores from a CI cache), run at the same time as its siblings.

use crate::support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Run, Sandbox, fake_plan, run};

/// Every variable that could pick a partition, cleared so that the test machine's own CI does
/// not leak in.
const PARTITION_VARS: &[&str] = &[
    "CI_NODE_INDEX",
    "CI_NODE_TOTAL",
    "CIRCLE_NODE_INDEX",
    "CIRCLE_NODE_TOTAL",
    "BUILDKITE_PARALLEL_JOB",
    "BUILDKITE_PARALLEL_JOB_COUNT",
    "HARPER_SHARD_PARTITION",
    "HARPER_SHARD_ASSIGNMENT",
    "HARPER_SHARD_TIMINGS",
];

const JOBS: u32 = 3;
const FILES: [&str; 8] = ["01", "02", "03", "04", "05", "06", "07", "08"];

/// Four shards and a split shard of eight files; every command appends its shard's name and
/// files to `ran.log`.
fn plan(sandbox: &Sandbox) {
    for f in FILES {
        sandbox.write(&format!("t/{f}.test.mjs"), "");
    }
    let log = |files: &str| {
        format!("    run: echo \"$HARPER_SHARD_NAME|{files}\" >> ran.log\n    timeout: 20s\n")
    };
    let shards = format!(
        "  - name: api\n{}    weight: 30\n  - name: sql\n{}    weight: 20s\n  - name: web\n{}  - name: auth\n{}  - name: db\n    files: t/*.test.mjs\n    split: 3\n{}",
        log(""),
        log(""),
        log(""),
        log(""),
        log("{files}")
    );
    sandbox.write(
        "harper-shards.yml",
        &fake_plan("", "pool: {start: 127.0.70.2, count: 8}\nrun: {concurrency: 2}\n", &shards),
    );
}

/// Timings whose figures give the shards and files the given seconds, in plan order.
fn timings(shards: [f64; 7], files: [f64; 8]) -> String {
    let names = ["api", "sql", "web", "auth", "db/1", "db/2", "db/3"];
    let shards: BTreeMap<&str, f64> = names.iter().copied().zip(shards).collect();
    let files: BTreeMap<String, f64> =
        FILES.iter().map(|f| format!("t/{f}.test.mjs")).zip(files).collect();
    serde_json::json!({ "version": 1, "shards": shards, "files": files }).to_string()
}

/// What the jobs are given: the shared history.
const SHARED: ([f64; 7], [f64; 8]) =
    ([5.0, 40.0, 12.0, 3.0, 9.0, 9.0, 9.0], [1.0, 9.0, 2.0, 8.0, 3.0, 7.0, 4.0, 6.0]);
/// What each job's own report directory happens to hold: a different cache per job.
fn own_cache(job: u32) -> String {
    let j = f64::from(job);
    timings(
        [40.0 * j, 5.0, 3.0 * j, 30.0, 1.0, 50.0 / j, 2.0],
        [9.0 * j, 1.0, 8.0, 2.0 * j, 7.0, 3.0, 6.0 / j, 4.0],
    )
}

fn command(sandbox: &Sandbox) -> Command {
    let mut cmd = sandbox.command();
    for var in PARTITION_VARS {
        cmd.env_remove(var);
    }
    cmd
}

/// The JSON dry run of partition K of N, balanced by `timings`.
fn dry_run_of(sandbox: &Sandbox, (k, n): (u32, u32), timings: &str) -> Command {
    let mut cmd = command(sandbox);
    let partition = format!("{k}/{n}");
    cmd.args([
        "run",
        "--plan",
        "--format",
        "json",
        "--partition",
        &partition,
        "--timings",
        timings,
    ]);
    cmd
}

/// The `run` of each of `jobs` partitions, balanced by `shared.json` and checked against
/// `digest`, each reporting to `report-K`.
fn shared_timings_jobs(sandbox: &Sandbox, jobs: u32, digest: &str) -> Vec<Command> {
    (1..=jobs)
        .map(|k| {
            let mut cmd = command(sandbox);
            cmd.args([
                "run",
                "--partition",
                &format!("{k}/{jobs}"),
                "--timings",
                "shared.json",
                "--assignment",
                digest,
            ])
            .args(["--report-dir", &format!("report-{k}")]);
            cmd
        })
        .collect()
}

/// Runs the jobs at the same time, each a process of its own, and waits for all of them (a job
/// still running after a minute is killed and fails the test).
fn run_together(sandbox: &Sandbox, jobs: Vec<Command>) -> Vec<Run> {
    const LIMIT: Duration = Duration::from_secs(60);
    let started = Instant::now();
    let mut children = Vec::new();
    for (i, mut cmd) in jobs.into_iter().enumerate() {
        let (out, err) =
            (sandbox.path(&format!("job{i}.out")), sandbox.path(&format!("job{i}.err")));
        cmd.stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap());
        children.push((cmd.spawn().expect("start a job"), out, err));
    }
    let mut runs = Vec::new();
    for (mut child, out, err) in children {
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for a job") {
                break status;
            }
            if started.elapsed() > LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("a job still ran after {LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let output = std::process::Output {
            status,
            stdout: std::fs::read(&out).unwrap(),
            stderr: std::fs::read(&err).unwrap(),
        };
        runs.push(Run { output, took: started.elapsed() });
    }
    runs
}

/// `ran.log` as (shard, files) lines, and asserts that each shard and each file ran once.
fn assert_each_ran_once(sandbox: &Sandbox, how: &str) {
    let log = std::fs::read_to_string(sandbox.path("ran.log")).unwrap_or_default();
    let mut shards: BTreeMap<&str, usize> = BTreeMap::new();
    let mut files: BTreeMap<&str, usize> = BTreeMap::new();
    for line in log.lines() {
        let (shard, listed) = line.split_once('|').unwrap_or((line, ""));
        *shards.entry(shard).or_default() += 1;
        for f in listed.split_whitespace() {
            *files.entry(f).or_default() += 1;
        }
    }
    let expected: BTreeMap<&str, usize> =
        ["api", "auth", "db/1", "db/2", "db/3", "sql", "web"].iter().map(|s| (*s, 1)).collect();
    assert_eq!(shards, expected, "{how}: each shard once; ran.log:\n{log}");
    let all: Vec<String> = FILES.iter().map(|f| format!("t/{f}.test.mjs")).collect();
    let expected: BTreeMap<&str, usize> = all.iter().map(|f| (f.as_str(), 1)).collect();
    assert_eq!(files, expected, "{how}: each file of the split shard once; ran.log:\n{log}");
}

/// The matrix every job is checked against, from the shared timings: (jobs, digest).
fn matrix(sandbox: &Sandbox) -> (u32, String) {
    let mut cmd = command(sandbox);
    cmd.args(["matrix", "--partitions", &JOBS.to_string(), "--timings", "shared.json"]);
    let r = run(cmd);
    r.expect(0);
    let json: Value = serde_json::from_str(&r.stdout()).expect("the matrix is JSON");
    let include = json["include"].as_array().unwrap();
    (include.len() as u32, include[0]["assignment"].as_str().unwrap().to_owned())
}

/// Seeds the shared history and, in each job's report directory, a cache of its own.
fn caches(sandbox: &Sandbox) {
    sandbox.write("shared.json", &timings(SHARED.0, SHARED.1));
    for job in 1..=JOBS {
        sandbox.write(&format!("report-{job}/timings.json"), &own_cache(job));
    }
}

fn selected(r: &Run) -> Vec<String> {
    let json: Value = serde_json::from_str(&r.stdout()).expect("the dry run prints JSON");
    json["selected"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect()
}

#[test]
fn every_partition_in_its_own_process_with_its_own_cache_runs_each_shard_and_file_exactly_once() {
    let sandbox = Sandbox::new();
    plan(&sandbox);
    caches(&sandbox);
    // The caches differ enough that balancing by each job's own would not cover the plan.
    let by_own_cache: Vec<Vec<String>> = (1..=JOBS)
        .map(|k| {
            let cmd = dry_run_of(&sandbox, (k, JOBS), &format!("report-{k}/timings.json"));
            selected(run(cmd).expect(0))
        })
        .collect();
    let mut covered: Vec<&String> = by_own_cache.iter().flatten().collect();
    covered.sort();
    assert_ne!(covered.len(), 7, "the test's caches must disagree: {by_own_cache:?}");

    let (jobs, digest) = matrix(&sandbox);
    assert_eq!(jobs, JOBS);
    let commands = shared_timings_jobs(&sandbox, jobs, &digest);
    for r in run_together(&sandbox, commands) {
        r.expect(0);
    }
    assert_each_ran_once(&sandbox, "--partition");
}

#[test]
fn the_parallelism_variables_of_gitlab_circleci_and_buildkite_each_run_every_shard_exactly_once() {
    let sandbox = Sandbox::new();
    plan(&sandbox);
    let (jobs, digest) = matrix_after_caches(&sandbox);
    let systems = [
        ("CI_NODE_INDEX", "CI_NODE_TOTAL", 1),
        ("CIRCLE_NODE_INDEX", "CIRCLE_NODE_TOTAL", 0),
        ("BUILDKITE_PARALLEL_JOB", "BUILDKITE_PARALLEL_JOB_COUNT", 0),
    ];
    for (index, total, base) in systems {
        let _ = std::fs::remove_file(sandbox.path("ran.log"));
        let commands = (0..jobs)
            .map(|i| {
                // What a CI job gets: its index, the total, and (GitLab: from a dotenv report) the
                // shared timings and the assignment to check.
                let mut cmd = command(&sandbox);
                cmd.args(["run", "--report-dir", &format!("report-{}", i + 1)])
                    .env(index, (i + base).to_string())
                    .env(total, jobs.to_string())
                    .env("HARPER_SHARD_TIMINGS", "shared.json")
                    .env("HARPER_SHARD_ASSIGNMENT", &digest);
                cmd
            })
            .collect();
        for r in run_together(&sandbox, commands) {
            r.expect(0);
        }
        assert_each_ran_once(&sandbox, index);
    }
}

fn matrix_after_caches(sandbox: &Sandbox) -> (u32, String) {
    caches(sandbox);
    matrix(sandbox)
}

#[test]
fn a_job_whose_timings_give_another_assignment_refuses_and_runs_nothing() {
    let sandbox = Sandbox::new();
    plan(&sandbox);
    let (jobs, digest) = matrix_after_caches(&sandbox);
    let mut cmd = command(&sandbox);
    cmd.args([
        "run",
        "--partition",
        &format!("2/{jobs}"),
        "--timings",
        "report-2/timings.json",
        "--assignment",
        &digest,
    ]);
    let r = run(cmd);
    r.expect(2);
    let err = r.stderr();
    assert!(
        err.contains(&format!("partition 2/{jobs} computes assignment"))
            && err.contains(&format!("not the {digest} it was given")),
        "{err}"
    );
    assert!(
        err.contains(
            "This job's timings: report-2/timings.json: 7 shard(s) and 8 file(s) recorded"
        ),
        "{err}"
    );
    assert!(!sandbox.path("ran.log").exists(), "a refused job ran shards");
}

#[test]
fn a_partition_balanced_by_timings_without_an_assignment_to_check_is_refused_but_can_be_shown() {
    let sandbox = Sandbox::new();
    plan(&sandbox);
    let (jobs, digest) = matrix_after_caches(&sandbox);
    let partition = format!("1/{jobs}");
    let mut cmd = command(&sandbox);
    cmd.args(["run", "--partition", &partition, "--timings", "shared.json"]);
    let r = run(cmd);
    r.expect(2);
    assert!(
        r.stderr().contains(&format!("pass every job --assignment {digest}")),
        "{}",
        r.stderr()
    );
    assert!(!sandbox.path("ran.log").exists());

    let mut cmd = command(&sandbox);
    cmd.args(["run", "--plan", "--partition", &partition, "--timings", "shared.json"]);
    let r = run(cmd);
    r.expect(0);
    assert!(r.stdout().contains(&format!("assignment {digest}")), "{}", r.stdout());
}

#[test]
fn the_report_directorys_timings_do_not_change_what_a_partition_selects() {
    let sandbox = Sandbox::new();
    plan(&sandbox);
    let dry = |k: u32| {
        let mut cmd = command(&sandbox);
        cmd.args(["run", "--plan", "--format", "json", "--partition", &format!("{k}/{JOBS}")]);
        selected(run(cmd).expect(0))
    };
    let without: Vec<Vec<String>> = (1..=JOBS).map(dry).collect();
    sandbox.write("report/timings.json", &own_cache(1));
    let with: Vec<Vec<String>> = (1..=JOBS).map(dry).collect();
    assert_eq!(with, without);
}

#[test]
fn timings_merge_weighs_every_jobs_fresh_figures_half_against_the_history() {
    let sandbox = Sandbox::new();
    plan(&sandbox);
    let (jobs, digest) = matrix_after_caches(&sandbox);
    let commands = shared_timings_jobs(&sandbox, jobs, &digest);
    for r in run_together(&sandbox, commands) {
        r.expect(0);
    }
    let job_files: Vec<String> = (1..=jobs).map(|k| format!("report-{k}/timings.json")).collect();
    let mut cmd = command(&sandbox);
    cmd.args(["timings", "merge"]).args(&job_files).args(["--previous", "shared.json"]);
    let r = run(cmd);
    r.expect(0);
    let merged: Value = serde_json::from_str(&r.stdout()).expect("the merge prints JSON");
    let previous: Value =
        serde_json::from_str(&support::read(&sandbox.path("shared.json"))).unwrap();
    let mut fresh = serde_json::Map::new();
    for file in &job_files {
        let job: Value = serde_json::from_str(&support::read(&sandbox.path(file))).unwrap();
        assert_eq!(
            job["run"]["assignment"],
            digest.as_str(),
            "{file} records the assignment it ran"
        );
        fresh.extend(job["run"]["shards"].as_object().unwrap().clone());
    }
    assert_eq!(fresh.len(), 7, "every shard passed in some job: {fresh:?}");
    for (name, secs) in &fresh {
        let expected =
            0.5 * previous["shards"][name].as_f64().unwrap() + 0.5 * secs.as_f64().unwrap();
        let got = merged["shards"][name].as_f64().unwrap();
        assert!((got - expected).abs() < 1e-9, "{name}: {got} != {expected}");
    }
    assert!(merged.get("run").is_none(), "a merged file is history, not a run: {merged}");
}

#[test]
fn timings_merge_refuses_jobs_that_ran_partitions_of_different_assignments() {
    let sandbox = Sandbox::new();
    plan(&sandbox);
    caches(&sandbox);
    // Two jobs, each consistent with its own timings, not with each other's.
    let mut commands = Vec::new();
    for k in 1..=2u32 {
        let cache = format!("report-{k}/timings.json");
        let cmd = dry_run_of(&sandbox, (k, 2), &cache);
        let dry: Value = serde_json::from_str(&run(cmd).expect(0).stdout()).unwrap();
        let digest = dry["assignment"]["digest"].as_str().unwrap().to_owned();
        let mut cmd = command(&sandbox);
        cmd.args([
            "run",
            "--partition",
            &format!("{k}/2"),
            "--timings",
            &cache,
            "--assignment",
            &digest,
        ])
        .args(["--report-dir", &format!("report-{k}")]);
        commands.push(cmd);
    }
    for r in run_together(&sandbox, commands) {
        r.expect(0);
    }
    let mut cmd = command(&sandbox);
    cmd.args(["timings", "merge", "report-1/timings.json", "report-2/timings.json"]);
    let r = run(cmd);
    r.expect(2);
    assert!(r.stderr().contains("the jobs did not compute the same assignment"), "{}", r.stderr());
    assert!(r.stderr().contains("report-1/timings.json ran 1/2 of assignment"), "{}", r.stderr());
    assert!(r.stdout().is_empty(), "nothing is merged: {}", r.stdout());
}

/// A job's `timings.json` as a run writes it: `partition` (`None`: the whole plan) and the shards
/// it ran, each in one second.
fn job_timings(partition: Option<(u32, u32)>, ran: &[&str]) -> String {
    let all = ["api", "sql", "web"];
    let run = serde_json::json!({
        "partition": partition.map(|(index, total)| serde_json::json!({ "index": index, "total": total })),
        "assignment": "d1",
        "assigned": all,
        "selected": ran,
        "plan": { "shards": all, "files": [] },
        "shards": ran.iter().map(|s| (s.to_string(), 1.0)).collect::<BTreeMap<String, f64>>(),
        "files": {},
    });
    serde_json::json!({ "version": 1, "shards": {}, "files": {}, "run": run }).to_string()
}

#[test]
fn timings_merge_refuses_partitions_beside_a_job_that_ran_the_whole_plan_naming_the_shards_and_files()
 {
    let sandbox = Sandbox::new();
    sandbox.write("p1.json", &job_timings(Some((1, 2)), &["api", "sql"]));
    sandbox.write("p2.json", &job_timings(Some((2, 2)), &["web"]));
    sandbox.write("whole.json", &job_timings(None, &["api", "sql", "web"]));
    let mut cmd = command(&sandbox);
    cmd.args(["timings", "merge", "p1.json", "p2.json", "whole.json"]);
    let r = run(cmd);
    r.expect(2);
    assert!(
        r.stderr().contains("3 shard(s) ran in more than one of these jobs: api (p1.json, whole.json); sql (p1.json, whole.json); web (p2.json, whole.json)"),
        "{}",
        r.stderr()
    );
    assert!(r.stdout().is_empty(), "nothing is merged: {}", r.stdout());
    for jobs in [&["p1.json", "p2.json"][..], &["whole.json"][..]] {
        let mut cmd = command(&sandbox);
        cmd.args(["timings", "merge"]).args(jobs);
        let merged: Value =
            serde_json::from_str(&run(cmd).expect(0).stdout()).expect("the merge prints JSON");
        assert_eq!(
            merged["shards"],
            serde_json::json!({ "api": 1.0, "sql": 1.0, "web": 1.0 }),
            "{jobs:?}"
        );
    }
}

#[test]
fn the_dry_run_shows_every_partition_with_its_shards_predicted_total_and_where_the_partition_came_from()
 {
    let sandbox = Sandbox::new();
    plan(&sandbox);
    caches(&sandbox);
    let mut cmd = command(&sandbox);
    cmd.args(["run", "--plan", "--timings", "shared.json"])
        .env("CIRCLE_NODE_INDEX", "1")
        .env("CIRCLE_NODE_TOTAL", "3");
    let r = run(cmd);
    r.expect(0);
    let out = r.stdout();
    assert!(
        out.contains("partition 2/3 from CircleCI: CIRCLE_NODE_INDEX=1, CIRCLE_NODE_TOTAL=3"),
        "{out}"
    );
    assert!(out.contains("timings   shared.json: 7 shard(s) and 8 file(s) recorded"), "{out}");
    let rows: Vec<&str> = out.lines().filter(|l| l.contains("/3  predicted")).collect();
    assert_eq!(rows.len(), 3, "{out}");
    assert!(rows[1].trim_start().starts_with("> 2/3"), "this job's partition is marked: {rows:?}");
    assert!(out.contains("3/7 web  (predicted 12.00s: recorded)"), "{out}");
    assert!(out.contains("  1/3  predicted 40.00s    sql"), "{out}");

    // An explicit flag wins over the CI's variables.
    let mut cmd = command(&sandbox);
    cmd.args(["run", "--plan", "--partition", "1/2"])
        .env("CIRCLE_NODE_INDEX", "1")
        .env("CIRCLE_NODE_TOTAL", "3");
    let r = run(cmd);
    r.expect(0);
    assert!(r.stdout().contains("partition 1/2 from --partition"), "{}", r.stdout());
}

#[test]
fn the_matrix_names_each_job_with_its_shards_and_predicted_time() {
    let sandbox = Sandbox::new();
    plan(&sandbox);
    caches(&sandbox);
    let mut cmd = command(&sandbox);
    cmd.args(["matrix", "--partitions", "3", "--timings", "shared.json"]);
    let r = run(cmd);
    r.expect(0);
    let json: Value = serde_json::from_str(&r.stdout()).unwrap();
    let include = json["include"].as_array().unwrap();
    let mut all: Vec<&str> = Vec::new();
    for job in include {
        let (partition, shards) =
            (job["partition"].as_str().unwrap(), job["shards"].as_str().unwrap());
        let predicted = job["predicted"].as_f64().expect("a predicted time in seconds");
        let name = job["name"].as_str().unwrap();
        assert!(name.starts_with(&format!("{partition}: {}", shards.replace(' ', ", "))), "{name}");
        assert!(name.ends_with("s)") && name.contains("(~"), "{name}");
        assert!(predicted > 0.0);
        all.extend(shards.split(' '));
    }
    all.sort_unstable();
    assert_eq!(all, ["api", "auth", "db/1", "db/2", "db/3", "sql", "web"]);

    let mut cmd = command(&sandbox);
    cmd.args(["matrix", "--partitions", "3", "--timings", "shared.json", "--format", "env"]);
    let r = run(cmd);
    r.expect(0);
    assert_eq!(
        r.stdout(),
        format!("HARPER_SHARD_ASSIGNMENT={}\n", include[0]["assignment"].as_str().unwrap())
    );
}

#[test]
fn bad_timings_are_exit_2_with_the_file_and_what_is_wrong() {
    let sandbox = Sandbox::new();
    plan(&sandbox);
    let cases = [
        (
            "{\"version\": 1, \"shards\": {\"api\": 3",
            "timings bad.json are not valid: EOF while parsing",
        ),
        (
            "{\"version\": 2, \"shards\": {}}",
            "timings bad.json are version 2, and this harper-shard reads version 1",
        ),
        (
            "{\"version\": 1, \"shards\": {\"api\": -3}}",
            "timings bad.json are not valid: shards.\"api\" is -3.0, not a number of seconds",
        ),
    ];
    for (text, said) in cases {
        sandbox.write("bad.json", text);
        for args in [
            &["run", "--plan", "--timings", "bad.json"][..],
            &["matrix", "--partitions", "2", "--timings", "bad.json"][..],
        ] {
            let mut cmd = command(&sandbox);
            cmd.args(args);
            let r = run(cmd);
            r.expect(2);
            assert!(r.stderr().contains(said), "{args:?} with {text}: {}", r.stderr());
        }
        let mut cmd = command(&sandbox);
        cmd.args(["timings", "merge", "bad.json"]);
        let r = run(cmd);
        r.expect(2);
        assert!(r.stderr().contains(said), "merge with {text}: {}", r.stderr());
    }
    let mut cmd = command(&sandbox);
    cmd.args(["timings", "merge", "missing.json"]);
    let r = run(cmd);
    r.expect(2);
    assert!(r.stderr().contains("job timings missing.json do not exist"), "{}", r.stderr());
}

#[test]
fn timings_that_name_shards_the_plan_does_not_have_are_a_warning_not_an_error() {
    let sandbox = Sandbox::new();
    plan(&sandbox);
    sandbox
        .write("renamed.json", r#"{"version": 1, "shards": {"api": 3, "old-api": 4, "db/9": 1}}"#);
    let mut cmd = command(&sandbox);
    cmd.args(["run", "--plan", "--timings", "renamed.json"]);
    let r = run(cmd);
    r.expect(0);
    assert!(
        r.stderr().contains("warning: timings renamed.json name 2 shard(s) the plan does not have: db/9, old-api (renamed or removed?"),
        "{}",
        r.stderr()
    );
}

#[test]
fn a_partition_out_of_range_or_a_ci_variable_that_is_not_a_number_is_exit_2() {
    let sandbox = Sandbox::new();
    plan(&sandbox);
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 4] = [
        (&["--partition", "4/3"], &[], "partition 4/3: K must be from 1 to N (3)"),
        (&["--partition", "0/3"], &[], "partition 0/3: K must be from 1 to N (3)"),
        (
            &[],
            &[("CI_NODE_INDEX", "first"), ("CI_NODE_TOTAL", "3")],
            "CI_NODE_INDEX is `first`, not a whole number",
        ),
        (
            &[],
            &[("BUILDKITE_PARALLEL_JOB", "3"), ("BUILDKITE_PARALLEL_JOB_COUNT", "3")],
            "BUILDKITE_PARALLEL_JOB=3 is out of range",
        ),
    ];
    for (args, env, said) in cases {
        let mut cmd = command(&sandbox);
        cmd.args(["run", "--plan"]).args(args).envs(env.iter().copied());
        let r = run(cmd);
        r.expect(2);
        assert!(r.stderr().contains(said), "{args:?} {env:?}: {}", r.stderr());
    }
}
