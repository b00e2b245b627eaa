#!/usr/bin/env bash
# Exercises the action's scripts the way the runner calls them: the GITHUB_* files live in a
# temporary directory, and a stub stands in for harper-shard. It records its argv, writes the
# outputs the real tool writes, and exits with the status it is told to.
#
# Proves: inputs become the right arguments, and nothing in them is evaluated; the tool's exit
# status and its signals pass through untouched; its outputs reach the step's GITHUB_OUTPUT,
# which action.yml maps to the action's outputs.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
ok() {
  passed=$((passed + 1))
  echo "ok - $1"
}
not_ok() {
  failed=$((failed + 1))
  echo "not ok - $1"
  shift
  printf '#   %s\n' "$@"
}

stub=$tmp/bin/harper-shard
mkdir -p "$tmp/bin" "$tmp/workspace"
cat >"$stub" <<'STUB'
#!/usr/bin/env bash
# Stand-in for harper-shard: argv one per line into $STUB_ARGV, then behave as told.
set -euo pipefail
if [[ ${1:-} == --version ]]; then
  echo "harper-shard 0.0.0-stub"
  exit 0
fi
printf '%s\n' "$@" >"$STUB_ARGV"
{
  echo "report-dir=$STUB_REPORT_DIR"
  echo "failed-shards=${STUB_FAILED:-}"
  echo "passed=$([[ ${STUB_EXIT:-0} == 0 ]] && echo true || echo false)"
  echo "duration-seconds=12.5"
} >>"$GITHUB_OUTPUT"
if [[ -n ${STUB_WAIT_FOR_SIGNAL:-} ]]; then
  trap 'echo "$$ TERM" >"$STUB_WAIT_FOR_SIGNAL"; exit 143' TERM
  echo "$$" >"$STUB_WAIT_FOR_SIGNAL.ready"
  sleep 30 &
  wait $!
  exit 99
fi
exit "${STUB_EXIT:-0}"
STUB
chmod +x "$stub"

# A fresh step: new GITHUB_* files, inputs unset, the workspace as the working directory.
new_step() {
  local step=$tmp/step$((passed + failed))
  mkdir -p "$step"
  touch "$step/output" "$step/summary" "$step/env"
  export GITHUB_OUTPUT=$step/output GITHUB_STEP_SUMMARY=$step/summary GITHUB_ENV=$step/env
  export GITHUB_ACTION_PATH=$repo RUNNER_TEMP=$step GITHUB_ACTIONS=true
  export HARPER_SHARD_BIN=$stub STUB_ARGV=$step/argv STUB_REPORT_DIR=harper-shard-report
  unset STUB_EXIT STUB_FAILED STUB_WAIT_FOR_SIGNAL INPUT_BINARY
  unset INPUT_PLAN INPUT_PARTITION INPUT_ONLY INPUT_REPORT_DIR INPUT_ARGS INPUT_CHECKS \
    INPUT_CHECK_NAME INPUT_ARTIFACT_NAME INPUT_ASSIGNMENT INPUT_TIMINGS
}

# Runs the run step; sets $status and $log.
run_step() {
  status=0
  log=$(cd "$tmp/workspace" && "$repo/action/run.sh" 2>&1) || status=$?
}

expect_argv() {
  local name=$1 expected actual
  shift
  expected=$(printf '%s\n' "$@")
  actual=$(cat "$STUB_ARGV" 2>/dev/null || echo '<stub not run>')
  if [[ $status == 0 && $actual == "$expected" ]]; then
    ok "$name"
  else
    not_ok "$name" "status: $status" "expected argv:" "$expected" "actual argv:" "$actual" "log:" "$log"
  fi
}

expect_status() {
  local name=$1 want=$2
  if [[ $status == "$want" ]]; then
    ok "$name"
  else
    not_ok "$name" "expected status $want, got $status" "log:" "$log"
  fi
}

expect_output() {
  local name=$1 line=$2
  if grep -qxF -- "$line" "$GITHUB_OUTPUT"; then
    ok "$name"
  else
    not_ok "$name" "GITHUB_OUTPUT lacks: $line" "it holds:" "$(cat "$GITHUB_OUTPUT")"
  fi
}

# --- inputs become arguments ---------------------------------------------------------------

new_step
run_step
expect_argv "defaults run the default plan into the default report dir" \
  run harper-shards.yml --report-dir harper-shard-report
expect_output "the report artifact is named after the tool" "artifact-name=harper-shard-report"

new_step
export INPUT_PLAN=ci/plan.yml INPUT_PARTITION=2/3 INPUT_REPORT_DIR=out/report \
  INPUT_ONLY=$'api, db\n  web,' INPUT_CHECKS=True INPUT_CHECK_NAME='integration (2/3)' \
  INPUT_ARGS=$'--format json\n--timings "ci/my timings.json" -v'
run_step
expect_argv "every input maps to its flag, plan first" \
  run ci/plan.yml --partition 2/3 --only api --only db --only web --report-dir out/report \
  --github-checks --check-name 'integration (2/3)' --format json --timings 'ci/my timings.json' -v
expect_output "a partition gets its own artifact name" "artifact-name=harper-shard-report-2-of-3"

new_step
export INPUT_PARTITION=1/2 INPUT_ASSIGNMENT=0123456789abcdef INPUT_TIMINGS='ci/timings in.json'
run_step
expect_argv "the matrix's assignment and the timings it balanced by become flags" \
  run harper-shards.yml --partition 1/2 --assignment 0123456789abcdef --timings 'ci/timings in.json' \
  --report-dir harper-shard-report

new_step
export INPUT_CHECKS=false INPUT_ARTIFACT_NAME='reports: linux/x64'
run_step
expect_argv "checks false adds no flag" run harper-shards.yml --report-dir harper-shard-report
expect_output "an artifact name is made safe for upload-artifact" "artifact-name=reports--linux-x64"

new_step
# shellcheck disable=SC2016 # the $( ) and backquotes must reach the script unexpanded
export INPUT_ARGS='--timings $(touch pwned) ; touch pwned2 `touch pwned3` *' INPUT_ONLY='*'
run_step
# shellcheck disable=SC2016
expect_argv "no input is evaluated or globbed" \
  run harper-shards.yml --only '*' --report-dir harper-shard-report \
  --timings '$(touch' 'pwned)' ';' touch pwned2 '`touch' 'pwned3`' '*'
if compgen -G "$tmp/workspace/pwned*" >/dev/null; then
  not_ok "no input reaches a shell" "found $(ls "$tmp/workspace")"
else
  ok "no input reaches a shell"
fi

new_step
export INPUT_ARGS='--timings "unbalanced'
run_step
expect_status "an unbalanced quote in args is a usage error" 2

new_step
export INPUT_CHECKS=maybe
run_step
expect_status "checks other than true/false is a usage error" 2

new_step
export HARPER_SHARD_BIN=$tmp/bin/missing
run_step
expect_status "a missing binary is a usage error" 2

# --- the tool's status, outputs and signals pass through -------------------------------------

for code in 0 1 2 3 130 143; do
  new_step
  export STUB_EXIT=$code
  run_step
  expect_status "exit status $code is preserved" "$code"
done

new_step
export STUB_EXIT=1 STUB_FAILED='db/2 web' STUB_REPORT_DIR=out/report
run_step
for line in report-dir=out/report 'failed-shards=db/2 web' passed=false duration-seconds=12.5; do
  expect_output "the tool's output reaches the step: ${line%%=*}" "$line"
done
for key in report-dir failed-shards passed duration-seconds; do
  if grep -qF "value: \${{ steps.run.outputs.$key }}" "$repo/action.yml"; then
    ok "action.yml maps the step's $key to its own output"
  else
    not_ok "action.yml maps the step's $key to its own output"
  fi
done

new_step
export STUB_WAIT_FOR_SIGNAL=$tmp/signal
(cd "$tmp/workspace" && exec "$repo/action/run.sh") >/dev/null 2>&1 &
step_pid=$!
for _ in $(seq 100); do
  [[ -e $STUB_WAIT_FOR_SIGNAL.ready ]] && break
  sleep 0.05
done
kill -TERM "$step_pid"
status=0
wait "$step_pid" || status=$?
if [[ $status == 143 && $(cat "$STUB_WAIT_FOR_SIGNAL" 2>/dev/null) == "$step_pid TERM" ]]; then
  ok "the step's process is the tool: SIGTERM reaches it, its status comes back"
else
  not_ok "the step's process is the tool: SIGTERM reaches it, its status comes back" \
    "status $status, stub saw: $(cat "$STUB_WAIT_FOR_SIGNAL" 2>/dev/null || echo nothing)"
fi

# --- the binary step ---------------------------------------------------------------------------

new_step
export INPUT_BINARY=../bin/harper-shard
status=0
log=$(cd "$tmp/workspace" && "$repo/action/build.sh" build 2>&1) || status=$?
expect_status "a given binary is checked, not built" 0
expect_output "a given binary is resolved against the workspace" \
  "path=$tmp/workspace/../bin/harper-shard"

new_step
export INPUT_BINARY=no/such/harper-shard
status=0
log=$(cd "$tmp/workspace" && "$repo/action/build.sh" build 2>&1) || status=$?
expect_status "a given binary that is not there is a usage error" 2

if command -v cargo >/dev/null; then
  new_step
  export GITHUB_ACTION_PATH=$repo/./ RUNNER_OS=Linux RUNNER_ARCH=X64
  status=0
  log=$("$repo/action/build.sh" key 2>&1) || status=$?
  expect_status "the cache key is computed" 0
  if grep -qE '^key=harper-shard-build-Linux-X64-[0-9a-f]{12}-[0-9a-f]{16}$' "$GITHUB_OUTPUT" &&
    grep -qxF "$repo/target" "$GITHUB_OUTPUT" && ! grep -qF '/./' "$GITHUB_OUTPUT"; then
    ok "the cache key names platform, compiler and lock; paths are canonical"
  else
    not_ok "the cache key names platform, compiler and lock; paths are canonical" "$(cat "$GITHUB_OUTPUT")"
  fi
fi

echo "$passed passed, $failed failed"
[[ $failed == 0 ]]
