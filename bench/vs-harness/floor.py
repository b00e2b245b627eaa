#!/usr/bin/env python3
"""The floor of bench/vs-harness.py: Harper restarting with nothing around it.

Run as the command of a shard whose own instance has booted: it reads that Harper's command line,
environment and working directory from /proc, stops it through the control socket (ROOTPATH and
address kept), then starts the same command line by hand LIVES times on the same ROOTPATH, each
time timing spawn -> the ready line on stdout and spawn -> HTTP 200 from the operations API's
/health, and stopping it with SIGTERM. The figures go to OUT as JSON.

Usage: floor.py HARPER_SHARD_BIN LIVES OUT
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


def life(argv, env, cwd, url):
    """One start by hand: seconds to the ready line and to /health's 200, then a SIGTERM stop."""
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
        harper.send_signal(signal.SIGTERM)
        try:
            harper.wait(timeout=30)
        except subprocess.TimeoutExpired:
            harper.kill()
            harper.wait()
        harper.stdout.close()
    return {"marker": marker, "health": health}


def main():
    binary, lives, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    main = ctl(binary, "status", "--id", "main")["instance"]
    pid = main["pid"]
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = [a.decode() for a in f.read().split(b"\0") if a]
    with open(f"/proc/{pid}/environ", "rb") as f:
        env = dict(kv.decode().split("=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
    cwd = os.readlink(f"/proc/{pid}/cwd")
    ctl(binary, "stop", "--id", "main")
    lives = [life(argv, env, cwd, main["operations_url"]) for _ in range(lives)]
    with open(out, "w") as f:
        json.dump({"argv": argv, "boot_cache": "NODE_OPTIONS" in env, "lives": lives}, f)


if __name__ == "__main__":
    main()
