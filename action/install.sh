#!/usr/bin/env bash
# The action's binary from the release its own tree is: the asset for this runner's OS and
# architecture, run only if its SHA-256 is the one in the action's own manifest.
#
#   install.sh   GITHUB_OUTPUT gets path (the verified binary), or build=true and the log says
#                why no release binary fits; action/build.sh then builds it from source
#
# The manifest (action/release-manifest.txt) is read from the action's checkout, never fetched
# beside the asset, so a download alone cannot change what runs: a mismatch is refused (exit 2,
# nothing installed), never run and never papered over by building instead.
#
# Which release: the one the manifest names. Only a release commit, the one a version tag points
# at, has a manifest, and the manifest also records the digest of the sources its assets were
# built from: a tree whose sources differ (a branch that carries a release commit's manifest)
# builds instead. The action's ref is not consulted: composite actions are not promised
# github.action_ref, and a SHA or a major tag pinning the release commit is the same release.
#
# Downloads are https only, TLS 1.2 or later, redirects included (`--proto '=https' --tlsv1.2`).
# HARPER_SHARD_RELEASE_BASE_URL replaces `<server>/<repository>/releases/download/<version>`; it is
# for action/test.sh's loopback server, and the one place plain http is allowed: only to
# http://127.0.0.1, with redirects still https only. Any other http base is refused. The checksum
# still decides.
set -euo pipefail
# shellcheck source=action/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

action_dir=$(cd "${GITHUB_ACTION_PATH:?}" && pwd -P)
manifest=$action_dir/$manifest_file

build_instead() {
  say "$*; building it from the action's source instead"
  put_output build true
  exit 0
}

# The same, for what should not happen: a notice on the run, not only a line in the log.
warn_and_build_instead() {
  annotate warning "$*; building it from the action's source instead"
  put_output build true
  exit 0
}

[[ ${RUNNER_OS:-} != Windows ]] || fail "harper-shard runs on Linux and macOS runners, not Windows"

[[ -f $manifest ]] ||
  build_instead "this ref of the action is not a release (it has no $manifest_file)"

version='' repository='' sources='' want=''
target=$(release_target "${RUNNER_OS:-}" "${RUNNER_ARCH:-}") || target=''
asset=$(asset_name "${target:-none}")
while read -r field value name; do
  case $field in
    version) version=$value ;;
    repository) repository=$value ;;
    source) sources=$value ;;
    sha256) [[ $name != "$asset" ]] || want=$value ;;
  esac
done <"$manifest"
[[ -n $version && -n $repository && $sources =~ ^[0-9a-f]{64}$ ]] ||
  fail "$manifest_file lacks its version, repository or source digest: the release commit is damaged"

[[ -n $target ]] ||
  build_instead "release $version has no binary for ${RUNNER_OS:-this OS} ${RUNNER_ARCH:-$(uname -m)}"
[[ $want =~ ^[0-9a-f]{64}$ ]] ||
  build_instead "release $version's manifest lists no $asset"
[[ $(source_digest "$action_dir") == "$sources" ]] ||
  warn_and_build_instead "$manifest_file names release $version, but this tree's sources are not the ones its binaries were built from"

dir=${RUNNER_TOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}}/harper-shard/$version/$target
bin=$dir/harper-shard

if [[ -f $bin && $(digest <"$bin") == "$want" ]]; then
  say "$version ($target): the verified copy in $dir"
else
  [[ ! -e $bin ]] ||
    annotate warning "$bin does not match release $version's manifest; downloading it again"
  base=${HARPER_SHARD_RELEASE_BASE_URL:-}
  protocols='=https'
  if [[ -n $base ]]; then
    say "downloading from $base (HARPER_SHARD_RELEASE_BASE_URL, for tests only)"
    if [[ $base =~ ^http://127\.0\.0\.1(:[0-9]+)?(/|$) ]]; then
      protocols='=http'
    elif [[ $base != https://* ]]; then
      fail "HARPER_SHARD_RELEASE_BASE_URL '$base' is neither https:// nor http://127.0.0.1: unset it (it is for action/test.sh)"
    fi
  else
    base=${GITHUB_SERVER_URL:-https://github.com}/$repository/releases/download/$version
  fi
  url=$base/$asset
  mkdir -p "$dir"
  # Beside the binary, so that moving it into place is one rename: a job sharing the tool cache
  # sees the old copy or the new one, never half of one.
  partial=$(mktemp "$dir/.download.XXXXXX")
  trap 'rm -f "$partial"' EXIT
  say "downloading $url"
  status=0
  curl --fail --silent --show-error --location --retry 3 --connect-timeout 20 --max-time 300 \
    --proto "$protocols" --proto-redir '=https' --tlsv1.2 --output "$partial" "$url" || status=$?
  ((status == 0)) || warn_and_build_instead "cannot download $url (curl exit $status)"
  got=$(digest <"$partial")
  [[ $got == "$want" ]] ||
    fail "refusing to run $asset from $url: its SHA-256 is $got, but release $version's manifest ($manifest_file in the action) says $want. The asset was replaced after the release, or altered on the way; nothing was installed"
  chmod 755 "$partial"
  mv -f "$partial" "$bin"
  say "$version ($target): SHA-256 $got matches the manifest; installed into $dir"
fi

# Fails here, not mid-run, on a binary this runner cannot execute.
"$bin" --version ||
  warn_and_build_instead "the release binary $bin does not run on this runner"
put_output path "$bin"
