#!/usr/bin/env bash
# Node.js 22 for the Node 22 test (test/unit/node22.test.ts runs the unit and engine-path tests
# with it): @pulumi/pulumi declares Node >= 22, the lab's machines ship Node 20. From the npm
# registry's `node` package, cached per machine; prints the path of its node binary.
set -euo pipefail
VERSION=22
CACHE=${NATGATE_CACHE:-/var/cache/natgate}
DEST=$CACHE/node-$VERSION
if [[ ! -x $DEST/node_modules/.bin/node ]]; then
  echo "install-node22: npm install node@$VERSION into $DEST (once per machine)" >&2
  rm -rf "$DEST.tmp"
  mkdir -p "$DEST.tmp"
  npm install --prefix "$DEST.tmp" --no-save --no-audit --no-fund "node@$VERSION" >&2
  rm -rf "$DEST"
  mv "$DEST.tmp" "$DEST"
fi
echo "$DEST/node_modules/.bin/node"
