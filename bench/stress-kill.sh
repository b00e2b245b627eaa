#!/usr/bin/env bash
# SIGKILL harper-shard at a chosen moment, many times, and count what survives it.
#
#   bench/stress-kill.sh [TRIALS]      (default 20; needs `cargo build` first)
#
# Scenarios: the tool is SIGKILLed while the fake server boots, while a command runs (one that
# also leaves a setsid daemon), during teardown (once a server that ignores SIGTERM has it), and
# while real Harper boots (npm harperdb@4.7.29 from the cache), plus the same command-phase kill
# with the keeper bypassed (HARPER_SHARD_UNSAFE_NO_KEEPER=1) as the control that must leak.
# SCENARIOS="teardown boot" runs only those.
# After each kill: processes that still carry the trial's mark 15 s later are survivors (then
# killed by pid); every plan port on the address must be free; a follow-up run on the same pool
# must get the same address. Prints one line per scenario.
set -u
cd "$(dirname "$0")/.."
TRIALS=${1:-20}
BIN=$PWD/target/debug/harper-shard
FAKE=$PWD/target/debug/fake-harper
ADDR=127.0.34.2
PORTS="9925 9926 1883 8883 9933"
[ -x "$BIN" ] && [ -x "$FAKE" ] || { echo "run 'cargo build' first" >&2; exit 2; }

marked() { # pids of live, non-zombie processes carrying the mark
  local mark=$1 f pid
  for f in /proc/[0-9]*/environ; do
    pid=${f#/proc/}; pid=${pid%/environ}
    [ "$pid" = $$ ] && continue
    grep -qa "HARPER_SHARD_TEST_MARK=$mark" "$f" 2>/dev/null || continue
    [ "$(awk '{print $3}' /proc/$pid/stat 2>/dev/null)" = Z ] && continue
    echo "$pid"
  done
}

ports_free() {
  python3 - "$ADDR" $PORTS <<'PY'
import socket, sys
addr = sys.argv[1]
for port in map(int, sys.argv[2:]):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try: s.bind((addr, port))
    except OSError: sys.exit(1)
    s.close()
    c = socket.socket(); c.settimeout(0.2)
    if c.connect_ex((addr, port)) == 0: sys.exit(1)
    c.close()
PY
}

wait_file() { local i; for i in $(seq 1 3000); do [ -e "$1" ] && return 0; sleep 0.02; done; return 1; }

plan() { # dir harper-yaml run
  cat > "$1/harper-shards.yml" <<YML
version: 1
harper:
$2
  startup: {idle: 120s, max: 240s}
pool: {start: $ADDR, count: 1, wait: 10s}
shards:
  - name: a
    run: "$3"
YML
}

fake() { printf '  runtime: exec\n  bin: %s\n  env: {FAKE_HARPER: "%s"}\n  teardown: {grace: %s, port_release: 3s}' "$FAKE" "$1" "$2"; }

trial() { # scenario dir mark -> prints survivors count; return 1 on a port/reuse failure
  local scenario=$1 dir=$2 mark=$3 tool sync extra_env=()
  case $scenario in
    boot)      plan "$dir" "$(fake "delay=30s,started-file=$dir/sync" 2s)" "true" ;;
    commands|no-keeper) plan "$dir" "$(fake "" 2s)" "setsid sleep 600 & sleep 600 & touch $dir/sync; wait" ;;
    # The fake notes the SIGTERM of Harper's stop: the kill lands inside its 3 s grace.
    teardown)  plan "$dir" "$(fake "ignore-term,term-file=$dir/sync" 3s)" "true" ;;
    real-boot) plan "$dir" "  teardown: {grace: 5s, port_release: 5s}" "true" ;;
  esac
  [ "$scenario" = no-keeper ] && extra_env=(HARPER_SHARD_UNSAFE_NO_KEEPER=1)
  ( cd "$dir" && exec env HARPER_SHARD_TEST_MARK="$mark" HARPER_SHARD_POOL_DIR="$dir/../pool" HARPER_SHARD_WORK_DIR="$dir/w" \
      HARPER_SHARD_REPORT_DIR="$dir/report" "${extra_env[@]}" "$BIN" run >"$dir/tool.log" 2>&1 ) &
  tool=$!
  if [ "$scenario" = real-boot ]; then
    for _ in $(seq 1 6000); do
      for p in $(marked "$mark"); do grep -qa harperdb.js /proc/$p/cmdline 2>/dev/null && break 2; done
      sleep 0.02
    done
  else
    wait_file "$dir/sync"
  fi
  kill -9 $tool; wait $tool 2>/dev/null
  local left deadline=$((SECONDS + 15))
  while left=$(marked "$mark"); [ -n "$left" ] && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
  local survivors=0
  for p in $left; do survivors=$((survivors + 1)); kill -9 "$p" 2>/dev/null; done
  echo "$survivors"
  for _ in $(seq 1 100); do ports_free && break; sleep 0.05; done
  ports_free || return 1
  plan "$dir" "$(fake "" 1s)" "true"
  ( cd "$dir" && env HARPER_SHARD_TEST_MARK="$mark" HARPER_SHARD_POOL_DIR="$dir/../pool" HARPER_SHARD_WORK_DIR="$dir/w" \
      HARPER_SHARD_REPORT_DIR="$dir/report" "$BIN" run -q >/dev/null 2>&1 ) || return 1
  grep -q "\"address\": \"$ADDR\"" "$dir/report/report.json" || return 1
}

# No dot in the name: the tool refuses a work directory Harper's path check would hang on.
root=$(mktemp -d /tmp/hs-stress-XXXXXX)
trap 'rm -rf "$root"' EXIT
printf '%-10s %7s %22s %18s\n' scenario trials "trials with survivors" "port/reuse fails"
for scenario in ${SCENARIOS:-boot commands teardown real-boot no-keeper}; do
  leaked=0 bad=0 total=0
  for i in $(seq 1 "$TRIALS"); do
    dir="$root/$scenario-$i"; mkdir -p "$dir"
    mark=$(cat /proc/sys/kernel/random/uuid)
    out=$(trial "$scenario" "$dir" "$mark") || bad=$((bad + 1))
    [ "${out:-0}" -gt 0 ] && leaked=$((leaked + 1))
    total=$((total + 1))
  done
  printf '%-10s %7d %22d %18d\n' "$scenario" "$total" "$leaked" "$bad"
done
