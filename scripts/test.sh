#!/usr/bin/env bash
# The README's test command: prepare (packages, build), then the whole suite inside a fresh lab;
# the test process is the lab's "laptop" on the router's LAN. test/lab/cli.ts tears the lab down
# on every exit path.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/prepare.sh test
echo "== running the suite in a lab"
[ "$#" -gt 0 ] || set -- "test/**/*.test.ts"
exec node_modules/.bin/tsx test/lab/cli.ts run -- node_modules/.bin/mocha "$@"
