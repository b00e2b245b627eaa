#!/usr/bin/env python3
"""How long `harper-shard run PLAN --plan` takes on plans of 1, 100 and 1000 shards.

The release binary is timed as a whole process (start, parse, resolve, render), each size run in
turn within every round so that machine noise falls on all of them alike. Prints the median and
the 90th percentile per size, and the ratio of each median to the 1-shard median.

    python3 bench/plan_dry_run.py [--rounds N]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def plan(shards: int) -> str:
    lines = ["version: 1", "harper:", "  startup: {idle: 30s, max: 90s}", "shards:"]
    for i in range(shards):
        lines.append(f"  - name: shard-{i:04}")
        lines.append(f"    run: [\"node --test tests/{i}/a.test.mjs\", \"node --test tests/{i}/b.test.mjs\"]")
        lines.append(f"    env: {{SHARD_ORDINAL: \"{i}\"}}")
        if i % 10 == 0:
            lines.append("    harper: {ports: {http: 10926}, env: {EXTRA: yes}}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "harper-shard"], cwd=ROOT, check=True)
    binary = os.path.join(ROOT, "target", "release", "harper-shard")
    sizes = [1, 100, 1000]
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for n in sizes:
            paths[n] = os.path.join(tmp, f"plan-{n}.yml")
            with open(paths[n], "w") as f:
                f.write(plan(n))
        times = {n: [] for n in sizes}
        for _ in range(args.rounds):
            for n in sizes:
                started = time.perf_counter()
                done = subprocess.run([binary, "run", paths[n], "--plan"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, cwd=tmp)
                times[n].append((time.perf_counter() - started) * 1000)
                if done.returncode != 0:
                    print(done.stderr.decode(), file=sys.stderr)
                    return 1
    base = statistics.median(times[1])
    print(f"--plan, whole process, {args.rounds} rounds (release build)")
    print(f"{'shards':>7} {'median ms':>10} {'p90 ms':>8} {'vs 1 shard':>11}")
    for n in sizes:
        ordered = sorted(times[n])
        p90 = ordered[int(0.9 * (len(ordered) - 1))]
        med = statistics.median(ordered)
        print(f"{n:>7} {med:>10.1f} {p90:>8.1f} {med / base:>10.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
