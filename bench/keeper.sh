#!/usr/bin/env bash
# What the keeper costs, on the fake server (no node needed):
#
#   bench/keeper.sh [RUNS]     (default 15; needs `cargo build` first; figures in BENCHMARKS.md)
#
#  1. ready line printed → first command started (the fake's `record=` start stamp → the
#     command's first `date`): readiness probe + ownership check + keeper spawn + `sh`;
#  2. Harper's exit → address released (the fake's `record=` end stamp, written as its listeners
#     close on SIGTERM → the tool's `-v` "released" line): keeper report + port check + rm;
#  3. one keeper's memory: RSS, PSS (shared pages split) and private dirty, read by the command
#     from /proc/$PPID/smaps_rollup ($PPID is its keeper);
#  4. the tool's RSS (VmRSS and VmHWM) and all keepers' PSS with 32 shards running at once
#     (concurrency 32, pool 127.0.35.2 × 32).
# Medians over RUNS runs for 1–3; one run for 4.
set -eu
cd "$(dirname "$0")/.."
RUNS=${1:-15}
BIN=$PWD/target/debug/harper-shard
FAKE=$PWD/target/debug/fake-harper
[ -x "$BIN" ] && [ -x "$FAKE" ] || { echo "run 'cargo build' first" >&2; exit 2; }
# No dot in the name: the tool refuses a work directory Harper's path check would hang on.
root=$(mktemp -d /tmp/hs-bench-XXXXXX)
trap 'rm -rf "$root"' EXIT
export HARPER_SHARD_POOL_DIR=$root/pool HARPER_SHARD_WORK_DIR=$root/w HARPER_SHARD_REPORT_DIR=$root/report

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

for i in $(seq 1 "$RUNS"); do
  d=$root/run-$i; mkdir -p "$d"
  cat > "$d/plan.yml" <<YML
version: 1
harper:
  runtime: exec
  bin: $FAKE
  env: {FAKE_HARPER: "record=$d/record"}
  teardown: {grace: 2s, port_release: 3s}
pool: {start: 127.0.35.2, count: 1}
shards:
  - name: a
    run: "date +%s%N > $d/cmd; awk '/^(Rss|Pss|Private_Dirty):/ {printf \"%s \", \$2}' /proc/\$PPID/smaps_rollup > $d/keeper-rss"
YML
  "$BIN" -v run "$d/plan.yml" 2> "$d/log" >/dev/null
  python3 - "$d" >> "$root/lat" <<'PY'
import re, sys, datetime
d = sys.argv[1]
rec = dict(l.split()[1:3] for l in open(f"{d}/record"))
cmd = int(open(f"{d}/cmd").read())
log = re.sub(r"\x1b\[[0-9;]*m", "", open(f"{d}/log").read())
stamp = re.search(r"^(\S+Z) DEBUG \S+ released", log, re.M).group(1)
sec, frac = stamp[:-1].split(".")
released = int(datetime.datetime.fromisoformat(sec + "+00:00").timestamp()) * 10**9 + int(frac.ljust(9, "0")[:9])
print((cmd - int(rec["start"])) / 1e6, (released - int(rec["end"])) / 1e6, open(f"{d}/keeper-rss").read().strip())
PY
done
echo "runs: $RUNS (debug build)"
echo "ready line -> first command started: median $(awk '{print $1}' "$root/lat" | median) ms"
echo "Harper's exit -> address released:   median $(awk '{print $2}' "$root/lat" | median) ms"
echo "one keeper's memory:                 median RSS $(awk '{print $3}' "$root/lat" | median) KiB, PSS $(awk '{print $4}' "$root/lat" | median) KiB, private dirty $(awk '{print $5}' "$root/lat" | median) KiB"

d=$root/many; mkdir -p "$d"
{
  printf 'version: 1\nharper:\n  runtime: exec\n  bin: %s\n  teardown: {grace: 2s, port_release: 3s}\n' "$FAKE"
  printf 'pool: {start: 127.0.35.2, count: 32}\nrun: {concurrency: 32}\nshards:\n'
  for n in $(seq 1 32); do
    printf '  - name: s%s\n    run: "touch %s/started.$HARPER_SHARD_INDEX; until [ -e %s/go ]; do sleep 0.1; done"\n' "$n" "$d" "$d"
  done
} > "$d/plan.yml"
"$BIN" -q run "$d/plan.yml" >/dev/null 2>&1 &
tool=$!
until [ "$(ls "$d" | grep -c '^started\.')" -ge 32 ]; do sleep 0.1; done
rss=$(awk '/VmRSS/ {print $2}' /proc/$tool/status); hwm=$(awk '/VmHWM/ {print $2}' /proc/$tool/status)
keepers=0; n=0
for p in $(pgrep -f -- "harper-shard __keeper --lifeline" ); do
  grep -qa "$d" /proc/$p/cmdline 2>/dev/null || [ "$(awk '{print $4}' /proc/$p/stat)" = "$tool" ] || continue
  keepers=$((keepers + $(awk '/^Pss:/ {print $2}' /proc/$p/smaps_rollup))); n=$((n + 1))
done
touch "$d/go"
wait $tool
echo "32 shards at once: tool VmRSS ${rss} KiB, VmHWM ${hwm} KiB; ${n} keepers, ${keepers} KiB PSS together"
