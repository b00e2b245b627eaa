# shellcheck shell=bash
# What the action's scripts and the release scripts must agree on, in one place: how they speak
# to the runner (workflow commands, outputs), which release target a runner gets, what its asset
# is called, where the manifest lives, and the digest of the sources a binary is built from.
# Sourced, never run.
#
# Kept to bash 3.2 like every script here: macOS runners may resolve `bash` to /bin/bash.

# What the scripts print and write for the runner, so that no value can become a workflow
# command or another output: the runner treats a line that starts with `::` as a command, and a
# line of GITHUB_OUTPUT or GITHUB_ENV as an entry.

# A workflow command's message: the runner decodes %25, %0D and %0A, so an encoded value stays
# on the command's line.
escape_data() {
  local s=${1//\%/%25}
  s=${s//$'\r'/%0D}
  printf '%s' "${s//$'\n'/%0A}"
}

# A workflow command's property value: also `:` and `,`, which would end the property.
escape_property() {
  local s
  s=$(escape_data "$1")
  s=${s//:/%3A}
  printf '%s' "${s//,/%2C}"
}

# annotate error|warning|notice MESSAGE: the one way these scripts print a workflow command.
annotate() {
  printf '::%s title=%s::%s\n' "$1" "$(escape_property 'harper-shard action')" "$(escape_data "$2")"
}

# A line of the log that is not a command: CR and LF are shown as \r and \n, so a value cannot
# start a line of its own (and with it a workflow command).
say() {
  local s="$*"
  s=${s//$'\r'/\\r}
  printf 'harper-shard: %s\n' "${s//$'\n'/\\n}"
}

fail() {
  annotate error "$*" >&2
  exit 2
}

# A fresh delimiter for one entry of a GITHUB_OUTPUT/GITHUB_ENV file, the runner's own pattern.
new_delimiter() {
  local random
  random=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  [[ $random =~ ^[0-9a-f]{32}$ ]] || fail "cannot read 16 random bytes from /dev/urandom"
  printf 'ghadelimiter_%s' "$random"
}

# put FILE NAME VALUE: one entry of a GITHUB_OUTPUT/GITHUB_ENV file, always in the delimited form,
# so that a newline in VALUE cannot end the entry and start another. A value that holds the
# delimiter is refused, as the runner's toolkit does.
put() {
  local file=$1 name=$2 value=$3 delimiter
  delimiter=$(new_delimiter) || exit
  [[ $value != *"$delimiter"* ]] ||
    fail "the value of $name contains its delimiter $delimiter; nothing was written"
  printf '%s<<%s\n%s\n%s\n' "$name" "$delimiter" "$value" "$delimiter" >>"$file"
}

# put_output NAME VALUE: an output of the step.
put_output() {
  put "${GITHUB_OUTPUT:?}" "$1" "$2"
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
