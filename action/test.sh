#!/usr/bin/env bash
# Exercises the action's scripts the way the runner calls them: the GITHUB_* files live in a
# temporary directory, and a stub stands in for harper-shard. It records its argv, writes the
# outputs the real tool writes, and exits with the status it is told to.
#
# Proves: inputs become the right arguments, and nothing in them is evaluated; the tool's exit
# status and its signals pass through untouched; its outputs reach the step's GITHUB_OUTPUT,
# which action.yml maps to the action's outputs. What the scripts say to the runner cannot be
# turned by a value: a newline, a CR or a %0A in an input stays inside its workflow command or log
# line, every output is a delimited entry the runner reads back intact (a value that holds its
# delimiter is refused), and action.yml's step shell starts bash without the variables an earlier
# step could plant (a BASH_ENV script that leaves a marker, SHELLOPTS=xtrace with a PS4 that
# runs a command). Then the binary: a release's assets, served from a loopback HTTP server, are
# chosen per OS and architecture and verified against the manifest release-manifest.sh writes; a
# tampered one is refused; a release's URL is fetched https only, TLS 1.2 at least, and the
# test-only base URL allows plain http to 127.0.0.1 alone; every case without a fitting asset
# falls back to the build, which runs cargo (a stand-in here: .ci/run builds for real); a copy
# already in the tool cache needs no server. Last, the Harper cache key and the release build's
# packaging.
#
# A missing prerequisite fails the script: nothing here is skipped.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)

need() {
  command -v "$1" >/dev/null || {
    echo "action/test.sh: $1 is missing: $2" >&2
    exit 1
  }
}
need python3 "the release assets are served by a loopback HTTP server (python3's http.server)"
need curl "action/install.sh downloads with curl"
need node "action/harper.sh reads the dry run's JSON with node"
need cargo "action/build.sh key needs the Rust toolchain (rustup)"
need rustc "action/build.sh key names the compiler"

tmp=$(mktemp -d)
server_pid=''
cleanup() {
  if [[ -n $server_pid ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

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
if [[ ${1:-} == cache ]]; then
  printf '{"cache": "%s", "entries": []}\n' "$STUB_CACHE_DIR"
  exit 0
fi
if [[ " $* " == *" --plan "* ]]; then
  cat "$STUB_PLAN_JSON"
  exit "${STUB_PLAN_EXIT:-0}"
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
  unset STUB_EXIT STUB_FAILED STUB_WAIT_FOR_SIGNAL INPUT_BINARY STUB_PLAN_JSON STUB_PLAN_EXIT \
    STUB_CACHE_DIR RUNNER_OS RUNNER_ARCH RUNNER_TOOL_CACHE HARPER_SHARD_RELEASE_BASE_URL \
    GITHUB_SERVER_URL HARPER_CACHE_DIR HARPER_PACKAGES
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

# The runner's reading of a GITHUB_OUTPUT/GITHUB_ENV file: `NAME=VALUE` lines and
# `NAME<<DELIMITER` … `DELIMITER` blocks; a line ends at LF (a CR is part of it, as on Linux and
# macOS runners). Prints the last value of NAME (nothing and status 1 when it has none); status
# 3, and why, when the file is not one the runner would accept.
cat >"$tmp/outputs.py" <<'PY'
import sys

path, wanted = sys.argv[1], sys.argv[2]
with open(path, newline="") as f:
    lines = f.read().split("\n")
if lines and lines[-1] == "":
    lines.pop()
values, i = {}, 0
while i < len(lines):
    line = lines[i]
    i += 1
    if not line:
        continue
    eq, heredoc = line.find("="), line.find("<<")
    if eq > 0 and (heredoc < 0 or eq < heredoc):
        values[line[:eq]] = line[eq + 1:]
    elif heredoc > 0 and line[heredoc + 2:]:
        name, delimiter, body = line[:heredoc], line[heredoc + 2:], []
        while i < len(lines) and lines[i] != delimiter:
            body.append(lines[i])
            i += 1
        if i == len(lines):
            print(f"{path}: no line {delimiter!r} ends {name}", file=sys.stderr)
            sys.exit(3)
        i += 1
        values[name] = "\n".join(body)
    else:
        print(f"{path}: the runner rejects the line {line!r}", file=sys.stderr)
        sys.exit(3)
if wanted not in values:
    sys.exit(1)
print(values[wanted])
PY

# output NAME: the step's output NAME as the runner reads it.
output() {
  python3 "$tmp/outputs.py" "$GITHUB_OUTPUT" "$1"
}

# expect_output TEST NAME=VALUE
expect_output() {
  local name=$1 line=$2 value
  if value=$(output "${line%%=*}") && [[ $value == "${line#*=}" ]]; then
    ok "$name"
  else
    not_ok "$name" "GITHUB_OUTPUT lacks: $line" "it holds:" "$(cat "$GITHUB_OUTPUT")"
  fi
}

expect_log() {
  local name=$1 text=$2
  if [[ $log == *"$text"* ]]; then
    ok "$name"
  else
    not_ok "$name" "the log lacks: $text" "log:" "$log"
  fi
}

# expect_no_output TEST NAME…: the step has none of these outputs (and a file the runner reads).
expect_no_output() {
  local name=$1 key found
  shift
  for key in "$@"; do
    found=0
    output "$key" >/dev/null 2>&1 || found=$?
    if ((found != 1)); then
      not_ok "$name" "GITHUB_OUTPUT has $key, or the runner rejects it:" "$(cat "$GITHUB_OUTPUT")"
      return
    fi
  done
  ok "$name"
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

new_step
export GITHUB_ACTION_PATH=$repo/./ RUNNER_OS=Linux RUNNER_ARCH=X64
status=0
log=$("$repo/action/build.sh" key 2>&1) || status=$?
expect_status "the cache key is computed" 0
if [[ $(output key) =~ ^harper-shard-build-Linux-X64-[0-9a-f]{12}-[0-9a-f]{16}$ ]] &&
  grep -qxF "$repo/target" <<<"$(output paths)" && [[ $(output paths) != */./* ]]; then
  ok "the cache key names platform, compiler and lock; paths are canonical"
else
  not_ok "the cache key names platform, compiler and lock; paths are canonical" "$(cat "$GITHUB_OUTPUT")"
fi

# --- what the scripts say to the runner ---------------------------------------------------------

# The lines of $log the runner would take for workflow commands (it trims them first).
commands_in_log() {
  printf '%s\n' "$log" | sed 's/^[[:space:]]*//' | grep '^::' || true
}

# expect_commands TEST LINE…: $log holds exactly these workflow commands, nothing else.
expect_commands() {
  local name=$1 expected actual
  shift
  expected=$(printf '%s\n' "$@")
  actual=$(commands_in_log)
  if [[ $actual == "$expected" ]]; then
    ok "$name"
  else
    not_ok "$name" "expected commands:" "$expected" "actual commands:" "$actual" "log:" "$log"
  fi
}

status=0
escaped=$(. "$repo/action/lib.sh" && escape_data $'50%0A\n::error::pwned\r' && echo &&
  escape_property $'a:b,c%d\r\ne') || status=$?
if [[ $status == 0 && $escaped == $'50%250A%0A::error::pwned%0D\na%3Ab%2Cc%25d%0D%0Ae' ]]; then
  ok "a message escapes %, CR and LF; a property also : and ,"
else
  not_ok "a message escapes %, CR and LF; a property also : and ," "got:" "$escaped"
fi

new_step
export INPUT_CHECKS=$'maybe\n::error::pwned %0A'
run_step
expect_status "a hostile checks input is still a usage error" 2
expect_commands "a newline in an input cannot start a workflow command of its own" \
  "::error title=harper-shard action::checks must be 'true' or 'false', not 'maybe%0A::error::pwned %250A'"

new_step
export INPUT_ARGS=$'--timings "unbalanced\r::warning::pwned'
run_step
expect_commands "an args input quoted back in an error stays on the error's line" \
  "::error title=harper-shard action::args is not a valid argument list: --timings \"unbalanced%0D::warning::pwned"

new_step
export STUB_PLAN_JSON=$tmp/plan.json STUB_PLAN_EXIT=2 STUB_CACHE_DIR=$tmp/harper-cache
export INPUT_PLAN=$'ci/plan.yml\n::error::pwned'
echo '{}' >"$STUB_PLAN_JSON"
status=0
log=$(cd "$tmp/workspace" && "$repo/action/harper.sh" key 2>&1) || status=$?
expect_commands "a plain log line that quotes an input cannot start a workflow command"
expect_log "the plain log line shows the newline as \\n" 'the dry run of ci/plan.yml\n::error::pwned failed'

# Outputs: every entry in the delimited form, a fresh random delimiter each, read back by the
# runner as exactly the value written, whatever the value holds.
new_step
odd=$'odd%0A\npassed=true\nghadelimiter_0\r'
mkdir -p "$tmp/workspace/$odd"
cp "$stub" "$tmp/workspace/$odd/harper-shard"
export INPUT_BINARY=$odd/harper-shard
status=0
log=$(cd "$tmp/workspace" && "$repo/action/build.sh" build 2>&1) || status=$?
if [[ $status == 0 && $(output path) == "$tmp/workspace/$odd/harper-shard" ]]; then
  ok "a path with a newline, a %0A, an output line and a CR is one output, read back intact"
else
  not_ok "a path with a newline, a %0A, an output line and a CR is one output, read back intact" \
    "status $status" "GITHUB_OUTPUT:" "$(cat "$GITHUB_OUTPUT")" "log:" "$log"
fi
expect_no_output "a value cannot add an output of its own" passed

new_step
export CARGO_HOME=$'/cargo\nHARPER_SHARD_PATHS\nkey=pwned' RUNNER_OS=Linux RUNNER_ARCH=X64
status=0
log=$("$repo/action/build.sh" key 2>&1) || status=$?
unset CARGO_HOME
delimiters=$(grep -o '<<.*' "$GITHUB_OUTPUT" | cut -c3-)
if [[ $status == 0 && $(output key) != pwned && $(output paths) == $'/cargo\nHARPER_SHARD_PATHS\nkey=pwned/registry/index\n'* ]] &&
  [[ $(grep -c '^ghadelimiter_[0-9a-f]\{32\}$' <<<"$delimiters") == 3 && $(sort -u <<<"$delimiters" | wc -l) -eq 3 ]]; then
  ok "each output has its own random delimiter; a multi-line value cannot end its entry early"
else
  not_ok "each output has its own random delimiter; a multi-line value cannot end its entry early" \
    "status $status" "GITHUB_OUTPUT:" "$(cat "$GITHUB_OUTPUT")" "log:" "$log"
fi

# The delimiter is random, so a value that holds it is made by fixing it for once.
new_step
status=0
log=$(. "$repo/action/lib.sh" && new_delimiter() { printf 'ghadelimiter_fixed'; } &&
  put_output paths $'/a\nghadelimiter_fixed\nkey=pwned' 2>&1) || status=$?
if [[ $status == 2 && ! -s $GITHUB_OUTPUT && $log == "::error title=harper-shard action::the value of paths contains its delimiter"* ]]; then
  ok "a value that holds its delimiter is refused, and nothing is written"
else
  not_ok "a value that holds its delimiter is refused, and nothing is written" "status $status" \
    "GITHUB_OUTPUT:" "$(cat "$GITHUB_OUTPUT")" "log:" "$log"
fi

# --- the steps' shell ---------------------------------------------------------------------------

# Every run step of action.yml, run as the runner runs it: the `shell:` command with {0} replaced
# by the script's file (the runner's `bash` is `bash --noprofile --norc -eo pipefail {0}`). An
# earlier step of the job can put anything into the environment through GITHUB_ENV: here
# BASH_ENV and ENV name a script that leaves a marker, and SHELLOPTS=xtrace with a PS4 that runs a
# command is a second way in.
shells=$(sed -n 's/^ *shell: *//p' "$repo/action.yml" | sort -u)
runs=$(grep -c '^ *run: ' "$repo/action.yml")
if [[ $(sed -n 's/^ *shell: *//p' "$repo/action.yml" | wc -l) -eq $runs && $(wc -l <<<"$shells") -eq 1 ]]; then
  ok "every run step of action.yml has the one shell"
else
  not_ok "every run step of action.yml has the one shell" "$runs run steps, shells:" "$shells"
fi
printf 'touch %q\n' "$tmp/injected-by-env" >"$tmp/inject.sh"
cat >"$tmp/step-script" <<'STEP'
for name in BASH_ENV ENV CDPATH SHELLOPTS BASHOPTS; do
  if printenv "$name" >/dev/null; then echo "$name is in the environment"; fi
done
[[ -z ${CDPATH+set} ]] || echo "CDPATH is set"
[[ $- != *x* ]] || echo "xtrace is on"
! shopt -q extdebug || echo "extdebug is on"
echo ran
STEP
while IFS= read -r shell; do
  [[ $shell != bash ]] || shell='bash --noprofile --norc -eo pipefail {0}'
  read -r -a words <<<"$shell"
  words=("${words[@]//\{0\}/$tmp/step-script}")
  rm -f "$tmp/injected-by-env" "$tmp/injected-by-ps4"
  status=0
  log=$(env BASH_ENV="$tmp/inject.sh" ENV="$tmp/inject.sh" CDPATH="$tmp" SHELLOPTS=xtrace \
    BASHOPTS=extdebug PS4="\$(touch $tmp/injected-by-ps4)" "${words[@]}" 2>&1) || status=$?
  if [[ $status == 0 && $log == ran && ! -e $tmp/injected-by-env && ! -e $tmp/injected-by-ps4 ]]; then
    ok "a step's shell starts without BASH_ENV, ENV, CDPATH, SHELLOPTS and BASHOPTS; the injected script never runs"
  else
    not_ok "a step's shell starts without BASH_ENV, ENV, CDPATH, SHELLOPTS and BASHOPTS; the injected script never runs" \
      "shell: $shell" "status $status" "BASH_ENV's marker: $(ls "$tmp/injected-by-env" 2>&1)" \
      "PS4's marker: $(ls "$tmp/injected-by-ps4" 2>&1)" "log:" "$log"
  fi
done <<<"$shells"

# action.yml's own "Choose the binary" step, its body run through its shell as the runner would:
# a hostile path stays one output.
step_body() {
  awk -v id="$1" '
    /^    - / { in_step = 0; in_run = 0 }
    $0 == "      id: " id { in_step = 1 }
    in_step && /^      run: \|$/ { in_run = 1; next }
    in_run && /^        / { print substr($0, 9); next }
    in_run && !/^ *$/ { in_run = 0 }' "$repo/action.yml"
}
new_step
step_body binary >"$tmp/choose-binary"
read -r -a words <<<"$(head -n 1 <<<"$shells")"
words=("${words[@]//\{0\}/$tmp/choose-binary}")
status=0
log=$(BINARY=$'/opt/odd%0A\npassed=true\n::error::pwned' "${words[@]}" 2>&1) || status=$?
if [[ $status == 0 && -s $tmp/choose-binary && $(output path) == $'/opt/odd%0A\npassed=true\n::error::pwned' ]]; then
  ok "action.yml's binary step writes a hostile path as one output"
else
  not_ok "action.yml's binary step writes a hostile path as one output" "status $status" \
    "step body:" "$(cat "$tmp/choose-binary")" "GITHUB_OUTPUT:" "$(cat "$GITHUB_OUTPUT")" "log:" "$log"
fi
expect_no_output "action.yml's binary step lets no value add an output" passed

# --- the binary from a release ------------------------------------------------------------------

# An action tree of its own (the repository's sources and scripts), so that its manifest and
# sources can be changed without touching the repository.
tree=$tmp/action-tree
mkdir -p "$tree"
cp -R "$repo/Cargo.toml" "$repo/Cargo.lock" "$repo/src" "$repo/action" "$tree/"
rm -f "$tree/action/release-manifest.txt"
# shellcheck source=action/lib.sh
. "$repo/action/lib.sh" # crate_version
version=$(crate_version "$tree")
tag=v$version

# Fake assets: each says which one it is. The manifest comes from the release's own writer.
assets=$tmp/assets
mkdir -p "$assets"
targets="x86_64-unknown-linux-musl aarch64-unknown-linux-musl aarch64-apple-darwin x86_64-apple-darwin"
for target in $targets; do
  printf '#!/bin/sh\necho "harper-shard %s (the %s asset)"\n' "$version" "$target" >"$assets/harper-shard-$target"
done

status=0
log=$("$tree/action/release-manifest.sh" check v0.0.0-not-this 2>&1) || status=$?
expect_status "a tag that is not Cargo.toml's version is refused" 2
expect_log "the refusal names both versions" "the tag v0.0.0-not-this is not $tag"
status=0
log=$("$tree/action/release-manifest.sh" write "$tag" owner/harper-shard "$assets" 2>&1) || status=$?
expect_status "the manifest is written" 0
manifest=$tree/action/release-manifest.txt
if [[ $(grep -c '^sha256 [0-9a-f]\{64\} harper-shard-' "$manifest") == 4 ]] &&
  grep -qx "version $tag" "$manifest" && grep -qx "repository owner/harper-shard" "$manifest" &&
  grep -q '^source [0-9a-f]\{64\}$' "$manifest"; then
  ok "the manifest holds version, repository, source digest and one line per asset"
else
  not_ok "the manifest holds version, repository, source digest and one line per asset" "$(cat "$manifest")"
fi
if (cd "$assets" && sha256sum --check --quiet SHA256SUMS) >/dev/null 2>&1; then
  ok "SHA256SUMS checks with sha256sum -c"
else
  not_ok "SHA256SUMS checks with sha256sum -c" "$(cat "$assets/SHA256SUMS")"
fi
status=0
log=$("$tree/action/release-manifest.sh" check "$tag" 2>&1) || status=$?
expect_status "a tree that has a manifest is not released again" 2
cp "$manifest" "$tmp/manifest.good"

# The loopback server: python picks a free port, binds 127.0.0.1 and says which.
served=$tmp/served
mkdir -p "$served"
cp "$assets"/harper-shard-* "$served/"
python3 - "$served" >"$tmp/server.port" 2>"$tmp/server.log" <<'PY' &
import functools, http.server, sys

handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
print(server.server_address[1], flush=True)
server.serve_forever()
PY
server_pid=$!
for _ in $(seq 200); do
  [[ -s $tmp/server.port ]] && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.05
done
port=$(cat "$tmp/server.port")
[[ -n $port ]] || {
  echo "action/test.sh: the loopback HTTP server did not start: $(cat "$tmp/server.log")" >&2
  exit 1
}
base=http://127.0.0.1:$port

# A fresh install step for RUNNER_OS $1 and RUNNER_ARCH $2, from the loopback server, into the
# tool cache $3; install_run runs action/install.sh.
install_env() {
  new_step
  export GITHUB_ACTION_PATH=$tree RUNNER_OS=$1 RUNNER_ARCH=$2 RUNNER_TOOL_CACHE=$3
  export HARPER_SHARD_RELEASE_BASE_URL=$base
}
install_run() {
  requests_before=$(grep -c '"GET ' "$tmp/server.log" || true)
  status=0
  log=$("$tree/action/install.sh" 2>&1) || status=$?
}
install_step() {
  install_env "$@"
  install_run
}

# The requests the last install_run made, one path a line.
requests() {
  { grep '"GET ' "$tmp/server.log" || true; } | tail -n "+$((requests_before + 1))" |
    sed 's/.*"GET \([^ ]*\) .*/\1/'
}

platform=0
for platform_case in "Linux X64 x86_64-unknown-linux-musl" "Linux ARM64 aarch64-unknown-linux-musl" \
  "macOS ARM64 aarch64-apple-darwin" "macOS X64 x86_64-apple-darwin"; do
  read -r os arch target <<<"$platform_case"
  platform=$((platform + 1))
  install_step "$os" "$arch" "$tmp/tool-cache-$platform"
  bin=$tmp/tool-cache-$platform/harper-shard/$tag/$target/harper-shard
  said=$("$bin" --version 2>&1 || true)
  if [[ $status == 0 && $(requests) == "/harper-shard-$target" ]] &&
    [[ $(output path) == "$bin" && $said == *"the $target asset"* ]]; then
    ok "$os $arch downloads, verifies and installs harper-shard-$target"
  else
    not_ok "$os $arch downloads, verifies and installs harper-shard-$target" "status $status" \
      "requests: $(requests)" "output: $(cat "$GITHUB_OUTPUT")" "it says: $said" "log:" "$log"
  fi
done
expect_log "the log says the checksum matched" "matches the manifest"

# Tampered: the server's copy is not the one the manifest describes.
printf 'echo pwned\n' >>"$served/harper-shard-x86_64-unknown-linux-musl"
install_step Linux X64 "$tmp/tool-cache-tampered"
expect_status "a tampered asset is refused" 2
expect_log "the refusal says why and what was expected" "refusing to run harper-shard-x86_64-unknown-linux-musl"
expect_no_output "a refused asset yields no binary and no build" path build
if [[ -z $(ls -A "$tmp/tool-cache-tampered/harper-shard/$tag/x86_64-unknown-linux-musl" 2>/dev/null) ]]; then
  ok "a refused asset leaves nothing in the tool cache"
else
  not_ok "a refused asset leaves nothing in the tool cache" \
    "$(ls -A "$tmp/tool-cache-tampered/harper-shard/$tag/x86_64-unknown-linux-musl")"
fi
cp "$assets/harper-shard-x86_64-unknown-linux-musl" "$served/"

# Without the test-only base URL: the release's own URL, and https only.
install_env Linux X64 "$tmp/tool-cache-https"
unset HARPER_SHARD_RELEASE_BASE_URL
export GITHUB_SERVER_URL=$base/server
install_run
expect_log "the asset's URL is the release's download URL" \
  "downloading $base/server/owner/harper-shard/releases/download/$tag/harper-shard-x86_64-unknown-linux-musl"
if [[ $status == 0 && -z $(requests) && $(output build) == true ]]; then
  ok "outside tests only https is fetched (plain http falls back to the build, nothing requested)"
else
  not_ok "outside tests only https is fetched (plain http falls back to the build, nothing requested)" \
    "status $status" "requests: $(requests)" "log:" "$log"
fi

# The flags curl gets for a release's URL, from a stand-in that records them and fails as an
# unreachable host does: https only, also after a redirect, and TLS 1.2 at least.
mkdir -p "$tmp/fake-curl"
# shellcheck disable=SC2016 # $@ belongs to the fake curl
printf '#!/bin/sh\nprintf "%%s\\n" "$@" >"%s"\nexit 6\n' "$tmp/curl-argv" >"$tmp/fake-curl/curl"
chmod +x "$tmp/fake-curl/curl"
install_env Linux X64 "$tmp/tool-cache-curl-flags"
unset HARPER_SHARD_RELEASE_BASE_URL
export GITHUB_SERVER_URL=https://github.invalid
PATH=$tmp/fake-curl:$PATH install_run
curl_argv=$(cat "$tmp/curl-argv" 2>/dev/null || echo '<curl not run>')
if [[ $status == 0 && $(output build) == true ]] &&
  grep -qxF -- "--proto"$'\n'"=https" <<<"$curl_argv" &&
  grep -qxF -- "--proto-redir"$'\n'"=https" <<<"$curl_argv" && grep -qxF -- --tlsv1.2 <<<"$curl_argv" &&
  [[ $(tail -n 1 <<<"$curl_argv") == https://github.invalid/owner/harper-shard/releases/download/$tag/harper-shard-x86_64-unknown-linux-musl ]]; then
  ok "a release's asset is fetched with --proto =https --proto-redir =https --tlsv1.2"
else
  not_ok "a release's asset is fetched with --proto =https --proto-redir =https --tlsv1.2" \
    "status $status" "curl ran as:" "$curl_argv" "log:" "$log"
fi

# The test-only base URL allows plain http to 127.0.0.1 alone.
for hostile in "http://127.0.0.1.example.invalid:$port" "http://localhost:$port" "ftp://127.0.0.1:$port"; do
  install_env Linux X64 "$tmp/tool-cache-http-elsewhere"
  export HARPER_SHARD_RELEASE_BASE_URL=$hostile
  install_run
  if [[ $status == 2 && -z $(requests) && $log == *"HARPER_SHARD_RELEASE_BASE_URL '$hostile' is neither https:// nor http://127.0.0.1"* ]]; then
    ok "a test base URL of $hostile is refused before any download"
  else
    not_ok "a test base URL of $hostile is refused before any download" "status $status" "requests: $(requests)" "log:" "$log"
  fi
done

# --- the fallback -------------------------------------------------------------------------------

expect_build() {
  local name=$1 why=$2
  if [[ $status == 0 && -z $(requests) && $log == *"$why"*"building it from the action's source instead"* ]] &&
    [[ $(output build) == true ]] && ! output path >/dev/null; then
    ok "$name"
  else
    not_ok "$name" "status $status" "requests: $(requests)" "output: $(cat "$GITHUB_OUTPUT")" "log:" "$log"
  fi
}

install_step Linux ARM "$tmp/tool-cache-fallback-1"
expect_build "an unlisted platform builds, and says so" "release $tag has no binary for Linux ARM"

grep -v 'harper-shard-aarch64-apple-darwin$' "$tmp/manifest.good" >"$manifest"
install_step macOS ARM64 "$tmp/tool-cache-fallback-2"
expect_build "a platform the manifest does not list builds" "lists no harper-shard-aarch64-apple-darwin"
cp "$tmp/manifest.good" "$manifest"

echo '// changed on a branch' >>"$tree/src/main.rs"
install_step Linux X64 "$tmp/tool-cache-fallback-3"
expect_build "a tree whose sources differ from the release's builds, with a warning" \
  "::warning title=harper-shard action::action/release-manifest.txt names release $tag, but this tree's sources"
cp "$repo/src/main.rs" "$tree/src/main.rs"

mv "$served/harper-shard-x86_64-unknown-linux-musl" "$tmp/held-back"
install_step Linux X64 "$tmp/tool-cache-fallback-4"
if [[ $status == 0 && $(requests) == /harper-shard-x86_64-unknown-linux-musl ]] &&
  [[ $(output build) == true && $log == *"::warning"*"cannot download $base/harper-shard-x86_64-unknown-linux-musl"* ]]; then
  ok "an asset that cannot be downloaded builds instead, with a warning"
else
  not_ok "an asset that cannot be downloaded builds instead, with a warning" "status $status" "log:" "$log"
fi
mv "$tmp/held-back" "$served/harper-shard-x86_64-unknown-linux-musl"

install_step Windows X64 "$tmp/tool-cache-fallback-5"
expect_status "a Windows runner is a usage error" 2

# A stand-in for cargo: records where and how it ran, and "builds" a harper-shard that prints
# its version.
mkdir -p "$tmp/fake-cargo"
cat >"$tmp/fake-cargo/cargo" <<'CARGO'
#!/usr/bin/env bash
set -euo pipefail
{
  echo "cwd=$PWD"
  echo "CARGO_TARGET_DIR=$CARGO_TARGET_DIR"
  printf '%s\n' "$@"
} >"$FAKE_CARGO_ARGV"
target=''
while (($#)); do
  [[ $1 != --target ]] || target=$2
  shift
done
out=$CARGO_TARGET_DIR/${target:+$target/}release
mkdir -p "$out"
printf '#!/bin/sh\necho "harper-shard %s"\n' "$FAKE_CARGO_VERSION" >"$out/harper-shard"
chmod +x "$out/harper-shard"
CARGO
chmod +x "$tmp/fake-cargo/cargo"
real_path=$PATH

# The binary steps as action.yml runs them: install, then build when it says so.
rm "$manifest"
install_step Linux X64 "$tmp/tool-cache-fallback-6"
expect_build "a ref that is not a release builds" "this ref of the action is not a release"
export PATH=$tmp/fake-cargo:$real_path FAKE_CARGO_ARGV=$tmp/cargo-argv FAKE_CARGO_VERSION=$version
status=0
log=$("$tree/action/build.sh" build 2>&1) || status=$?
export PATH=$real_path
expected=$(printf '%s\n' "cwd=$tree" "CARGO_TARGET_DIR=$tree/target" build --release --locked \
  --bin harper-shard --manifest-path "$tree/Cargo.toml")
if [[ $status == 0 && $(cat "$tmp/cargo-argv") == "$expected" && $log == *"harper-shard $version"* ]] &&
  [[ $(output path) == "$tree/target/release/harper-shard" ]]; then
  ok "the fallback runs cargo build --release --locked in the action's tree, and checks the binary"
else
  not_ok "the fallback runs cargo build --release --locked in the action's tree, and checks the binary" \
    "status $status" "cargo ran as:" "$(cat "$tmp/cargo-argv" 2>/dev/null)" "expected:" "$expected" "log:" "$log"
fi
cp "$tmp/manifest.good" "$manifest"

# --- the tool cache ---------------------------------------------------------------------------

install_step Linux X64 "$tmp/tool-cache-1"
expect_log "a verified copy in the tool cache is not downloaded again" "the verified copy in"
if [[ $status == 0 && -z $(requests) ]]; then
  ok "a cache hit makes no request"
else
  not_ok "a cache hit makes no request" "status $status" "requests: $(requests)"
fi

printf 'echo pwned\n' >>"$tmp/tool-cache-1/harper-shard/$tag/x86_64-unknown-linux-musl/harper-shard"
install_step Linux X64 "$tmp/tool-cache-1"
if [[ $status == 0 && $(requests) == /harper-shard-x86_64-unknown-linux-musl && $log == *"::warning"*"downloading it again"* ]] &&
  cmp -s "$tmp/tool-cache-1/harper-shard/$tag/x86_64-unknown-linux-musl/harper-shard" \
    "$assets/harper-shard-x86_64-unknown-linux-musl"; then
  ok "a cached copy that does not match the manifest is replaced by a verified download"
else
  not_ok "a cached copy that does not match the manifest is replaced by a verified download" \
    "status $status" "requests: $(requests)" "log:" "$log"
fi

kill "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=''
install_step macOS ARM64 "$tmp/tool-cache-3"
if [[ $status == 0 && $(output path) == "$tmp/tool-cache-3/harper-shard/$tag/aarch64-apple-darwin/harper-shard" ]]; then
  ok "a cache hit installs with the server gone"
else
  not_ok "a cache hit installs with the server gone" "status $status" "log:" "$log"
fi

# --- Harper between jobs ------------------------------------------------------------------------

# A dry run's JSON with one shard per argument, "<package or /bin path> <runtime>".
plan_json() {
  # shellcheck disable=SC2016 # ${…} is JavaScript's
  node -e '
    const shards = process.argv.slice(1).map((arg, i) => {
      const [what, runtime] = arg.split(" ");
      const source = what.startsWith("/") ? { bin: what } : { package: what };
      return { name: `s${i}`, harper: { source, runtime } };
    });
    console.log(JSON.stringify({ plan: { shards } }, null, 2));' "$@" >"$STUB_PLAN_JSON"
}

harper_step() {
  status=0
  log=$(cd "$tmp/workspace" && "$repo/action/harper.sh" "$@" 2>&1) || status=$?
}

# The key step for a plan of those shards (whose dry run exits $plan_exit); sets $key.
harper_key() {
  new_step
  export RUNNER_OS=Linux RUNNER_ARCH=X64 STUB_PLAN_JSON=$tmp/plan.json STUB_CACHE_DIR=$tmp/harper-cache
  export STUB_PLAN_EXIT=${plan_exit:-0}
  plan_json "$@"
  harper_step key
  key=$(output key || true)
}

harper_key "harperdb@4.7.29 node" "harperdb@4.7.29 node" "/opt/harper/bin/harperdb.js node"
key_a=$key
node_version=$(node --version)
if [[ $key_a =~ ^harper-shard-harper-Linux-X64-[0-9a-f]{16}$ && $(output path) == "$tmp/harper-cache" &&
  $(output packages) == harperdb@4.7.29 ]] &&
  [[ $log == *"harperdb@4.7.29 node $node_version"* ]]; then
  ok "the Harper key names the npm packages with their runtime and its version; the path is the tool's cache"
else
  not_ok "the Harper key names the npm packages with their runtime and its version; the path is the tool's cache" \
    "key: $key_a" "output: $(cat "$GITHUB_OUTPUT")" "log:" "$log"
fi
harper_key "/opt/harper/bin/harperdb.js node" "harperdb@4.7.29 node"
key_b=$key
harper_key "harperdb@4.7.30 node"
key_c=$key
harper_key "harperdb@4.7.29 bun"
key_d=$key
if [[ $key_a == "$key_b" && $key_a != "$key_c" && $key_a != "$key_d" && $key_c != "$key_d" ]]; then
  ok "the Harper key changes with the package and the runtime, and only with them"
else
  not_ok "the Harper key changes with the package and the runtime, and only with them" "$key_a $key_b $key_c $key_d"
fi
mkdir -p "$tmp/fake-node"
# shellcheck disable=SC2016 # $1 and $@ belong to the fake node
printf '#!/bin/sh\n[ "$1" = --version ] && { echo v99.0.0; exit 0; }\nexec %s "$@"\n' "$(command -v node)" >"$tmp/fake-node/node"
chmod +x "$tmp/fake-node/node"
PATH=$tmp/fake-node:$real_path
harper_key "harperdb@4.7.29 node"
key_e=$key
PATH=$real_path
if [[ -n $key_e && $key_e != "$key_a" ]]; then
  ok "another node version is another Harper key (native modules are built for one)"
else
  not_ok "another node version is another Harper key (native modules are built for one)" "$key_e vs $key_a"
fi

harper_key "/opt/harper/bin/harperdb.js node"
if [[ $status == 0 && -z $key && $log == *"installs no Harper from npm"* ]]; then
  ok "a plan that installs nothing from npm caches nothing"
else
  not_ok "a plan that installs nothing from npm caches nothing" "status $status" "key: $key" "log:" "$log"
fi
plan_exit=2 harper_key "harperdb@4.7.29 node"
if [[ $status == 0 && -z $key && $log == *"the dry run of harper-shards.yml failed"* ]]; then
  ok "a plan the dry run refuses leaves the job uncached, not failed"
else
  not_ok "a plan the dry run refuses leaves the job uncached, not failed" "status $status" "key: $key" "log:" "$log"
fi

complete_step() {
  new_step
  export HARPER_CACHE_DIR=$tmp/harper-cache HARPER_PACKAGES=$'harperdb@4.7.29\n@scope/other@1'
  harper_step complete
}
mkdir -p "$tmp/harper-cache/packages/harperdb@4.7.29" "$tmp/harper-cache/packages/@scope_other@1.partial"
printf 'harperdb@4.7.29' >"$tmp/harper-cache/packages/harperdb@4.7.29/.harper-shard-complete"
complete_step
expect_no_output "a job whose install is partial saves no Harper cache" save
expect_log "it says which package is missing" "@scope/other@1 is not completely installed"
mv "$tmp/harper-cache/packages/@scope_other@1.partial" "$tmp/harper-cache/packages/@scope_other@1"
printf '@scope/other@1' >"$tmp/harper-cache/packages/@scope_other@1/.harper-shard-complete"
complete_step
expect_output "a job that installed every package saves the Harper cache" "save=true"

# --- the release build's packaging ---------------------------------------------------------------

host=$(rustc -vV | sed -n 's/^host: //p')
new_step
export PATH=$tmp/fake-cargo:$real_path FAKE_CARGO_ARGV=$tmp/cargo-argv FAKE_CARGO_VERSION=$version
status=0
log=$("$tree/action/release-build.sh" "$host" "$tmp/dist" 2>&1) || status=$?
asset=$tmp/dist/harper-shard-$host
if [[ $status == 0 && -x $asset && $(tail -n 1 <<<"$log") == "$(sha256sum <"$asset" | cut -d' ' -f1)  harper-shard-$host" ]] &&
  grep -qx -- "--target" "$tmp/cargo-argv" && grep -qx -- "$host" "$tmp/cargo-argv"; then
  ok "release-build.sh builds for the target and prints the asset's manifest line"
else
  not_ok "release-build.sh builds for the target and prints the asset's manifest line" "status $status" \
    "cargo ran as:" "$(cat "$tmp/cargo-argv" 2>/dev/null)" "log:" "$log"
fi
export FAKE_CARGO_VERSION=0.0.0-wrong
status=0
log=$("$tree/action/release-build.sh" "$host" "$tmp/dist" 2>&1) || status=$?
export PATH=$real_path
expect_status "a release binary that misreports its version is refused" 2

echo "$passed passed, $failed failed"
[[ $failed == 0 ]]
