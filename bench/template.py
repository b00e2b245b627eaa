#!/usr/bin/env python3
"""Template boot against a fresh install, side by side in one run, on real Harper.

1. Boot: N instances at once (N = 1, 2, 4), each shard running `true`, in interleaved rounds of
   three modes: `template: off` (a fresh install), `template: on` with HARPER_SHARD_BOOT_CACHE=off
   (the copy alone), and `template: on` (the copy and its boot cache: what a user gets); per
   instance, the boot phase (address to ready) from report.json. Target: template <= 0.5x fresh
   at each width.
2. The example plan, whole runs: `template: off` against `template: on` with a warm cache,
   interleaved; and once, the first run that builds the template. Target: warm <= 0.6x fresh.

3. `--lives`: one templated instance living two lives (its boot, then `ctl restart`), in
   interleaved rounds of the boot caches a node can have: none (HARPER_SHARD_BOOT_CACHE=off), the
   preload (=preload), and, on node >= 22.1 only, Node's own compile cache (=compile) and both
   (=both); per life, booting to ready from report.json, and the CPU (user+sys) of the whole run
   (both lives, the tool's own share included: the same in every mode). Each mode keeps its templates in a cache folder of its own (the
   packages hard-linked from the user's cache, its JWT key sets copied), so no mode boots another's template.

Usage: python3 bench/template.py [ROUNDS]   (builds the release binary first; default 3 rounds)
       python3 bench/template.py --lives [--node 24] [--bin PATH] [--lock FILE] [ROUNDS]
         --node N   runs Harper on the pinned node N (.ci/nodes N), else on the PATH's node
         --bin      uses this harper-shard instead of building one
         --lock     holds this flock(1) lock during each run (a shared machine's build lock)
"""

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "harper-shard"


# The three ways an instance can boot: the plan's `template` and the boot cache switch.
MODES = {"fresh": ("off", "on"), "copy": ("on", "off"), "cached": ("on", "on")}


def run(plan_text, work, report, cwd=None, boot_cache="on"):
    plan = work / "plan.yml"
    plan.write_text(plan_text)
    started = time.monotonic()
    out = subprocess.run(
        [str(BIN), "run", str(plan), "--report-dir", str(report)],
        cwd=cwd or work, capture_output=True, text=True,
        env={**os.environ, "HARPER_SHARD_BOOT_CACHE": boot_cache},
    )
    wall = time.monotonic() - started
    if out.returncode != 0:
        sys.exit(f"run failed ({out.returncode}):\n{out.stderr[-3000:]}")
    shards = json.loads((report / "report.json").read_text())["shards"]
    boots = [s["phases"]["ready"] - s["phases"]["address"] for s in shards]
    return wall, boots


def width_plan(n, template):
    shards = "".join(f"  - name: s{i}\n    run: \"true\"\n" for i in range(n))
    return (
        f"version: 1\nharper:\n  template: {template}\n"
        f"pool: {{start: 127.0.90.2, count: {n}}}\nrun: {{concurrency: {n}}}\nshards:\n{shards}"
    )


def example_plan(template):
    text = (ROOT / "examples" / "harper-shards.yml").read_text()
    return text.replace("  package: harperdb@4.7.29\n", f"  package: harperdb@4.7.29\n  template: {template}\n")


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def user_cache():
    if os.environ.get("HARPER_SHARD_CACHE_DIR"):
        return Path(os.environ["HARPER_SHARD_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "harper-shard"


# The boot caches of --lives: HARPER_SHARD_BOOT_CACHE for each.
LIVES = {"none": "off", "preload": "preload", "compile": "compile", "both": "both"}


def lives(argv):
    args = list(argv)
    option = lambda name: args.pop(args.index(name) + 1) if name in args else None
    node, binary, lock = option("--node"), option("--bin"), option("--lock")
    args = [a for a in args if a not in ("--lives", "--node", "--bin", "--lock")]
    rounds = int(args[0]) if args else 3
    global BIN
    if binary:
        BIN = Path(binary).resolve()
    else:
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "harper-shard"], cwd=ROOT, check=True)
    path = os.environ["PATH"]
    if node:
        bin_dir = subprocess.run([str(ROOT / ".ci" / "nodes"), node], capture_output=True, text=True, check=True).stdout.strip()
        path = f"{bin_dir}:{path}"
    version = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True, env={**os.environ, "PATH": path}).stdout.strip()
    major, minor = (int(n) for n in version.lstrip("v").split(".")[:2])
    modes = [m for m in LIVES if m not in ("compile", "both") or (major, minor) >= (22, 1)]
    work = Path(tempfile.mkdtemp(prefix="hs-bench-"))
    shared = user_cache()
    plan = (
        "version: 1\nharper:\n  template: on\npool: {start: 127.0.90.2, count: 1}\n"
        f"shards:\n  - name: a\n    run: \"{BIN} ctl restart\"\n"
    )

    def one(mode, name):
        cache = work / f"cache-{mode}"
        if not cache.exists():
            cache.mkdir()
            # Packages hard-linked, not symlinked: Node names a module by its real path, and
            # the preload caches only files under its cache's own packages/. The JWT key sets
            # copied (the tool refuses a symlinked folder in its cache).
            (shared / "keys").mkdir(parents=True, exist_ok=True)
            subprocess.run(["cp", "-a", str(shared / "keys"), str(cache / "keys")], check=True)
            subprocess.run(["cp", "-al", str(shared / "packages"), str(cache / "packages")], check=True)
        (work / "plan.yml").write_text(plan)
        report = work / name
        command = [str(BIN), "run", str(work / "plan.yml"), "--report-dir", str(report)]
        if lock:
            command = ["flock", lock] + command
        env = {**os.environ, "PATH": path, "HARPER_SHARD_CACHE_DIR": str(cache), "HARPER_SHARD_BOOT_CACHE": LIVES[mode]}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(command, cwd=work, capture_output=True, text=True, env=env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if out.returncode != 0:
            sys.exit(f"run failed ({out.returncode}):\n{out.stderr[-3000:]}")
        shard = json.loads((report / "report.json").read_text())["shards"][0]
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return [life["ready"] - life["booting"] for life in shard["instances"][0]["lives"]], cpu

    try:
        for mode in modes:  # Warm-up: each mode's template built.
            one(mode, f"warm-{mode}")
        boots = {mode: ([], [], []) for mode in modes}
        for r in range(rounds):
            for mode in modes[r % len(modes):] + modes[:r % len(modes)]:
                (first, second), cpu = one(mode, f"r-{mode}-{r}")
                boots[mode][0].append(first)
                boots[mode][1].append(second)
                boots[mode][2].append(cpu)
        print(f"node {version}, one templated instance, booting to ready (s), medians of {rounds} rounds:")
        print(f"  {'boot cache':>10}  {'first life':>10}  {'restart':>8}  {'run CPU':>8}   (each round: first/restart CPU)")
        for mode in modes:
            first, second, cpu = boots[mode]
            each = "  ".join(f"{a:.2f}/{b:.2f} {c:.2f}" for a, b, c in zip(first, second, cpu))
            print(f"  {mode:>10}  {median(first):>10.2f}  {median(second):>8.2f}  {median(cpu):>8.2f}   {each}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    if "--lives" in sys.argv:
        return lives(sys.argv[1:])
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "harper-shard"], cwd=ROOT, check=True)
    work = Path(tempfile.mkdtemp(prefix="hs-bench-"))
    shutil.copytree(ROOT / "examples" / "tests", work / "tests")
    try:
        # Warm-up: the package installed, the template and enough key sets made.
        run(width_plan(4, "on"), work, work / "r-warm")

        print("boot, spawn to ready per instance (s), medians over all instances of all rounds:")
        print(f"  {'width':>5}  {'fresh':>7}  {'copy':>7}  {'cached':>7}  {'copy/fresh':>10}  {'cached/fresh':>12}")
        names = list(MODES)
        for n in (1, 2, 4):
            boots = {mode: [] for mode in MODES}
            for r in range(rounds):
                for mode in names[r % 3:] + names[:r % 3]:
                    template, boot_cache = MODES[mode]
                    boots[mode] += run(width_plan(n, template), work, work / f"r-{n}-{mode}-{r}", boot_cache=boot_cache)[1]
            fresh, copy, cached = (median(boots[m]) for m in names)
            print(f"  {n:>5}  {fresh:>7.2f}  {copy:>7.2f}  {cached:>7.2f}  {copy / fresh:>9.2f}x  {cached / fresh:>11.2f}x")

        walls = {"off": [], "on": []}
        for r in range(rounds):
            for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
                walls[mode].append(run(example_plan(mode), work, work / f"e-{mode}-{r}", cwd=work)[0])
        # The first run after the example's template is gone: it builds it.
        cache = Path.home() / ".cache" / "harper-shard" / "templates"
        for entry in cache.glob("*"):
            if entry.is_dir():
                shutil.rmtree(entry)
        cold = run(example_plan("on"), work, work / "e-cold", cwd=work)[0]
        fresh, warm = median(walls["off"]), median(walls["on"])
        print("example plan, whole run wall (s), medians:")
        print(f"  fresh {fresh:.2f}   template warm {warm:.2f}   ratio {warm / fresh:.2f}x   first run (builds the template) {cold:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
