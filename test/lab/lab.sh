#!/usr/bin/env bash
# Builds and removes the natgate lab (DESIGN.md §3) with network namespaces.
#
#   lab.sh up   PREFIX LABDIR   build everything, write LABDIR/lab.env (KEY=VALUE) for the TS side
#   lab.sh down PREFIX [LABDIR] remove everything carrying PREFIX (idempotent), then LABDIR
#   lab.sh sshd PREFIX LABDIR HOST  start HOST's sshd again (after a test stopped it, e.g. to boot
#                               a real Debian VPS in its place) with the host key and config of
#                               bring-up; prints the new PID and records it in hosts/HOST/sshd.pid
#
# Only namespaces named PREFIX-* and processes inside them are touched: the root namespace's
# interfaces, routes and firewall never are (veths are created directly inside their namespaces).
#
#   client 203.0.113.10 ── core ── vps 198.51.100.1
#                           │
#                          isp 203.0.113.130 (CGNAT: masquerade 100.64.0.0/24, no new inbound)
#                           │ 100.64.0.0/24
#                         router 100.64.0.2 ── br-lan 192.168.1.1/24 ── lan .99
#                                                                  └── laptop .50 (runs the tests)
#
# IPv6 (issue 10): the internet side and the LAN have it, the ISP does not (IPv4-only, the usual
# case): client 2001:db8:113::10 ── core (::1 | 2001:db8:100::fe) ── vps 2001:db8:100::1, and
# br-lan fd00:1::1/64 with lan fd00:1::99, laptop fd00:1::50, whose default route is the router's
# link-local address on br-lan (what a router advertisement would give). No global v6 on isp or on
# the router's wan, so the ULA is unreachable from the internet and the LAN has no v6 way out.
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HOSTS=(client core vps isp router lan laptop)
SSHD_HOSTS=(vps router lan)

# Addresses. Link subnets stay inside the documentation/shared ranges the topology already uses.
ADDR_CLIENT=203.0.113.10      CORE_CLIENT_SIDE=203.0.113.1      # 203.0.113.0/25
ADDR_ISP_PUBLIC=203.0.113.130 CORE_ISP_SIDE=203.0.113.129       # 203.0.113.128/25
ADDR_VPS=198.51.100.1         CORE_VPS_SIDE=198.51.100.254      # 198.51.100.0/24
ADDR_ISP_CGNAT=100.64.0.1     ADDR_ROUTER_WAN=100.64.0.2        # 100.64.0.0/24
ADDR_ROUTER_LAN=192.168.1.1   ADDR_LAN=192.168.1.99   ADDR_LAPTOP=192.168.1.50
# IPv6, documentation space on the internet side, a ULA on the LAN; every subnet is a /64.
ADDR6_CLIENT=2001:db8:113::10 CORE6_CLIENT_SIDE=2001:db8:113::1  # 2001:db8:113::/64
ADDR6_VPS=2001:db8:100::1     CORE6_VPS_SIDE=2001:db8:100::fe    # 2001:db8:100::/64
ADDR6_ROUTER_LAN=fd00:1::1    ADDR6_LAN=fd00:1::99    ADDR6_LAPTOP=fd00:1::50
NET6_LAN=fd00:1::/64
ROUTER6_LINK_LOCAL=           # the router's fe80:: on br-lan, read once the bridge has carrier

log() { echo "[lab] $*" >&2; }
die() { echo "[lab] error: $*" >&2; exit 1; }
ns() { echo "$PREFIX-$1"; }
# at HOST CMD...: run a command in a host's network namespace
at() { local h=$1; shift; ip netns exec "$(ns "$h")" "$@"; }

# veth A IFA B IFB: one cable, both ends created directly in their namespaces
veth() { ip link add name "$2" netns "$(ns "$1")" type veth peer name "$4" netns "$(ns "$3")"; }
addr() { at "$1" ip addr add "$3" dev "$2"; at "$1" ip link set "$2" up; }
# addr6 HOST IF ADDR/LEN: nodad, so the address is usable at once (no tentative phase to race)
addr6() { at "$1" ip -6 addr add "$3" dev "$2" nodad; }
sysctl_set() { local h=$1; shift; at "$h" sysctl -qw "$@" >/dev/null; }

# ipv6_sysctls HOST: set before any interface exists, so every interface (veths, br-lan) takes the
# "default" values: no DAD (link-local addresses are usable at once too), no router advertisements
# accepted, forwarding on core and router only (natgate turns it on on the VPS, like its v4).
ipv6_sysctls() {
  local h=$1 fwd=0 k
  case $h in core | router) fwd=1 ;; esac
  for k in all default; do
    sysctl_set "$h" "net.ipv6.conf.$k.disable_ipv6=0" "net.ipv6.conf.$k.accept_dad=0" \
      "net.ipv6.conf.$k.dad_transmits=0" "net.ipv6.conf.$k.accept_ra=0" \
      "net.ipv6.conf.$k.autoconf=0" "net.ipv6.conf.$k.forwarding=$fwd"
  done
}

build_ipv6() {
  addr6 core client "$CORE6_CLIENT_SIDE/64"
  addr6 core vps "$CORE6_VPS_SIDE/64"
  addr6 client eth0 "$ADDR6_CLIENT/64"
  addr6 vps eth0 "$ADDR6_VPS/64"
  at client ip -6 route add default via "$CORE6_CLIENT_SIDE"
  at vps ip -6 route add default via "$CORE6_VPS_SIDE"

  addr6 router br-lan "$ADDR6_ROUTER_LAN/64"
  addr6 lan eth0 "$ADDR6_LAN/64"
  addr6 laptop eth0 "$ADDR6_LAPTOP/64"
  # The bridge gets its link-local address once it has carrier (a port whose peer is up).
  local _
  for _ in $(seq 100); do
    ROUTER6_LINK_LOCAL=$(at router ip -6 -o addr show dev br-lan scope link | awk '{sub("/.*", "", $4); print $4; exit}')
    [[ -n $ROUTER6_LINK_LOCAL ]] && break
    sleep 0.05
  done
  [[ -n $ROUTER6_LINK_LOCAL ]] || die "br-lan got no IPv6 link-local address"
  at lan ip -6 route add default via "$ROUTER6_LINK_LOCAL" dev eth0
  at laptop ip -6 route add default via "$ROUTER6_LINK_LOCAL" dev eth0
}

build_network() {
  for h in "${HOSTS[@]}"; do
    ip netns add "$(ns "$h")"
    ipv6_sysctls "$h"
    at "$h" ip link set lo up
  done

  veth core client client eth0
  veth core vps vps eth0
  veth core isp isp core
  veth isp cust router wan
  veth router lan1 lan eth0
  veth router lan2 laptop eth0

  addr core client "$CORE_CLIENT_SIDE/25"
  addr core isp "$CORE_ISP_SIDE/25"
  addr core vps "$CORE_VPS_SIDE/24"
  addr client eth0 "$ADDR_CLIENT/25"
  addr vps eth0 "$ADDR_VPS/24"
  addr isp core "$ADDR_ISP_PUBLIC/25"
  addr isp cust "$ADDR_ISP_CGNAT/24"
  addr router wan "$ADDR_ROUTER_WAN/24"

  at router ip link add br-lan type bridge
  at router ip link set lan1 master br-lan
  at router ip link set lan2 master br-lan
  at router ip link set lan1 up
  at router ip link set lan2 up
  addr router br-lan "$ADDR_ROUTER_LAN/24"
  addr lan eth0 "$ADDR_LAN/24"
  addr laptop eth0 "$ADDR_LAPTOP/24"

  # The core knows only the public subnets: 100.64.0.0/24 and 192.168.1.0/24 are unroutable there.
  at client ip route add default via "$CORE_CLIENT_SIDE"
  at vps ip route add default via "$CORE_VPS_SIDE"
  at isp ip route add default via "$CORE_ISP_SIDE"
  at router ip route add default via "$ADDR_ISP_CGNAT"
  at lan ip route add default via "$ADDR_ROUTER_LAN"
  at laptop ip route add default via "$ADDR_ROUTER_LAN"

  build_ipv6

  # New namespaces copy some IPv4 settings from the root namespace: make them explicit so the lab
  # behaves the same on every machine. The VPS starts with forwarding off: natgate turns it on.
  for h in "${HOSTS[@]}"; do
    local fwd=0
    case $h in core | isp | router) fwd=1 ;; esac
    sysctl_set "$h" net.ipv4.ip_forward=$fwd \
      net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  done

  # br_netfilter is loaded here (not on OpenWrt): without this, bridged LAN frames would traverse
  # the router's IP forward hooks and any forward drop would cut LAN-to-LAN traffic.
  for k in iptables ip6tables arptables; do
    if at router test -e "/proc/sys/net/bridge/bridge-nf-call-$k"; then
      sysctl_set router "net.bridge.bridge-nf-call-$k=0"
    fi
  done

  # The lab's own tables carry a lab_ prefix so natgate's tables never collide with them.
  at isp nft -f - <<'EOF'
table ip lab_cgnat {
  chain forward {
    type filter hook forward priority filter; policy accept;
    ct state established,related accept
    iifname "core" drop comment "CGNAT: nothing from the internet reaches a subscriber unasked"
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "core" ip saddr 100.64.0.0/24 masquerade
  }
}
EOF
  # Like a home router (OpenWrt masquerades the wan zone): LAN traffic leaves as 100.64.0.2.
  at router nft -f - <<'EOF'
table ip lab_nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" masquerade
  }
}
EOF
}

make_keys() {
  mkdir -p "$LABDIR/keys"
  ssh-keygen -q -t ed25519 -N '' -C "natgate-lab-$PREFIX-root" -f "$LABDIR/keys/root_ed25519"
  ssh-keygen -q -t ed25519 -N '' -C "natgate-lab-$PREFIX-ops" -f "$LABDIR/keys/ops_ed25519"
  # Test-only password; kept in a root-only file, never on a command line.
  (umask 077 && head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$LABDIR/keys/pwuser.password")
}

start_sshd() {
  local h=$1 dir=$LABDIR/hosts/$1
  mkdir -p "$dir"
  ssh-keygen -q -t ed25519 -N '' -C "natgate-lab-$PREFIX-$h" -f "$dir/ssh_host_ed25519_key"
  cat >"$dir/sshd_config" <<EOF
Port 22
ListenAddress 0.0.0.0
HostKey $dir/ssh_host_ed25519_key
PidFile none
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
AuthorizedKeysFile .ssh/authorized_keys
LogLevel VERBOSE
UseDNS no
PrintMotd no
MaxStartups 100:30:200
MaxSessions 64
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
  # The router reads PATH (nothing else) from a user's ~/.ssh/environment: with none there, as after
  # bring-up, nothing changes; a test may write one to give root OpenWrt's BusyBox sh or take a tool
  # off its PATH, on that host only.
  [[ $h != router ]] || echo "PermitUserEnvironment PATH" >>"$dir/sshd_config"
  # The bench's `ssh -R 0.0.0.0:PORT:...` from the LAN host listens on the VPS's public address.
  [[ $h != vps ]] || echo "GatewayPorts clientspecified" >>"$dir/sshd_config"
  launch_sshd "$h"
}

# launch_sshd HOST: host-init.sh in a fresh mount+UTS namespace, becoming HOST's sshd
launch_sshd() {
  local h=$1 dir=$LABDIR/hosts/$1
  # ip netns exec, unshare and sh all exec: $! is the PID sshd ends up with.
  ip netns exec "$(ns "$h")" unshare --mount --uts --propagation private \
    sh "$HERE/host-init.sh" "$h" "$dir" "$LABDIR/keys" </dev/null >"$dir/init.log" 2>&1 &
  echo $! >"$dir/sshd.pid"
}

# wait_sshd HOST [N]: until sshd.log has more than N (default 0) "Server listening" lines
wait_sshd() {
  local h=$1 before=${2:-0} dir=$LABDIR/hosts/$1 pid
  pid=$(cat "$dir/sshd.pid")
  for _ in $(seq 100); do
    (($(listening_lines "$h") > before)) && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  die "sshd of $h did not start: $(cat "$dir/init.log" "$dir/sshd.log" 2>/dev/null)"
}

listening_lines() {
  local n
  n=$(grep -c 'Server listening on 0.0.0.0 port 22' "$LABDIR/hosts/$1/sshd.log" 2>/dev/null) || true
  echo "${n:-0}"
}

# sshd HOST again, after bring-up: same host key and sshd_config, the host's overlay upper dirs
# (so what was written to its /etc, /var, /root, /home is still there); refuses while it runs.
cmd_sshd() {
  local h=$1 dir=$LABDIR/hosts/$1 pid n
  [[ " ${SSHD_HOSTS[*]} " == *" $h "* ]] || die "no sshd host '$h' (one of: ${SSHD_HOSTS[*]})"
  [[ -f $dir/sshd_config && -f $dir/ssh_host_ed25519_key ]] || die "$dir has no sshd of bring-up"
  pid=$(cat "$dir/sshd.pid" 2>/dev/null || true)
  if [[ -n $pid ]] && alive "$pid" && [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == /usr/sbin/sshd ]]; then
    die "sshd of $h is still running (PID $pid)"
  fi
  n=$(listening_lines "$h")
  launch_sshd "$h"
  wait_sshd "$h" "$n"
  cat "$dir/sshd.pid"
}

write_env() {
  local f=$LABDIR/lab.env h
  {
    echo "prefix=$PREFIX"
    echo "labDir=$LABDIR"
    echo "addr.client=$ADDR_CLIENT"
    echo "addr.core=$CORE_VPS_SIDE"
    echo "addr.vps=$ADDR_VPS"
    echo "addr.isp=$ADDR_ISP_PUBLIC"
    echo "addr.router=$ADDR_ROUTER_LAN"
    echo "addr.lan=$ADDR_LAN"
    echo "addr.laptop=$ADDR_LAPTOP"
    echo "net.coreClientSide=$CORE_CLIENT_SIDE"
    echo "net.coreIspSide=$CORE_ISP_SIDE"
    echo "net.coreVpsSide=$CORE_VPS_SIDE"
    echo "net.ispPublic=$ADDR_ISP_PUBLIC"
    echo "net.ispCgnat=$ADDR_ISP_CGNAT"
    echo "net.routerWan=$ADDR_ROUTER_WAN"
    echo "net.routerLan=$ADDR_ROUTER_LAN"
    echo "net.lanSubnet=192.168.1.0/24"
    echo "net.cgnatSubnet=100.64.0.0/24"
    echo "addr6.client=$ADDR6_CLIENT"
    echo "addr6.core=$CORE6_VPS_SIDE"
    echo "addr6.vps=$ADDR6_VPS"
    echo "addr6.router=$ADDR6_ROUTER_LAN"
    echo "addr6.lan=$ADDR6_LAN"
    echo "addr6.laptop=$ADDR6_LAPTOP"
    echo "addr6.routerLinkLocal=$ROUTER6_LINK_LOCAL"
    echo "net6.coreClientSide=$CORE6_CLIENT_SIDE"
    echo "net6.coreVpsSide=$CORE6_VPS_SIDE"
    echo "net6.routerLan=$ADDR6_ROUTER_LAN"
    echo "net6.lanSubnet=$NET6_LAN"
    for h in "${SSHD_HOSTS[@]}"; do
      echo "sshdPid.$h=$(cat "$LABDIR/hosts/$h/sshd.pid")"
    done
  } >"$f"
}

# wireguard-go needs /dev/net/tun; minimal machines (containers) may lack the node or the module.
ensure_tun() {
  [[ -c /dev/net/tun ]] && return 0
  modprobe tun 2>/dev/null || true
  if [[ ! -c /dev/net/tun ]]; then
    log "creating /dev/net/tun (char 10:200) for wireguard-go"
    mkdir -p /dev/net && mknod -m 666 /dev/net/tun c 10 200
  fi
}

cmd_up() {
  [[ -d $LABDIR ]] || die "lab dir $LABDIR does not exist"
  ensure_tun
  trap 'rc=$?; log "bring-up failed (line $LINENO, exit $rc), removing what was built"; cmd_down || true; exit $rc' ERR
  build_network
  make_keys
  for h in "${SSHD_HOSTS[@]}"; do start_sshd "$h"; done
  for h in "${SSHD_HOSTS[@]}"; do wait_sshd "$h"; done
  write_env
  trap - ERR
}

# Processes of this lab: everything inside its network namespaces (sshd, sessions, wireguard-go,
# listeners tests started) plus the recorded sshd PIDs if they somehow left them.
lab_pids() {
  local n pid
  for n in $(lab_namespaces); do ip netns pids "$n" 2>/dev/null || true; done
  if [[ -n ${LABDIR:-} && -d $LABDIR/hosts ]]; then
    for pid in $(cat "$LABDIR"/hosts/*/sshd.pid 2>/dev/null); do
      # guard against PID reuse: only a process whose binary is sshd
      [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == /usr/sbin/sshd ]] && echo "$pid"
    done
  fi
  return 0
}

# A killed process whose parent is init stays a zombie until init reaps it (slowly, here):
# it holds no namespace or mount any more, so it counts as gone.
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

lab_namespaces() { ip netns list | awk '{print $1}' | grep -E "^${PREFIX}-[a-z]+$" || true; }

cmd_down() {
  local pids n left
  pids=$(lab_pids | sort -u)
  if [[ -n $pids ]]; then
    kill -TERM $pids 2>/dev/null || true
    for _ in $(seq 40); do
      left=$(for p in $pids; do alive "$p" && echo "$p"; done || true)
      [[ -z $left ]] && break
      sleep 0.05
    done
    [[ -n ${left:-} ]] && kill -KILL $left 2>/dev/null || true
  fi
  for n in $(lab_namespaces); do
    ip netns del "$n" || log "could not delete namespace $n"
  done
  # Mounts were made in private mount namespaces that died with their processes; anything under
  # LABDIR still mounted here would be a bug, and rm must never descend into a mount.
  if [[ -n ${LABDIR:-} && -d $LABDIR ]]; then
    [[ $(basename "$LABDIR") == *"$PREFIX"* ]] || die "refusing to remove $LABDIR: its name lacks $PREFIX"
    awk -v d="$LABDIR" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
      umount -l "$m" || log "could not unmount $m"
    done
    rm -rf --one-file-system "$LABDIR"
  fi
  left=$(lab_namespaces)
  [[ -z $left ]] || die "namespaces still present: $left"
  [[ -z ${LABDIR:-} || ! -e $LABDIR ]] || die "could not remove $LABDIR"
}

main() {
  local cmd=${1:-}
  PREFIX=${2:-}
  LABDIR=${3:-}
  [[ $PREFIX =~ ^[a-z][a-z0-9]{1,9}$ ]] || die "prefix must be 2-10 lowercase letters/digits, got '$PREFIX'"
  [[ $(id -u) -eq 0 ]] || die "the lab needs root (network namespaces, mounts)"
  case $cmd in
    up) [[ -n $LABDIR ]] || die "usage: lab.sh up PREFIX LABDIR"; cmd_up ;;
    down) cmd_down ;;
    sshd) [[ -n $LABDIR && -n ${4:-} ]] || die "usage: lab.sh sshd PREFIX LABDIR HOST"; cmd_sshd "$4" ;;
    *) die "usage: lab.sh up|down PREFIX [LABDIR] | sshd PREFIX LABDIR HOST" ;;
  esac
}

main "$@"
