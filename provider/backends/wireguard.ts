/**
 * WireGuard's two Linux implementations behind one pair of shell functions.
 *
 * The kernel module is used where `ip link add ... type wireguard` works; otherwise
 * wireguard-go, which creates a tun device and a UAPI socket in /var/run/wireguard and
 * daemonizes. `wg` talks to either, so everything after link creation is shared.
 * wireguard-go exits by itself when its tun device is deleted, so deleting the link is
 * the one way down for both; ending the process by PID is only the fallback.
 */

export type WireGuardBackend = "kernel" | "wireguard-go";

/** `linkinfo.info_kind` from `ip -d -j link show` → which implementation runs the interface. */
export function backendOfLinkKind(kind: string | undefined): WireGuardBackend | undefined {
  if (kind === "wireguard") return "kernel";
  if (kind === "tun") return "wireguard-go";
  return undefined;
}

/** What `rendered` shows for link creation: the choice is made on the host at apply time. */
export function renderLinkAdd(interfaceName: string): string {
  return `ip link add dev ${interfaceName} type wireguard || wireguard-go ${interfaceName}`;
}

/**
 * POSIX sh functions; scripts include them after SH_PRELUDE (they use its `need`).
 *   natgate_wg_link_add IF   create IF with the kernel module, else wireguard-go
 *   natgate_wg_link_del IF   delete IF, wait for its wireguard-go to exit, clean its socket
 */
export const WIREGUARD_SH = String.raw`
natgate_wg_sock_dir=/var/run/wireguard

natgate_wg_link_add() {
  if ip link add dev "$1" type wireguard 2>/dev/null; then return 0; fi
  # no kernel module: the userspace implementation, or name the packages that provide one
  need wireguard-go wireguard-go kmod-wireguard
  if [ ! -c /dev/net/tun ]; then
    echo "wireguard-go needs /dev/net/tun and it is missing: load the tun module (modprobe tun) or give the container the device" >&2
    return 1
  fi
  # wireguard-go prints a banner on every start; show its output only when it fails
  if ! natgate_wg_out=$(wireguard-go "$1" 2>&1); then
    printf '%s\n' "$natgate_wg_out" >&2
    return 1
  fi
  # the parent returns once the socket exists; the loop only guards slower forks
  natgate_wg_i=0
  while [ ! -S "$natgate_wg_sock_dir/$1.sock" ] && [ "$natgate_wg_i" -lt 10 ]; do
    sleep 1; natgate_wg_i=$((natgate_wg_i + 1))
  done
}

# PIDs of wireguard-go serving interface $1 in this network namespace (hosts may share a PID
# namespace, e.g. containers or namespaces on one machine, and all call their tunnel wg0)
natgate_wg_go_pids() {
  natgate_wg_me=$(readlink /proc/$$/ns/net)
  for natgate_wg_d in /proc/[0-9]*; do
    [ "$(cat "$natgate_wg_d/comm" 2>/dev/null)" = wireguard-go ] || continue
    case "$(tr '\000' ' ' < "$natgate_wg_d/cmdline" 2>/dev/null)" in
      *" $1 ") ;;
      *) continue ;;
    esac
    [ "$(readlink "$natgate_wg_d/ns/net" 2>/dev/null)" = "$natgate_wg_me" ] || continue
    echo "$natgate_wg_d" | cut -d/ -f3
  done
}

natgate_wg_link_del() {
  if ip link show dev "$1" >/dev/null 2>&1; then
    echo "[#] ip link del dev $1" >&2
    ip link del dev "$1"
  fi
  natgate_wg_i=0
  natgate_wg_pids=$(natgate_wg_go_pids "$1")
  while [ -n "$natgate_wg_pids" ] && [ "$natgate_wg_i" -lt 5 ]; do
    sleep 1; natgate_wg_i=$((natgate_wg_i + 1))
    natgate_wg_pids=$(natgate_wg_go_pids "$1")
  done
  for natgate_wg_p in $natgate_wg_pids; do
    echo "[#] kill $natgate_wg_p (wireguard-go $1 did not exit after its interface was deleted)" >&2
    kill "$natgate_wg_p" 2>/dev/null || true
  done
  if [ -S "$natgate_wg_sock_dir/$1.sock" ] && [ -z "$(natgate_wg_go_pids "$1")" ]; then
    rm -f "$natgate_wg_sock_dir/$1.sock"
  fi
  # wireguard-go creates the directory; leave it only if something else lives there
  rmdir "$natgate_wg_sock_dir" 2>/dev/null || true
}
`;
