#!/usr/bin/env python3
"""Where a template copy's start goes, and what configuration switches save (issue 24).

  capture BIN DIR    run a one-shard plan (`harper: {boot: true}`) whose command reads its
                     Harper's command line, environment and working directory from /proc, stops
                     it through the control socket and keeps a copy of the instance's folder
                     (ROOTPATH, HOME, compile cache) in DIR/save, the rest in DIR/capture.json.
                     BIN must be the harper-shard that will be measured (the shard calls `ctl`).
  profile DIR N      restores the captured folder and starts that command N times by hand with
                     `--cpu-prof` in NODE_OPTIONS (which reaches Harper's worker thread as well
                     as its main thread), each life ended by SIGTERM once /health answers 200;
                     the profiles go to DIR/prof/<life>/ (after one unprofiled warm-up life).
  summary DIR        CPU time up to the ready line of each life profiled, by what it was doing
                     (module loading, LMDB, certificates, ...), for the main thread before and
                     after it starts the worker and for the worker; medians over the lives.
  measure DIR N NAME=ARG[,ARG...] ...
                     N lives of each variant (NAME=  with no arguments is the copy as the tool
                     starts it), alternating, on the same ROOTPATH, spawn -> /health 200; each
                     variant keeps a harperdb-config.yaml of its own (one untimed life first
                     writes its keys into it), so no variant's keys reach another; prints
                     medians and each variant's ratio to the first. `pprof:time`/`pprof:skip`
                     as an argument: see PPROF_HOOK. --cpus=LIST: Harper under taskset.

The captured folder is restored to the path it had under harper-shard (every path in Harper's
config names it), so a capture must not overlap a run using the same work directory and address:
`capture` uses HARPER_SHARD_WORK_DIR=/tmp/hsprof and the pool 127.0.201.2 of its own.
"""

import collections
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

POOL = "127.0.201.2"
WORK = "/tmp/hsprof"

# The floor's start by hand, shared (its folder's name is no module name).
_spec = importlib.util.spec_from_file_location("floor", os.path.join(os.path.dirname(os.path.abspath(__file__)), "vs-harness", "floor.py"))
floor = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(floor)

SHARD_COMMAND = r'''
import json, os, shutil, subprocess, sys
binary, out = sys.argv[1], sys.argv[2]
def ctl(*a):
    return json.loads(subprocess.run([binary, "ctl", *a, "--json"], capture_output=True, text=True, check=True).stdout)
own = ctl("status", "--id", "main")["instance"]
pid = own["pid"]
argv = [a.decode() for a in open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0") if a]
env = dict(kv.decode().split("=", 1) for kv in open(f"/proc/{pid}/environ", "rb").read().split(b"\0") if b"=" in kv)
cwd = os.readlink(f"/proc/{pid}/cwd")
ctl("stop", "--id", "main")
base = os.path.dirname(own["rootpath"])
shutil.copytree(base, os.path.join(out, "save"), symlinks=True)
json.dump({"argv": argv, "env": env, "cwd": cwd, "base": base, "instance": own}, open(os.path.join(out, "capture.json"), "w"), indent=1)
'''


def capture(binary, out):
    out = os.path.abspath(out)
    shutil.rmtree(os.path.join(out, "save"), ignore_errors=True)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "capture-shard.py"), "w") as f:
        f.write(SHARD_COMMAND)
    with open(os.path.join(out, "plan.yml"), "w") as f:
        f.write(
            f"version: 1\nharper: {{boot: true}}\npool: {{start: {POOL}, count: 1}}\n"
            f"shards:\n  - name: capture\n    run: python3 capture-shard.py {binary} {out}\n"
        )
    os.makedirs(WORK, exist_ok=True)
    env = {**os.environ, "HARPER_SHARD_WORK_DIR": WORK, "HARPER_SHARD_POOL_DIR": os.path.join(out, "pool")}
    subprocess.run([binary, "run", "plan.yml", "--report-dir", os.path.join(out, "report"), "-q"], cwd=out, env=env, check=True)


def load(d):
    with open(os.path.join(d, "capture.json")) as f:
        return json.load(f)


class restored:
    """The captured folder at the path it had under harper-shard, for the lives inside the
    `with`; removed after them."""

    def __init__(self, d, c):
        self.d, self.c = d, c

    def __enter__(self):
        shutil.rmtree(self.c["base"], ignore_errors=True)
        shutil.copytree(os.path.join(self.d, "save"), self.c["base"], symlinks=True)
        life(self.c)  # a warm-up: the restored files into the page cache

    def __exit__(self, *_):
        shutil.rmtree(self.c["base"], ignore_errors=True)


def config_of(d, c, name=None):
    """Swaps in the harperdb-config.yaml a variant's own earlier lives left (Harper writes the
    keys it is given into it, as a template built with them would hold them), or the captured
    one; `keep_config` stores it back after the life."""
    own = os.path.join(d, f"config-{name}.yaml")
    given = own if name is not None and os.path.exists(own) else os.path.join(d, "save", "r", "harperdb-config.yaml")
    shutil.copy(given, os.path.join(c["base"], "r", "harperdb-config.yaml"))


def keep_config(d, c, name):
    shutil.copy(os.path.join(c["base"], "r", "harperdb-config.yaml"), os.path.join(d, f"config-{name}.yaml"))


def key(arg):
    """`--KEY=value` -> KEY, without case (Harper's keys have none); anything else -> None."""
    return arg[2:].split("=", 1)[0].upper() if arg.startswith("--") and "=" in arg else None


def life(c, extra=(), env_extra=None, cpus=None):
    """One start by hand, as the floor's (bench/vs-harness/floor.py) but ended by SIGTERM always:
    monotonic spawn, ready line and /health 200."""
    env = {**c["env"], **(env_extra or {})}
    given = {key(a) for a in extra}
    argv = [a for a in c["argv"] if key(a) not in given] + list(extra)
    if cpus:
        argv = ["taskset", "-c", cpus] + argv
    t = floor.life(argv, env, c["cwd"], c["instance"]["operations_url"], signal.SIGTERM)
    return {"spawn": t["spawned"], "marker": t["spawned"] + t["marker"], "health": t["spawned"] + t["health"]}


def profile(d, lives):
    c = load(d)
    shutil.rmtree(os.path.join(d, "prof"), ignore_errors=True)
    with restored(d, c):
        profile_lives(d, c, lives)


def profile_lives(d, c, lives):
    for n in range(lives):
        out = os.path.join(d, "prof", str(n))
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        options = c["env"].get("NODE_OPTIONS", "") + f" --cpu-prof --cpu-prof-dir={out}"
        t = life(c, env_extra={"NODE_OPTIONS": options.strip()})
        with open(os.path.join(out, "life.json"), "w") as f:
            json.dump(t, f)
        print(f"life {n}: ready line {t['marker'] - t['spawn']:.3f} s, /health {t['health'] - t['spawn']:.3f} s; {sorted(os.listdir(out))}")


# --- reading a .cpuprofile ------------------------------------------------------------------------

PACKAGE_DIR = "/node_modules/"


def where(frame):
    """The package (or node's own part) a frame's code belongs to."""
    url = frame["url"]
    if not url:
        name = frame["functionName"] or "(anonymous)"
        return name if name.startswith("(") else "native: " + name
    if url.startswith("node:"):
        part = url[len("node:"):]
        if part.startswith("internal/modules/") or part.startswith("internal/vm"):
            return "node: module loading"
        return "node: " + part.split("/")[1 if part.startswith("internal/") else 0]
    if PACKAGE_DIR in url:
        rest = url.rsplit(PACKAGE_DIR, 1)[1].split("/")
        name = "/".join(rest[:2]) if rest[0].startswith("@") else rest[0]
        if name == "harperdb":
            return "harperdb/" + "/".join(rest[1:])
        return name
    return url


def read_profile(path, until_us=None):
    """Per sample: (stack of node ids root-first, microseconds), up to `until_us` (the profile's
    own clock: CLOCK_MONOTONIC on Linux, as Python's time.monotonic)."""
    with open(path) as f:
        p = json.load(f)
    nodes = {n["id"]: n for n in p["nodes"]}
    parent = {}
    for n in p["nodes"]:
        for child in n.get("children", []):
            parent[child] = n["id"]
    t = p["startTime"]
    samples = []
    deltas = p["timeDeltas"][1:] + [0]
    for sample, delta in zip(p["samples"], p["timeDeltas"]):
        t += delta
        if until_us is not None and t > until_us:
            break
        samples.append(sample)
    # A sample's duration: the gap to the next sample.
    return nodes, parent, list(zip(samples, deltas[: len(samples)]))


def stack(nodes, parent, leaf):
    out = []
    while leaf in nodes:
        out.append(nodes[leaf])
        leaf = parent.get(leaf)
    return out[::-1]


GROUPS = [
    ("LMDB and record encoding", {"lmdb", "ordered-binary", "msgpackr", "cbor-x", "weak-lru-cache", "@harperfast/extended-iterable"}),
    ("config parsing (yaml)", {"yaml"}),
    ("certificates and TLS", {"node-forge", "pkijs", "asn1js", "node: tls", "node: crypto", "native: createSecureContext"}),
    ("analytics: @datadog/pprof time.start", {"@datadog/pprof", "native: TimeProfiler"}),
    ("operations API and HTTP (fastify)", {"fastify", "avvio", "find-my-way", "@fastify/static", "@fastify/compress", "@fastify/cors", "light-my-request", "fast-json-stringify", "node: http", "node-unix-socket"}),
    ("MQTT and WebSocket", {"mqtt-packet", "ws"}),
    ("components (watch, glob)", {"chokidar", "readdirp", "fast-glob", "picomatch", "micromatch"}),
    ("logging", {"pino", "winston", "node: streams"}),
    ("clustering (nats)", {"nats"}),
]
READ = {"native: " + f for f in ("readFileUtf8", "read", "open", "fstat", "close", "lstat", "stat", "internalModuleStat", "realpath", "existsSync")}


def package(name):
    """Is this `where` a package from node_modules (not node, not native, not Harper's bundle)?"""
    return (name[0].islower() or name[0] == "@") and not name.startswith(("node:", "native:", "harperdb/", "file:"))


def category(s):
    """What one sample's stack (root first) was doing, in the terms of issue 24's question."""
    w = [where(n["callFrame"]) for n in s]
    leaf = w[-1]
    if leaf in ("(idle)", "(garbage collector)", "(program)"):
        return {"(idle)": "idle", "(garbage collector)": "garbage collection", "(program)": "V8/native (program)"}[leaf]
    if any(x == "node: module loading" or x.endswith("/boot/preload.cjs") for x in w):
        if leaf in ("node: vm", "native: Script", "native: compileFunction") or s[-1]["callFrame"]["functionName"] in ("wrapSafe", "compileFunctionForCJSLoader"):
            return "module loading: compile"
        if leaf in READ or leaf == "node: fs":
            return "module loading: read files"
        if leaf in ("node: module loading", "native: getNearestParentPackageJSON", "node: path"):
            return "module loading: resolve"
        return "module loading: run module bodies"
    for x in reversed(w):
        for name, members in GROUPS:
            if x in members:
                return name
    if any(x.startswith("harperdb/") for x in w):
        return "Harper's own code"
    return "node and other packages"


def thread_samples(path, until_us):
    nodes, parent, samples = read_profile(path, until_us)
    with open(path) as f:
        start = json.load(f)["startTime"]
    return start, [(stack(nodes, parent, leaf), d) for leaf, d in samples]


def life_profiles(life_dir):
    """(life.json, main thread's profile, worker's profiles) of one life: Node names each
    CPU.<date>.<time>.<pid>.<thread id>.<seq>.cpuprofile, thread 0 the main thread."""
    with open(os.path.join(life_dir, "life.json")) as f:
        t = json.load(f)
    files = sorted(x for x in os.listdir(life_dir) if x.endswith(".cpuprofile"))
    main = [os.path.join(life_dir, x) for x in files if x.split(".")[4] == "0"]
    workers = [os.path.join(life_dir, x) for x in files if x.split(".")[4] != "0"]
    return t, main[0], workers


def summary(d):
    """Per life and thread, seconds up to the ready line by category; medians over the lives."""
    lives = sorted((os.path.join(d, "prof", x) for x in os.listdir(os.path.join(d, "prof"))), key=lambda p: int(os.path.basename(p)))
    columns = ("main, to the worker", "main, after", "worker")
    table = collections.defaultdict(lambda: collections.defaultdict(list))
    loading = collections.defaultdict(lambda: collections.defaultdict(list))
    walls = collections.defaultdict(list)
    for life_dir in lives:
        t, main, workers = life_profiles(life_dir)
        until = t["marker"] * 1e6
        worker_start, worker = thread_samples(workers[0], until)
        main_start, main_samples = thread_samples(main, until)
        walls["ready line"].append(t["marker"] - t["spawn"])
        walls["main thread's profile starts"].append(main_start / 1e6 - t["spawn"])
        walls["worker's profile starts"].append(worker_start / 1e6 - t["spawn"])
        at = main_start
        parts = {c: collections.Counter() for c in columns}
        per_package = {c: collections.Counter() for c in ("main", "worker")}
        for stack_, dur in main_samples:
            at += dur
            parts[columns[0] if at <= worker_start else columns[1]][category(stack_)] += dur
        for stack_, dur in worker:
            parts[columns[2]][category(stack_)] += dur
        for thread, samples in (("main", main_samples), ("worker", worker)):
            for stack_, dur in samples:
                if category(stack_).startswith("module loading"):
                    # The outermost package whose code is being loaded: the one a Harper
                    # bundle's require asked for.
                    w = [where(n["callFrame"]) for n in stack_]
                    first = next((x for x in w if package(x)), "the Harper bundle itself")
                    per_package[thread][first] += dur
        for c in columns:
            cats = set(parts[c]) | set(table[c])
            for cat in cats:
                table[c][cat].append(parts[c][cat] / 1e6)
        for thread in per_package:
            for pkg, us in per_package[thread].items():
                loading[thread][pkg].append(us / 1e6)
    n = len(lives)
    med = lambda xs: statistics.median(xs + [0.0] * (n - len(xs)))
    print(f"{n} lives with --cpu-prof (medians, s): " + ", ".join(f"{k} {med(v):.3f}" for k, v in walls.items()))
    cats = sorted({cat for c in columns for cat in table[c]}, key=lambda cat: -sum(med(table[c][cat]) for c in columns))
    print(f"  {'up to the ready line (s)':<40}" + "".join(f"{c:>20}" for c in columns))
    for cat in cats:
        print(f"  {cat:<40}" + "".join(f"{med(table[c][cat]):>20.3f}" for c in columns))
    print(f"  {'busy (all but idle)':<40}" + "".join(f"{sum(med(table[c][k]) for k in cats if k != 'idle'):>20.3f}" for c in columns))
    for thread in ("main", "worker"):
        print(f"  module loading on the {thread} thread by the package loaded (s, median):")
        top = sorted(loading[thread], key=lambda k: -med(loading[thread][k]))[:15]
        print("    " + ", ".join(f"{k} {med(loading[thread][k]):.3f}" for k in top))


# Measurement only, not a switch: Harper 4.7.29 loads @datadog/pprof on every thread one second
# after its analytics module loads and starts a V8 CPU profiler with it (`time.start`), whatever
# the configuration says. `pprof:time` records when each start ran and how long it took;
# `pprof:skip` records the call and skips it, to weigh what it costs a boot.
PPROF_HOOK = r"""
const Module = require('module');
const { threadId } = require('worker_threads');
const fs = require('fs');
const load = Module._load;
Module._load = function (request, ...rest) {
  const m = load.call(this, request, ...rest);
  if (request === '@datadog/pprof' && !m.__timed) {
    m.__timed = true;
    const start = m.time.start;
    m.time.start = function (...a) {
      const t0 = performance.now();
      if (process.env.PPROF_HOOK !== 'skip') start.apply(this, a);
      const took = performance.now() - t0;
      fs.appendFileSync(process.env.PPROF_HOOK_OUT, JSON.stringify({ threadId, at: performance.timeOrigin + t0, took }) + '\n');
    };
  }
  return m;
};
"""


def variant_env(d, c, args, out):
    """`pprof:MODE` among a variant's arguments: the hook above, loaded in every thread."""
    modes = [a.split(":", 1)[1] for a in args if a.startswith("pprof:")]
    if not modes:
        return {}
    hook = os.path.join(d, "pprof-hook.cjs")
    with open(hook, "w") as f:
        f.write(PPROF_HOOK)
    if os.path.exists(out):
        os.remove(out)
    options = c["env"].get("NODE_OPTIONS", "") + f" --require={hook}"
    return {"NODE_OPTIONS": options.strip(), "PPROF_HOOK": modes[0], "PPROF_HOOK_OUT": out}


def measure(d, lives, variants, cpus=None):
    c = load(d)
    times = {name: [] for name, _ in variants}
    starts = {name: [] for name, _ in variants}
    for name, _ in variants:
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(d, f"config-{name}.yaml"))
    with restored(d, c):
        # One life each first, untimed: it writes the variant's keys into its config, which a
        # template built with them would already hold.
        for name, args in variants:
            config_of(d, c)
            life(c, [a for a in args if not a.startswith("pprof:")])
            keep_config(d, c, name)
        measure_lives(d, c, lives, variants, cpus, times, starts)
    report(d, lives, variants, cpus, times, starts)


def measure_lives(d, c, lives, variants, cpus, times, starts):
    for n in range(lives):
        order = variants if n % 2 == 0 else variants[::-1]
        for name, args in order:
            config_of(d, c, name)
            out = os.path.join(d, "pprof-calls.jsonl")
            env = variant_env(d, c, args, out)
            epoch = time.time() - time.monotonic()
            t = life(c, [a for a in args if not a.startswith("pprof:")], env, cpus)
            keep_config(d, c, name)
            times[name].append(t["health"] - t["spawn"])
            if env and os.path.exists(out):
                with open(out) as f:
                    for line in f:
                        call = json.loads(line)
                        at = call["at"] / 1e3 - epoch - t["spawn"]
                        starts[name].append({"thread": call["threadId"], "at": at, "took": call["took"] / 1e3, "ready": t["marker"] - t["spawn"]})


def report(d, lives, variants, cpus, times, starts):
    base = statistics.median(times[variants[0][0]])
    where = f" on CPU {cpus}" if cpus else ""
    print(f"{lives} lives each{where}, spawn -> /health 200 (s)")
    for name, args in variants:
        m = statistics.median(times[name])
        print(f"  {name:<12} median {m:.3f}  mean {statistics.mean(times[name]):.3f}  "
              f"min {min(times[name]):.3f}  {m / base:.3f}x  {' '.join(args)}")
        calls = starts[name]
        if calls:
            inside = [s for s in calls if s["at"] < s["ready"]]
            print(f"  {'':<12} pprof time.start: {len(calls)} call(s), at {statistics.median(s['at'] for s in calls):.3f} s (median),"
                  f" took {statistics.median(s['took'] for s in calls):.3f} s (median); {len(inside)} began before the ready line"
                  + (f", took {statistics.median(s['took'] for s in inside):.3f} s (median) there" if inside else ""))
    with open(os.path.join(d, "measure.json"), "a") as f:
        f.write(json.dumps({"cpus": cpus, "variants": variants, "times": times, "pprof": starts}) + "\n")


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    cmd, rest = sys.argv[1], sys.argv[2:]
    if cmd == "capture":
        capture(os.path.abspath(rest[0]), rest[1])
    elif cmd == "profile":
        profile(rest[0], int(rest[1]))
    elif cmd == "summary":
        summary(rest[0])
    elif cmd == "measure":
        cpus = None
        if rest and rest[0].startswith("--cpus="):
            cpus, rest = rest[0][len("--cpus="):], rest[1:]
        variants = []
        for v in rest[2:]:
            name, _, args = v.partition("=")
            variants.append((name, [a for a in args.split(",") if a]))
        measure(rest[0], int(rest[1]), variants, cpus)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
