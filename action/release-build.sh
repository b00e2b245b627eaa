#!/usr/bin/env bash
# One release asset: builds harper-shard for TARGET, copies it to OUT_DIR as the asset the action
# downloads for that target, checks it, and prints its line for the manifest (`<sha256>  <name>`).
#
#   release-build.sh TARGET [OUT_DIR]   (OUT_DIR defaults to dist/)
#
# .github/workflows/release.yml runs it once per release target, each on a runner of that
# platform; .ci/run runs it for the host's target, the only one installed there. The Rust target
# must be installed (`rustup target add`); a musl target also needs musl-gcc (Debian: musl-tools)
# for the C in ring.
set -euo pipefail
# shellcheck source=action/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

target=${1:?usage: release-build.sh TARGET [OUT_DIR]}
out=${2:-dist}
tree=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
version=$(crate_version "$tree")

case $target in
  *-linux-musl)
    # Static: musl targets link their C runtime in by default; the C parts need musl's compiler,
    # which the cc crate takes from CC_<target>.
    command -v musl-gcc >/dev/null || fail "building $target needs musl-gcc (Debian: apt-get install musl-tools)"
    export "CC_${target//-/_}=musl-gcc"
    ;;
esac

bin=$(build_release "$tree" "$tree/target" "$target")
mkdir -p "$out"
asset=$out/$(asset_name "$target")
cp "$bin" "$asset"
chmod 755 "$asset"

case $target in
  *-linux-musl)
    file "$asset" | grep -Eq 'statically linked|static-pie linked' ||
      fail "$asset is not statically linked: $(file "$asset")"
    ;;
esac

# Every release runner is of its target's platform, so the asset runs there; elsewhere (a cross
# build) it is only built.
case $(uname -s)/$(uname -m) in
  Linux/x86_64) runs='x86_64-*-linux-*' ;;
  Linux/aarch64) runs='aarch64-*-linux-*' ;;
  Darwin/x86_64) runs=x86_64-apple-darwin ;;
  Darwin/arm64) runs=aarch64-apple-darwin ;;
  *) runs=none ;;
esac
# shellcheck disable=SC2053 # $runs is a glob on purpose
if [[ $target == $runs ]]; then
  said=$("$asset" --version)
  [[ $said == "harper-shard $version" ]] ||
    fail "$asset says '$said', not 'harper-shard $version' (Cargo.toml's version)"
fi

printf '%s  %s\n' "$(digest <"$asset")" "${asset##*/}"
