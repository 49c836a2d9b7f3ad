#!/usr/bin/env bash
# `npm run bench`: natgate's forwarded path against a userspace relay (bench/throughput.ts) on a
# fresh lab, torn down on every exit path.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/prepare.sh "run bench"
exec node_modules/.bin/tsx test/lab/cli.ts run -- node_modules/.bin/tsx bench/throughput.ts
