#!/usr/bin/env bash
# The action's run step: turn its inputs (INPUT_* variables) into one harper-shard command line
# and become that process.
#
# `exec` matters twice over: the step's exit status is the tool's own (0/1/2/3/130/143), and a
# cancelled job's SIGINT/SIGTERM reaches the tool itself, which then tears its shards down and
# writes the partial report, instead of a shell that would sit between them.
#
# Kept to bash 3.2 (no mapfile, no ${x,,}): macOS runners may resolve `bash` to /bin/bash.
set -euo pipefail
# shellcheck source=action/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # fail: exit 2, the tool's own status for a usage error

: "${HARPER_SHARD_BIN:?must name the harper-shard binary}"
: "${INPUT_PLAN:=harper-shards.yml}" "${INPUT_PARTITION:=}" "${INPUT_ONLY:=}"
: "${INPUT_ASSIGNMENT:=}" "${INPUT_TIMINGS:=}"
: "${INPUT_REPORT_DIR:=harper-shard-report}" "${INPUT_CHECKS:=false}" "${INPUT_CHECK_NAME:=}"
: "${INPUT_ARGS:=}" "${INPUT_ARTIFACT_NAME:=}"

[[ -x $HARPER_SHARD_BIN ]] || fail "harper-shard binary '$HARPER_SHARD_BIN' is missing or not executable"

# The positional PLAN goes first: `--only` takes one or more values and would swallow it.
args=(run "$INPUT_PLAN")

if [[ -n $INPUT_PARTITION ]]; then
  args+=(--partition "$INPUT_PARTITION")
fi

if [[ -n $INPUT_ASSIGNMENT ]]; then
  args+=(--assignment "$INPUT_ASSIGNMENT")
fi

if [[ -n $INPUT_TIMINGS ]]; then
  args+=(--timings "$INPUT_TIMINGS")
fi

# Shard names, separated by commas or whitespace (so a YAML block list works too). Globbing is
# off while the list is split: a name is never matched against files.
set -f
for name in ${INPUT_ONLY//,/ }; do
  args+=(--only "$name")
done
set +f

args+=(--report-dir "$INPUT_REPORT_DIR")

case $(printf '%s' "$INPUT_CHECKS" | tr '[:upper:]' '[:lower:]') in
  true) args+=(--github-checks) ;;
  false | '') ;;
  *) fail "checks must be 'true' or 'false', not '$INPUT_CHECKS'" ;;
esac

if [[ -n $INPUT_CHECK_NAME ]]; then
  args+=(--check-name "$INPUT_CHECK_NAME")
fi

# Extra arguments are split like a command line, quotes honoured, never evaluated: xargs parses
# '…', "…" and \ without expanding $ or globs, and fails on an unbalanced quote.
if [[ $INPUT_ARGS =~ [^[:space:]] ]]; then
  split=$(mktemp)
  printf '%s\n' "$INPUT_ARGS" | xargs printf '%s\0' >"$split" ||
    { rm -f "$split"; fail "args is not a valid argument list: $INPUT_ARGS"; }
  while IFS= read -r -d '' arg; do
    args+=("$arg")
  done <"$split"
  rm -f "$split"
fi

# The report artifact's name, for the upload step: one per partition, and only the characters
# artifact names accept (1/3 becomes 1-of-3).
artifact=$INPUT_ARTIFACT_NAME
if [[ -z $artifact ]]; then
  artifact=harper-shard-report${INPUT_PARTITION:+-${INPUT_PARTITION//\//-of-}}
fi
GITHUB_OUTPUT=${GITHUB_OUTPUT:-/dev/null} put_output artifact-name "${artifact//[!A-Za-z0-9._-]/-}"

# Show what runs, quoted so it can be pasted into a shell to reproduce the step locally.
printf 'harper-shard'
printf ' %q' "${args[@]}"
printf '\n'

exec "$HARPER_SHARD_BIN" "${args[@]}"
