#!/usr/bin/env python3
"""The floor of bench/vs-harness.py: Harper restarting with nothing around it.

Run as the command of a shard whose own instance has booted: it reads that Harper's command line,
environment and working directory from /proc, stops it through the control socket (ROOTPATH and
address kept), then starts the same command line by hand LIVES times on the same ROOTPATH, each
time timing spawn -> the ready line on stdout and spawn -> HTTP 200 from the operations API's
/health, then ending it with SIGTERM and SIGKILL in turn (as harper-shard's restarts do in the
benchmark), removing after a SIGKILL the pid file and socket a crash leaves, as harper-shard does
before a restart. The figures go to OUT as JSON, each life with how the one before it ended.

Then, as a lever to weigh (issue 24), LIVES0 more lives the same way with --THREADS_COUNT=0:
Harper serving from its main thread, no worker thread.

Usage: floor.py HARPER_SHARD_BIN LIVES LIVES0 OUT
"""

import json
import os
import selectors
import signal
import subprocess
import sys
import time
import urllib.request

MARKER = b"successfully started"
LIMIT = 120.0


def ctl(binary, *args):
    out = subprocess.run([binary, "ctl", *args, "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def healthy(url):
    try:
        with urllib.request.urlopen(url + "/health", timeout=1) as answer:
            return answer.status == 200
    except OSError:
        return False


def life(argv, env, cwd, url, end):
    """One start by hand: seconds to the ready line and to /health's 200, then `end` it; and
    `spawned`, the start's time.monotonic() (bench/profile-start.py lines CPU profiles up by it)."""
    started = time.monotonic()
    harper = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        seen = b""
        with selectors.DefaultSelector() as sel:
            sel.register(harper.stdout, selectors.EVENT_READ)
            while MARKER not in seen:
                if time.monotonic() - started > LIMIT or not sel.select(timeout=LIMIT):
                    sys.exit("floor: Harper printed no ready line in time")
                chunk = os.read(harper.stdout.fileno(), 65536)
                if not chunk:
                    sys.exit(f"floor: Harper exited before its ready line: {harper.wait()}")
                seen = seen[-len(MARKER):] + chunk
        marker = time.monotonic() - started
        while not healthy(url):
            if time.monotonic() - started > LIMIT:
                sys.exit("floor: /health never answered 200")
            time.sleep(0.005)
        health = time.monotonic() - started
    finally:
        harper.send_signal(end)
        try:
            harper.wait(timeout=30)
        except subprocess.TimeoutExpired:
            harper.kill()
            harper.wait()
        harper.stdout.close()
    return {"marker": marker, "health": health, "spawned": started}


def main():
    binary, lives, lives0, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    own = ctl(binary, "status", "--id", "main")["instance"]
    pid = own["pid"]
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = [a.decode() for a in f.read().split(b"\0") if a]
    with open(f"/proc/{pid}/environ", "rb") as f:
        env = dict(kv.decode().split("=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
    cwd = os.readlink(f"/proc/{pid}/cwd")
    ctl(binary, "stop", "--id", "main")
    single = [a for a in argv if not a.startswith("--THREADS_COUNT=")] + ["--THREADS_COUNT=0"]
    figures, after = [], "stop"
    for n in range(lives + lives0):
        end = signal.SIGTERM if n % 2 else signal.SIGKILL
        threads = 1 if n < lives else 0
        figures.append({**life(argv if threads else single, env, cwd, own["operations_url"], end), "after": after, "threads": threads})
        after = "stop" if end == signal.SIGTERM else "kill"
        if end == signal.SIGKILL:
            for stale in ("hdb.pid", "operations-server"):
                try:
                    os.remove(os.path.join(own["rootpath"], stale))
                except FileNotFoundError:
                    pass
    with open(out, "w") as f:
        json.dump({"argv": argv, "boot_cache": "NODE_OPTIONS" in env, "lives": figures}, f)


if __name__ == "__main__":
    main()
