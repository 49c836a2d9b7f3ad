#!/usr/bin/env bash
# `npm run bench`: natgate's forwarded path against a userspace relay (bench/throughput.ts), then
# its control plane against one SSH connection per command (bench/controlPlane.ts), in one fresh
# lab, torn down on every exit path.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/prepare.sh "run bench"
exec node_modules/.bin/tsx test/lab/cli.ts run -- sh -c 'node_modules/.bin/tsx bench/throughput.ts && node_modules/.bin/tsx bench/controlPlane.ts'
