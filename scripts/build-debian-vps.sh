#!/usr/bin/env bash
# Builds the root file system of a real Debian 12 VPS (systemd, OpenSSH, nftables, iptables, ufw,
# WireGuard) that test/lab/debianVps.ts boots with systemd-nspawn inside a lab's VPS namespace.
#
#   scripts/build-debian-vps.sh              build (once per machine) and print the image's directory
#   scripts/build-debian-vps.sh --print-dir  only print where the image for this script lives
#
# The image is cached in ${NATGATE_CACHE:-/var/cache/natgate}/debian-vps-<key>/, key = a hash of the package list,
# the suite and the customise function below, so changing either builds a new image and an
# unrelated edit of this file does not. It is built into a temp dir and renamed into place as the
# last step: the directory exists only when complete, and a second run exits at once. Labs never
# write to it (each boot gets an overlayfs upper dir in its lab dir), so it is shared by all labs.
set -euo pipefail

SUITE=bookworm
# The mirror this machine's apt uses (/etc/apt/sources.list.d/debian.sources), with updates and
# security like a real VPS; NATGATE_DEBIAN_MIRROR overrides it (same content, so not in the key).
MIRROR=${NATGATE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${NATGATE_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# What the issues need on the VPS, on top of mmdebstrap's apt variant (Essential + apt). ufw brings
# python3. mawk and kmod are Priority: required/important, so on every real Debian install: natgate's
# scripts use awk, and modprobe is how they look for the wireguard module. docker.io: Docker's own
# FORWARD DROP, DOCKER-USER and jump rules, written by the real dockerd (off until a test starts it).
PACKAGES=(
  systemd systemd-sysv dbus openssh-server
  nftables iptables iproute2 ufw conntrack
  wireguard-tools wireguard-go
  sudo procps mawk kmod
  docker.io
)
CACHE=${NATGATE_CACHE:-/var/cache/natgate}

# customise ROOT: what makes the plain bootstrap a lab VPS. Per-lab things (the lab's root key, the
# lab VPS's SSH host key, the machine id, eth0's .network) are added at boot by debianVps.ts, into
# the lab's overlay upper dir.
customise() {
  local root=$1
  # Host keys come from the lab at boot (so lab.hosts.vps.ssh.hostKey stays valid); none is shared.
  rm -f "$root"/etc/ssh/ssh_host_*
  cat >"$root/etc/ssh/sshd_config.d/10-natgate-lab.conf" <<'EOF'
# natgate lab VPS (scripts/build-debian-vps.sh). First match wins: this file is included first.
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication yes
UseDNS no
# "Accepted publickey for root from ..." per login, in the journal (journalctl -u ssh)
LogLevel VERBOSE
# tests open many connections at once, like the lab's own sshd allows
MaxStartups 100:30:200
MaxSessions 64
EOF
  # mmdebstrap copied the build machine's hostname and resolver: a VPS has its own, and lab
  # namespaces have no DNS (nothing may leave them), so no nameserver at all.
  echo vps >"$root/etc/hostname"
  printf '127.0.1.1\tvps\n' >>"$root/etc/hosts"
  printf '# natgate lab: no DNS inside the lab namespaces\n' >"$root/etc/resolv.conf"
  # Empty machine-id: each lab's boot writes its own into its upper dir.
  : >"$root/etc/machine-id"
  rm -f "$root/var/lib/dbus/machine-id"

  # The lab's users, as on the other sshd hosts: ops (key, passwordless sudo), pwuser (password,
  # set per lab at boot; sudo asks for it). '*' instead of a locked '!' for key-only login.
  chroot "$root" useradd -m -s /bin/bash ops
  chroot "$root" usermod -p '*' ops
  chroot "$root" useradd -m -s /bin/bash pwuser
  chroot "$root" usermod -p '*' pwuser
  echo 'ops ALL=(ALL:ALL) NOPASSWD: ALL' >"$root/etc/sudoers.d/ops"
  echo 'pwuser ALL=(ALL:ALL) ALL' >"$root/etc/sudoers.d/pwuser"
  chmod 440 "$root/etc/sudoers.d/ops" "$root/etc/sudoers.d/pwuser"

  # Units. sshd (Debian enables it; make sure). systemd-networkd enabled as on a networkd-managed
  # VPS: debianVps.ts adds a .network for eth0 holding the lab's static address (or none), so
  # `systemctl restart systemd-networkd` is real with networkd's default ManageForeign* settings;
  # systemd-networkd-wait-online then orders network-online.target after eth0 is configured.
  systemctl -q --root="$root" enable ssh.service systemd-networkd.service systemd-networkd-wait-online.service
  # A container has no ttys (nspawn --console=passive gives no input) and no hardware: gettys,
  # pstore and fstrim only fail or wait. apt's timers would reach for a mirror the lab cannot reach.
  systemctl -q --root="$root" mask getty@tty1.service console-getty.service serial-getty@.service \
    systemd-pstore.service fstrim.timer apt-daily.timer apt-daily-upgrade.timer
  # Debian's docker.io (real dockerd; in nspawn it runs on the vfs storage driver) is installed but
  # off, as on a VPS where Docker comes later: the Docker tests enable it, every other test has a
  # VPS without Docker's FORWARD DROP and chains.
  systemctl -q --root="$root" disable docker.service docker.socket containerd.service
  # Boots of one lab VPS stay on its disk: journalctl --list-boots is how a test sees a reboot.
  install -d -m 2755 -g systemd-journal "$root/var/log/journal"
}

key() {
  { printf '%s\n' "$SUITE" "${PACKAGES[@]}"; declare -f customise; } | sha256sum | cut -c1-16
}

DEST=$CACHE/debian-vps-$(key)
if [[ ${1:-} == --print-dir ]]; then
  echo "$DEST"
  exit 0
fi
if [[ -d $DEST ]]; then
  echo "$DEST"
  exit 0
fi
[[ $(id -u) -eq 0 ]] || {
  echo "build-debian-vps: needs root (mmdebstrap, chroot); the image goes to $DEST" >&2
  exit 1
}
command -v mmdebstrap >/dev/null || {
  echo "build-debian-vps: mmdebstrap missing (scripts/install-deps.sh installs it)" >&2
  exit 1
}

mkdir -p "$CACHE"
# One build at a time per machine; whoever waited finds the image done.
exec 9>"$CACHE/debian-vps.lock"
flock 9
if [[ -d $DEST ]]; then
  echo "$DEST"
  exit 0
fi

TMP=$CACHE/.debian-vps-$(key).tmp.$$
rm -rf --one-file-system "$CACHE"/.debian-vps-*.tmp.* # left by a killed build (we hold the lock)
trap 'rm -rf --one-file-system "$TMP"' EXIT
start=$(date +%s)
echo "build-debian-vps: bootstrapping Debian $SUITE into $DEST (once per machine, ~30-60 s)" >&2
include=$(
  IFS=,
  echo "${PACKAGES[*]}"
)
if ! mmdebstrap --variant=apt --include="$include" "$SUITE" "$TMP" \
  "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY_MIRROR $SUITE-security main" \
  >"$CACHE/debian-vps-build.log" 2>&1; then
  tail -n 30 "$CACHE/debian-vps-build.log" >&2
  echo "build-debian-vps: mmdebstrap failed (log: $CACHE/debian-vps-build.log)" >&2
  exit 1
fi
customise "$TMP"
printf 'suite=%s\npackages=%s\nbuilt=%s\nseconds=%s\n' "$SUITE" "$include" "$(date -u +%FT%TZ)" "$(($(date +%s) - start))" \
  >"$TMP/.natgate-debian-vps"
mv -T "$TMP" "$DEST"
trap - EXIT
echo "build-debian-vps: done in $(($(date +%s) - start)) s" >&2
echo "$DEST"
