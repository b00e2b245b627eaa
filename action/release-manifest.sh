#!/usr/bin/env bash
# The checksum manifest of a release: what the action at the release's tag verifies every
# download against (action/install.sh), written into the release commit by
# .github/workflows/release.yml.
#
#   release-manifest.sh check VERSION
#       VERSION is `v` and Cargo.toml's version, and this tree is not a release commit yet
#   release-manifest.sh write VERSION REPOSITORY ASSET_DIR
#       checks, then writes action/release-manifest.txt (version, repository, the digest of the
#       sources, one `sha256 <hex> <asset>` line per asset in ASSET_DIR) and ASSET_DIR/SHA256SUMS
#       (the same checksums for `sha256sum -c`, attached to the release for people)
set -euo pipefail
# shellcheck source=action/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tree=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)

check() {
  local version=$1 crate
  crate=$(crate_version "$tree")
  [[ $version == "v$crate" ]] ||
    fail "the tag $version is not v$crate, the version in Cargo.toml: bump Cargo.toml (and Cargo.lock) first, or tag v$crate"
  [[ ! -e $tree/$manifest_file ]] ||
    fail "$manifest_file exists already: this commit is a release commit, not one to release"
}

write() {
  local version=$1 repository=$2 assets=$3 asset sums=''
  check "$version"
  [[ $repository =~ ^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$ ]] || fail "'$repository' is not an owner/name"
  for asset in "$assets"/harper-shard-*; do
    [[ -f $asset ]] || fail "$assets holds no harper-shard-* asset"
    sums+="$(digest <"$asset")  ${asset##*/}"$'\n'
  done
  printf '%s' "$sums" >"$assets/SHA256SUMS"
  {
    echo "# The release this tree is, written by .github/workflows/release.yml into the commit the"
    echo "# tag points at. action/install.sh downloads the asset for its runner from this release"
    echo "# and runs it only if its SHA-256 is the one below; \`source\` is the digest of the"
    echo "# sources (Cargo.toml, Cargo.lock, src/) the assets were built from."
    echo "version $version"
    echo "repository $repository"
    echo "source $(source_digest "$tree")"
    printf '%s' "$sums" | while read -r sum name; do
      echo "sha256 $sum $name"
    done
  } >"$tree/$manifest_file"
  cat "$tree/$manifest_file"
}

case ${1:-} in
  check) check "${2:?usage: $0 check VERSION}" ;;
  write) write "${2:?usage: $0 write VERSION REPOSITORY ASSET_DIR}" "${3:?usage: $0 write VERSION REPOSITORY ASSET_DIR}" \
    "${4:?usage: $0 write VERSION REPOSITORY ASSET_DIR}" ;;
  *)
    echo "usage: $0 check VERSION | write VERSION REPOSITORY ASSET_DIR" >&2
    exit 2
    ;;
esac
