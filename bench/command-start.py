#!/usr/bin/env python3
"""A shard command's start with and without Node's compile cache (issue 24).

A shard command is typically `node --test FILE`; before its first test body runs (the moment the
drop-in client asks harper-shard for an address), Node starts twice — the test runner, and the
child it runs the file in — and compiles the file and all it imports. This measures, from spawn:

- first line: the first test body starts (it writes `performance.timeOrigin + now()` to a file);
- exit: the runner exits.

Workloads, each a test file that starts no Harper:
- client: imports `node:test` and the drop-in client (clients/node, linked as
  `@harperfast/integration-testing`);
- suite: the client plus a few npm modules a user's suite might import (ws, yaml, lodash, uuid,
  jsonwebtoken, ajv, joi), linked from the Harper package harper-shard installed into its cache.

Variants, alternated in an order rotated each round:
- none: NODE_COMPILE_CACHE unset;
- cold: NODE_COMPILE_CACHE set to an empty folder, new every run (Node compiles, then writes);
- warm: NODE_COMPILE_CACHE set to a folder an earlier run filled;
- isolation=none (`--test-isolation=none`, node 22: `--experimental-test-isolation=none`,
  no cache): the file runs in the runner's own process, one node start instead of two.

Each round holds the shared lock (/tmp/hs-cargo.lock) for itself. Prints medians, p90 and the
ratio to `none` per node and workload. Then, per node, what a warm cache does to a user's
coverage: `node --test --experimental-test-coverage` of a small module with branches, once
without a cache and three times with one folder (Node's docs: coverage of functions taken from
the cache may be less precise), the "all files" line of each.

Usage: python3 bench/command-start.py [--rounds 12] [--nodes 22,24] [--save F.json]
Nodes come from .ci/nodes (installed into the tool's cache). python3 stdlib only.
"""

import argparse
import fcntl
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(
    os.environ.get("HARPER_SHARD_CACHE_DIR")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "harper-shard"
)
SUITE_MODULES = ["ws", "yaml", "lodash", "uuid", "jsonwebtoken", "ajv", "joi"]
VARIANTS = ["none", "cold", "warm", "isolation=none"]

CLIENT_TEST = """\
import { test } from 'node:test';
import { writeFileSync } from 'node:fs';
import { startHarper, teardownHarper } from '@harperfast/integration-testing';

test('first line', () => {
\twriteFileSync(process.env.FIRST_LINE, String(performance.timeOrigin + performance.now()));
\tif (typeof startHarper !== 'function' || typeof teardownHarper !== 'function') throw new Error('client');
});
"""

SUITE_TEST = """\
import { test } from 'node:test';
import { writeFileSync } from 'node:fs';
import { startHarper } from '@harperfast/integration-testing';
import WebSocket from 'ws';
import YAML from 'yaml';
import _ from 'lodash';
import { v4 } from 'uuid';
import jwt from 'jsonwebtoken';
import Ajv from 'ajv';
import Joi from 'joi';

test('first line', () => {
\twriteFileSync(process.env.FIRST_LINE, String(performance.timeOrigin + performance.now()));
\tconst used = [startHarper, WebSocket, YAML.parse, _.chunk, v4, jwt.sign, Ajv, Joi.object];
\tif (used.some((u) => typeof u !== 'function')) throw new Error('imports');
});
"""


def node_bin(major):
    out = subprocess.run(
        ["bash", str(ROOT / ".ci" / "nodes"), major], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1]) / "node"


def harper_modules():
    """node_modules of a Harper package in the tool's cache that has every suite module."""
    for package in sorted((CACHE / "packages").glob("harperdb@*")):
        modules = package / "node_modules"
        if all((modules / m).is_dir() for m in SUITE_MODULES):
            return modules
    raise SystemExit(f"no Harper package with {SUITE_MODULES} in {CACHE / 'packages'}: run harper-shard once")


def project(work):
    """The test folder: both test files, the client and the suite's modules linked in."""
    modules = work / "node_modules"
    (modules / "@harperfast").mkdir(parents=True)
    (modules / "@harperfast" / "integration-testing").symlink_to(ROOT / "clients" / "node")
    harper = harper_modules()
    for m in SUITE_MODULES:
        (modules / m).symlink_to(harper / m)
    (work / "client.test.mjs").write_text(CLIENT_TEST)
    (work / "suite.test.mjs").write_text(SUITE_TEST)
    return {"client": work / "client.test.mjs", "suite": work / "suite.test.mjs"}


def isolation_flag(node):
    major = int(subprocess.run([node, "--version"], capture_output=True, text=True).stdout[1:].split(".")[0])
    return "--test-isolation=none" if major >= 23 else "--experimental-test-isolation=none"


def once(node, file, variant, caches, work):
    """(spawn -> first line, spawn -> exit) in seconds for one run."""
    env = {k: v for k, v in os.environ.items() if k not in ("NODE_COMPILE_CACHE", "NODE_DISABLE_COMPILE_CACHE", "NODE_OPTIONS")}
    marker = work / "first-line"
    marker.unlink(missing_ok=True)
    env["FIRST_LINE"] = str(marker)
    argv = [str(node), "--test"]
    if variant == "cold":
        cold = Path(tempfile.mkdtemp(prefix="cold-", dir=work))
        env["NODE_COMPILE_CACHE"] = str(cold)
    elif variant == "warm":
        env["NODE_COMPILE_CACHE"] = str(caches[(str(node), file.name)])
    elif variant == "isolation=none":
        argv.append(isolation_flag(node))
    argv.append(str(file))
    start = time.time()
    proc = subprocess.run(argv, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    end = time.time()
    if proc.returncode != 0 or not marker.exists():
        raise SystemExit(f"{argv} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    first = float(marker.read_text()) / 1000.0
    if variant == "cold":
        shutil.rmtree(cold)
    return first - start, end - start


COVERED = """\
export function f(x) {
\tif (x > 1) {
\t\treturn 'big';
\t} else {
\t\treturn 'small';
\t}
}
export function g(y) {
\tlet s = 0;
\tfor (let i = 0; i < y; i++) { if (i % 2) s += i; else s -= 1; }
\treturn s;
}
export function never() { return 1; }
"""

COVERAGE_TEST = """\
import { test } from 'node:test';
import { f, g } from './covered.mjs';
test('covers some', () => { f(5); g(3); });
"""


def coverage(node, work):
    """The "all files" coverage line without a cache, then three times with one folder."""
    (work / "covered.mjs").write_text(COVERED)
    (work / "coverage.test.mjs").write_text(COVERAGE_TEST)
    cache = Path(tempfile.mkdtemp(prefix="coverage-", dir=work))
    lines = []
    for label in ["no cache", "cache, cold", "cache, warm", "cache, warm"]:
        env = {k: v for k, v in os.environ.items() if k not in ("NODE_COMPILE_CACHE", "NODE_DISABLE_COMPILE_CACHE")}
        if label != "no cache":
            env["NODE_COMPILE_CACHE"] = str(cache)
        out = subprocess.run([str(node), "--test", "--experimental-test-coverage", "coverage.test.mjs"],
                             cwd=work, env=env, capture_output=True, text=True).stdout
        line = next((l for l in out.splitlines() if "all files" in l), "(no coverage line)")
        lines.append(f"{label:<12} {line.strip()}")
    return lines


def entries(folder):
    return sum(1 for p in folder.rglob("*") if p.is_file())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--nodes", default="22,24")
    ap.add_argument("--lock", default="/tmp/hs-cargo.lock")
    ap.add_argument("--save")
    args = ap.parse_args()
    nodes = {major: node_bin(major) for major in args.nodes.split(",")}
    work = Path(tempfile.mkdtemp(prefix="hs-command-start-"))
    try:
        files = project(work)
        caches = {}
        for major, node in nodes.items():
            for name, file in files.items():
                cache = work / f"warm-{major}-{name}"
                cache.mkdir()
                caches[(str(node), file.name)] = cache
                # Filled by one run; a second run adds what the first one's exit did not write.
                for _ in range(2):
                    subprocess.run([str(node), "--test", str(file)], cwd=work, check=True,
                                   stdout=subprocess.DEVNULL, env={**os.environ, "FIRST_LINE": str(work / "prime"),
                                                                   "NODE_COMPILE_CACHE": str(cache)})
                print(f"node {major} {name}: warm cache of {entries(cache)} entries", flush=True)
        units = [(major, name, v) for major in nodes for name in files for v in VARIANTS]
        results = {u: [] for u in units}
        with open(args.lock, "a") as lock:
            for r in range(args.rounds):
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    load = os.getloadavg()[0]
                    k = r % len(units)
                    for major, name, v in units[k:] + units[:k]:
                        results[(major, name, v)].append(once(nodes[major], files[name], v, caches, work))
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
                print(f"round {r + 1}/{args.rounds} done (load before {load:.2f})", flush=True)
        versions = {m: subprocess.run([n, "--version"], capture_output=True, text=True).stdout.strip() for m, n in nodes.items()}
        print(f"\nspawn -> first test line / spawn -> exit (ms), {args.rounds} runs each: median / p90, ratio of medians to none")
        print(f"  {'node':<9} {'workload':<8} {'variant':<15} {'first line':>17} {'ratio':>6} {'exit':>17} {'ratio':>6}")
        for major in nodes:
            for name in files:
                base = results[(major, name, "none")]
                b_first = statistics.median(x[0] for x in base)
                b_exit = statistics.median(x[1] for x in base)
                for v in VARIANTS:
                    xs = results[(major, name, v)]
                    first = [x[0] * 1000 for x in xs]
                    ex = [x[1] * 1000 for x in xs]
                    p90 = lambda a: sorted(a)[min(len(a) - 1, int(0.9 * len(a)))]
                    print(f"  {versions[major]:<9} {name:<8} {v:<15} "
                          f"{statistics.median(first):7.1f} / {p90(first):7.1f} {statistics.median(first) / b_first / 1000:5.2f}x "
                          f"{statistics.median(ex):7.1f} / {p90(ex):7.1f} {statistics.median(ex) / b_exit / 1000:5.2f}x")
        print("\ncoverage (line % | branch % | funcs %) of the same test, without and with the cache")
        for major, node in nodes.items():
            for line in coverage(node, work):
                print(f"  {versions[major]:<9} {line}")
        if args.save:
            Path(args.save).write_text(json.dumps(
                {"versions": versions, "rounds": args.rounds,
                 "results": {"/".join(k): v for k, v in results.items()}}, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
