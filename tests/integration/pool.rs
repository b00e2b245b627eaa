//! The loopback pool across processes, through the real binary on the fake server: many runs
//! sharing a few addresses never overlap on one, a killed run's address is taken at once and
//! what it left is swept, foreign listeners are skipped and named, an unsafe pool directory is
//! refused, and records and `pool status` say who holds what.
//!
//! Every test has its own pool directory and its own address range, so they do not contend
//! with each other or with other test files.

use crate::support;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{Sandbox, fake_plan, run};

/// `harper-shard` from `sandbox`, on the sandbox's own pool directory.
fn pooled(sandbox: &Sandbox) -> Command {
    let mut cmd = sandbox.command();
    cmd.env("HARPER_SHARD_POOL_DIR", sandbox.path("pool"));
    cmd
}

/// The plan's `pool:` and `run:` lines.
fn pool_yaml(start: &str, count: u32, wait: &str, concurrency: usize) -> String {
    format!(
        "pool: {{start: {start}, count: {count}, wait: {wait}}}\nrun: {{concurrency: {concurrency}}}\n"
    )
}

fn shard(name: &str, command: &str) -> String {
    format!("  - name: {name}\n    run: '{command}'\n    timeout: 60s\n")
}

/// Is the process `pid` gone (a zombie counts as gone)?
fn is_gone(pid: u32) -> bool {
    !harper_shard::process::alive(pid)
}

/// Eight runs, three shards each, on a pool of four addresses: the fake server records when it
/// was ready and when it stopped on each address, and no two of those intervals on one
/// address overlap.
#[test]
fn eight_runs_on_four_addresses_never_overlap_on_one_address() {
    let sandbox = Sandbox::new();
    let record = sandbox.path("intervals.log");
    let shards: String = (1..=3).map(|i| shard(&format!("s{i}"), "sleep 0.2")).collect();
    let plan = fake_plan(
        &format!("record={}", record.display()),
        &pool_yaml("127.0.40.2", 4, "2m", 3),
        &shards,
    );
    let plan_file = sandbox.write("harper-shards.yml", &plan);
    let runs: Vec<Child> = (0..8)
        .map(|i| {
            let mut cmd = pooled(&sandbox);
            cmd.arg("run")
                .arg(&plan_file)
                .env("HARPER_SHARD_REPORT_DIR", sandbox.path(&format!("report-{i}")))
                .env("HARPER_SHARD_WORK_DIR", sandbox.path(&format!("w{i}")))
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            cmd.spawn().expect("start a run")
        })
        .collect();
    for (i, child) in runs.into_iter().enumerate() {
        let out = child.wait_with_output().expect("wait for a run");
        assert_eq!(
            out.status.code(),
            Some(0),
            "run {i} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let mut events: BTreeMap<String, Vec<(u128, String)>> = BTreeMap::new();
    for line in support::read(&record).lines() {
        let [addr, what, at] = line.split_whitespace().collect::<Vec<_>>()[..] else {
            panic!("bad record line {line:?}")
        };
        events
            .entry(addr.to_owned())
            .or_default()
            .push((at.parse().expect("nanoseconds"), what.to_owned()));
    }
    let starts: usize = events.values().flatten().filter(|(_, w)| w == "start").count();
    assert_eq!(starts, 24, "every shard of every run started once");
    for (addr, mut list) in events {
        assert!(addr.starts_with("127.0.40."), "{addr} is outside the plan's pool");
        list.sort();
        let order: Vec<&str> = list.iter().map(|(_, w)| w.as_str()).collect();
        let alternating = order.chunks(2).all(|pair| pair == ["start", "end"]);
        assert!(alternating, "two servers were live on {addr} at once: {order:?}");
    }
}

/// A run killed by SIGKILL while its shard runs leaves its address locked by nobody: the next
/// run takes it without waiting for `pool.wait`, and ends what the dead run left running
/// (today its server and its command survive it; they carry its token).
#[test]
fn a_sigkilled_runs_address_is_taken_at_once_and_what_it_left_is_ended() {
    let sandbox = Sandbox::new();
    let pool = pool_yaml("127.0.41.2", 1, "60s", 1);
    let pidfile = sandbox.path("first-harper.pid");
    let first = fake_plan(
        &format!("started-file={}", pidfile.display()),
        &pool,
        &shard("first", "touch first-running; exec sleep 600"),
    );
    let first_file = sandbox.write("first.yml", &first);
    let mut cmd = pooled(&sandbox);
    cmd.arg("run").arg(&first_file).stdout(Stdio::null()).stderr(Stdio::null());
    let mut tool = cmd.spawn().expect("start the first run");
    sandbox.wait_for("the first run's shard to run", Duration::from_secs(30), || {
        sandbox.path("first-running").exists()
    });
    let harper_pid: u32 = support::read(&pidfile).trim().parse().expect("a pid");
    tool.kill().expect("SIGKILL the first run");
    tool.wait().expect("reap the first run");

    let second_file = sandbox.write(
        "second.yml",
        &fake_plan("", &pool, &shard("second", "echo $HARPER_HOSTNAME > second-host")),
    );
    let mut cmd = pooled(&sandbox);
    cmd.arg("run").arg(&second_file);
    let second = run(cmd);
    second.expect(0);
    assert_eq!(support::read(&sandbox.path("second-host")).trim(), "127.0.41.2");
    assert!(
        second.took < Duration::from_secs(20),
        "the second run waited {:?} for a free address",
        second.took
    );
    assert!(is_gone(harper_pid), "the dead run's server (pid {harper_pid}) is still running");
}

/// The sweep itself: a record left beside an unlocked slot names a token; the next acquire
/// ends every process carrying it and says which.
#[test]
fn the_next_acquire_ends_every_process_carrying_a_dead_owners_token() {
    let sandbox = Sandbox::new();
    let token = "0b7e5c52-dead-4bad-9c0d-sweep0000001";
    let mut orphan = Command::new("sleep")
        .arg("600")
        .env(support::MARK, &sandbox.mark)
        .env("HARPER_SHARD_TOKEN", token)
        .spawn()
        .expect("start a process carrying the token");
    let pool_dir = sandbox.path("pool");
    std::fs::create_dir_all(&pool_dir).unwrap();
    std::fs::set_permissions(&pool_dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .unwrap();
    // pid 0 is never a live owner; the record is what a run that died would have left.
    let record = format!(
        r#"{{"owner":{{"pid":0,"start":null}},"token":"{token}","keepers":[],"shard":"ghost","since":1700000000}}"#
    );
    std::fs::write(pool_dir.join("127.0.44.2.json"), record).unwrap();

    sandbox.write(
        "harper-shards.yml",
        &fake_plan("", &pool_yaml("127.0.44.2", 1, "30s", 1), &shard("a", "true")),
    );
    let mut cmd = pooled(&sandbox);
    cmd.arg("run");
    let r = run(cmd);
    r.expect(0);
    let status = orphan.try_wait().expect("poll the orphan");
    assert!(status.is_some(), "the process carrying the dead owner's token is still running");
    let err = r.stderr();
    assert!(
        err.contains("127.0.44.2: shard ghost of harper-shard pid 0 did not clean up; ended what it left running")
            && err.contains(&format!("pid {} (sleep)", orphan.id())),
        "the warning names what was swept: {err}"
    );
}

/// A listener of the test's own on `<first address>:<http port>`, with or without
/// SO_REUSEPORT; the run must skip that address, name the port and this process as its holder,
/// and run on the next one.
fn foreign_listener_is_skipped(first: &str, reuse_port: bool) {
    foreign_listener_on_is_skipped(first, reuse_port, (9926, "http"), "");
}

/// [`foreign_listener_is_skipped`] on `port` (named so by the run), `harper` YAML added to the
/// plan's `harper:` block.
fn foreign_listener_on_is_skipped(
    first: &str,
    reuse_port: bool,
    (port, name): (u16, &str),
    harper: &str,
) {
    let sandbox = Sandbox::new();
    let ip: Ipv4Addr = first.parse().unwrap();
    let next = Ipv4Addr::from(u32::from(ip) + 1);
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.set_reuse_port(reuse_port).unwrap();
    socket.bind(&SocketAddrV4::new(ip, port).into()).expect("bind the foreign listener");
    socket.listen(8).unwrap();

    sandbox.write("cert.pem", "-----BEGIN CERTIFICATE-----\n");
    sandbox.write("key.pem", "-----BEGIN RSA PRIVATE KEY-----\n");
    let extra = format!("{harper}{}", pool_yaml(first, 2, "30s", 1));
    sandbox.write(
        "harper-shards.yml",
        &fake_plan("", &extra, &shard("a", "echo $HARPER_HOSTNAME > host")),
    );
    let mut cmd = pooled(&sandbox);
    cmd.arg("run");
    let r = run(cmd);
    r.expect(0);
    assert_eq!(
        support::read(&sandbox.path("host")).trim(),
        next.to_string(),
        "the shard ran on the next address"
    );
    let me = std::process::id();
    let expected = format!(
        "{first} skipped: port {port} ({name}) is held by pid {me} ({})",
        harper_shard::process::command(me)
    );
    assert!(r.stderr().contains(&expected), "expected `{expected}` in:\n{}", r.stderr());
    drop(socket);
}

#[test]
fn a_plain_foreign_listener_makes_the_pool_skip_the_address_and_name_its_holder() {
    foreign_listener_is_skipped("127.0.42.2", false);
}

#[test]
fn a_reuseport_foreign_listener_makes_the_pool_skip_the_address_and_name_its_holder() {
    foreign_listener_is_skipped("127.0.43.2", true);
}

/// With `tls` in its config an instance binds HTTPS too: the canary covers that port.
#[test]
fn a_foreign_listener_on_the_https_port_of_a_tls_instance_makes_the_pool_skip_the_address() {
    let tls = "  config: {tls: {certificate: cert.pem, privateKey: key.pem}}\n";
    foreign_listener_on_is_skipped("127.0.55.2", false, (9927, "https"), tls);
}

/// Sets up an unsafe pool directory with `make`, runs, and expects exit 3 with `hint` in the
/// error next to the directory's name.
fn unsafe_pool_dir_is_refused(make: impl FnOnce(&std::path::Path), hint: &str) {
    let sandbox = Sandbox::new();
    let dir = sandbox.path("pool");
    make(&dir);
    sandbox.write(
        "harper-shards.yml",
        &fake_plan("", &pool_yaml("127.0.45.2", 1, "5s", 1), &shard("a", "touch ran")),
    );
    let mut cmd = pooled(&sandbox);
    cmd.arg("run");
    let r = run(cmd);
    r.expect(3);
    let err = r.stderr();
    assert!(err.contains(&dir.display().to_string()), "the error names the directory: {err}");
    assert!(err.contains(hint), "the error says what to do (`{hint}`): {err}");
    assert!(!sandbox.path("ran").exists(), "a shard ran on a refused pool");
}

#[test]
fn a_pool_directory_that_is_a_symlink_is_refused_with_exit_3() {
    unsafe_pool_dir_is_refused(
        |dir| {
            let target = dir.with_file_name("elsewhere");
            std::fs::create_dir_all(&target).unwrap();
            std::os::unix::fs::symlink(&target, dir).unwrap();
        },
        "set HARPER_SHARD_POOL_DIR to a directory of your own",
    );
}

#[test]
fn a_world_writable_pool_directory_is_refused_with_exit_3() {
    unsafe_pool_dir_is_refused(
        |dir| {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
                .unwrap();
        },
        "chmod 700",
    );
}

#[test]
fn a_slot_lock_that_is_a_symlink_is_refused() {
    let sandbox = Sandbox::new();
    let dir = sandbox.path("pool");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(sandbox.path("victim"), dir.join("127.0.46.2.lock")).unwrap();
    sandbox.write(
        "harper-shards.yml",
        &fake_plan("", &pool_yaml("127.0.46.2", 1, "5s", 1), &shard("a", "touch ran")),
    );
    let mut cmd = pooled(&sandbox);
    cmd.arg("run");
    let r = run(cmd);
    r.expect(3);
    assert!(
        r.stderr().contains("127.0.46.2.lock (is it a symbolic link?); remove it"),
        "{}",
        r.stderr()
    );
    assert!(!sandbox.path("victim").exists(), "the symbolic link was followed");
}

/// Starts a run whose one shard waits for the file `proceed`; returns once the shard runs.
fn holding_run(sandbox: &Sandbox, start: &str) -> Child {
    let plan = fake_plan(
        "",
        &pool_yaml(start, 1, "30s", 1),
        &shard(
            "holder",
            "echo $HARPER_SHARD_TOKEN > token; touch running; until [ -e proceed ]; do sleep 0.02; done",
        ),
    );
    let file = sandbox.write("holder.yml", &plan);
    let mut cmd = pooled(sandbox);
    cmd.arg("run").arg(file).stdout(Stdio::null()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("start the holding run");
    sandbox.wait_for("the holding shard to run", Duration::from_secs(30), || {
        sandbox.path("running").exists()
    });
    child
}

fn finish(sandbox: &Sandbox, child: Child) {
    sandbox.write("proceed", "");
    let out = child.wait_with_output().expect("wait for the holding run");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_record_names_the_token_and_shard_and_pool_status_shows_the_holding_run() {
    let sandbox = Sandbox::new();
    let child = holding_run(&sandbox, "127.0.47.2");
    let record_path = sandbox.path("pool/127.0.47.2.json");
    let record: serde_json::Value =
        serde_json::from_str(&support::read(&record_path)).expect("the record is JSON");
    let token = support::read(&sandbox.path("token"));
    let lease = record["token"].as_str().expect("a token");
    let below = token.trim().strip_prefix(lease).unwrap_or_default();
    assert!(
        below.starts_with('/'),
        "the shard's processes carry a token below the record's ({lease}): {token}"
    );
    assert_eq!(record["shard"], "holder");
    assert_eq!(record["owner"]["pid"], child.id());
    assert!(record["owner"]["start"].as_u64().is_some(), "the owner's start time is recorded");

    let mut cmd = pooled(&sandbox);
    cmd.args(["pool", "status", "--format", "json", "--plan-file", "holder.yml"]);
    let status = run(cmd);
    status.expect(0);
    let json: serde_json::Value =
        serde_json::from_str(&status.stdout()).expect("pool status prints JSON");
    let slot = &json["slots"][0];
    assert_eq!(slot["address"], "127.0.47.2");
    assert_eq!(slot["state"], "held");
    assert_eq!(slot["shard"], "holder");
    assert_eq!(slot["owner_pid"], child.id());

    finish(&sandbox, child);
    assert!(!record_path.exists(), "a clean release removes the record");
}

/// A run that finds every address held says every 10 s what it waits for, and after
/// `pool.wait` exits 3 with a table of who holds what.
#[test]
fn an_exhausted_pool_says_what_it_waits_for_then_exits_3_with_a_table_of_who_holds_what() {
    let sandbox = Sandbox::new();
    let child = holding_run(&sandbox, "127.0.48.2");
    sandbox.write(
        "waiter.yml",
        &fake_plan("", &pool_yaml("127.0.48.2", 1, "11s", 1), &shard("waiter", "touch waiter-ran")),
    );
    let mut cmd = pooled(&sandbox);
    cmd.args(["run", "waiter.yml"]);
    let r = run(cmd);
    r.expect(3);
    let err = r.stderr();
    assert!(
        err.contains(
            "waiting 10s for an address: 1 held by harper-shard runs, 0 busy with other listeners"
        ),
        "{err}"
    );
    assert!(err.contains("no free address in the pool after 11s"), "{err}");
    let row = err
        .lines()
        .find(|l| l.starts_with("127.0.48.2"))
        .unwrap_or_else(|| panic!("no table row for the address: {err}"));
    assert!(
        row.contains(&child.id().to_string())
            && row.contains("holder")
            && row.contains("held by a run"),
        "{row}"
    );
    assert!(!sandbox.path("waiter-ran").exists());
    finish(&sandbox, child);
}

#[test]
fn pool_status_shows_a_foreign_listener_as_busy_and_names_its_holder() {
    let sandbox = Sandbox::new();
    let listener =
        std::net::TcpListener::bind("127.0.49.3:9925").expect("bind the foreign listener");
    sandbox.write(
        "harper-shards.yml",
        &fake_plan("", &pool_yaml("127.0.49.2", 2, "5s", 1), &shard("a", "true")),
    );
    let mut cmd = pooled(&sandbox);
    cmd.args(["pool", "status"]);
    let r = run(cmd);
    r.expect(0);
    let out = r.stdout();
    let row = |addr: &str| {
        out.lines()
            .find(|l| l.starts_with(addr))
            .unwrap_or_else(|| panic!("no row for {addr}:\n{out}"))
            .to_owned()
    };
    assert!(row("127.0.49.2").ends_with("free"), "{out}");
    let busy = row("127.0.49.3");
    assert!(busy.contains("busy: port 9925 (operations)"), "{busy}");
    assert!(
        busy.contains(&format!("by pid {}", std::process::id())),
        "the holder is named: {busy}"
    );
    drop(listener);
}

#[test]
fn pool_validate_passes_when_every_address_binds() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "harper-shards.yml",
        &fake_plan("", &pool_yaml("127.0.50.2", 8, "5s", 1), &shard("a", "true")),
    );
    let mut cmd = pooled(&sandbox);
    cmd.args(["pool", "validate"]);
    let r = run(cmd);
    r.expect(0);
    assert!(r.stdout().contains("all 8 addresses from 127.0.50.2 bind"), "{}", r.stdout());
}

/// Without a plan, the `pool` commands use the defaults as a run would resolve them, the
/// fallback variables of today's harness included.
#[test]
fn pool_status_without_a_plan_honours_the_fallback_pool_variables() {
    let sandbox = Sandbox::new();
    let mut cmd = pooled(&sandbox);
    cmd.args(["pool", "status"])
        .env("HARPER_INTEGRATION_TEST_LOOPBACK_POOL_START", "127.0.51.2")
        .env("HARPER_INTEGRATION_TEST_LOOPBACK_POOL_COUNT", "2");
    let r = run(cmd);
    r.expect(0);
    let out = r.stdout();
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("127."))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(rows, ["127.0.51.2", "127.0.51.3"], "{}", r.stdout());
}

/// A private pool directory with `make` applied to it, for the tests that plant things there.
fn planted_pool(sandbox: &Sandbox, make: impl FnOnce(&std::path::Path)) {
    let dir = sandbox.path("pool");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    make(&dir);
}

/// One broken slot among good ones costs that address only: the run warns, naming it, and
/// takes the next.
fn one_broken_slot_is_skipped(start: &str, next: &str, break_it: impl FnOnce(&std::path::Path)) {
    let sandbox = Sandbox::new();
    planted_pool(&sandbox, break_it);
    let plan =
        fake_plan("", &pool_yaml(start, 2, "5s", 1), &shard("a", "echo $HARPER_HOSTNAME > host"));
    sandbox.write("harper-shards.yml", &plan);
    let mut cmd = pooled(&sandbox);
    cmd.arg("run");
    let r = run(cmd);
    r.expect(0);
    assert_eq!(support::read(&sandbox.path("host")).trim(), next);
    assert!(
        r.stderr().contains(&format!("{start} skipped: ")),
        "the broken slot is named: {}",
        r.stderr()
    );
}

#[test]
fn a_slot_lock_that_is_a_directory_is_skipped_and_the_next_address_used() {
    one_broken_slot_is_skipped("127.0.54.2", "127.0.54.3", |dir| {
        std::fs::create_dir(dir.join("127.0.54.2.lock")).unwrap()
    });
}

#[test]
fn a_slot_lock_that_is_a_fifo_is_skipped_and_the_next_address_used() {
    one_broken_slot_is_skipped("127.0.49.5", "127.0.49.6", |dir| {
        nix::unistd::mkfifo(&dir.join("127.0.49.5.lock"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    });
}

#[test]
fn a_slot_record_that_is_a_directory_is_skipped_and_the_next_address_used() {
    one_broken_slot_is_skipped("127.0.49.8", "127.0.49.9", |dir| {
        std::fs::create_dir(dir.join("127.0.49.8.json")).unwrap()
    });
}

/// A record names pids, and pids are reused: a keeper it names is ended only when it is
/// provably the recorded process (ours, with the recorded start time). A bystander named with
/// no start time, or with another one, lives on.
#[test]
fn a_record_naming_a_process_that_is_not_provably_its_keeper_does_not_kill_it() {
    let sandbox = Sandbox::new();
    let mut bystanders: Vec<std::process::Child> = (0..2)
        .map(|_| {
            Command::new("sleep")
                .arg("600")
                .env(support::MARK, &sandbox.mark)
                .spawn()
                .expect("start a bystander")
        })
        .collect();
    let (a, b) = (bystanders[0].id(), bystanders[1].id());
    planted_pool(&sandbox, |dir| {
        let record = format!(
            r#"{{"owner":{{"pid":0,"start":null}},"token":"nobody-carries-this","keepers":[{{"pid":{a},"start":null}},{{"pid":{b},"start":1}}],"shard":"ghost","since":1700000000}}"#
        );
        std::fs::write(dir.join("127.0.49.11.json"), record).unwrap();
    });
    sandbox.write(
        "harper-shards.yml",
        &fake_plan("", &pool_yaml("127.0.49.11", 1, "5s", 1), &shard("a", "true")),
    );
    let mut cmd = pooled(&sandbox);
    cmd.arg("run");
    run(cmd).expect(0);
    for child in &mut bystanders {
        assert!(
            child.try_wait().unwrap().is_none(),
            "pid {} was killed on a record's word alone",
            child.id()
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

/// A run probes every port any of its shards uses before it hands an address out, so `pool
/// status` and `pool validate` look at all of them, not only the first shard's.
#[test]
fn pool_status_probes_the_ports_of_every_shard_not_only_the_first() {
    let sandbox = Sandbox::new();
    let listener =
        std::net::TcpListener::bind("127.0.52.2:19925").expect("bind the foreign listener");
    let shards = format!(
        "{}{}    harper: {{ports: {{operations: 19925}}}}\n",
        shard("a", "true"),
        shard("b", "true")
    );
    sandbox
        .write("harper-shards.yml", &fake_plan("", &pool_yaml("127.0.52.2", 1, "5s", 1), &shards));
    let mut cmd = pooled(&sandbox);
    cmd.args(["pool", "status", "--format", "json"]);
    let r = run(cmd);
    r.expect(0);
    let json: serde_json::Value =
        serde_json::from_str(&r.stdout()).expect("pool status prints JSON");
    let slot = &json["slots"][0];
    assert_eq!(slot["state"], "busy", "{slot}");
    assert_eq!(slot["port"], 19925, "{slot}");
    drop(listener);
}
