//! Claims about real Harper (npm harperdb@4.7.29, installed into the cache on first use): the
//! README's main command works, each shard gets its own instance on its own address, and nothing
//! — process, port or directory — is left behind. If Harper cannot be installed these tests
//! fail; they never skip.

use crate::support;

use std::sync::Mutex;

use support::{DEFAULT_PORTS, Sandbox};

/// Real Harper needs about a core to boot: these tests take turns, so that what they measure
/// is Harper, not four of them fighting over two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn example_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

#[test]
fn the_example_plan_passes_its_three_shards_never_two_live_on_one_address_and_leaves_nothing() {
    let _turn = turn();
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.command();
    cmd.current_dir(example_dir()).args(["run", "harper-shards.yml"]);
    let out = cmd.output().expect("run harper-shard");
    let run = support::Run { output: out, took: Default::default() };
    run.expect(0);
    let report = sandbox.report();
    let shards = report["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 3);
    let mut spans = Vec::new();
    for shard in shards {
        assert_eq!(shard["status"], "passed", "{shard}");
        let addr = shard["address"].as_str().unwrap().to_owned();
        assert!(support::ports_free(&addr, &DEFAULT_PORTS), "ports on {addr} still held");
        spans.push((
            addr,
            shard["phases"]["address"].as_f64(),
            shard["phases"]["finished"].as_f64(),
        ));
    }
    // Addresses may be reused by shards that ran one after the other, never by two at once.
    for (i, a) in spans.iter().enumerate() {
        for b in &spans[i + 1..] {
            let overlap = a.1.unwrap() < b.2.unwrap() && b.1.unwrap() < a.2.unwrap();
            assert!(!(a.0 == b.0 && overlap), "two live shards on {}", a.0);
        }
    }
    let work = sandbox.path("w");
    support::assert_empty(&work);
    let hdb_log = sandbox.path("report/database/harper/hdb.log");
    assert!(hdb_log.is_file(), "Harper's hdb.log is kept in the report");
}

/// A one-shard plan on real Harper, on a pool of its own, whose command checks the instance.
fn one_real_shard(sandbox: &Sandbox, pool_start: &str) {
    sandbox.write("health.mjs", "const r = await fetch(process.env.HARPER_OPERATIONS_API_URL + '/health');\nprocess.exit(r.ok ? 0 : 1);\n");
    sandbox.write(
        "harper-shards.yml",
        &format!("version: 1\npool: {{start: {pool_start}, count: 2}}\nshards:\n  - name: a\n    run: node health.mjs\n"),
    );
}

/// Runs the plan with `TMPDIR` set and no work directory of the test's own: the tool derives
/// its instance paths from the temporary directory, as on a CI runner. Returns the boot time.
fn boot_under_tmpdir(sandbox: &Sandbox, tmpdir: &std::path::Path) -> (support::Run, f64) {
    std::fs::create_dir_all(tmpdir).unwrap();
    let mut cmd = sandbox.command();
    cmd.env_remove("HARPER_SHARD_WORK_DIR")
        .env("TMPDIR", tmpdir)
        .env("HARPER_SHARD_POOL_DIR", sandbox.path("pool"))
        .arg("run");
    let run =
        support::Run { output: cmd.output().expect("run harper-shard"), took: Default::default() };
    run.expect(0);
    let report = sandbox.report();
    let shard = &report["shards"][0];
    let boot =
        shard["phases"]["ready"].as_f64().unwrap() - shard["phases"]["address"].as_f64().unwrap();
    (run, boot)
}

/// Harper's path check backtracks exponentially on a long run of path characters followed by
/// any other; a 40-character temporary directory made only of path characters boots normally.
#[test]
fn real_harper_boots_within_45s_under_a_long_dot_free_tmpdir() {
    let _turn = turn();
    let sandbox = Sandbox::new();
    one_real_shard(&sandbox, "127.0.60.2");
    let tmpdir = sandbox.path("runner_work_temp_directory_40");
    assert_eq!(tmpdir.to_str().unwrap().len(), 47, "{}", tmpdir.display());
    let (_, boot) = boot_under_tmpdir(&sandbox, &tmpdir);
    // Normal is 2.5–15 s here; the hazard makes it the idle cap (60 s or more).
    assert!(boot < 45.0, "the boot took {boot:.1}s");
    support::assert_empty(&tmpdir.join("hs-0"));
}

/// A dot in the temporary directory (`/home/runner/work/_temp`-style names often have one)
/// would hang every boot: the tool moves its instance directories to a safe place and says so.
#[test]
fn real_harper_boots_within_45s_under_a_dotted_tmpdir() {
    let _turn = turn();
    let sandbox = Sandbox::new();
    one_real_shard(&sandbox, "127.0.60.5");
    let (run, boot) = boot_under_tmpdir(&sandbox, &sandbox.path("home.runner_work_temp"));
    assert!(boot < 45.0, "the boot took {boot:.1}s");
    assert!(
        run.stderr().contains("instance directories go to /tmp/hs-"),
        "the move is said: {}",
        run.stderr()
    );
}

/// The example plan with `template: off`: every instance a fresh install, as before templates.
#[test]
fn the_example_plan_passes_with_templates_off() {
    let _turn = turn();
    let sandbox = Sandbox::new();
    let plan = support::read(&example_dir().join("harper-shards.yml"))
        .replace("  package: harperdb@4.7.29\n", "  package: harperdb@4.7.29\n  template: off\n");
    assert!(plan.contains("template: off"));
    sandbox.write("harper-shards.yml", &plan);
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(example_dir().join("tests"))
        .arg(&sandbox.dir)
        .status()
        .unwrap();
    assert!(copied.success());
    let mut cmd = sandbox.command();
    cmd.args(["run", "harper-shards.yml"]);
    support::Run { output: cmd.output().expect("run harper-shard"), took: Default::default() }
        .expect(0);
    for shard in sandbox.report()["shards"].as_array().unwrap() {
        assert_eq!(shard["status"], "passed", "{shard}");
    }
}

/// What each shard of the equivalence plan records about its instance.
const PROBE: &str = r#"
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import tls from 'node:tls';
const url = process.env.HARPER_OPERATIONS_API_URL;
const basic = 'Basic ' + Buffer.from(`${process.env.HARPER_ADMIN_USERNAME}:${process.env.HARPER_ADMIN_PASSWORD}`).toString('base64');
const op = async (body, auth = basic) => {
  const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: auth }, body: JSON.stringify(body) });
  return { status: r.status, body: await r.json() };
};
const name = process.argv[2];
const config = await op({ operation: 'get_configuration' });
if (config.status !== 200) throw new Error(`get_configuration: ${config.status} ${JSON.stringify(config.body)}`);
const root = process.env.HARPER_ROOTPATH, host = process.env.HARPER_HOSTNAME;
const normal = JSON.stringify(config.body).split(root).join('<ROOT>').split(host).join('<HOST>');
const publicKey = readFileSync(`${root}/keys/.jwtPublic.key`, 'utf8');
let token = null, foreign = null;
if (name === 'copy-a') {
  const made = await op({ operation: 'create_authentication_tokens', username: process.env.HARPER_ADMIN_USERNAME, password: process.env.HARPER_ADMIN_PASSWORD });
  token = made.body.operation_token;
  writeFileSync('token-a', token);
}
if (name === 'copy-b') {
  const until = Date.now() + 120000;
  while (!existsSync('token-a') && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  foreign = (await op({ operation: 'describe_all' }, `Bearer ${readFileSync('token-a', 'utf8')}`)).status;
  const own = await op({ operation: 'create_authentication_tokens', username: process.env.HARPER_ADMIN_USERNAME, password: process.env.HARPER_ADMIN_PASSWORD });
  token = (await op({ operation: 'describe_all' }, `Bearer ${own.body.operation_token}`)).status;
}
// The public key of the certificate the replication port serves: the copy's own TLS key signs it.
const replicationKey = await new Promise((resolve, reject) => {
  const socket = tls.connect({ host, port: 9933, rejectUnauthorized: false }, () => {
    resolve(socket.getPeerCertificate().modulus);
    socket.end();
  });
  socket.on('error', reject);
});
writeFileSync(`${name}.json`, JSON.stringify({ normal, publicKey, token, foreign, replicationKey }));
"#;

/// A templated instance cannot be told from a fresh install on its address: the same
/// configuration once its directory and address are named alike, its own JWT keys and TLS key,
/// and a token of one instance is refused by another.
#[test]
fn a_templated_instance_is_configured_like_a_fresh_one_with_keys_of_its_own() {
    let _turn = turn();
    let sandbox = Sandbox::new();
    sandbox.write("probe.mjs", PROBE);
    let shard = |name: &str, template: &str| {
        format!(
            "  - name: {name}\n    harper: {{template: {template}}}\n    run: node probe.mjs {name}\n"
        )
    };
    let plan = format!(
        "version: 1\npool: {{start: 127.0.62.2, count: 3}}\nrun: {{concurrency: 3}}\nshards:\n{}{}{}",
        shard("fresh", "off"),
        shard("copy-a", "on"),
        shard("copy-b", "on")
    );
    sandbox.write("harper-shards.yml", &plan);
    let stats = sandbox.path("boot-cache.jsonl");
    let mut cmd = sandbox.command();
    cmd.arg("run")
        .env("HARPER_SHARD_POOL_DIR", sandbox.path("pool"))
        .env("HARPER_SHARD_BOOT_STATS", &stats);
    support::Run { output: cmd.output().expect("run harper-shard"), took: Default::default() }
        .expect(0);
    let seen = |name: &str| -> serde_json::Value {
        serde_json::from_str(&support::read(&sandbox.path(&format!("{name}.json")))).unwrap()
    };
    let (fresh, a, b) = (seen("fresh"), seen("copy-a"), seen("copy-b"));
    assert_eq!(
        a["normal"], fresh["normal"],
        "a template copy's configuration differs from a fresh install's"
    );
    assert_eq!(b["normal"], fresh["normal"]);
    assert_ne!(a["publicKey"], b["publicKey"], "two live copies share their JWT keys");
    assert_ne!(a["publicKey"], fresh["publicKey"]);
    assert!(a["replicationKey"].is_string(), "{a}");
    assert_ne!(a["replicationKey"], b["replicationKey"], "two live copies share their TLS key");
    assert_ne!(a["replicationKey"], fresh["replicationKey"]);
    assert_eq!(b["token"], 200, "a copy accepts its own tokens");
    assert_ne!(b["foreign"], 200, "a copy accepted a token of another instance");

    // Both copies booted with the preload (on node 22.1 and later beside Node's compile cache,
    // which `on_node_24_…` checks), and V8 took all of its code; the fresh install ran without it.
    let read = preload_reads(&stats);
    assert_eq!(read.len(), 2, "one boot-cache record per copy: {read:?}");
    for s in &read {
        assert!(
            s["code"]["hit"].as_u64().unwrap() > 1000
                && s["code"]["rejected"] == 0
                && s["code"]["miss"] == 0,
            "{s}"
        );
        assert!(s["resolve"]["hit"].as_u64().unwrap() > 1000, "{s}");
    }

    // HARPER_SHARD_BOOT_CACHE=off: the same template, booted without it.
    std::fs::remove_file(&stats).unwrap();
    sandbox.write(
        "harper-shards.yml",
        &format!(
            "version: 1\npool: {{start: 127.0.62.2, count: 1}}\nshards:\n{}",
            shard("copy-a", "on")
        ),
    );
    let mut cmd = sandbox.command();
    cmd.arg("run")
        .env("HARPER_SHARD_POOL_DIR", sandbox.path("pool"))
        .env("HARPER_SHARD_BOOT_STATS", &stats)
        .env("HARPER_SHARD_BOOT_CACHE", "off");
    support::Run { output: cmd.output().expect("run harper-shard"), took: Default::default() }
        .expect(0);
    assert_eq!(seen("copy-a")["normal"], fresh["normal"]);
    assert!(!stats.exists(), "HARPER_SHARD_BOOT_CACHE=off still loaded the cache");
}

/// With `tls` in its config a templated instance serves HTTPS on its address with the
/// certificate the test made for it (verified against it), and after teardown that port is free
/// like the others and nothing is left.
#[test]
fn a_tls_instance_answers_https_with_the_tests_certificate_and_frees_its_port() {
    let _turn = turn();
    let sandbox = Sandbox::new();
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=harper-shard-test",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.56.2", "-keyout"])
        .arg(sandbox.path("key.pem"))
        .arg("-out")
        .arg(sandbox.path("cert.pem"))
        .output()
        .expect("run openssl");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    sandbox.write(
        "https.mjs",
        "import https from 'node:https';\nimport { readFileSync, writeFileSync } from 'node:fs';\n\
         const ca = readFileSync('cert.pem');\n\
         const answer = await new Promise((resolve, reject) => {\n\
           https.get(process.env.HARPER_HTTPS_URL, { ca }, (r) => { r.resume(); resolve({ status: r.statusCode, fingerprint: r.socket.getPeerCertificate().fingerprint256 }); }).on('error', reject);\n\
         });\nwriteFileSync('https.json', JSON.stringify({ url: process.env.HARPER_HTTPS_URL, ...answer }));\n",
    );
    sandbox.write(
        "harper-shards.yml",
        "version: 1\npool: {start: 127.0.56.2, count: 1}\nharper:\n  template: on\n  config: {tls: {certificate: cert.pem, privateKey: key.pem}}\nshards:\n  - name: a\n    run: node https.mjs\n",
    );
    let mut cmd = sandbox.command();
    cmd.arg("run").env("HARPER_SHARD_POOL_DIR", sandbox.path("pool"));
    support::Run { output: cmd.output().expect("run harper-shard"), took: Default::default() }
        .expect(0);
    let seen: serde_json::Value =
        serde_json::from_str(&support::read(&sandbox.path("https.json"))).unwrap();
    assert_eq!(seen["url"], "https://127.0.56.2:9927");
    assert!(seen["status"].is_number(), "Harper answered over HTTPS: {seen}");
    let ours = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(sandbox.path("cert.pem"))
        .output()
        .unwrap();
    let ours = String::from_utf8_lossy(&ours.stdout).trim().rsplit('=').next().unwrap().to_owned();
    assert_eq!(seen["fingerprint"], ours.as_str(), "Harper served another certificate");
    let ports: Vec<u16> = DEFAULT_PORTS.iter().copied().chain([9927]).collect();
    assert!(support::ports_free("127.0.56.2", &ports), "a port on 127.0.56.2 is still held");
    let instance = &sandbox.report()["shards"][0];
    assert!(instance["cause"].is_null(), "{instance}");
    support::assert_empty(&sandbox.path("w"));
}

/// The lines of Node's compile-cache debug output (`NODE_DEBUG_NATIVE=COMPILE_CACHE`) in one
/// life's stderr that say V8 took a file's code from the cache, by file.
fn compile_cache_hits(stderr: &str) -> std::collections::BTreeMap<String, usize> {
    let mut hits = std::collections::BTreeMap::new();
    for line in stderr.lines() {
        if let Some(rest) = line.strip_prefix("[compile cache] V8 code cache for CommonJS ")
            && let Some((file, _)) = rest.split_once(" was accepted")
        {
            *hits.entry(file.to_owned()).or_default() += 1;
        }
    }
    hits
}

/// Shell lines for a shard command that write its own Harper's environment to `file`, one
/// variable a line.
fn harper_environ_into(file: &str) -> String {
    let ctl = support::harper_shard();
    format!(
        "{ctl} ctl status --id main --json > s.json\n\
         pid=$(node -p \"JSON.parse(require('fs').readFileSync('s.json')).instance.pid\")\n\
         xargs -0 -n1 < /proc/$pid/environ > {file}\n"
    )
}

/// The boot-cache records of the preload's reading runs (not the template's build) in `stats`.
fn preload_reads(stats: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(stats).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|s| s["produce"] == false)
        .collect()
}

/// On node 24 a templated instance boots every life with the preload and with Node's compile
/// cache, in a copy of its own, for what the preload leaves to Node; with
/// `HARPER_SHARD_BOOT_CACHE=compile`, with Node's cache alone, from which both of Harper's
/// threads take their code; with `=off`, with neither.
#[test]
fn on_node_24_every_life_of_a_templated_instance_boots_with_the_preload_and_its_own_compile_cache()
{
    let _turn = turn();
    let sandbox = Sandbox::new();
    let ctl = support::harper_shard();
    // The first life's Harper says where its compile cache is; then a kill and a start.
    sandbox.write(
        "lives.sh",
        &format!("set -e\n{}{ctl} ctl kill\n{ctl} ctl start\n", harper_environ_into("environ")),
    );
    sandbox.write(
        "harper-shards.yml",
        "version: 1\npool: {start: 127.0.66.2, count: 1}\nharper: {template: on}\nshards:\n  - name: a\n    run: sh lives.sh\n",
    );
    let stats = sandbox.path("boot-cache.jsonl");
    let run = |boot_cache: Option<&str>| {
        let _ = std::fs::remove_file(&stats);
        let mut cmd = sandbox.command();
        cmd.arg("run")
            .env("PATH", support::node::path_with(&support::node_bin(24)))
            .env("HARPER_SHARD_POOL_DIR", sandbox.path("pool"))
            .env("HARPER_SHARD_BOOT_STATS", &stats)
            .env("NODE_DEBUG_NATIVE", "COMPILE_CACHE");
        match boot_cache {
            Some(value) => cmd.env("HARPER_SHARD_BOOT_CACHE", value),
            None => cmd.env_remove("HARPER_SHARD_BOOT_CACHE"),
        };
        support::Run { output: cmd.output().expect("run harper-shard"), took: Default::default() }
            .expect(0);
    };
    let lives = ["report/a/harper/stderr.log", "report/a/harper/boot-2/stderr.log"];
    let own_compile_cache = || {
        let environ = support::read(&sandbox.path("environ"));
        let own = environ
            .lines()
            .find_map(|l| l.strip_prefix("NODE_COMPILE_CACHE="))
            .unwrap_or_else(|| panic!("no compile cache:\n{environ}"))
            .to_owned();
        assert!(
            own.starts_with(sandbox.path("w").to_str().unwrap()),
            "the instance's compile cache is not its own: {own}"
        );
    };

    run(None);
    own_compile_cache();
    let environ = support::read(&sandbox.path("environ"));
    assert!(
        environ.lines().any(|l| l.starts_with("NODE_OPTIONS=") && l.contains("preload.cjs")),
        "the first life ran without the preload:\n{environ}"
    );
    // The preload writes its record as Harper's main thread exits: the SIGKILLed first life
    // writes none, the second (stopped at teardown) one.
    let reads = preload_reads(&stats);
    assert_eq!(reads.len(), 1, "one preload record for the second life: {reads:?}");
    for s in &reads {
        assert!(
            s["code"]["hit"].as_u64().unwrap() > 1000
                && s["code"]["rejected"] == 0
                && s["code"]["miss"] == 0,
            "{s}"
        );
    }
    for life in lives {
        let log = support::read(&sandbox.path(life));
        assert!(
            log.contains("[compile cache]") && log.contains("was accepted"),
            "{life}: Node's compile cache served nothing"
        );
        assert!(!log.contains("was rejected"), "{life}: V8 rejected cached code");
    }

    run(Some("compile"));
    own_compile_cache();
    for life in lives {
        let hits = compile_cache_hits(&support::read(&sandbox.path(life)));
        let both = hits.values().filter(|&&n| n >= 2).count();
        assert!(
            both > 1000,
            "{life}: {both} files came from the cache on both threads ({} on one)",
            hits.len()
        );
        assert!(
            !support::read(&sandbox.path(life)).contains("was rejected"),
            "{life}: V8 rejected cached code"
        );
    }
    assert!(!stats.exists(), "the preload was loaded with HARPER_SHARD_BOOT_CACHE=compile");

    run(Some("off"));
    for life in lives {
        assert!(
            !support::read(&sandbox.path(life)).contains("[compile cache]"),
            "{life}: HARPER_SHARD_BOOT_CACHE=off still cached"
        );
    }
    assert!(!support::read(&sandbox.path("environ")).contains("NODE_COMPILE_CACHE="));
    assert!(!stats.exists(), "HARPER_SHARD_BOOT_CACHE=off still loaded the preload");
}

/// On node 24 the shard's own Harper boots with Node's compile cache and the preload, and the
/// shard's command gets neither from it (README, "What a shard command sees"): no
/// `NODE_COMPILE_CACHE`, no preload in `NODE_OPTIONS`.
#[test]
fn a_shard_command_gets_neither_the_compile_cache_nor_the_preload_its_harper_boots_with() {
    let _turn = turn();
    let sandbox = Sandbox::new();
    sandbox.write(
        "both.sh",
        &format!("set -e\nenv > command.env\n{}", harper_environ_into("harper.env")),
    );
    sandbox.write(
        "harper-shards.yml",
        "version: 1\npool: {start: 127.0.74.2, count: 1}\nharper: {template: on}\nshards:\n  - name: a\n    run: sh both.sh\n",
    );
    let mut cmd = sandbox.command();
    cmd.arg("run")
        .env("PATH", support::node::path_with(&support::node_bin(24)))
        .env("HARPER_SHARD_POOL_DIR", sandbox.path("pool"))
        .env_remove("HARPER_SHARD_BOOT_CACHE")
        .env_remove("NODE_COMPILE_CACHE")
        .env_remove("NODE_OPTIONS");
    support::Run { output: cmd.output().expect("run harper-shard"), took: Default::default() }
        .expect(0);
    let harper = support::read(&sandbox.path("harper.env"));
    assert!(
        harper.lines().any(|l| l.starts_with("NODE_COMPILE_CACHE=")),
        "Harper booted without a compile cache, so this shows nothing:\n{harper}"
    );
    assert!(
        harper.lines().any(|l| l.starts_with("NODE_OPTIONS=") && l.contains("preload.cjs")),
        "Harper booted without the preload, so this shows nothing:\n{harper}"
    );
    let command = support::read(&sandbox.path("command.env"));
    assert!(
        !command.lines().any(|l| l.starts_with("NODE_COMPILE_CACHE=")),
        "the command got a compile cache:\n{command}"
    );
    assert!(!command.contains("preload.cjs"), "the command got the preload:\n{command}");
}

/// `harper: {threads: 0}` boots Harper without a worker thread: `system_information` lists none,
/// where an instance of the same template without the key lists its one worker.
#[test]
fn threads_0_boots_harper_without_a_worker_thread_and_the_default_with_one() {
    let _turn = turn();
    let sandbox = Sandbox::new();
    sandbox.write(
        "threads.mjs",
        "import { writeFileSync } from 'node:fs';\n\
         const auth = 'Basic ' + Buffer.from(`${process.env.HARPER_ADMIN_USERNAME}:${process.env.HARPER_ADMIN_PASSWORD}`).toString('base64');\n\
         const r = await fetch(process.env.HARPER_OPERATIONS_API_URL, { method: 'POST', headers: { 'content-type': 'application/json', authorization: auth },\n\
           body: JSON.stringify({ operation: 'system_information', attributes: ['threads'] }) });\n\
         writeFileSync(`${process.argv[2]}.json`, JSON.stringify({ status: r.status, body: await r.json() }));\n",
    );
    sandbox.write(
        "harper-shards.yml",
        concat!(
            "version: 1\npool: {start: 127.0.71.2, count: 2}\nrun: {concurrency: 1}\nshards:\n",
            "  - name: default\n    run: node threads.mjs default\n",
            "  - name: single\n    harper: {threads: 0}\n    run: node threads.mjs single\n",
        ),
    );
    let mut cmd = sandbox.command();
    cmd.arg("run").env("HARPER_SHARD_POOL_DIR", sandbox.path("pool"));
    support::Run { output: cmd.output().expect("run harper-shard"), took: Default::default() }
        .expect(0);
    let threads = |name: &str| -> usize {
        let seen: serde_json::Value =
            serde_json::from_str(&support::read(&sandbox.path(&format!("{name}.json")))).unwrap();
        assert_eq!(seen["status"], 200, "{name}: {seen}");
        seen["body"]["threads"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no thread list in {seen}"))
            .len()
    };
    assert_eq!(threads("default"), 1, "the default instance's worker threads");
    assert_eq!(threads("single"), 0, "`threads: 0` still started a worker thread");
}

/// A suite written against `@harperfast/integration-testing`'s API runs unchanged through the
/// drop-in client (examples/migration): every file starts its own instance through the control
/// socket; a restart keeps the data, a SIGKILL then a start replays it, and two files with
/// different `config` run in the same shard, each seeing only its own.
#[test]
fn a_suite_written_for_the_typescript_harness_runs_unchanged_through_the_client() {
    let _turn = turn();
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.command();
    cmd.current_dir(example_dir().join("migration"))
        .env("HARPER_SHARD_POOL_DIR", sandbox.path("pool"))
        .env("HARPER_INTEGRATION_TEST_LOOPBACK_POOL_START", "127.0.64.2")
        .args(["run", "harper-shards.yml"]);
    let run =
        support::Run { output: cmd.output().expect("run harper-shard"), took: Default::default() };
    run.expect(0);
    let log = support::read(&sandbox.path("report/migration/command-2.log"));
    assert!(log.contains("ℹ pass 10") && log.contains("ℹ fail 0"), "{log}");
    let report = sandbox.report();
    let instances = report["shards"][0]["instances"].as_array().unwrap().clone();
    let by_name = |name: &str| {
        instances
            .iter()
            .find(|i| i["name"] == name)
            .unwrap_or_else(|| panic!("no `{name}` in {instances:#?}"))
    };
    let ended = |i: &serde_json::Value| -> Vec<String> {
        i["lives"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["exit"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    assert_eq!(
        ended(by_name("a SIGKILL loses no acknowledged write")),
        ["killed by SIGKILL", "exit code 0"]
    );
    assert_eq!(by_name("restart keeps the data")["lives"].as_array().unwrap().len(), 2);
    let (a, b) = (by_name("sessions disabled"), by_name("a two-day operation token timeout"));
    // Both lived in the same run, each with its own config (the files assert it); node's
    // --test-concurrency does not promise that their lives overlap, so that is not claimed here.
    assert_ne!(a["address"], b["address"]);
    for i in &instances {
        assert!(i["released"].is_number() && i["problem"].is_null(), "{i:#}");
        let addr = i["address"].as_str().unwrap();
        assert!(support::ports_free(addr, &DEFAULT_PORTS), "ports on {addr} still held");
    }
    support::assert_empty(&sandbox.path("w"));
}

/// Issue 20 on real Harper and node 24 (whose junit reporter names each case's file): a `files:`
/// shard of three node:test files, each asking Harper's operations API, one of which fails on its
/// first run only. The retry runs that file alone on a fresh instance on another address,
/// `junit.xml` carries its `<flakyFailure>`, the other files' cases pass, and nothing is left.
#[test]
fn on_node_24_a_flaky_file_is_retried_alone_on_a_fresh_instance_and_marked_flaky_in_junit() {
    let _turn = turn();
    let sandbox = Sandbox::new();
    let state = sandbox.path("b-ran-once");
    let test = |name: &str, flaky: bool| {
        let fail_once = if flaky {
            format!(
                "  if (!existsSync({state:?})) {{ writeFileSync({state:?}, ''); assert.fail('b fails on its first run'); }}\n",
                state = state.display().to_string()
            )
        } else {
            String::new()
        };
        format!(
            r#"import test from 'node:test';
import assert from 'node:assert';
import {{ existsSync, writeFileSync }} from 'node:fs';
test('{name} asks Harper', async () => {{
  const auth = Buffer.from(`${{process.env.HARPER_ADMIN_USERNAME}}:${{process.env.HARPER_ADMIN_PASSWORD}}`).toString('base64');
  const res = await fetch(process.env.HARPER_OPERATIONS_API_URL, {{ method: 'POST', headers: {{ 'content-type': 'application/json', authorization: `Basic ${{auth}}` }}, body: JSON.stringify({{ operation: 'describe_all' }}) }});
  assert.equal(res.status, 200);
{fail_once}}});
"#
        )
    };
    for (name, flaky) in [("a", false), ("b", true), ("c", false)] {
        sandbox.write(&format!("t/{name}.test.mjs"), &test(name, flaky));
    }
    sandbox.write(
        "harper-shards.yml",
        "version: 1\npool: {start: 127.0.60.20, count: 3}\nrun: {retries: 1}\nshards:\n  - name: files\n    files: \"t/*.test.mjs\"\n    run: node --test --test-reporter=junit --test-reporter-destination=$HARPER_SHARD_JUNIT_DIR/results.xml {files}\n",
    );
    let mut cmd = sandbox.command();
    cmd.env("PATH", support::node::path_with(&support::node_bin(24)))
        .env("HARPER_SHARD_POOL_DIR", sandbox.path("pool"))
        .arg("run");
    let run =
        support::Run { output: cmd.output().expect("run harper-shard"), took: Default::default() };
    run.expect(0);
    let report = sandbox.report();
    let shard = &report["shards"][0];
    assert_eq!(shard["status"], "flaky", "{shard}");
    let attempts = shard["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{shard}");
    assert_eq!(
        attempts[1]["commands"][0]["command"].as_str().unwrap().matches(".test.mjs").count(),
        1,
        "{shard}"
    );
    assert!(
        attempts[1]["commands"][0]["command"].as_str().unwrap().contains("t/b.test.mjs"),
        "{shard}"
    );
    assert_ne!(attempts[0]["address"], attempts[1]["address"], "a fresh address");
    let xml = support::read(&sandbox.path("report/junit.xml"));
    let case = |name: &str| support::testcase(&xml, name);
    let b = case("b asks Harper");
    assert!(b.contains("<flakyFailure") && !b.contains("<failure"), "{b}");
    for name in ["a asks Harper", "c asks Harper"] {
        let c = case(name);
        assert!(!c.contains("Failure") && !c.contains("<failure"), "{c}");
    }
    for a in attempts {
        assert!(support::ports_free(a["address"].as_str().unwrap(), &DEFAULT_PORTS), "{a}");
    }
}

/// Two shards of one run that boot from the same template on a cache without it: one builds it,
/// the other waits for that build and then boots from it, instead of being refused the lock the
/// first one's instance now holds. The cache is the machine's package, hard-linked into a cache of
/// the test's own, so no template of an earlier run is found.
#[test]
fn two_shards_that_need_one_template_on_a_cold_cache_both_boot_from_it() {
    let _turn = turn();
    let sandbox = Sandbox::new();
    // The machine's install of the package, made by the tool if no test has made it yet.
    one_real_shard(&sandbox, "127.0.67.2");
    sandbox.command().arg("run").output().expect("run harper-shard");
    let default_cache =
        harper_shard::harper::install::private_cache().expect("the machine's cache");
    let package = support::installed_package(&default_cache, "harperdb@4.7.29");
    assert!(package.is_dir(), "harperdb@4.7.29 is not installed in {}", default_cache.display());
    let cache = sandbox.path("cache");
    std::fs::create_dir_all(cache.join("packages")).unwrap();
    let linked = std::process::Command::new("cp")
        .arg("-al")
        .arg(&package)
        .arg(cache.join("packages"))
        .status()
        .unwrap();
    assert!(linked.success(), "cannot hard-link the package into the test's cache");
    sandbox.write(
        "harper-shards.yml",
        "version: 1\npool: {start: 127.0.67.2, count: 2}\nrun: {concurrency: 2}\nshards:\n  - name: a\n    run: node health.mjs\n  - name: b\n    run: node health.mjs\n",
    );
    let mut cmd = sandbox.command();
    cmd.env("HARPER_SHARD_CACHE_DIR", &cache).args(["run", "--report-dir", "cold"]);
    let out = cmd.output().expect("run harper-shard");
    let run = support::Run { output: out, took: Default::default() };
    run.expect(0);
    assert_eq!(run.stderr().matches("building the boot template").count(), 1, "{}", run.stderr());
}

/// The two halves of the upgrade's command, each a process of its own (a pooled connection to
/// the Harper that stopped would be dead): `write` puts two records into harperdb 4.7.26 and
/// notes its version; `read` reads them back from whatever Harper runs now, with its version.
const UPGRADE: &str = r#"
import { readFileSync, writeFileSync } from 'node:fs';
const url = process.env.HARPER_OPERATIONS_API_URL;
const basic = 'Basic ' + Buffer.from(`${process.env.HARPER_ADMIN_USERNAME}:${process.env.HARPER_ADMIN_PASSWORD}`).toString('base64');
const op = async (body) => {
  const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: basic }, body: JSON.stringify(body) });
  const answer = await r.json();
  if (r.status !== 200) throw new Error(`${body.operation}: ${r.status} ${JSON.stringify(answer)}`);
  return answer;
};
const version = async () => (await op({ operation: 'registration_info' })).version;
if (process.argv[2] === 'write') {
  await op({ operation: 'create_table', database: 'up', table: 'dogs', primary_key: 'id' });
  await op({ operation: 'insert', database: 'up', table: 'dogs', records: [{ id: 1, name: 'Rex' }, { id: 2, name: 'Fido' }] });
  writeFileSync('before.json', JSON.stringify({ version: await version() }));
} else {
  const rows = await op({ operation: 'search_by_id', database: 'up', table: 'dogs', ids: [1, 2], get_attributes: ['id', 'name'] });
  writeFileSync('after.json', JSON.stringify({ version: await version(), rows }));
}
"#;

/// A stopped instance of harperdb 4.7.26 (installed by the tool on first use, booted from its
/// template) starts again as 4.7.29 on the same ROOTPATH: the new Harper says its own version
/// and reads back what the old one wrote, so it neither booted 4.7.26 again nor a template copy.
#[test]
fn a_stopped_instance_of_harper_4_7_26_starts_as_4_7_29_on_its_data() {
    let _turn = turn();
    let sandbox = Sandbox::new();
    sandbox.write("upgrade.mjs", UPGRADE);
    sandbox.write(
        "harper-shards.yml",
        &format!(
            "version: 1\npool: {{start: 127.0.68.2, count: 1}}\nharper:\n  package: harperdb@4.7.26\nshards:\n  - name: upgrade\n    env: {{HS: \"{}\"}}\n    run: node upgrade.mjs write && $HS ctl stop && $HS ctl start --set package=harperdb@4.7.29 --json > started.json && node upgrade.mjs read\n",
            support::harper_shard()
        ),
    );
    let mut cmd = sandbox.command();
    cmd.env("HARPER_SHARD_POOL_DIR", sandbox.path("pool")).args(["run", "harper-shards.yml"]);
    support::Run { output: cmd.output().expect("run harper-shard"), took: Default::default() }
        .expect(0);
    let json = |name: &str| -> serde_json::Value {
        serde_json::from_str(&support::read(&sandbox.path(name))).unwrap()
    };
    let (before, started, after) = (json("before.json"), json("started.json"), json("after.json"));
    assert_eq!(
        (before["version"].as_str(), after["version"].as_str()),
        (Some("4.7.26"), Some("4.7.29")),
        "{before} {after}"
    );
    assert_eq!(started["instance"]["harper"]["package"], "harperdb@4.7.29", "{started}");
    let mut names: Vec<&str> =
        after["rows"].as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
    names.sort();
    assert_eq!(names, ["Fido", "Rex"], "the records written by 4.7.26: {after}");
    let main = &sandbox.report()["shards"][0]["instances"][0];
    assert_eq!(main["lives"].as_array().unwrap().len(), 2, "{main:#}");
    assert!(support::ports_free("127.0.68.2", &DEFAULT_PORTS));
    support::assert_empty(&sandbox.path("w"));
}
