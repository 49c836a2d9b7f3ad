#!/usr/bin/env bash
# The README's test command. Installs what the lab needs (Debian packages, npm
# packages), builds, then runs the whole suite inside a fresh lab: the test
# process is the lab's "laptop" on the router's LAN. The lab is torn down on
# every exit path by test/lab/cli.ts.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "natgate tests build network namespaces and need root (try: sudo npm test)" >&2
  exit 1
fi
scripts/install-deps.sh
echo "== building (tsc)"
node_modules/.bin/tsc -p tsconfig.json
node scripts/link-self.js
echo "== running the suite in a lab"
[ "$#" -gt 0 ] || set -- "test/**/*.test.ts"
exec node_modules/.bin/tsx test/lab/cli.ts run -- node_modules/.bin/mocha "$@"
