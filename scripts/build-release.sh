#!/usr/bin/env bash
# scripts/build-release.sh <commit>
#
# Builds natgate as it was at <commit> (a released version, e.g. 0.1.0) into a cache directory
# outside the checkout and prints that directory as the last line of stdout. The upgrade test
# (test/upgrade) runs a stack's program with that build's SDK and the dynamic-provider server
# with that directory as its working directory, where `require("natgate/provider")` resolves to
# the old build (DESIGN.md §4: the revived provider resolves natgate from the server's cwd).
#
# Layout of <cache>/release-<full sha>-<hash of the lockfile and node_modules source>/:
#   the commit's tracked files (git archive), dist/ (its own tsc build),
#   node_modules/  a real directory: one symlink per entry of this checkout's node_modules when
#                  the commit's package-lock.json equals the checkout's (else `npm ci` there),
#                  and natgate -> .. (the release itself, never this checkout)
#   .natgate-release  written last; the build is reused only when it names the same commit,
#                  lockfile and node_modules source.
# <cache> is $NATGATE_RELEASE_CACHE, else $XDG_CACHE_HOME/natgate, else /var/cache/natgate
# (~/.cache/natgate when /var/cache is not writable).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
say() { echo "build-release: $*" >&2; }
die() { say "$*"; exit 1; }

[ "$#" -eq 1 ] || die "usage: scripts/build-release.sh <commit>"
want=$1
commit=$(git -C "$repo" rev-parse --verify --quiet "${want}^{commit}") ||
  die "commit ${want} is not in this clone's history ($repo): the release cannot be built (a shallow clone? fetch the full history)"

if [ -n "${NATGATE_RELEASE_CACHE:-}" ]; then cache=$NATGATE_RELEASE_CACHE
elif [ -n "${XDG_CACHE_HOME:-}" ]; then cache=$XDG_CACHE_HOME/natgate
elif mkdir -p /var/cache/natgate 2>/dev/null && [ -w /var/cache/natgate ]; then cache=/var/cache/natgate
else cache=${HOME:-/tmp}/.cache/natgate
fi
case "$cache" in "$repo"|"$repo"/*) die "the cache ($cache) must be outside the checkout";; esac
mkdir -p "$cache"

# What the build depends on besides the commit: the lockfile it was installed from and, when its
# node_modules are links, the node_modules they point to.
lock_release=$(git -C "$repo" show "$commit:package-lock.json" | sha256sum | cut -d' ' -f1)
lock_here=$(sha256sum <"$repo/package-lock.json" | cut -d' ' -f1)
if [ "$lock_release" = "$lock_here" ]; then modules=$repo/node_modules; else modules=npm-ci; fi
marker="commit=$commit
lock=$lock_release
modules=$modules"
# One directory per commit and what it was built against, so two checkouts never rebuild each
# other's (a checkout's node_modules links are only valid while that checkout exists).
dir=$cache/release-$commit-$(printf '%s' "$marker" | sha256sum | cut -c1-12)

if [ -f "$dir/.natgate-release" ] && [ "$(cat "$dir/.natgate-release")" = "$marker" ] &&
   [ -f "$dir/dist/provider/index.js" ] && [ -f "$dir/dist/sdk/index.js" ] &&
   [ -e "$dir/node_modules/@pulumi/pulumi/package.json" ]; then
  say "reusing $dir"
  echo "$dir"
  exit 0
fi

say "building $commit into $dir"
tmp=$(mktemp -d "$cache/.release-$commit.XXXXXX")
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
git -C "$repo" archive "$commit" | tar -x -C "$tmp"

if [ "$modules" = npm-ci ]; then
  say "package-lock.json differs between $commit and this checkout: npm ci in the release"
  (cd "$tmp" && npm ci --offline --no-audit --no-fund --ignore-scripts >&2) ||
    (cd "$tmp" && npm ci --no-audit --no-fund --ignore-scripts >&2) ||
    die "npm ci failed for $commit (its packages are not in npm's cache and the registry is unreachable?)"
  rm -rf "$tmp/node_modules/natgate"
else
  [ -d "$modules" ] || die "$modules is missing: run npm ci in $repo first"
  mkdir "$tmp/node_modules"
  for entry in "$modules"/* "$modules"/.bin "$modules"/.package-lock.json; do
    name=$(basename "$entry")
    [ -e "$entry" ] && [ "$name" != natgate ] || continue
    ln -s "$entry" "$tmp/node_modules/$name"
  done
fi
# The release resolves `natgate` to itself, as link-self.js does for the checkout.
ln -s .. "$tmp/node_modules/natgate"

(cd "$tmp" && node node_modules/typescript/bin/tsc -p tsconfig.json) >&2 || die "tsc failed for $commit"
version=$(node -p 'require(process.argv[1]).version' "$tmp/package.json")
printf '%s\n' "$marker" >"$tmp/.natgate-release"

# Publish atomically: another build that finished first wins, and this one is dropped.
rm -rf "$dir.old"
[ ! -e "$dir" ] || mv "$dir" "$dir.old"
if mv -T "$tmp" "$dir" 2>/dev/null; then trap - EXIT; else say "another build of $commit finished first"; fi
rm -rf "$dir.old"
say "built natgate $version ($commit)"
echo "$dir"
