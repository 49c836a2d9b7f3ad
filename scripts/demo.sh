#!/usr/bin/env bash
# `npm run demo`: the seed example's whole life (preview, up, traffic from the internet, drift,
# refresh, repair, destroy) on a fresh lab, printed as a user of the Pulumi CLI would see it.
# The lab is torn down on every exit path.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/prepare.sh "run demo"
exec node_modules/.bin/tsx test/lab/cli.ts run -- node_modules/.bin/tsx scripts/demo.ts
