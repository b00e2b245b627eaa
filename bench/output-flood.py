#!/usr/bin/env python3
"""Memory and report sizes when shard commands flood their output.

The release binary runs, as a GitHub Actions step, a plan of two failing shards on the fake
server: one command prints 300 MB in lines of 1 MiB, the other 300 MB without any line end.
Both fail, so their tails go everywhere a tail goes: report.json, junit.xml, the step summary,
the log groups. Per run it reports

- the tool's peak RSS: VmHWM of the harper-shard process from /proc/<pid>/status, sampled every
  20 ms (the high-water mark, so the last sample is the peak up to then), and ru_maxrss from
  wait4 (the largest of the tool and every child it reaped: an upper bound that misses nothing);
- the sizes of the step summary, junit.xml and report.json, and the wall time;

then the median of the runs, and fails unless every run stays under 64 MiB (ru_maxrss) with a
step summary under 1 MiB.

    python3 bench/output-flood.py [--runs N]      (builds `cargo build --release` first)
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1024 * 1024
RSS_LIMIT = 64 * MIB
SUMMARY_LIMIT = 1 * MIB
FLOOD = 300 * 1000 * 1000

# What the two shards run (written next to the plan; the plan's directory is their cwd).
SCRIPTS = {
    "long-lines.py": f"import sys\nline = b'a' * ({MIB} - 1) + b'\\n'\nfor _ in range({FLOOD // MIB}):\n    sys.stdout.buffer.write(line)\nsys.exit(1)\n",
    "no-newline.sh": f"head -c {FLOOD} /dev/zero | tr '\\0' b\nexit 1\n",
}


def plan(fake: str) -> str:
    return (
        "version: 1\n"
        "pool: {start: 127.0.92.2, count: 4, wait: 30s}\n"
        "run: {concurrency: 2}\n"
        "harper:\n  runtime: exec\n"
        f"  bin: {fake}\n"
        "  startup: {idle: 10s, max: 20s}\n"
        "shards:\n"
        "  - name: long-lines\n    run: python3 long-lines.py\n    timeout: 10m\n"
        "  - name: no-newline\n    run: sh no-newline.sh\n    timeout: 10m\n"
    )


def vm_hwm(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def one_run(binary: str, fake: str, tmp: str, i: int) -> dict:
    work = os.path.join(tmp, f"run{i}")
    os.makedirs(work)
    with open(os.path.join(work, "harper-shards.yml"), "w") as f:
        f.write(plan(fake))
    for name, text in SCRIPTS.items():
        with open(os.path.join(work, name), "w") as f:
            f.write(text)
    summary = os.path.join(work, "step-summary.md")
    open(summary, "w").close()
    env = dict(os.environ)
    env.update(
        GITHUB_ACTIONS="true",
        GITHUB_STEP_SUMMARY=summary,
        GITHUB_OUTPUT=os.path.join(work, "outputs.txt"),
        HARPER_SHARD_WORK_DIR=os.path.join(work, "w"),
        HARPER_SHARD_REPORT_DIR=os.path.join(work, "report"),
        HARPER_SHARD_POOL_DIR=os.path.join(work, "pool"),
    )
    for name in ("RUST_LOG", "HARPER_SHARD_PLAN", "NO_COLOR"):
        env.pop(name, None)
    started = time.monotonic()
    proc = subprocess.Popen([binary, "run"], cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # The step log is read as GitHub's runner would, so that a full pipe never slows the tool.
    err = bytearray()
    reader = threading.Thread(target=lambda: err.extend(proc.stderr.read()))
    reader.start()
    hwm = 0
    while True:
        hwm = max(hwm, vm_hwm(proc.pid))
        done, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.02)
    took = time.monotonic() - started
    reader.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 1:
        sys.stderr.write(err.decode(errors="replace")[-4000:])
        raise SystemExit(f"run {i}: exit {proc.returncode}, expected 1 (both shards fail)")
    size = lambda *p: os.path.getsize(os.path.join(work, *p))
    return {
        "hwm": hwm,
        "maxrss": rusage.ru_maxrss * 1024,
        "summary": size("step-summary.md"),
        "junit": size("report", "junit.xml"),
        "report": size("report", "report.json"),
        "log": len(err),
        "took": took,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bins"], cwd=ROOT, check=True)
    binary = os.path.join(ROOT, "target", "release", "harper-shard")
    fake = os.path.join(ROOT, "target", "release", "fake-harper")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            r = one_run(binary, fake, tmp, i)
            runs.append(r)
            print(
                f"run {i + 1}: peak RSS {r['hwm'] / MIB:.1f} MiB (VmHWM), {r['maxrss'] / MIB:.1f} MiB (ru_maxrss, tool or child); "
                f"step summary {r['summary']:,} B, junit.xml {r['junit']:,} B, report.json {r['report']:,} B, "
                f"step log {r['log']:,} B; {r['took']:.1f} s",
                flush=True,
            )
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(
        f"median of {len(runs)}: peak RSS {med['hwm'] / MIB:.1f} MiB (VmHWM), {med['maxrss'] / MIB:.1f} MiB (ru_maxrss); "
        f"step summary {med['summary']:,.0f} B; junit.xml {med['junit']:,.0f} B; report.json {med['report']:,.0f} B; "
        f"step log {med['log']:,.0f} B; {med['took']:.1f} s"
    )
    worst_rss = max(r["maxrss"] for r in runs)
    worst_summary = max(r["summary"] for r in runs)
    ok = worst_rss < RSS_LIMIT and worst_summary < SUMMARY_LIMIT
    print(f"{'PASS' if ok else 'FAIL'}: peak RSS {worst_rss / MIB:.1f} MiB (limit 64), step summary {worst_summary:,} B (limit 1 MiB)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
