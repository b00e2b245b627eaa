#!/usr/bin/env python3
"""How well a suite of test files is spread over CI partitions: harper-shard's assignment
against node's `--test-shard` and equal file counts, side by side.

The suite: 280 files named t/f000.test.mjs … t/f279.test.mjs whose durations come from a seeded
log-normal distribution (a long tail: most files take a few seconds, a few take a minute or
more). harper-shard sees it as one `files:` shard with `split: 6`, run in 6 partitions; its
assignment is read from `run --plan --format json --partition 1/6 --timings …` (what every job
computes), then scored with the files' true durations.

Score: the makespan (the slowest partition) divided by the lower bound, the larger of
total / 6 and the longest file. 1.00 is perfect.

Rows:
- harper-shard, every file with history;
- harper-shard, 10 % of the files (seeded) without history: they weigh the mean of the others;
- node --test-shard=K/6: round robin over the sorted paths (file i goes to shard i mod 6);
- equal file counts: 6 contiguous runs of the sorted paths, sizes differing by at most one.

    python3 bench/partitions.py [--seed N] [--seeds M]

`--seeds M` also repeats the scoring for seeds N … N+M-1 and prints the spread.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = 280
PARTITIONS = 6


def durations(seed: int) -> list:
    rng = random.Random(seed)
    # Median e^1.1 ≈ 3 s; sigma 1.1 gives a tail of files 20–30 times the median.
    return [round(rng.lognormvariate(1.1, 1.1), 3) for _ in range(FILES)]


def names() -> list:
    return [f"t/f{i:03}.test.mjs" for i in range(FILES)]


def makespan(groups: list, secs: dict) -> float:
    return max(sum(secs[f] for f in g) for g in groups)


def ratio(groups: list, secs: dict) -> float:
    bound = max(sum(secs.values()) / PARTITIONS, max(secs.values()))
    return makespan(groups, secs) / bound


def harper_shard(binary: str, tmp: str, secs: dict, known: dict) -> list:
    """The files of each partition, as harper-shard assigns them with `known` as history."""
    with open(os.path.join(tmp, "timings.json"), "w") as f:
        json.dump({"version": 1, "shards": {}, "files": known}, f)
    out = subprocess.run(
        [binary, "run", "harper-shards.yml", "--plan", "--format", "json", "--partition", f"1/{PARTITIONS}",
         "--timings", "timings.json"],
        cwd=tmp, capture_output=True, text=True,
    )
    if out.returncode != 0:
        sys.exit(f"harper-shard failed: {out.stderr}")
    dry = json.loads(out.stdout)
    files_of = {s["name"]: s["files"] for s in dry["plan"]["shards"]}
    groups = [[f for shard in p["shards"] for f in files_of[shard]] for p in dry["assignment"]["partitions"]]
    assert sorted(f for g in groups for f in g) == sorted(secs), "every file exactly once"
    return groups


def node_test_shard(paths: list) -> list:
    ordered = sorted(paths)
    return [[f for i, f in enumerate(ordered) if i % PARTITIONS == k] for k in range(PARTITIONS)]


def equal_counts(paths: list) -> list:
    ordered = sorted(paths)
    size, extra = divmod(len(ordered), PARTITIONS)
    groups, start = [], 0
    for k in range(PARTITIONS):
        end = start + size + (1 if k < extra else 0)
        groups.append(ordered[start:end])
        start = end
    return groups


def score(binary: str, tmp: str, seed: int) -> dict:
    secs = dict(zip(names(), durations(seed)))
    unknown = set(random.Random(seed + 1).sample(sorted(secs), FILES // 10))
    partial = {f: s for f, s in secs.items() if f not in unknown}
    groups = {
        "full": harper_shard(binary, tmp, secs, secs),
        "partial": harper_shard(binary, tmp, secs, partial),
        "node": node_test_shard(list(secs)),
        "equal": equal_counts(list(secs)),
    }
    out = {key: ratio(g, secs) for key, g in groups.items()}
    out.update({f"{key}-secs": makespan(g, secs) for key, g in groups.items()})
    out.update({"total": sum(secs.values()), "longest": max(secs.values())})
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--quiet", "--bin", "harper-shard"], cwd=ROOT, check=True)
    binary = os.path.join(ROOT, "target", "debug", "harper-shard")
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "t"))
        for f in names():
            open(os.path.join(tmp, f), "w").close()
        with open(os.path.join(tmp, "harper-shards.yml"), "w") as f:
            f.write(f"version: 1\nshards:\n  - name: suite\n    files: t/*.test.mjs\n    split: {PARTITIONS}\n"
                    "    run: node --test {files}\n")
        results = [score(binary, tmp, seed) for seed in range(args.seed, args.seed + args.seeds)]
    first = results[0]
    print(f"{FILES} files, seed {args.seed}, log-normal durations: total {first['total']:.0f} s, "
          f"longest {first['longest']:.1f} s, lower bound {max(first['total'] / PARTITIONS, first['longest']):.1f} s "
          f"over {PARTITIONS} partitions")
    print(f"{'assignment':<48} {'makespan':>10} {'/ lower bound':>14}")
    rows = [
        ("harper-shard, full history", "full"),
        ("harper-shard, 10 % of the files without history", "partial"),
        ("node --test-shard (round robin, sorted paths)", "node"),
        ("equal file counts (contiguous, sorted paths)", "equal"),
    ]
    for label, key in rows:
        print(f"{label:<48} {first[key + '-secs']:>8.1f} s {first[key]:>13.3f}x")
    if args.seeds > 1:
        print(f"\nover seeds {args.seed}..{args.seed + args.seeds - 1}: min / median / max")
        for label, key in rows:
            values = sorted(r[key] for r in results)
            print(f"{label:<48} {values[0]:.3f}x / {values[len(values) // 2]:.3f}x / {values[-1]:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
