#!/usr/bin/env bash
# Harper between jobs: the npm-installed packages and the boot templates built from them live in
# harper-shard's cache directory, which actions/cache restores before the run and saves after it.
#
#   harper.sh key       GITHUB_OUTPUT gets key, path and packages: the key names every npm
#                       package the plan installs with the runtime it runs on (and that runtime's
#                       version: Harper's native modules are built for one), on this OS and arch
#   harper.sh complete  GITHUB_OUTPUT gets save=true when every one of those packages is
#                       completely installed in the cache, so that a job that failed before its
#                       install (or had no shard) never saves an entry the others would restore
#
# Nothing here fails the job: without a key (a plan the dry run refuses, no node, nothing from
# npm) the action runs uncached and the run step reports whatever is wrong with the plan.
set -euo pipefail
# shellcheck source=action/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${HARPER_SHARD_BIN:?must name the harper-shard binary}" "${INPUT_PLAN:=harper-shards.yml}"

# Says why there is nothing to do, and ends the step green.
nothing() {
  say "$*"
  exit 0
}

key() {
  # node reads the JSON: Harper from npm needs node (and npm) on the runner anyway.
  command -v node >/dev/null || nothing "Harper is not cached between jobs: node is not on the PATH"
  # The layout of the cache's folders (src/harper/install.rs `folder`) is in the key too: an
  # entry saved with another layout restores folders this harper-shard never finds, and an
  # entry is never replaced.
  local plan packages runtime version lines='' cache layout='cache layout 2'
  plan=$("$HARPER_SHARD_BIN" run "$INPUT_PLAN" --plan --format json 2>/dev/null) ||
    nothing "Harper is not cached between jobs: the dry run of $INPUT_PLAN failed (the run step says why)"
  # Every shard of the plan, not only this partition's: the jobs of a matrix share one entry.
  # shellcheck disable=SC2016 # ${…} is JavaScript's
  packages=$(printf '%s' "$plan" | node -e '
    const plan = JSON.parse(require("fs").readFileSync(0, "utf8")).plan;
    const seen = new Set(plan.shards.filter((s) => s.harper.source.package)
      .map((s) => `${s.harper.source.package} ${s.harper.runtime}`));
    console.log([...seen].sort().join("\n"));')
  [[ -n $packages ]] || nothing "Harper is not cached between jobs: the plan installs no Harper from npm"
  while read -r package runtime; do
    case $runtime in
      node | bun) version=$("$runtime" --version 2>/dev/null) || version=missing ;;
      *) version=- ;;
    esac
    lines+="$package $runtime $version"$'\n'
  done <<<"$packages"
  cache=$("$HARPER_SHARD_BIN" cache status --format json | node -e '
    console.log(JSON.parse(require("fs").readFileSync(0, "utf8")).cache)') ||
    nothing "Harper is not cached between jobs: harper-shard names no cache directory"
  say "caching Harper between jobs in $cache for"
  while read -r line; do
    say "  $line"
  done <<<"${lines%$'\n'}"
  put_output key "harper-shard-harper-${RUNNER_OS:-$(uname -s)}-${RUNNER_ARCH:-$(uname -m)}-$(printf '%s\n%s' "$layout" "$lines" | digest | cut -c1-16)"
  put_output path "$cache"
  put_output packages "$(printf '%s\n' "$packages" | cut -d' ' -f1 | sort -u)"
}

# A complete install holds the marker src/harper/install.rs writes last, and the marker holds the
# spec; a partial one is a `.partial` directory without it.
complete() {
  : "${HARPER_CACHE_DIR:?must name the cache directory}" "${HARPER_PACKAGES:?must list the packages}"
  local spec marker found
  while read -r spec; do
    [[ -n $spec ]] || continue
    found=''
    for marker in "$HARPER_CACHE_DIR"/packages/*/.harper-shard-complete; do
      if [[ -f $marker && $(cat "$marker") == "$spec" ]]; then
        found=$marker
        break
      fi
    done
    [[ -n $found ]] || nothing "$spec is not completely installed in $HARPER_CACHE_DIR: this job saves no Harper cache"
  done <<<"$HARPER_PACKAGES"
  put_output save true
}

case ${1:-} in
  key) key ;;
  complete) complete ;;
  *)
    echo "usage: $0 key|complete" >&2
    exit 2
    ;;
esac
