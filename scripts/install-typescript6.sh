#!/usr/bin/env bash
# TypeScript 6 for the typings test (test/unit/typings.test.ts: a new Pulumi project type-checks
# against the packed natgate with it). Not a devDependency: a second package providing `tsc` would
# take node_modules/.bin/tsc from the TypeScript natgate builds with. Cached per machine; prints
# the path of its tsc.
set -euo pipefail
VERSION=6.0.3
CACHE=${NATGATE_CACHE:-/var/cache/natgate}
DEST=$CACHE/typescript-$VERSION
if [[ ! -x $DEST/node_modules/typescript/bin/tsc ]]; then
  echo "install-typescript6: npm install typescript@$VERSION into $DEST (once per machine)" >&2
  rm -rf "$DEST.tmp"
  mkdir -p "$DEST.tmp"
  npm install --prefix "$DEST.tmp" --no-save --no-audit --no-fund --ignore-scripts "typescript@$VERSION" >&2
  rm -rf "$DEST"
  mv "$DEST.tmp" "$DEST"
fi
echo "$DEST/node_modules/typescript/bin/tsc"
