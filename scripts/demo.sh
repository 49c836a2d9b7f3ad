#!/usr/bin/env bash
# `npm run demo`: the seed example's whole life (preview, up, traffic from the internet, drift,
# refresh, repair, destroy) on a fresh lab, printed as a user of the Pulumi CLI would see it.
# Needs root (the lab is network namespaces); the lab is torn down on every exit path.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "the demo builds network namespaces and needs root (try: sudo npm run demo)" >&2
  exit 1
fi
scripts/install-deps.sh
echo "== building (tsc)"
node_modules/.bin/tsc -p tsconfig.json
node scripts/link-self.js
exec node_modules/.bin/tsx test/lab/cli.ts run -- node_modules/.bin/tsx scripts/demo.ts
