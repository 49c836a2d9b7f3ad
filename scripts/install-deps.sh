#!/usr/bin/env bash
# Installs what the lab (test/lab) and the tests need on a Debian test machine.
# Idempotent and quiet when everything is present, so every test script can call it first.
set -euo pipefail

# The lab's hosts are network namespaces running real tools: sshd, nft/iptables, conntrack,
# WireGuard (userspace wireguard-go where the kernel has no module), socat for test listeners,
# ping for reachability checks, busybox so a test can give the router OpenWrt's shell (ash).
PACKAGES=(
  openssh-server openssh-client
  nftables iptables iproute2 conntrack
  wireguard-tools wireguard-go
  socat iputils-ping busybox
  sudo procps kmod util-linux
  # scripts/build-fw4.sh builds OpenWrt's firewall (fw4: libubox, uci, ubus, ucode) for the router
  cmake make gcc libc6-dev pkg-config libjson-c-dev
  # A real Debian 12 VPS with systemd (test/lab/debianVps.ts): mmdebstrap builds its root once
  # (scripts/build-debian-vps.sh), systemd-nspawn boots it inside the lab's VPS namespace.
  mmdebstrap systemd-container
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing Debian packages: ${missing[*]}; run this script as root to install them" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # openssh-server's postinst would start an sshd in the root namespace; the lab starts its own
  # inside namespaces, so keep services from starting during the install (unless a policy exists).
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# npm writes node_modules/.package-lock.json on install: older than the lockfile means stale.
if [[ ! -f "$repo/node_modules/.package-lock.json" || "$repo/package-lock.json" -nt "$repo/node_modules/.package-lock.json" ]]; then
  echo "install-deps: node_modules missing or older than package-lock.json, running npm ci"
  (cd "$repo" && npm ci --no-audit --no-fund)
fi
