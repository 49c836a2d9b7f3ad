#!/usr/bin/env bash
# What the demo and the tests need before a lab can run: root (the lab is network namespaces),
# the lab's Debian packages and node_modules (install-deps.sh), the compiled package (the
# dynamic-provider server loads natgate/provider from dist/), and node_modules/natgate → here.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "natgate's lab builds network namespaces and needs root (try: sudo npm ${1:-test})" >&2
  exit 1
fi
scripts/install-deps.sh
scripts/build-fw4.sh # OpenWrt's real firewall for the lab router (cached; ~25 s the first time)
scripts/build-debian-vps.sh >/dev/null # a real Debian 12 VPS root for systemd-nspawn (cached; ~30-60 s the first time)
scripts/install-typescript6.sh >/dev/null # TypeScript 6 for the typings test (cached; a few seconds the first time)
scripts/install-node22.sh >/dev/null # Node.js 22 for the Node 22 test (cached; a few seconds the first time)
echo "== building (tsc)"
node_modules/.bin/tsc -p tsconfig.json
node scripts/link-self.js
