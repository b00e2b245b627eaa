//! The check run, against a local stand-in for GitHub's Checks API that records every request
//! and answers as GitHub does (201 with the check run, 200 for updates, or 403 with GitHub's
//! error body): the commit it lands on, the request's fields, annotations in batches of 50,
//! and a 403 that only warns.

use crate::support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harper_shard::report::checks::{self, CheckRunTarget};
use harper_shard::report::place::Place;
use serde_json::{Value, json};
use support::records::run_record;
use support::{Sandbox, fake_plan};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    authorization: Option<String>,
    body: Value,
}

#[derive(Clone, Copy)]
enum Mode {
    Accept,
    Forbidden,
}

/// The stand-in API on 127.0.0.1, on its own runtime so that blocking tests can use it.
struct MockApi {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

const CHECK_RUN_ID: u64 = 4242;

impl MockApi {
    fn start(mode: Mode) -> MockApi {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let log = requests.clone();
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(connection(stream, mode, log.clone()));
            }
        });
        MockApi { addr, requests, runtime: Some(runtime) }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for MockApi {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// Serves HTTP/1.1 requests on one connection until the client closes it.
async fn connection(stream: tokio::net::TcpStream, mode: Mode, log: Arc<Mutex<Vec<Request>>>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut start = String::new();
        if reader.read_line(&mut start).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = start.split_whitespace();
        let (method, path) =
            (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
        let (mut length, mut authorization) = (0usize, None);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "authorization" => authorization = Some(value.trim().to_owned()),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let (status, answer) = match mode {
            Mode::Forbidden => (
                "403 Forbidden",
                json!({"message": "Resource not accessible by integration", "documentation_url": "https://docs.github.com/rest/checks/runs#create-a-check-run", "status": "403"}),
            ),
            Mode::Accept => {
                let status = if method == "POST" { "201 Created" } else { "200 OK" };
                (status, check_run(&body))
            }
        };
        log.lock().unwrap().push(Request { method, path, authorization, body });
        let answer = answer.to_string();
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if write.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A check run as GitHub returns it.
fn check_run(request: &Value) -> Value {
    let output = &request["output"];
    json!({
        "id": CHECK_RUN_ID,
        "node_id": "CR_kwDOAAAAAAAAABCD",
        "head_sha": request["head_sha"].as_str().unwrap_or("0000000000000000000000000000000000000000"),
        "external_id": "",
        "url": format!("https://api.github.com/repos/o/r/check-runs/{CHECK_RUN_ID}"),
        "html_url": format!("https://github.com/o/r/runs/{CHECK_RUN_ID}"),
        "details_url": request["details_url"],
        "status": "completed",
        "conclusion": request["conclusion"],
        "started_at": request["started_at"],
        "completed_at": request["completed_at"],
        "output": {
            "title": output["title"],
            "summary": output["summary"],
            "text": output["text"],
            "annotations_count": output["annotations"].as_array().map_or(0, Vec::len),
            "annotations_url": format!("https://api.github.com/repos/o/r/check-runs/{CHECK_RUN_ID}/annotations"),
        },
        "name": request["name"].as_str().unwrap_or("harper-shard"),
        "check_suite": {"id": 5},
        "app": null,
        "pull_requests": [],
    })
}

fn target(api: &MockApi) -> CheckRunTarget {
    CheckRunTarget {
        api_url: api.url(),
        token: "ghs_test".into(),
        owner: "o".into(),
        repo: "r".into(),
        sha: "a".repeat(40),
        name: "harper-shard".into(),
        place: Place { path: "harper-shards.yml".into(), lines: Default::default() },
        details_url: None,
    }
}

fn annotations(r: &Request) -> &Vec<Value> {
    r.body["output"]["annotations"].as_array().expect("the request carries annotations")
}

#[test]
fn a_hundred_and_twenty_annotations_go_in_batches_of_fifty_fifty_and_twenty() {
    let api = MockApi::start(Mode::Accept);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let published =
        rt.block_on(checks::publish(&run_record(100, 20), &target(&api))).expect("published");
    assert_eq!(published, checks::Published { id: CHECK_RUN_ID, requests: 3 });
    let requests = api.requests();
    let shape: Vec<(&str, &str, usize)> = requests
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str(), annotations(r).len()))
        .collect();
    assert_eq!(
        shape,
        [
            ("POST", "/repos/o/r/check-runs", 50),
            ("PATCH", "/repos/o/r/check-runs/4242", 50),
            ("PATCH", "/repos/o/r/check-runs/4242", 20),
        ]
    );
    let first = annotations(&requests[0]);
    assert!(first[..20].iter().all(|a| a["annotation_level"] == "failure"), "failures come first");
    assert!(first[20..].iter().all(|a| a["annotation_level"] == "notice"));
    for r in &requests[1..] {
        let output = &r.body["output"];
        assert_eq!(
            (&output["title"], &output["summary"], &output["text"]),
            (
                &requests[0].body["output"]["title"],
                &requests[0].body["output"]["summary"],
                &requests[0].body["output"]["text"]
            ),
            "an update keeps the output whole"
        );
    }
}

#[test]
fn the_check_run_is_created_completed_with_the_conclusion_times_and_the_summary() {
    let api = MockApi::start(Mode::Accept);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let record = run_record(2, 1);
    rt.block_on(checks::publish(&record, &target(&api))).expect("published");
    let requests = api.requests();
    assert_eq!(requests.len(), 1, "three annotations fit in the create request");
    let body = &requests[0].body;
    assert_eq!(requests[0].authorization.as_deref(), Some("Bearer ghs_test"));
    assert_eq!(body["name"], "harper-shard");
    assert_eq!(body["head_sha"], "a".repeat(40));
    assert_eq!(body["status"], "completed");
    assert_eq!(body["conclusion"], "failure");
    let started = humantime::parse_rfc3339(body["started_at"].as_str().unwrap())
        .expect("started_at is RFC 3339");
    let completed = humantime::parse_rfc3339(body["completed_at"].as_str().unwrap())
        .expect("completed_at is RFC 3339");
    assert!(completed >= started);
    let output = &body["output"];
    assert_eq!(output["title"], "1 of 3 shard(s) failed in 0.23s");
    assert!(output["summary"].as_str().unwrap().contains("| s002 | 127.0.0.2 |"), "{output}");
    assert!(
        output["text"]
            .as_str()
            .unwrap()
            .contains("```mermaid\n---\ndisplayMode: compact\n---\ngantt\n"),
        "{output}"
    );
    let failure = &annotations(&requests[0])[0];
    assert_eq!(failure["path"], "harper-shards.yml");
    assert_eq!(failure["start_line"], 1);
    assert_eq!(failure["title"], "s002: FAILED");
    assert!(failure["message"].as_str().unwrap().starts_with("`npm test` failed: exit code 1"));
    assert_eq!(failure["raw_details"], "not ok 1 - widget");
}

#[test]
fn a_push_uses_github_sha_and_a_pull_request_uses_the_head_from_the_event_payload() {
    let sandbox = Sandbox::new();
    let payload = sandbox.write(
        "event.json",
        &json!({"pull_request": {"head": {"sha": "b".repeat(40)}}}).to_string(),
    );
    let payload = payload.display().to_string();
    let env = |event: &'static str| {
        let payload = payload.clone();
        move |name: &str| match name {
            "GITHUB_EVENT_NAME" => Some(event.to_owned()),
            "GITHUB_EVENT_PATH" => Some(payload.clone()),
            "GITHUB_SHA" => Some("c".repeat(40)),
            "GITHUB_REPOSITORY" => Some("o/r".to_owned()),
            _ => None,
        }
    };
    let sha = |event| {
        CheckRunTarget::from_env(&env(event), Some("t".into()), "n", Place::default()).unwrap().sha
    };
    assert_eq!(sha("push"), "c".repeat(40));
    assert_eq!(sha("pull_request"), "b".repeat(40));
    assert_eq!(sha("pull_request_target"), "b".repeat(40));
}

/// The binary, under GitHub Actions, for a pull request, publishing to `api`.
fn checked_run(sandbox: &Sandbox, api: &MockApi) -> support::Run {
    checked_run_with(sandbox, api, &[])
}

fn checked_run_with(sandbox: &Sandbox, api: &MockApi, extra: &[&str]) -> support::Run {
    sandbox.write(
        "harper-shards.yml",
        &fake_plan("", "", "  - name: a\n    run: \"true\"\n  - name: b\n    run: \"true\"\n"),
    );
    checked_plan(sandbox, api, extra)
}

/// [`checked_run_with`] on the plan already in the sandbox, on the machine's pool: these tests
/// name no address, and only that pool's locks keep them from taking one another's.
fn checked_plan(sandbox: &Sandbox, api: &MockApi, extra: &[&str]) -> support::Run {
    let event = sandbox.write(
        "event.json",
        &json!({"pull_request": {"head": {"sha": "b".repeat(40)}}}).to_string(),
    );
    let started = std::time::Instant::now();
    let output = sandbox
        .command()
        .args(["run", "--github-checks", "--check-name", "integration (fake)"])
        .args(extra)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_TOKEN", "ghs_from_env")
        .env("GITHUB_API_URL", api.url())
        .env("GITHUB_REPOSITORY", "o/r")
        .env("GITHUB_EVENT_NAME", "pull_request")
        .env("GITHUB_EVENT_PATH", &event)
        .env("GITHUB_SHA", "c".repeat(40))
        .env("GITHUB_WORKSPACE", &sandbox.dir)
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("GITHUB_OUTPUT")
        .output()
        .expect("run harper-shard");
    support::Run { output, took: started.elapsed() }
}

#[test]
fn the_binary_publishes_one_check_run_on_the_pull_requests_head() {
    let sandbox = Sandbox::new();
    let api = MockApi::start(Mode::Accept);
    let run = checked_run(&sandbox, &api);
    run.expect(0);
    let requests = api.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let body = &requests[0].body;
    assert_eq!(body["head_sha"], "b".repeat(40), "the pull request's head, not GITHUB_SHA");
    assert_eq!(body["name"], "integration (fake)");
    assert_eq!(body["conclusion"], "success");
    assert_eq!(requests[0].authorization.as_deref(), Some("Bearer ghs_from_env"));
    assert_eq!(annotations(&requests[0]).len(), 2, "one per shard");
    let shard_b = annotations(&requests[0])
        .iter()
        .find(|a| a["title"] == "b: passed")
        .expect("an annotation for b");
    assert_eq!(shard_b["path"], "harper-shards.yml");
    let line = support::read(&sandbox.path("harper-shards.yml"))
        .lines()
        .position(|l| l.contains("name: b"))
        .unwrap()
        + 1;
    assert_eq!(shard_b["start_line"], line, "it points at the shard in the plan");
    assert!(run.stderr().contains("check run `integration (fake)` published"), "{}", run.stderr());
}

#[test]
fn a_403_from_the_checks_api_is_one_warning_and_not_a_failed_run() {
    let sandbox = Sandbox::new();
    let api = MockApi::start(Mode::Forbidden);
    let run = checked_run(&sandbox, &api);
    run.expect(0);
    assert_eq!(api.requests().len(), 1, "no retry, no update after a 403");
    let err = run.stderr();
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("::warning")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(
        warnings[0].contains("403")
            && warnings[0].contains("Resource not accessible by integration"),
        "{}",
        warnings[0]
    );
}

/// GitHub shows ten warnings of a step: the run's own take nine at most, so that the check
/// run's warning (a fork's read-only token) is never the one left out. Eleven addresses with a
/// port held make eleven warnings here.
#[test]
fn the_check_runs_warning_keeps_its_slot_when_the_run_has_more_warnings_than_github_shows() {
    let sandbox = Sandbox::new();
    let api = MockApi::start(Mode::Forbidden);
    let first = u32::from(std::net::Ipv4Addr::new(127, 0, 39, 2));
    let held: Vec<std::net::TcpListener> = (first..first + 11)
        .map(|a| {
            std::net::TcpListener::bind((std::net::Ipv4Addr::from(a), 9925)).expect("hold a port")
        })
        .collect();
    sandbox.write(
        "harper-shards.yml",
        &fake_plan(
            "",
            "pool: {start: 127.0.39.2, count: 12, wait: 5s}\n",
            "  - name: a\n    run: \"true\"\n",
        ),
    );
    let run = checked_plan(&sandbox, &api, &[]);
    drop(held);
    run.expect(0);
    let err = run.stderr();
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("::warning")).collect();
    assert_eq!(warnings.len(), 10, "GitHub shows ten: {warnings:#?}");
    assert_eq!(warnings.iter().filter(|w| w.contains("skipped")).count(), 8, "{warnings:#?}");
    assert!(warnings[8].contains("and 3 more warning(s)"), "{}", warnings[8]);
    assert!(
        warnings[9].starts_with("::warning title=harper-shard checks::")
            && warnings[9].contains("403"),
        "{}",
        warnings[9]
    );
}

#[test]
fn quiet_publishes_the_check_run_without_saying_so() {
    let sandbox = Sandbox::new();
    let api = MockApi::start(Mode::Accept);
    let run = checked_run_with(&sandbox, &api, &["-q"]);
    run.expect(0);
    assert_eq!(api.requests().len(), 1, "the check run is published all the same");
    assert!(
        !run.stderr().contains("check run"),
        "-q prints only failures and the table: {}",
        run.stderr()
    );
}
