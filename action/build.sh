#!/usr/bin/env bash
# The action's binary: the one its caller names, or one built from the action's own source.
#
#   build.sh key    GITHUB_OUTPUT gets key, restore-key and paths for actions/cache
#   build.sh build  GITHUB_OUTPUT gets path, the harper-shard binary the run step execs
#
# Cargo runs from the action's directory, so a caller's .cargo/config.toml or rust-toolchain
# file (looked up from the working directory) cannot change how the tool is built.
set -euo pipefail

fail() {
  echo "::error title=harper-shard action::$*" >&2
  exit 2
}

# Canonical: GITHUB_ACTION_PATH ends in /./ for `uses: ./`, and actions/cache rejects '.' segments.
action_dir=$(cd "${GITHUB_ACTION_PATH:?}" && pwd -P)
target_dir=$action_dir/target
cargo_home=${CARGO_HOME:-$HOME/.cargo}

# Hex SHA-256 of stdin, on Linux and macOS alike.
digest() {
  if command -v sha256sum >/dev/null; then sha256sum; else shasum -a 256; fi | cut -d' ' -f1
}

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
  {
    echo "key=$prefix-$lock"
    echo "restore-key=$prefix-"
    echo "paths<<HARPER_SHARD_PATHS"
    printf '%s\n' "$cargo_home/registry/index" "$cargo_home/registry/cache" \
      "$cargo_home/git/db" "$target_dir"
    echo "HARPER_SHARD_PATHS"
  } >>"${GITHUB_OUTPUT:?}"
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
    (
      cd "$action_dir"
      CARGO_TARGET_DIR=$target_dir cargo build --release --locked --bin harper-shard \
        --manifest-path "$action_dir/Cargo.toml"
    )
    bin=$target_dir/release/harper-shard
  fi
  # Fails here, not mid-run, on a binary for another platform.
  "$bin" --version
  echo "path=$bin" >>"${GITHUB_OUTPUT:?}"
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
