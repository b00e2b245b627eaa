//! The reports of a run under a simulated GitHub Actions step, through the real binary on the
//! fake server: log groups, annotations within GitHub's budget, relayed output that cannot issue
//! workflow commands, the step summary, the step outputs, junit.xml and per-file timings.

mod support;

use std::collections::BTreeMap;

use support::{Run, Sandbox, fake_plan};

/// What a GitHub step would have seen.
struct Step {
    run: Run,
    summary: String,
    outputs: String,
}

/// Runs `shards` on the fake server as a GitHub Actions step; `env` adds variables.
fn github_step(sandbox: &Sandbox, shards: &str, env: &[(&str, &str)]) -> Step {
    sandbox.write("harper-shards.yml", &fake_plan("", "run: {concurrency: 6}\n", shards));
    let summary = sandbox.write("step-summary.md", "");
    let outputs = sandbox.write("step-outputs.txt", "");
    let mut cmd = sandbox.command();
    cmd.arg("run").env("GITHUB_ACTIONS", "true").env("GITHUB_STEP_SUMMARY", &summary).env("GITHUB_OUTPUT", &outputs);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = std::time::Instant::now();
    let output = cmd.output().expect("run harper-shard");
    let run = Run { output, took: started.elapsed() };
    Step { run, summary: support::read(&summary), outputs: support::read(&outputs) }
}

/// The log with every `::stop-commands::` section cut out, each checked to be closed by its
/// own token: what the runner would still read as workflow commands.
fn commands_in_force(log: &str) -> Vec<String> {
    let mut live = Vec::new();
    let mut stopped: Option<String> = None;
    for line in log.lines() {
        match &stopped {
            Some(token) if line == format!("::{token}::") => stopped = None,
            Some(_) => {}
            None => {
                if let Some(token) = line.strip_prefix("::stop-commands::") {
                    stopped = Some(token.to_owned());
                } else if line.starts_with("::") {
                    live.push(line.to_owned());
                }
            }
        }
    }
    assert!(stopped.is_none(), "a stop-commands section was never closed");
    live
}

fn passing_and_failing(n_pass: usize, n_fail: usize) -> String {
    let mut shards = String::new();
    for i in 0..n_pass {
        shards += &format!("  - name: ok-{i:02}\n    run: echo fine {i}\n");
    }
    for i in 0..n_fail {
        shards += &format!("  - name: bad-{i:02}\n    run: \"echo 100% broken {i}; exit 3\"\n");
    }
    shards
}

#[test]
fn each_shard_gets_one_log_group_with_its_phases_and_output() {
    let sandbox = Sandbox::new();
    let step = github_step(&sandbox, &passing_and_failing(2, 1), &[]);
    step.run.expect(1);
    let log = step.run.stderr();
    for (name, said) in [("ok-00", "fine 0"), ("ok-01", "fine 1"), ("bad-00", "100% broken 0")] {
        let start = log.lines().position(|l| l.starts_with("::group::") && l.contains(name)).unwrap_or_else(|| panic!("no group for {name}: {log}"));
        let body: Vec<&str> = log.lines().skip(start + 1).take_while(|l| *l != "::endgroup::").collect();
        assert!(body.iter().any(|l| l.starts_with("phases: wait ") && l.contains("boot") && l.contains("teardown")), "{body:?}");
        assert!(body.contains(&said), "{name}'s output is in its group: {body:?}");
    }
    assert_eq!(log.matches("::group::").count(), 3);
    assert_eq!(log.matches("::endgroup::").count(), 3);
}

#[test]
fn output_relayed_from_a_shard_cannot_issue_workflow_commands() {
    let sandbox = Sandbox::new();
    let shards = "  - name: sneaky\n    run: \"echo '::error::pwned'; echo '::add-mask::secret'; echo '::stop-commands::guess'; echo '::endgroup::'\"\n";
    let step = github_step(&sandbox, shards, &[]);
    step.run.expect(0);
    let log = step.run.stderr();
    assert!(log.contains("\n::error::pwned\n"), "the output was relayed: {log}");
    let live = commands_in_force(&log);
    assert!(
        live.iter().all(|l| l.starts_with("::group::") || l == "::endgroup::"),
        "relayed output became a workflow command: {live:?}"
    );
    assert_eq!(live.iter().filter(|l| *l == "::endgroup::").count(), 1, "{live:?}");
}

#[test]
fn twenty_five_shards_with_fifteen_failing_stay_within_the_annotation_budget() {
    let sandbox = Sandbox::new();
    let step = github_step(&sandbox, &passing_and_failing(10, 15), &[]);
    step.run.expect(1);
    let live = commands_in_force(&step.run.stderr());
    let errors: Vec<&String> = live.iter().filter(|l| l.starts_with("::error")).collect();
    assert_eq!(errors.len(), 10, "{errors:#?}");
    let plan = support::read(&sandbox.path("harper-shards.yml"));
    for (i, e) in errors[..9].iter().enumerate() {
        let line = plan.lines().position(|l| l.contains(&format!("name: bad-{i:02}"))).unwrap() + 1;
        assert!(e.starts_with(&format!("::error file=harper-shards.yml,line={line},title=bad-{i:02}::")), "{e}");
        assert!(e.contains("100%25 broken"), "the message is escaped: {e}");
    }
    assert!(errors[9].starts_with("::error title=harper-shard::and 6 more failed shard(s): bad-09, bad-10"), "{}", errors[9]);
}

#[test]
fn the_step_summary_has_a_table_of_phases_and_a_gantt_chart_marking_the_failure() {
    let sandbox = Sandbox::new();
    let step = github_step(&sandbox, &passing_and_failing(2, 1), &[]);
    step.run.expect(1);
    let md = &step.summary;
    assert!(md.contains("| shard | address | wait | boot | commands | teardown | total | status |"), "{md}");
    for name in ["ok-00", "ok-01", "bad-00"] {
        assert_eq!(md.lines().filter(|l| l.starts_with(&format!("| {name} | 127."))).count(), 1, "one row for {name}: {md}");
    }
    let chart = md.split("```mermaid\n").nth(1).and_then(|rest| rest.split("```").next()).expect("a mermaid block");
    let lines: Vec<&str> = chart.lines().map(str::trim).collect();
    assert_eq!(lines[0], "gantt");
    assert!(lines.contains(&"dateFormat x"), "{chart}");
    for name in ["ok-00", "ok-01", "bad-00"] {
        let at = lines.iter().position(|l| *l == format!("section {name}")).unwrap_or_else(|| panic!("no section {name}: {chart}"));
        let tasks: Vec<&str> = lines[at + 1..].iter().take_while(|l| !l.starts_with("section")).copied().collect();
        let labels: Vec<&str> = tasks.iter().map(|t| t.split(' ').next().unwrap()).collect();
        assert_eq!(labels, ["wait", "boot", "commands", "teardown"], "{name}: {tasks:?}");
        for t in &tasks {
            let (_, spec) = t.split_once(':').unwrap();
            let parts: Vec<&str> = spec.split(", ").collect();
            let (start, end): (u64, u64) = (parts[parts.len() - 2].parse().unwrap(), parts[parts.len() - 1].parse().unwrap());
            assert!(start < end, "{t}");
        }
        let crit: Vec<&&str> = tasks.iter().filter(|t| t.contains(":crit,")).collect();
        match name {
            "bad-00" => assert!(crit.len() == 1 && crit[0].starts_with("commands"), "{tasks:?}"),
            _ => assert!(crit.is_empty(), "{tasks:?}"),
        }
    }
}

/// `name=value` and `name<<DELIMITER` … `DELIMITER` entries, as the runner reads them.
fn parse_outputs(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delimiter)) = line.split_once("<<") {
            let value: Vec<&str> = lines.by_ref().take_while(|l| *l != delimiter).collect();
            out.insert(name.to_owned(), value.join("\n"));
        } else if let Some((name, value)) = line.split_once('=') {
            out.insert(name.to_owned(), value.to_owned());
        }
    }
    out
}

#[test]
fn step_outputs_name_the_failed_shards_the_result_and_the_duration() {
    let sandbox = Sandbox::new();
    let step = github_step(&sandbox, &passing_and_failing(1, 2), &[]);
    step.run.expect(1);
    let outputs = parse_outputs(&step.outputs);
    assert_eq!(outputs["failed-shards"], "bad-00 bad-01");
    assert_eq!(outputs["passed"], "false");
    assert_eq!(outputs["report-dir"], sandbox.path("report").display().to_string());
    let secs: f64 = outputs["duration-seconds"].parse().unwrap();
    assert!(secs > 0.0 && secs < step.run.took.as_secs_f64() + 1.0, "{secs}");
}

#[test]
fn shard_commands_and_harper_do_not_see_the_github_token() {
    let sandbox = Sandbox::new();
    let shards = "  - name: nosy\n    run: env > seen.env\n";
    github_step(&sandbox, shards, &[("GITHUB_TOKEN", "ghs_secret_checks_token")]).run.expect(0);
    let seen = support::read(&sandbox.path("seen.env"));
    assert!(seen.contains("HARPER_SHARD_NAME=nosy"), "{seen}");
    assert!(!seen.contains("ghs_secret_checks_token"), "the token leaked into a shard command's environment");
}

/// An XML element as GitLab and Jenkins see junit.xml: name, attributes, children, text.
#[derive(Debug, Default)]
struct Node {
    name: String,
    attrs: BTreeMap<String, String>,
    children: Vec<Node>,
    text: String,
}

impl Node {
    fn parse(xml: &str) -> Node {
        use quick_xml::events::{BytesStart, Event};
        let open = |e: &BytesStart| Node {
            name: String::from_utf8(e.local_name().as_ref().to_vec()).unwrap(),
            attrs: e
                .attributes()
                .map(|a| {
                    let a = a.unwrap();
                    let value = a.normalized_value(quick_xml::XmlVersion::Implicit1_0).unwrap().into_owned();
                    (String::from_utf8(a.key.as_ref().to_vec()).unwrap(), value)
                })
                .collect(),
            ..Node::default()
        };
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut stack = vec![Node::default()];
        loop {
            match reader.read_event().expect("junit.xml is well-formed XML") {
                Event::Start(e) => stack.push(open(&e)),
                Event::Empty(e) => {
                    let node = open(&e);
                    stack.last_mut().unwrap().children.push(node);
                }
                Event::End(_) => {
                    let node = stack.pop().unwrap();
                    stack.last_mut().unwrap().children.push(node);
                }
                Event::Text(t) => stack.last_mut().unwrap().text += &t.decode().unwrap(),
                Event::GeneralRef(r) => {
                    let name = r.decode().unwrap();
                    let c = match name.as_ref() { "lt" => "<", "gt" => ">", "amp" => "&", "quot" => "\"", "apos" => "'", _ => "?" };
                    stack.last_mut().unwrap().text += c;
                }
                Event::CData(t) => stack.last_mut().unwrap().text += &String::from_utf8_lossy(&t),
                Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!(stack.len(), 1, "unbalanced XML");
        stack.pop().unwrap().children.remove(0)
    }

    fn all(&self, name: &str) -> Vec<&Node> {
        self.children.iter().filter(|c| c.name == name).collect()
    }

    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }
}

#[test]
fn junit_xml_has_a_suite_per_shard_a_case_per_command_and_a_failed_boot_as_an_error() {
    let sandbox = Sandbox::new();
    let shards = "  - name: good\n    run: [\"true\", \"echo two\"]\n  - name: bad\n    run: [\"echo the widget broke; exit 3\", \"true\"]\n  - name: unbootable\n    run: \"true\"\n    harper:\n      env: {FAKE_HARPER: \"exit=1\"}\n";
    github_step(&sandbox, shards, &[]).run.expect(3);
    let root = Node::parse(&support::read(&sandbox.path("report/junit.xml")));
    assert_eq!(root.name, "testsuites");
    let suites = root.all("testsuite");
    let names: Vec<&str> = suites.iter().map(|s| s.attrs["name"].as_str()).collect();
    assert_eq!(names, ["good", "bad", "unbootable"]);
    for suite in &suites {
        for key in ["tests", "failures", "errors", "time"] {
            assert!(suite.attrs.contains_key(key), "testsuite {} lacks {key}", suite.attrs["name"]);
        }
        for case in suite.all("testcase") {
            assert_eq!(case.attrs["classname"], suite.attrs["name"]);
            let time: f64 = case.attrs.get("time").map_or(0.0, |t| t.parse().expect("time is seconds"));
            assert!(time >= 0.0);
        }
    }
    let good = suites[0].all("testcase");
    assert_eq!(good.iter().map(|c| c.attrs["name"].as_str()).collect::<Vec<_>>(), ["true", "echo two"]);
    assert!(good.iter().all(|c| c.children.iter().all(|x| x.name == "system-out" || x.name == "system-err")));

    let bad = suites[1].all("testcase");
    let failure = bad[0].child("failure").expect("the failed command is a <failure>");
    assert_eq!(failure.attrs["message"], "exit code 3");
    assert!(bad[0].child("system-out").is_some_and(|o| o.text.contains("the widget broke")), "{:?}", bad[0]);
    assert!(bad[1].child("skipped").is_some(), "the command after the failure did not run");
    assert_eq!(suites[1].attrs["failures"], "1");

    let boot = suites[2].all("testcase");
    assert_eq!(boot[0].attrs["name"], "boot Harper");
    let error = boot[0].child("error").expect("a failed boot is an <error>");
    assert!(error.attrs["message"].contains("exit code 1"), "{:?}", error.attrs);
    assert!(boot[0].child("system-out").is_some_and(|o| !o.text.trim().is_empty()), "the error carries Harper's last lines");
    assert_eq!(suites[2].attrs["errors"], "1");
}

#[test]
fn per_file_timings_are_summed_from_the_junit_that_commands_write() {
    let sandbox = Sandbox::new();
    sandbox.write("t/a.test.mjs", "");
    sandbox.write("t/b.test.mjs", "");
    let abs_b = sandbox.path("t/b.test.mjs").display().to_string();
    sandbox.write(
        "write-junit.sh",
        &format!(
            "cat > \"$HARPER_SHARD_JUNIT_DIR/unit.xml\" <<EOF\n<testsuites><testcase name=\"x\" time=\"1.5\" file=\"t/a.test.mjs\"/><testsuite name=\"s\" file=\"{abs_b}\"><testcase name=\"y\" time=\"2.25\"/><testcase name=\"z\" time=\"0.25\"/></testsuite><testcase name=\"w\" time=\"0.5\" file=\"./t/a.test.mjs\"/></testsuites>\nEOF\n"
        ),
    );
    github_step(&sandbox, "  - name: unit\n    run: sh write-junit.sh\n", &[]).run.expect(0);
    let timings: serde_json::Value = serde_json::from_str(&support::read(&sandbox.path("report/timings.json"))).unwrap();
    assert_eq!(timings["files"]["t/a.test.mjs"], 2.0, "{timings}");
    assert_eq!(timings["files"]["t/b.test.mjs"], 2.5, "{timings}");
    assert!(timings["shards"]["unit"].as_f64().is_some());
}

#[test]
fn junit_left_by_an_earlier_run_is_not_counted_again() {
    let sandbox = Sandbox::new();
    sandbox.write("report/unit/junit/old.xml", r#"<testsuites><testcase name="x" time="9" file="t/old.test.mjs"/></testsuites>"#);
    github_step(&sandbox, "  - name: unit\n    run: \"true\"\n", &[]).run.expect(0);
    let timings: serde_json::Value = serde_json::from_str(&support::read(&sandbox.path("report/timings.json"))).unwrap();
    assert_eq!(timings["files"], serde_json::json!({}), "{timings}");
    assert!(!sandbox.path("report/unit/junit/old.xml").exists());
}

#[test]
fn a_run_cancelled_by_sigint_still_writes_the_summary_and_the_outputs() {
    let sandbox = Sandbox::new();
    let shards = "  - name: long\n    run: \"touch started; sleep 600\"\n";
    sandbox.write("harper-shards.yml", &fake_plan("", "", shards));
    let summary = sandbox.write("step-summary.md", "");
    let outputs = sandbox.write("step-outputs.txt", "");
    let child = sandbox
        .command()
        .arg("run")
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("GITHUB_OUTPUT", &outputs)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start harper-shard");
    sandbox.wait_for("the shard's command to start", std::time::Duration::from_secs(20), || sandbox.path("started").exists());
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let output = child.wait_with_output().expect("wait");
    assert_eq!(output.status.code(), Some(130), "{}", String::from_utf8_lossy(&output.stderr));
    let outputs = parse_outputs(&support::read(&outputs));
    assert_eq!(outputs["passed"], "false");
    assert_eq!(outputs["failed-shards"], "long");
    let md = support::read(&summary);
    assert!(md.contains("| long | 127.") && md.contains("cancelled"), "{md}");
}

#[test]
fn a_shards_group_is_written_as_soon_as_it_finishes_while_others_still_run() {
    let sandbox = Sandbox::new();
    let shards = "  - name: quick\n    run: echo quick done\n  - name: slow\n    run: \"until [ -e release ]; do sleep 0.02; done\"\n    timeout: 60s\n";
    sandbox.write("harper-shards.yml", &fake_plan("", "run: {concurrency: 2}\n", shards));
    let mut child = sandbox
        .command()
        .arg("run")
        .env("GITHUB_ACTIONS", "true")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start harper-shard");
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = log.clone();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    sandbox.wait_for("quick's whole group", std::time::Duration::from_secs(20), || {
        let log = log.lock().unwrap();
        log.split("::group::").any(|g| g.starts_with("✔ quick") && g.contains("quick done") && g.contains("::endgroup::"))
    });
    assert!(!log.lock().unwrap().contains("slow — "), "slow's group came before slow finished");
    sandbox.write("release", "");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    reader.join().unwrap();
    assert!(log.lock().unwrap().contains("::group::✔ slow — passed"));
}

#[test]
fn a_second_run_into_the_same_report_dir_logs_and_relays_only_its_own_output() {
    let sandbox = Sandbox::new();
    let shards = "  - name: again\n    run: echo \"output of $WHICH\"\n";
    github_step(&sandbox, shards, &[("WHICH", "the first run")]).run.expect(0);
    let step = github_step(&sandbox, shards, &[("WHICH", "the second run")]);
    step.run.expect(0);
    assert_eq!(support::read(&sandbox.path("report/again/command-1.log")), "output of the second run\n");
    let harper = support::read(&sandbox.path("report/again/harper/stdout.log"));
    assert_eq!(harper.matches("successfully started").count(), 1, "Harper's log is this run's only: {harper}");
    let log = step.run.stderr();
    assert!(log.contains("output of the second run") && !log.contains("output of the first run"), "{log}");
}

#[test]
fn links_planted_in_the_report_dir_are_not_written_through() {
    let sandbox = Sandbox::new();
    let victim = sandbox.write("victim.txt", "precious\n");
    for planted in ["report/report.json.tmp", "report/junit.xml", "report/planted/command-1.log", "report/planted/harper/stdout.log"] {
        std::fs::create_dir_all(sandbox.path(planted).parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&victim, sandbox.path(planted)).unwrap();
    }
    // The first command plants links of its own, for what the run writes after it.
    let plant = "ln -s \"$VICTIM\" \"$HARPER_SHARD_JUNIT_DIR/../command-2.log\"; ln -s \"$VICTIM\" \"$HARPER_SHARD_JUNIT_DIR/../harper/hdb.log\"";
    let shards = format!("  - name: planted\n    run: ['{plant}', 'echo never']\n");
    let step = github_step(&sandbox, &shards, &[("VICTIM", victim.to_str().unwrap())]);
    step.run.expect(1);
    assert_eq!(support::read(&victim), "precious\n", "nothing was written through a link");
    let report = sandbox.report();
    let cause = report["shards"][0]["cause"].as_str().unwrap();
    assert!(cause.contains("command-2.log: it is a symbolic link") && cause.contains("victim.txt"), "the run says why: {cause}");
    for file in ["report/junit.xml", "report/report.json", "report/planted/command-1.log", "report/planted/harper/stdout.log"] {
        let meta = std::fs::symlink_metadata(sandbox.path(file)).unwrap();
        assert!(meta.file_type().is_file(), "{file} is the run's own file now");
    }
}
