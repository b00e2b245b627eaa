# shellcheck shell=bash
# What the action's scripts and the release scripts must agree on, in one place: which release
# target a runner gets, what its asset is called, where the manifest lives, and the digest of the
# sources a binary is built from. Sourced, never run.
#
# Kept to bash 3.2 like every script here: macOS runners may resolve `bash` to /bin/bash.

fail() {
  echo "::error title=harper-shard action::$*" >&2
  exit 2
}

# Hex SHA-256 of stdin, on Linux and macOS alike.
digest() {
  if command -v sha256sum >/dev/null; then sha256sum; else shasum -a 256; fi | cut -d' ' -f1
}

# The manifest of the release a tree is, relative to the tree's root. Only a release commit (the
# one a version tag points at) has one; see .github/workflows/release.yml.
# shellcheck disable=SC2034 # used by the scripts that source this one
manifest_file=action/release-manifest.txt

# What decides the binary, the same set the Dockerfile's build context holds.
source_paths="Cargo.toml Cargo.lock src"

# The release target for a runner (RUNNER_OS, RUNNER_ARCH); fails for a platform the release
# workflow does not build. Linux gets static musl binaries: they run on any distribution.
release_target() {
  case $1/$2 in
    Linux/X64) echo x86_64-unknown-linux-musl ;;
    Linux/ARM64) echo aarch64-unknown-linux-musl ;;
    macOS/X64) echo x86_64-apple-darwin ;;
    macOS/ARM64) echo aarch64-apple-darwin ;;
    *) return 1 ;;
  esac
}

asset_name() {
  echo "harper-shard-$1"
}

# The version in a tree's Cargo.toml (the first `version =` line is the package's).
crate_version() {
  sed -n 's/^version = "\(.*\)"$/\1/p' "$1/Cargo.toml" | head -n 1
}

# One digest of every file under the source paths of the tree at $1: the manifest records the
# one its assets were built from, and the action builds instead of downloading when its own
# tree's differs. Paths are sorted bytewise, so Linux and macOS agree.
source_digest() {
  (
    cd "$1" || exit
    # shellcheck disable=SC2086 # source_paths is a list of plain words
    find $source_paths -type f -print | LC_ALL=C sort | while IFS= read -r file; do
      printf '%s  %s\n' "$(digest <"$file")" "$file"
    done | digest
  )
}

# `cargo build --release` of the binary in the tree at $1, into $2 (a target directory), for
# target $3 or, when $3 is empty, the host; prints the binary's path. The action's fallback and
# the release workflow build through here alike. Cargo runs from the tree, so a caller's
# .cargo/config.toml or rust-toolchain file (looked up from the working directory) cannot change
# how the tool is built.
build_release() {
  local tree=$1 target_dir=$2 target=${3:-}
  (cd "$tree" && CARGO_TARGET_DIR=$target_dir cargo build --release --locked --bin harper-shard \
    --manifest-path "$tree/Cargo.toml" ${target:+--target "$target"}) >&2
  echo "$target_dir/${target:+$target/}release/harper-shard"
}
