#!/usr/bin/env bash
# The action's binary when it does not come from a release (action/install.sh): the one its
# caller names, or one built from the action's own source.
#
#   build.sh key    GITHUB_OUTPUT gets key, restore-key and paths for actions/cache
#   build.sh build  GITHUB_OUTPUT gets path, the harper-shard binary the run step execs
set -euo pipefail
# shellcheck source=action/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Canonical: GITHUB_ACTION_PATH ends in /./ for `uses: ./`, and actions/cache rejects '.' segments.
action_dir=$(cd "${GITHUB_ACTION_PATH:?}" && pwd -P)
target_dir=$action_dir/target
cargo_home=${CARGO_HOME:-$HOME/.cargo}

require_cargo() {
  command -v cargo >/dev/null ||
    fail "no Rust toolchain on this runner: install one before this step, or set the 'binary' input to a prebuilt harper-shard"
}

# Deps are what make a cold build slow, so the key follows what decides them: Cargo.lock, the
# compiler, and the platform. A new lock restores the closest older cache and builds the rest.
key() {
  require_cargo
  local prefix lock
  prefix="harper-shard-build-${RUNNER_OS:-$(uname -s)}-${RUNNER_ARCH:-$(uname -m)}"
  prefix+="-$(cd "$action_dir" && rustc -V | digest | cut -c1-12)"
  lock=$(digest <"$action_dir/Cargo.lock" | cut -c1-16)
  put_output key "$prefix-$lock"
  put_output restore-key "$prefix-"
  put_output paths "$(printf '%s\n' "$cargo_home/registry/index" "$cargo_home/registry/cache" \
    "$cargo_home/git/db" "$target_dir")"
}

build() {
  local bin
  if [[ -n ${INPUT_BINARY:-} ]]; then
    # Relative to the workspace, like every other path input.
    bin=$INPUT_BINARY
    [[ $bin == /* ]] || bin=$PWD/$bin
    [[ -f $bin && -x $bin ]] || fail "binary '$INPUT_BINARY' is not an executable file"
  else
    require_cargo
    bin=$(build_release "$action_dir" "$target_dir")
  fi
  # Fails here, not mid-run, on a binary for another platform.
  "$bin" --version
  put_output path "$bin"
}

# The tool is built on process groups, flock and PR_SET_PDEATHSIG: there is no Windows build.
[[ ${RUNNER_OS:-} != Windows ]] || fail "harper-shard runs on Linux and macOS runners, not Windows"

case ${1:-} in
  key) key ;;
  build) build ;;
  *)
    echo "usage: $0 key|build" >&2
    exit 2
    ;;
esac
