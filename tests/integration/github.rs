//! A run under a simulated GitHub Actions step, through the real binary on the fake server: what
//! only the binary shows — that it writes `$GITHUB_STEP_SUMMARY` and `$GITHUB_OUTPUT` (and
//! refuses FIFOs), keeps the token from shards, relays a shard's group as soon as it ends, reads
//! the JUnit that commands write, and lets nothing a shard, a process name or a path says leave
//! it as a workflow command. How the GitHub reporter renders a run (groups, annotations and
//! their budget, the step summary) is tested in-process from synthetic runs, in `src/report/`.

use crate::support;

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
    let mut cmd = actions_run(sandbox, &summary, &outputs);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = std::time::Instant::now();
    let output = cmd.output().expect("run harper-shard");
    let run = Run { output, took: started.elapsed() };
    Step { run, summary: support::read(&summary), outputs: support::read(&outputs) }
}

/// `harper-shard run` as a GitHub Actions step writing to `summary` and `outputs`.
fn actions_run(
    sandbox: &Sandbox,
    summary: &std::path::Path,
    outputs: &std::path::Path,
) -> std::process::Command {
    let mut cmd = sandbox.command();
    cmd.arg("run")
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", summary)
        .env("GITHUB_OUTPUT", outputs);
    cmd
}

/// A workflow command as GitHub's runner reads it, and the line it came from.
#[derive(Debug, Clone)]
struct Acted {
    line: String,
    name: String,
    properties: BTreeMap<String, String>,
    data: String,
}

/// The commands the runner knows (actions/runner, ActionCommandManager and its extensions).
const REGISTERED: &[&str] = &[
    "add-mask",
    "add-matcher",
    "add-path",
    "debug",
    "echo",
    "endgroup",
    "error",
    "group",
    "notice",
    "remove-matcher",
    "save-state",
    "set-env",
    "set-output",
    "stop-commands",
    "warning",
];

/// `::name key=value,…::data` after leading blanks (the runner's `TryParseV2`).
fn parse_v2(line: &str) -> Option<Acted> {
    let rest = line.trim_start().strip_prefix("::")?;
    let end = rest.find("::")?;
    let info = &rest[..end];
    let (name, props) = info.split_once(' ').unwrap_or((info, ""));
    let unescape = |v: &str| {
        v.replace("%0D", "\r")
            .replace("%0A", "\n")
            .replace("%3A", ":")
            .replace("%2C", ",")
            .replace("%25", "%")
    };
    let properties = props
        .split(',')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), unescape(v)))
        .collect();
    let data = rest[end + 2..].replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%");
    Some(Acted { line: line.to_owned(), name: name.to_owned(), properties, data })
}

/// `##[name key=value;…]data` anywhere in the line (the runner's older `TryParse`).
fn parse_v1(line: &str) -> Option<Acted> {
    let rest = &line[line.find("##[")? + 3..];
    let end = rest.find(']')?;
    let info = &rest[..end];
    let (name, props) = info.split_once(' ').unwrap_or((info, ""));
    let properties = props
        .split(';')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Some(Acted {
        line: line.to_owned(),
        name: name.to_owned(),
        properties,
        data: rest[end + 1..].to_owned(),
    })
}

/// The workflow commands GitHub's runner would act on in a step's output, read as it reads it:
/// lines end at CR, LF or CRLF; names are case-insensitive; from `::stop-commands::TOKEN` until
/// a command named TOKEN nothing is acted on (and an empty token never resumes).
fn runner_commands(output: &[u8]) -> Vec<Acted> {
    let text = String::from_utf8_lossy(output).replace("\r\n", "\n");
    let mut acted = Vec::new();
    let mut stopped: Option<String> = None;
    for line in text.split(['\r', '\n']) {
        let known = |name: &str| {
            REGISTERED.iter().any(|r| r.eq_ignore_ascii_case(name))
                || stopped.as_deref().is_some_and(|t| !t.is_empty() && t.eq_ignore_ascii_case(name))
        };
        let Some(command) = parse_v2(line)
            .filter(|c| known(&c.name))
            .or_else(|| parse_v1(line).filter(|c| known(&c.name)))
        else {
            continue;
        };
        match &stopped {
            Some(token) if command.name.eq_ignore_ascii_case(token) && !token.is_empty() => {
                stopped = None
            }
            Some(_) => {}
            None if command.name.eq_ignore_ascii_case("stop-commands") => {
                stopped = Some(command.data.clone())
            }
            None => acted.push(command),
        }
    }
    assert!(
        stopped.is_none(),
        "the output ends with workflow commands stopped: a later step's commands would be swallowed"
    );
    acted
}

/// The lines of the commands the runner would act on in stderr.
fn commands_in_force(log: &str) -> Vec<String> {
    runner_commands(log.as_bytes()).into_iter().map(|c| c.line).collect()
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
        let start = log
            .lines()
            .position(|l| l.starts_with("::group::") && l.contains(name))
            .unwrap_or_else(|| panic!("no group for {name}: {log}"));
        let body: Vec<&str> =
            log.lines().skip(start + 1).take_while(|l| *l != "::endgroup::").collect();
        assert!(
            body.iter().any(|l| l.starts_with("phases: wait ")
                && l.contains("boot")
                && l.contains("teardown")),
            "{body:?}"
        );
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
        live.iter().all(|l| l.starts_with("::group::")
            || l == "::endgroup::"
            || l.starts_with("::notice file=")),
        "relayed output became a workflow command: {live:?}"
    );
    assert_eq!(live.iter().filter(|l| *l == "::endgroup::").count(), 1, "{live:?}");
}

/// What the summary holds is the reporter's (`report::summary`); that it reaches the file GitHub
/// names is the binary's.
#[test]
fn the_step_summary_is_appended_to_the_file_github_names() {
    let sandbox = Sandbox::new();
    let step = github_step(&sandbox, &passing_and_failing(1, 1), &[]);
    step.run.expect(1);
    let md = &step.summary;
    assert!(md.starts_with("## ❌ harper-shard: 1 of 2 shard(s) failed"), "{md}");
    assert!(
        md.contains("| ok-00 | 127.")
            && md.contains("| bad-00 | 127.")
            && md.contains("```mermaid"),
        "{md}"
    );
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

/// The command writes its own environment and, while Harper runs, Harper's (the pid in its
/// `hdb.pid`, read from /proc): neither holds the token.
#[test]
fn shard_commands_and_harper_do_not_see_the_github_token() {
    let sandbox = Sandbox::new();
    let shards = "  - name: nosy\n    run: \"env > seen.env && tr '\\\\0' '\\\\n' < /proc/$(cat $HARPER_ROOTPATH/hdb.pid)/environ > harper.env\"\n";
    github_step(&sandbox, shards, &[("GITHUB_TOKEN", "ghs_secret_checks_token")]).run.expect(0);
    let seen = support::read(&sandbox.path("seen.env"));
    assert!(seen.contains("HARPER_SHARD_NAME=nosy"), "{seen}");
    assert!(
        !seen.contains("ghs_secret_checks_token"),
        "the token leaked into a shard command's environment"
    );
    let harper = support::read(&sandbox.path("harper.env"));
    assert!(
        harper.lines().any(|l| l.starts_with("FAKE_HARPER="))
            && harper.contains("HARPER_SHARD_TOKEN="),
        "not Harper's environment: {harper}"
    );
    assert!(
        !harper.contains("ghs_secret_checks_token"),
        "the token leaked into Harper's environment"
    );
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
                    let value = a
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .unwrap()
                        .into_owned();
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
                    let c = match name.as_ref() {
                        "lt" => "<",
                        "gt" => ">",
                        "amp" => "&",
                        "quot" => "\"",
                        "apos" => "'",
                        _ => "?",
                    };
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
            let time: f64 =
                case.attrs.get("time").map_or(0.0, |t| t.parse().expect("time is seconds"));
            assert!(time >= 0.0);
        }
    }
    let good = suites[0].all("testcase");
    assert_eq!(
        good.iter().map(|c| c.attrs["name"].as_str()).collect::<Vec<_>>(),
        ["true", "echo two"]
    );
    assert!(
        good.iter()
            .all(|c| c.children.iter().all(|x| x.name == "system-out" || x.name == "system-err"))
    );

    let bad = suites[1].all("testcase");
    let failure = bad[0].child("failure").expect("the failed command is a <failure>");
    assert_eq!(failure.attrs["message"], "exit code 3");
    assert!(
        bad[0].child("system-out").is_some_and(|o| o.text.contains("the widget broke")),
        "{:?}",
        bad[0]
    );
    assert!(bad[1].child("skipped").is_some(), "the command after the failure did not run");
    assert_eq!(suites[1].attrs["failures"], "1");

    let boot = suites[2].all("testcase");
    assert_eq!(boot[0].attrs["name"], "boot Harper");
    let error = boot[0].child("error").expect("a failed boot is an <error>");
    assert!(error.attrs["message"].contains("exit code 1"), "{:?}", error.attrs);
    assert!(
        boot[0].child("system-out").is_some_and(|o| !o.text.trim().is_empty()),
        "the error carries Harper's last lines"
    );
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
    let timings: serde_json::Value =
        serde_json::from_str(&support::read(&sandbox.path("report/timings.json"))).unwrap();
    assert_eq!(timings["files"]["t/a.test.mjs"], 2.0, "{timings}");
    assert_eq!(timings["files"]["t/b.test.mjs"], 2.5, "{timings}");
    assert!(timings["shards"]["unit"].as_f64().is_some());
}

#[test]
fn junit_left_by_an_earlier_run_is_not_counted_again() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "report/unit/junit/old.xml",
        r#"<testsuites><testcase name="x" time="9" file="t/old.test.mjs"/></testsuites>"#,
    );
    github_step(&sandbox, "  - name: unit\n    run: \"true\"\n", &[]).run.expect(0);
    let timings: serde_json::Value =
        serde_json::from_str(&support::read(&sandbox.path("report/timings.json"))).unwrap();
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
    let child = actions_run(&sandbox, &summary, &outputs)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start harper-shard");
    sandbox.wait_for("the shard's command to start", std::time::Duration::from_secs(20), || {
        sandbox.path("started").exists()
    });
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
        log.split("::group::").any(|g| {
            g.starts_with("✔ quick") && g.contains("quick done") && g.contains("::endgroup::")
        })
    });
    assert!(!log.lock().unwrap().contains("slow — "), "slow's group came before slow finished");
    sandbox.write("release", "");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    reader.join().unwrap();
    assert!(log.lock().unwrap().contains("::group::✔ slow — passed"));
}

/// A process called `name` that holds a listening socket on `addr:port` until dropped: what a
/// "held by pid N (name)" warning quotes.
struct Squatter {
    child: std::process::Child,
}

impl Squatter {
    fn start(sandbox: &Sandbox, name: &str, addr: std::net::Ipv4Addr, port: u16) -> Squatter {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_reuse_address(true).unwrap();
        socket
            .bind(&std::net::SocketAddrV4::new(addr, port).into())
            .expect("bind the squatter's port");
        socket.listen(8).unwrap();
        // The process's name is its program's file name: a link to sleep, named `name`.
        let program = sandbox.path(name);
        std::os::unix::fs::symlink("/bin/sleep", &program).unwrap();
        let fd = socket.as_raw_fd();
        let mut cmd = std::process::Command::new(&program);
        cmd.arg("600").stdin(std::process::Stdio::null());
        // SAFETY: dup2 is async-signal-safe; the copy (without close-on-exec) is what sleep keeps.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(fd, 100) < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
            });
        }
        let child = cmd.spawn().expect("start the squatter");
        Squatter { child }
    }
}

impl Drop for Squatter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prints what a hostile test suite might, then fails so that its tail is shown too.
const INJECTIONS: &str = r#"printf 'x\r::error title=Injected::pwn\n'
printf '::stop-commands::guessed\n'
printf '::error::pwn\n'
printf '::add-mask::secret\n'
printf '::set-output name=x::pwn\n'
printf 'nul\000here\n'
printf 'screen\033[2J\033[H\033]0;title\007cleared\n'
printf '  ##[error]old-style pwn\n'
printf '::STOP-COMMANDS::\n'
printf 'no line end \r::warning::pwn'
exit 3
"#;

/// The only workflow commands a run may issue are its own: its groups, and annotations titled
/// with a shard's name or its own.
fn assert_only_the_tools_commands(output: &[u8], shards: &[&str]) -> Vec<Acted> {
    let acted = runner_commands(output);
    for c in &acted {
        match c.name.to_ascii_lowercase().as_str() {
            "group" => assert!(
                c.data.starts_with('✔') || c.data.starts_with('✘'),
                "not the tool's group: {c:?}"
            ),
            "endgroup" => {}
            "error" | "warning" | "notice" => {
                let title = c.properties.get("title").map(String::as_str).unwrap_or_default();
                assert!(
                    shards.contains(&title) || title == "harper-shard",
                    "not the tool's annotation: {c:?}"
                );
            }
            _ => panic!("the runner would act on a command the tool did not issue: {c:?}"),
        }
    }
    acted
}

fn injected_run(verbose: bool) {
    let sandbox = Sandbox::new();
    let first: std::net::Ipv4Addr =
        if verbose { "127.0.61.2" } else { "127.0.61.12" }.parse().unwrap();
    let _squatter = Squatter::start(&sandbox, "x\r::error::pwn", first, 9926);
    sandbox.write("inject.sh", INJECTIONS);
    let pool = format!("pool: {{start: {first}, count: 3, wait: 30s}}\n");
    sandbox.write(
        "harper-shards.yml",
        &fake_plan("", &pool, "  - name: inj\n    run: sh inject.sh\n"),
    );
    let mut cmd = sandbox.command();
    cmd.arg("run")
        .env("GITHUB_ACTIONS", "true")
        .env("HARPER_SHARD_POOL_DIR", sandbox.path("pool"))
        .env_remove("GITHUB_STEP_SUMMARY");
    if verbose {
        cmd.arg("-v");
    }
    let output = cmd.output().expect("run harper-shard");
    let run = Run { output, took: std::time::Duration::ZERO };
    run.expect(1);
    let err = run.stderr();
    assert!(
        err.contains("x␍::error title=Injected::pwn"),
        "the tail (and with -v the relay) shows the line, defused: {err}"
    );
    assert!(err.contains("(x␍::error::pwn)"), "the warning names the holder, defused: {err}");
    assert!(
        !err.contains(['\0', '\x1b']),
        "no NUL and no escape sequence reaches the log: {err:?}"
    );
    let everything = [run.output.stdout.as_slice(), run.output.stderr.as_slice()].concat();
    let acted = assert_only_the_tools_commands(&everything, &["inj"]);
    let errors: Vec<&Acted> = acted.iter().filter(|c| c.name == "error").collect();
    assert_eq!(errors.len(), 1, "the failed shard's own error is still seen: {acted:#?}");
    assert_eq!(errors[0].properties["title"], "inj");
    assert!(errors[0].data.contains("`sh inject.sh` failed: exit code 3"), "{:?}", errors[0]);
    assert!(
        acted.iter().any(|c| c.name == "warning" && c.data.contains("held by pid")),
        "the squatter's warning is an annotation: {acted:#?}"
    );
}

#[test]
fn injections_in_output_tails_and_process_names_cannot_issue_workflow_commands() {
    injected_run(false);
}

#[test]
fn injections_relayed_with_verbose_cannot_issue_workflow_commands() {
    injected_run(true);
}

#[test]
fn annotations_point_at_the_line_the_parser_read_each_name_from_not_at_lookalike_lines() {
    let sandbox = Sandbox::new();
    // Before the real `name: db`, two lines that read as `name: db` to anything but a YAML
    // parser: a variable named `name` and a line of a block scalar.
    let shards = "  - name: ops\n    env:\n      name: db\n    run: |\n      cat >/dev/null <<'EOF'\n      name: db\n      EOF\n  - name: db\n    run: \"true\"\n";
    let step = github_step(&sandbox, shards, &[]);
    step.run.expect(0);
    let plan = support::read(&sandbox.path("harper-shards.yml"));
    let line_of = |text: &str| (plan.lines().position(|l| l == text).unwrap() + 1).to_string();
    let acted = runner_commands(&step.run.output.stderr);
    let notices: Vec<&Acted> = acted.iter().filter(|c| c.name == "notice").collect();
    let line = |shard: &str| {
        notices
            .iter()
            .find(|n| n.properties["title"] == shard)
            .map(|n| n.properties["line"].clone())
    };
    assert_eq!(line("ops"), Some(line_of("  - name: ops")), "{notices:#?}");
    assert_eq!(line("db"), Some(line_of("  - name: db")), "{notices:#?}");
}

#[test]
fn a_second_run_into_the_same_report_dir_logs_and_relays_only_its_own_output() {
    let sandbox = Sandbox::new();
    let shards = "  - name: again\n    run: echo \"output of $WHICH\"\n";
    github_step(&sandbox, shards, &[("WHICH", "the first run")]).run.expect(0);
    let step = github_step(&sandbox, shards, &[("WHICH", "the second run")]);
    step.run.expect(0);
    assert_eq!(
        support::read(&sandbox.path("report/again/command-1.log")),
        "output of the second run\n"
    );
    let harper = support::read(&sandbox.path("report/again/harper/stdout.log"));
    assert_eq!(
        harper.matches("successfully started").count(),
        1,
        "Harper's log is this run's only: {harper}"
    );
    let log = step.run.stderr();
    assert!(
        log.contains("output of the second run") && !log.contains("output of the first run"),
        "{log}"
    );
}

#[test]
fn links_planted_in_the_report_dir_are_not_written_through() {
    let sandbox = Sandbox::new();
    let victim = sandbox.write("victim.txt", "precious\n");
    for planted in [
        "report/report.json.tmp",
        "report/junit.xml",
        "report/planted/command-1.log",
        "report/planted/harper/stdout.log",
    ] {
        std::fs::create_dir_all(sandbox.path(planted).parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&victim, sandbox.path(planted)).unwrap();
    }
    // The first command plants links of its own, for what the run writes after it.
    let plant = "ln -s \"$VICTIM\" \"$HARPER_SHARD_JUNIT_DIR/../command-2.log\"; ln -s \"$VICTIM\" \"$HARPER_SHARD_JUNIT_DIR/../harper/hdb.log\"";
    let shards = format!("  - name: planted\n    run: ['{plant}', 'echo never']\n");
    let step = github_step(&sandbox, &shards, &[("VICTIM", victim.to_str().unwrap())]);
    // A command whose log cannot be created never starts: the tool's failure, exit 3.
    step.run.expect(3);
    assert_eq!(support::read(&victim), "precious\n", "nothing was written through a link");
    let report = sandbox.report();
    let cause = report["shards"][0]["cause"].as_str().unwrap();
    assert!(
        cause.contains("command-2.log: it is a symbolic link") && cause.contains("victim.txt"),
        "the run says why: {cause}"
    );
    for file in [
        "report/junit.xml",
        "report/report.json",
        "report/planted/command-1.log",
        "report/planted/harper/stdout.log",
    ] {
        let meta = std::fs::symlink_metadata(sandbox.path(file)).unwrap();
        assert!(meta.file_type().is_file(), "{file} is the run's own file now");
    }
}

#[test]
fn step_files_that_are_fifos_are_refused_instead_of_waited_on() {
    use std::os::unix::fs::OpenOptionsExt;
    let sandbox = Sandbox::new();
    sandbox.write("harper-shards.yml", &fake_plan("", "", "  - name: a\n    run: \"true\"\n"));
    let (summary, outputs) = (sandbox.path("summary.fifo"), sandbox.path("outputs.fifo"));
    for fifo in [&summary, &outputs] {
        nix::unistd::mkfifo(fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    }
    // One FIFO has a reader (it opens), the other has none (opening it for writing would block).
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&outputs)
        .unwrap();
    let mut child = actions_run(&sandbox, &summary, &outputs)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        sandbox.wait_for("the run to end", std::time::Duration::from_secs(60), || {
            status = child.try_wait().unwrap();
            status.is_some()
        })
    }));
    if waited.is_err() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the run hung on a step file that is a FIFO");
    }
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.unwrap().code(), Some(0), "{err}");
    assert!(err.contains("cannot write the step summary ($GITHUB_STEP_SUMMARY)"), "{err}");
    assert!(err.contains("outputs.fifo is not a regular file"), "{err}");
    let mut got = Vec::new();
    let _ = std::io::Read::read_to_end(&mut &reader, &mut got);
    assert!(got.is_empty(), "nothing was written into the FIFO");
}

// Every line the tool prints leaves through one writer: the commands' answers and notes on
// stdout and stderr, the last `error:` line and a run's warnings too, not only its reports.

/// `harper-shard ARGS` as a GitHub Actions step of `sandbox`, its pool there, with `env`.
fn actions_command(sandbox: &Sandbox, args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Run {
    let mut cmd = sandbox.command();
    cmd.args(args)
        .env("GITHUB_ACTIONS", "true")
        .env("HARPER_SHARD_POOL_DIR", sandbox.path("pool"))
        .env_remove("GITHUB_STEP_SUMMARY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_of(&mut cmd)
}

/// Neither stdout nor stderr of `run` holds a workflow command the runner would act on, but for
/// a run's own (of `shards`), and `shown` — the hostile value as the tool must show it, defused
/// — is in `stream`.
fn assert_defused(run: &Run, shards: &[&str], stream: &str, shown: &str) {
    let everything = [run.output.stdout.as_slice(), run.output.stderr.as_slice()].concat();
    if shards.is_empty() {
        let acted = runner_commands(&everything);
        assert!(
            acted.is_empty(),
            "the runner would act on: {acted:#?}\n--- stdout\n{}\n--- stderr\n{}",
            run.stdout(),
            run.stderr()
        );
    } else {
        assert_only_the_tools_commands(&everything, shards);
    }
    let text = if stream == "stdout" { run.stdout() } else { run.stderr() };
    assert!(text.contains(shown), "expected `{shown}` on {stream}:\n{text}");
    assert!(!text.contains('\x1b'), "no escape sequence on {stream}: {text:?}");
}

#[test]
fn pool_status_shows_the_name_of_a_process_that_holds_a_port_defused() {
    let sandbox = Sandbox::new();
    let _squatter =
        Squatter::start(&sandbox, "x\r::error::pwn", "127.0.90.2".parse().unwrap(), 9925);
    sandbox.write(
        "harper-shards.yml",
        &fake_plan("", "pool: {start: 127.0.90.2, count: 1}\n", "  - name: a\n    run: \"true\"\n"),
    );
    let r = actions_command(&sandbox, &["pool", "status"], &[]);
    r.expect(0);
    assert_defused(&r, &[], "stdout", "(x␍::error::pwn)");
}

#[test]
fn pool_validate_and_cache_status_show_hostile_directory_names_defused() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "harper-shards.yml",
        &fake_plan(
            "",
            "pool: {start: 127.0.90.10, count: 2}\n",
            "  - name: a\n    run: \"true\"\n",
        ),
    );
    let pool = sandbox.path("p\r::error::pool\x1b]0;t\x07");
    let r = actions_command(
        &sandbox,
        &["pool", "validate"],
        &[("HARPER_SHARD_POOL_DIR", pool.as_os_str())],
    );
    r.expect(0);
    assert_defused(&r, &[], "stdout", "p␍::error::pool is usable");
    let cache = sandbox.path("c\r::error::cache");
    let r = actions_command(
        &sandbox,
        &["cache", "status"],
        &[("HARPER_SHARD_CACHE_DIR", cache.as_os_str())],
    );
    r.expect(0);
    assert_defused(&r, &[], "stdout", "c␍::error::cache");
}

#[test]
fn the_dry_run_shows_a_hostile_command_defused_as_text_and_unchanged_as_json() {
    let sandbox = Sandbox::new();
    let command = "echo ##[error]old \r::warning::new \u{1b}]0;t\u{7} \u{7f}";
    let yaml =
        "  - name: a\n    run: \"echo ##[error]old \\r::warning::new \\x1b]0;t\\x07 \\x7f\"\n";
    sandbox.write("harper-shards.yml", &fake_plan("", "", yaml));
    let r = actions_command(&sandbox, &["run", "--plan"], &[]);
    r.expect(0);
    assert_defused(&r, &[], "stdout", "$ echo ##[error]old ␍::warning::new  ␡");
    let r = actions_command(&sandbox, &["run", "--plan", "--format", "json"], &[]);
    r.expect(0);
    assert!(runner_commands(&r.output.stdout).is_empty(), "{}", r.stdout());
    let json: serde_json::Value = serde_json::from_str(&r.stdout()).expect("the dry run is JSON");
    assert_eq!(
        json["plan"]["shards"][0]["commands"][0], command,
        "the JSON says the command as it is"
    );
}

#[test]
fn ctl_shows_what_the_control_socket_answers_defused() {
    use std::io::{BufRead, Write};
    let sandbox = Sandbox::new();
    let socket = sandbox.path("control.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut request = String::new();
        std::io::BufReader::new(&stream).read_line(&mut request).unwrap();
        // A whole instance, as the protocol has it (src/run/protocol.rs): ctl reads it typed.
        let answer = r#"{"ok":true,"instance":{"id":"::error::pwn\r","name":"n","state":"running","hostname":"\u001b]0;t\u0007h","operations_url":"u","http_url":"h","mqtt_url":"m","admin":{"username":"a","password":"p"},"harper":{"bin":"/b"},"rootpath":"/r","log_dir":"/l","pid":null,"exit":null}}"#;
        writeln!(&stream, "{answer}").unwrap();
    });
    let r = actions_command(
        &sandbox,
        &["ctl", "status", "--id", "i1"],
        &[("HARPER_SHARD_CONTROL", socket.as_os_str())],
    );
    server.join().unwrap();
    r.expect(0);
    assert_defused(&r, &[], "stdout", "::error::pwn␍ running h u");
}

#[test]
fn the_last_error_line_quotes_a_hostile_value_defused() {
    let sandbox = Sandbox::new();
    sandbox.write("harper-shards.yml", &fake_plan("", "", "  - name: a\n    run: \"true\"\n"));
    let work = sandbox.path("w\r::error::pwn");
    let r = actions_command(
        &sandbox,
        &["run", "--plan"],
        &[("HARPER_SHARD_WORK_DIR", work.as_os_str())],
    );
    r.expect(2);
    assert_defused(&r, &[], "stderr", "w␍::error::pwn cannot hold Harper instances");
}

/// Clap's usage errors quote the value they refuse, from the command line or a variable: a
/// line feed or a bare CR in it must not start a workflow command, and the exit stays 2.
#[test]
fn a_usage_error_quotes_a_hostile_flag_or_variable_defused() {
    let sandbox = Sandbox::new();
    no_harper_plan(&sandbox);
    /// The arguments, the variables, and the refused value as it must be shown.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let none: &[(&str, &str)] = &[];
    let cases: [Case; 6] = [
        (
            &["run", "--plan"],
            &[("HARPER_SHARD_PARTITION", "1/2\n::warning::partition")],
            "::warning::partition",
        ),
        (&["run", "--plan", "--format", "x\r::error::format"], none, "x␍::error::format"),
        (
            &["matrix"],
            &[("HARPER_SHARD_PARTITIONS", "2\n::warning::partitions")],
            "::warning::partitions",
        ),
        (&["run", "--plan"], &[("HARPER_SHARD_QUIET", "x\n::warning::quiet")], "::warning::quiet"),
        (&["run", "--x\n::warning::flag"], none, "::warning::flag"),
        (
            &["run", "--plan"],
            &[("HARPER_SHARD_QUIET", "1"), ("HARPER_SHARD_VERBOSE", "1")],
            "ask for opposite things",
        ),
    ];
    for (args, env, shown) in cases {
        let env: Vec<(&str, &std::ffi::OsStr)> =
            env.iter().map(|(k, v)| (*k, std::ffi::OsStr::new(*v))).collect();
        let r = actions_command(&sandbox, args, &env);
        r.expect(2);
        assert_defused(&r, &[], "stderr", shown);
    }
    let help = actions_command(&sandbox, &["run", "--help"], &[]);
    help.expect(0);
    assert!(help.stdout().contains("--partition"), "help goes to stdout: {}", help.stdout());
}

/// A plan whose one shard starts no Harper: a run that needs no address.
fn no_harper_plan(sandbox: &Sandbox) {
    sandbox.write(
        "harper-shards.yml",
        &fake_plan("", "  boot: false\n", "  - name: a\n    run: \"true\"\n"),
    );
}

#[test]
fn the_work_directory_note_quotes_a_hostile_temporary_directory_defused_and_q_drops_it() {
    let sandbox = Sandbox::new();
    no_harper_plan(&sandbox);
    let temp = sandbox.path("t\r::warning::pwn");
    std::fs::create_dir_all(&temp).unwrap();
    let run = |args: &[&str], github: bool| {
        let mut cmd = sandbox.command();
        cmd.args(args)
            .env_remove("HARPER_SHARD_WORK_DIR")
            .env("TMPDIR", &temp)
            .env("HARPER_SHARD_POOL_DIR", sandbox.path("pool"));
        if github {
            cmd.env("GITHUB_ACTIONS", "true");
        }
        run_of(&mut cmd)
    };
    let r = run(&["run"], true);
    r.expect(0);
    assert_defused(&r, &["a"], "stderr", "harper-shard: note: instance directories go to /tmp/hs-");
    assert!(r.stderr().contains("t␍::warning::pwn/hs-"), "{}", r.stderr());
    let quiet = run(&["run", "-q"], false);
    quiet.expect(0);
    assert!(
        !quiet.stderr().contains("instance directories go to"),
        "-q drops the note: {}",
        quiet.stderr()
    );
}

/// Runs `cmd` to its end.
fn run_of(cmd: &mut std::process::Command) -> Run {
    let output = cmd.output().expect("run harper-shard");
    Run { output, took: std::time::Duration::ZERO }
}

/// A log the run cannot keep (the shard's command put a directory where Harper's log goes) is
/// a warning: a line on the console, defused, and an annotation; `-q` drops the line.
#[test]
fn a_warning_during_a_run_is_an_annotation_and_a_defused_line_and_q_drops_the_line() {
    let sandbox = Sandbox::new();
    let shard = "  - name: a\n    run: 'mkdir \"$HARPER_SHARD_JUNIT_DIR/../harper/hdb.log\"'\n";
    sandbox.write(
        "harper-shards.yml",
        &fake_plan("", "pool: {start: 127.0.90.20, count: 2}\n", shard),
    );
    let report = sandbox.path("r\r::error::pwn");
    let r = actions_command(&sandbox, &["run", "--report-dir", report.to_str().unwrap()], &[]);
    r.expect(0);
    let everything = [r.output.stdout.as_slice(), r.output.stderr.as_slice()].concat();
    let acted = assert_only_the_tools_commands(&everything, &["a"]);
    let warnings: Vec<&Acted> = acted.iter().filter(|c| c.name == "warning").collect();
    assert_eq!(warnings.len(), 1, "{acted:#?}");
    assert!(
        warnings[0].data.contains("a: cannot keep")
            && warnings[0].data.contains("r␍::error::pwn/a/harper/hdb.log"),
        "{:?}",
        warnings[0]
    );
    assert!(
        r.stderr()
            .lines()
            .any(|l| l.starts_with("warning: [a] cannot keep") && l.contains("r␍::error::pwn")),
        "{}",
        r.stderr()
    );

    let mut cmd = sandbox.command();
    cmd.args(["run", "-q"]).env("HARPER_SHARD_POOL_DIR", sandbox.path("pool"));
    let quiet = run_of(&mut cmd);
    quiet.expect(0);
    assert!(
        !quiet.stderr().contains("cannot keep"),
        "-q drops the warning's line: {}",
        quiet.stderr()
    );
    let recorded = sandbox.report()["warnings"].to_string();
    assert!(recorded.contains("cannot keep"), "report.json keeps it: {recorded}");
}

/// The commands' own warnings: an annotation under GitHub Actions, a line elsewhere, nothing
/// with `-q` — which keeps the answer and the error.
#[test]
fn a_commands_warning_is_an_annotation_under_actions_and_q_keeps_only_answers_and_errors() {
    let sandbox = Sandbox::new();
    no_harper_plan(&sandbox);
    sandbox.write("renamed.json", r#"{"version": 1, "shards": {"gone": 3}}"#);
    let r = actions_command(
        &sandbox,
        &["matrix", "--partitions", "3", "--timings", "renamed.json"],
        &[],
    );
    r.expect(0);
    let acted = runner_commands(&r.output.stderr);
    assert_eq!(acted.len(), 1, "{acted:#?}");
    assert_eq!(
        (acted[0].name.as_str(), acted[0].properties["title"].as_str()),
        ("warning", "harper-shard")
    );
    assert!(
        acted[0]
            .data
            .starts_with("timings renamed.json name 1 shard(s) the plan does not have: gone"),
        "{:?}",
        acted[0]
    );

    let loud = sandbox.run(&["matrix", "--partitions", "3", "--timings", "renamed.json"]);
    loud.expect(0);
    assert!(
        loud.stderr().contains("harper-shard: warning: timings renamed.json")
            && loud.stderr().contains("so the matrix has 1 jobs"),
        "{}",
        loud.stderr()
    );
    let quiet = sandbox.run(&["matrix", "-q", "--partitions", "3", "--timings", "renamed.json"]);
    quiet.expect(0);
    assert_eq!(quiet.stderr(), "", "-q drops the warning and the note");
    assert!(quiet.stdout().starts_with("{\"include\":"), "-q keeps the answer: {}", quiet.stdout());
    let failed = sandbox.run(&["matrix", "-q", "--partitions", "0"]);
    failed.expect(2);
    assert!(
        failed.stderr().contains("error: --partitions must be at least 1"),
        "-q keeps the error: {}",
        failed.stderr()
    );
}
