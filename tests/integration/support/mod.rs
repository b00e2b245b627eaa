//! What every integration test needs: the real binaries, a sandbox directory, plans that start
//! the fake server, and the leak check that is the product's whole promise — every process a
//! test starts is marked, and a test that leaves one alive fails.

pub mod addrs;
pub mod node;
pub mod records;

pub use node::{installed_package, node_bin};

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use harper_shard::process;

/// Marks every process a test starts, through every fork and exec: the tool passes its
/// environment down to keepers, servers and commands.
pub const MARK: &str = "HARPER_SHARD_TEST_MARK";

pub fn harper_shard() -> &'static str {
    env!("CARGO_BIN_EXE_harper-shard")
}

pub fn fake_harper() -> &'static str {
    env!("CARGO_BIN_EXE_fake-harper")
}

/// A directory of one test's own, and the processes started from it.
pub struct Sandbox {
    pub dir: PathBuf,
    pub mark: String,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let mark = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("hst-{}", &mark[..8]));
        std::fs::create_dir_all(&dir).expect("create the sandbox");
        Sandbox { dir, mark }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent");
        }
        std::fs::write(&path, text).expect("write a sandbox file");
        path
    }

    /// `harper-shard` with the sandbox's mark, work directory and report directory.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(harper_shard());
        cmd.current_dir(&self.dir)
            .env(MARK, &self.mark)
            .env("HARPER_SHARD_WORK_DIR", self.path("w"))
            .env("HARPER_SHARD_REPORT_DIR", self.path("report"))
            .env_remove("GITHUB_ACTIONS")
            .env_remove("HARPER_SHARD_PLAN")
            .env_remove("RUST_LOG");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::of(self.command().args(args))
    }

    /// Live processes that carry this sandbox's mark. Panics when the process table cannot be
    /// read: "none found" must mean none is there.
    pub fn leftovers(&self) -> Vec<u32> {
        self.scan().unwrap_or_else(|e| panic!("{e}"))
    }

    fn scan(&self) -> Result<Vec<u32>, String> {
        let found = process::with_env(MARK, |v| v == self.mark.as_bytes()).map_err(|e| {
            format!(
                "cannot read the process table, so the leak check cannot tell what is left: {e}"
            )
        })?;
        Ok(found.into_iter().map(|p| p.pid).collect())
    }

    /// Polls `cond` until it holds or `limit` passes; the synchronisation tests use instead of
    /// sleeping.
    pub fn wait_for(&self, what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !cond() {
            assert!(Instant::now() < deadline, "gave up after {limit:?} waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn report(&self) -> serde_json::Value {
        let text =
            std::fs::read_to_string(self.path("report/report.json")).expect("report.json exists");
        serde_json::from_str(&text).expect("report.json is JSON")
    }
}

/// The leak check, with no grace: the tool's teardown is synchronous. When `harper-shard` has
/// exited, each of its keepers has reported that nothing of its child is left (the keeper
/// reaps everything down to `waitpid`'s ECHILD), and has been reaped itself. So the moment a
/// test is over, nothing marked may be alive. A test that kills the tool, whose keepers then
/// clean up on their own, waits for that concrete end itself (`wait_for` "every marked process
/// to end") before it is over.
impl Drop for Sandbox {
    fn drop(&mut self) {
        let scanned = self.scan();
        let left = scanned.clone().unwrap_or_default();
        let described: Vec<String> = left.iter().map(|pid| describe(*pid)).collect();
        for pid in &left {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        if std::thread::panicking() {
            return;
        }
        if let Err(e) = scanned {
            panic!("{e}");
        }
        if !left.is_empty() {
            panic!(
                "the test leaked {} process(es), now killed: {}",
                left.len(),
                described.join("; ")
            );
        }
    }
}

fn describe(pid: u32) -> String {
    format!("{pid}: {}", process::cmdline(pid).unwrap_or_else(|| process::command(pid)))
}

/// The result of one run of the binary.
pub struct Run {
    pub output: Output,
    pub took: Duration,
}

impl Run {
    /// Runs `cmd` to its end, timed.
    pub fn of(cmd: &mut Command) -> Run {
        let started = Instant::now();
        let output = cmd.output().expect("run harper-shard");
        Run { output, took: started.elapsed() }
    }
    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or_else(|| 128 + self.output.status.signal().unwrap_or(0))
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    /// Asserts the exit status, showing everything the tool said when it differs.
    pub fn expect(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            code,
            "unexpected exit status\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// Runs `cmd` to its end, timed.
pub fn run(mut cmd: Command) -> Run {
    Run::of(&mut cmd)
}

/// A sandbox whose plans use a pool of `count` addresses from `start` in a pool folder of their
/// own, and the check every test that starts something ends with.
pub struct Scene {
    pub sandbox: Sandbox,
    pub start: std::net::Ipv4Addr,
    pub count: u32,
}

impl Scene {
    pub fn new(start: &str, count: u32) -> Scene {
        let start = start.parse().unwrap_or_else(|e| panic!("{start}: {e}"));
        Scene { sandbox: Sandbox::new(), start, count }
    }

    /// The plan's `pool:` line.
    pub fn pool(&self) -> String {
        format!("pool: {{start: {}, count: {}, wait: 5s}}\n", self.start, self.count)
    }

    /// The pool's addresses, first to last.
    pub fn addresses(&self) -> Vec<String> {
        (0..self.count)
            .map(|n| std::net::Ipv4Addr::from(u32::from(self.start) + n).to_string())
            .collect()
    }

    /// Writes `harper-shards.yml`: the fake server with `directives`, `extra` YAML after the
    /// `harper:` keys (a `  teardown:` line there replaces the default one; top-level blocks such
    /// as `run:` may follow), this scene's pool, and `shards`.
    pub fn plan(&self, directives: &str, extra: &str, shards: &str) {
        let mut plan = fake_plan(directives, extra, shards)
            .replace("shards:\n", &format!("{}shards:\n", self.pool()));
        if extra.contains("  teardown:") {
            plan = plan.replacen("  teardown: {grace: 2s, port_release: 3s}\n", "", 1);
        }
        self.sandbox.write("harper-shards.yml", &plan);
    }

    /// `harper-shard` in the sandbox, on this scene's pool folder, with no retries from outside.
    pub fn command(&self) -> Command {
        let mut cmd = self.sandbox.command();
        cmd.env("HARPER_SHARD_POOL_DIR", self.sandbox.path("pool"))
            .env_remove("HARPER_SHARD_RETRIES");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::of(self.command().args(args))
    }

    /// Nothing is left of what the test started: no process carrying its mark (they get 15 s to
    /// end, for tests that killed the tool and leave the cleanup to its keepers), nothing in the
    /// work folder, every plan port free on every address of the pool, and a new run on the pool
    /// gets every address of it again.
    pub fn assert_nothing_left(&self) {
        self.assert_nothing_left_once(true);
    }

    /// [`Self::assert_nothing_left`] after the tool was killed: its instance folders are the
    /// next owner's to remove, so the work folder is checked after the follow-up run took every
    /// address back.
    pub fn assert_nothing_left_after_a_kill(&self) {
        self.assert_nothing_left_once(false);
    }

    fn assert_nothing_left_once(&self, folders_first: bool) {
        self.sandbox.wait_for("every marked process to end", Duration::from_secs(15), || {
            self.sandbox.leftovers().is_empty()
        });
        if folders_first {
            self.assert_work_folder_empty();
        }
        for addr in self.addresses() {
            assert!(ports_free(&addr, &DEFAULT_PORTS), "a port on {addr} is still held");
        }
        // One shard per address, each holding its address until all of them hold one: the
        // follow-up run takes back every address of the pool (and removes what a killed run
        // left on it).
        let n = self.count;
        let wait = format!(
            "touch again-$HARPER_SHARD_INDEX; until [ $(ls again-* | wc -l) -ge {n} ]; do sleep 0.02; done"
        );
        let shards: String = (0..n)
            .map(|i| format!("  - name: again-{i}\n    run: \"{wait}\"\n    timeout: 30s\n"))
            .collect();
        let again = fake_plan("", &format!("run: {{concurrency: {n}}}\n"), &shards)
            .replace("shards:\n", &format!("{}shards:\n", self.pool()));
        self.sandbox.write("again.yml", &again);
        Run::of(self.command().args(["run", "again.yml", "--report-dir", "again"])).expect(0);
        let report: serde_json::Value =
            serde_json::from_str(&read(&self.sandbox.path("again/report.json")))
                .expect("report.json is JSON");
        let mut got: Vec<String> = report["shards"]
            .as_array()
            .expect("shards")
            .iter()
            .map(|s| s["address"].as_str().unwrap_or_default().to_owned())
            .collect();
        got.sort_by_key(|a| a.parse::<std::net::Ipv4Addr>().ok());
        assert_eq!(got, self.addresses(), "the follow-up run did not get every address back");
        self.assert_work_folder_empty();
    }

    fn assert_work_folder_empty(&self) {
        assert_empty(&self.sandbox.path("w"));
    }
}

/// `dir` holds nothing (or is not there): what a run leaves in a work folder once it is over.
pub fn assert_empty(dir: &Path) {
    let left: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "{} still holds {left:?}", dir.display());
}

/// A plan whose shards run the fake server with `directives` (the `FAKE_HARPER` value).
/// `shards` is the YAML of the `shards:` list, indented by two spaces.
pub fn fake_plan(directives: &str, extra_harper: &str, shards: &str) -> String {
    format!(
        "version: 1\nharper:\n  runtime: exec\n  bin: {bin}\n  env: {{FAKE_HARPER: \"{directives}\"}}\n  startup: {{idle: 10s, max: 20s}}\n  teardown: {{grace: 2s, port_release: 3s}}\n{extra_harper}shards:\n{shards}",
        bin = fake_harper()
    )
}

/// Is every port of the default plan free on `addr` (bind without SO_REUSEPORT succeeds, and
/// nothing accepts)?
pub fn ports_free(addr: &str, ports: &[u16]) -> bool {
    let ip: std::net::Ipv4Addr = addr.parse().expect("an address");
    ports.iter().all(|&port| {
        let target = std::net::SocketAddr::from((ip, port));
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket.set_reuse_address(true).expect("SO_REUSEADDR");
        socket.bind(&target.into()).is_ok()
            && std::net::TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_err()
    })
}

pub const DEFAULT_PORTS: [u16; 5] = [9925, 9926, 1883, 8883, 9933];

/// The `<testcase>` element named `name` in `xml` (the first), whole.
pub fn testcase(xml: &str, name: &str) -> String {
    let at = xml
        .find(&format!("<testcase name=\"{name}\""))
        .unwrap_or_else(|| panic!("no testcase {name}: {xml}"));
    let rest = &xml[at..];
    let open = rest.find('>').unwrap();
    let end =
        if rest[..open].ends_with('/') { open + 1 } else { rest.find("</testcase>").unwrap() };
    rest[..end].to_owned()
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The `shards:` YAML of one shard, `name`, whose commands use the control socket through the
/// real `harper-shard ctl`: they start an instance named `auth tests` (`i1`) and restart it,
/// kill the shard's own instance and start it again, then start one (`i2`) whose boot fails
/// (the fake server exits 3), which the command shrugs off.
pub fn instances_shard(name: &str) -> String {
    let ctl = harper_shard();
    format!(
        r#"  - name: {name}
    run:
      - "{ctl} ctl start --new --name 'auth tests' && {ctl} ctl restart --id i1 && {ctl} ctl kill && {ctl} ctl start"
      - "{ctl} ctl start --new --set 'env={{\"FAKE_HARPER\":\"exit=3\"}}' || true"
"#
    )
}

/// The leak check itself: a sandbox whose test left a marked process alive fails the test when
/// it is dropped, and the process is killed.
#[test]
fn a_test_that_leaks_a_process_fails_and_the_process_is_killed() {
    /// Ends the `sleep` whatever the test found: a failing leak check must not leak it.
    struct Reaped(std::process::Child);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let sandbox = Sandbox::new();
    let mut leaked = Reaped(
        Command::new("sleep").arg("600").env(MARK, &sandbox.mark).spawn().expect("start sleep"),
    );
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(sandbox)));
    let message = dropped.expect_err("dropping a sandbox with a live marked process must panic");
    let text = message.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(text.contains("leaked 1 process"), "{text}");
    let status = leaked.0.wait().expect("reap sleep");
    assert_eq!(status.signal(), Some(9), "the leaked process was killed");
}
