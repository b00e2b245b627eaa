#!/usr/bin/env python3
"""Boot-ahead against none (issue 24): 8 shards at concurrency 2, real Harper, I/O-bound tests.

Each shard boots its own Harper (from the template) and runs bench/boot-ahead/io.mjs: a table,
then 24 rounds of an insert and a search with 100 ms of waiting between them (a test that waits
on the network and timers, as integration tests do), about 3 s of wall time and little CPU.
The same plan runs with `--boot-ahead off` and `--boot-ahead auto` (the default) in an order
rotated per round. Printed per mode: the run's wall time (median, p90), the time shards waited
between ready and their turn, how many shards booted ahead, and the peak resident memory of the
tool's whole process tree (sampled every 50 ms), with the ratio auto/off of each median.

Usage: python3 bench/boot-ahead.py [--rounds 5] [--bin PATH] [--save F]
Needs a release build (`cargo build --release`); give --bin a copy of it so that another build
cannot change it mid-run. Takes the shared lock /tmp/hs-cargo.lock per round. Runs on the node
on PATH. python3 stdlib only.
"""

import argparse
import fcntl
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "harper-shard"
IO_TEST = ROOT / "bench" / "boot-ahead" / "io.mjs"
SHARDS = 8
POOL = "127.0.93.2"
MODES = ["off", "auto"]


def plan():
    shards = "".join(f"  - name: io-{i}\n    run: node {IO_TEST}\n" for i in range(1, SHARDS + 1))
    return (
        "version: 1\n"
        f"pool: {{start: {POOL}, count: 16}}\n"
        "run: {concurrency: 2}\n"
        f"shards:\n{shards}"
    )


def tree(root):
    """The pids of `root` and every descendant, from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_once(binary, mode, folder):
    """One run: wall seconds, peak RSS of the tree (MiB), and the report."""
    report_dir = folder / f"report-{mode}"
    proc = subprocess.Popen(
        [str(binary), "run", "--boot-ahead", mode, "--report-dir", str(report_dir), "-q"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    started = time.monotonic()
    peak = [0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], sum(rss_kib(p) for p in tree(proc.pid)))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    _, err = proc.communicate()
    wall = time.monotonic() - started
    sampler.join()
    if proc.returncode != 0:
        sys.exit(f"harper-shard run --boot-ahead {mode} exited {proc.returncode}:\n{err.decode()}")
    report = json.loads((report_dir / "report.json").read_text())
    return wall, peak[0] / 1024, report


def waited(report):
    """Seconds shards waited between ready and their turn, and how many booted ahead."""
    total, ahead = 0.0, 0
    for s in report["shards"]:
        p = s["phases"]
        if s.get("booted_ahead"):
            ahead += 1
            if p.get("turn") is not None and p.get("ready") is not None:
                total += p["turn"] - p["ready"]
    return total, ahead


def p90(values):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--bin", type=Path, default=BIN)
    ap.add_argument("--save", type=Path)
    args = ap.parse_args()
    if not args.bin.exists():
        sys.exit(f"{args.bin}: no such binary (cargo build --release)")
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    results = {m: {"wall": [], "peak": [], "waited": [], "ahead": []} for m in MODES}
    with tempfile.TemporaryDirectory(prefix="boot-ahead-") as tmp:
        folder = Path(tmp)
        (folder / "harper-shards.yml").write_text(plan())
        # Warm-up: the install, the template, the boot cache.
        run_once(args.bin, "off", folder)
        for r in range(args.rounds):
            order = MODES if r % 2 == 0 else MODES[::-1]
            with open("/tmp/hs-cargo.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                for mode in order:
                    wall, peak, report = run_once(args.bin, mode, folder)
                    w, ahead = waited(report)
                    results[mode]["wall"].append(wall)
                    results[mode]["peak"].append(peak)
                    results[mode]["waited"].append(w)
                    results[mode]["ahead"].append(ahead)
                    load = os.getloadavg()[0]
                    print(f"round {r + 1} {mode:>4}: {wall:6.2f} s, peak {peak:6.0f} MiB, "
                          f"{ahead} booted ahead, waited {w:5.2f} s for turns (load {load:.2f})",
                          flush=True)
    print(f"\n{SHARDS} shards at concurrency 2, I/O-bound, node {node}, {args.rounds} round(s)")
    print(f"{'':28}{'off':>18}{'auto':>18}{'auto/off':>10}")
    for key, label, unit in [
        ("wall", "run's wall time", "s"),
        ("peak", "peak RSS of the tree", "MiB"),
    ]:
        off, auto = results["off"][key], results["auto"][key]
        print(f"{label + ' (' + unit + ')':28}"
              f"{statistics.median(off):9.2f} / {p90(off):6.2f}"
              f"{statistics.median(auto):9.2f} / {p90(auto):6.2f}"
              f"{statistics.median(auto) / statistics.median(off):9.2f}x")
    print(f"{'booted ahead (shards)':28}{statistics.median(results['off']['ahead']):18.0f}"
          f"{statistics.median(results['auto']['ahead']):18.0f}")
    print(f"{'waited for turns (s)':28}{statistics.median(results['off']['waited']):18.2f}"
          f"{statistics.median(results['auto']['waited']):18.2f}")
    print("(median / p90)")
    if args.save:
        args.save.write_text(json.dumps({"node": node, "rounds": args.rounds, **results}, indent=1))


if __name__ == "__main__":
    main()
