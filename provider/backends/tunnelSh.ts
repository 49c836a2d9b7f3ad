/**
 * The shell text of a Tunnel side (see provider/resources/tunnel/): prepare, read, apply steps
 * and delete. POSIX sh (BusyBox ash compatible).
 */
import { SH_PRELUDE } from "./prelude";
import { shQuote } from "../ssh/quote";
import { HOSTSTATE_SH } from "./hoststate";
import { BOOT_SH } from "./persist";
import { CLAIMS_SH } from "./claims";
import { ARGS_SH, encodeArgs } from "./args";
import { WIREGUARD_SH } from "./wireguard";

/**
 * The remote side of a tunnel: POSIX sh (BusyBox ash compatible) run by runScript as
 * `sh -s -- if=IF key=KEYFILE entry=ENTRY` (see args.ts). Every mutation is echoed to stderr as `[#] command` before
 * it runs, wg-quick style, so a failure shows what ran. ENTRY is the side's boot entry
 * (its state is printed with the rest).
 */

const COMMON = `${SH_PRELUDE}${ARGS_SH}${WIREGUARD_SH}${HOSTSTATE_SH}${BOOT_SH}${CLAIMS_SH}
natgate_tools() {
  need wg wireguard-tools wireguard-tools
  need ip iproute2 ip-full
  if ! ip -j link show dev lo >/dev/null 2>&1; then
    echo "the ip command on this host cannot print JSON (ip -j): install iproute2 (on OpenWrt: ip-full)" >&2
    exit 2
  fi
}

# natgate_wg_recall IF FILE (boot entries): each peer of IF without an endpoint gets the one FILE
# kept for it ("KEY ENDPOINT" lines, written by natgate.service when it stopped), and a keepalive
# (switching persistent-keepalive on sends one at once; it is switched off again) starts the
# handshake now. A stale endpoint costs nothing: the peer's own handshake still comes.
natgate_wg_recall() {
  [ -s "$2" ] || return 0
  wg show "$1" endpoints 2>/dev/null | while read -r ng_k ng_e; do
    [ "$ng_e" = "(none)" ] || continue
    ng_s=$(awk -v k="$ng_k" '$1 == k { print $2; exit }' "$2")
    [ -n "$ng_s" ] || continue
    wg set "$1" peer "$ng_k" endpoint "$ng_s" persistent-keepalive 25 && wg set "$1" peer "$ng_k" persistent-keepalive off || true
  done
}

# Live state of interface $1, key file $2 and boot entry $3. The dump's first field is the
# interface's private key: it is replaced here, on the host, so it never travels.
natgate_tunnel_read() {
  echo @@key
  if [ -s "$2" ]; then wg pubkey < "$2" || true; fi
  echo @@link
  ip -d -j link show dev "$1" 2>/dev/null || true
  echo
  echo @@addr
  ip -j addr show dev "$1" 2>/dev/null || true
  echo
  echo @@wg
  if ip link show dev "$1" >/dev/null 2>&1; then
    wg show "$1" dump 2>/dev/null | awk 'BEGIN { FS = OFS = "\\t" } NR == 1 { $1 = "(hidden)" } { print }' || true
  fi
  boot_show "$3"
  echo @@end
}
ng_args "$@"
`;

/** Exit code of the prepare script when the interface exists but natgate did not create it. */
export const FOREIGN_INTERFACE_EXIT = 3;

/**
 * Make sure the key file exists (generate it on the host: the private key never leaves it), then
 * print the live state (args if, key, mode, entry; mode "create" refuses to adopt an interface
 * natgate has no key file for: someone else's wg0). Under the host lock, so that a prepare and the
 * boot entry of the same side, or two prepares, cannot both generate the key or take claims.
 */
export const PREPARE_SCRIPT = `${COMMON}
natgate_tools
ng_lock
if [ -n "$A_claim_owner" ]; then claims_take "$A_claim_owner" "$A_claims" "$A_claim_from" || exit 1; fi
set -e
if [ ! -s "$A_key" ]; then
  if [ "$A_mode" = create ] && ip link show dev "$A_if" >/dev/null 2>&1; then
    echo "natgate-foreign-interface" >&2
    exit ${FOREIGN_INTERFACE_EXIT}
  fi
  echo "[#] umask 077; mkdir -p \${A_key%/*}; wg genkey > $A_key" >&2
  umask 077
  mkdir -p "\${A_key%/*}"
  wg genkey > "$A_key.tmp"
  mv "$A_key.tmp" "$A_key"
  echo @@generated
fi
natgate_tunnel_read "$A_if" "$A_key" "$A_entry"
`;

/** Read only (args if, key, entry). */
export const READ_SCRIPT = `${COMMON}
natgate_tools
natgate_tunnel_read "$A_if" "$A_key" "$A_entry"
`;

/**
 * The constant start of every apply script (a boot entry's body). It takes the host lock: the boot
 * runner (at boot, or OpenWrt's hotplug when an interface comes up) may run this side's entry while
 * Pulumi applies it, and the boot entries of other resources use the interface it (re)creates.
 */
export const APPLY_HEAD = `${COMMON}
set -e
natgate_tools
ng_lock
`;

/** The steps of a plan and the read-back: the part of an apply script that varies. */
export function applySteps(plan: string[]): string {
  const steps = plan.map((line) => `echo ${shQuote(`[#] ${line}`)} >&2\n${line}`).join("\n");
  return `${steps}
natgate_tunnel_read "$A_if" "$A_key" "$A_entry"
`;
}

/**
 * Removes what a side owns: the interface (only if it is WireGuard's: kernel kind, or a tun
 * served by wireguard-go), wireguard-go's socket, the key file, the boot entry (with the last
 * one, the boot runner), and the key directories when they are left empty. Missing pieces are
 * not errors (args if, key, entry).
 */
export const DELETE_SCRIPT = `${COMMON}
ng_lock
set -e
need ip iproute2 ip-full
natgate_wg_kind=$(ip -d -j link show dev "$A_if" 2>/dev/null || true)
case "$natgate_wg_kind" in
  "") natgate_wg_link_del "$A_if" ;;
  *'"info_kind":"wireguard"'*) natgate_wg_link_del "$A_if" ;;
  *'"info_kind":"tun"'*)
    if [ -S "/var/run/wireguard/$A_if.sock" ]; then natgate_wg_link_del "$A_if"
    else echo "natgate: $A_if is a tun device without a wireguard-go socket: not ours, left in place" >&2; fi ;;
  *) echo "natgate: $A_if is not a WireGuard interface: not ours, left in place" >&2 ;;
esac
if [ -e "$A_key" ] || [ -e "$A_key.tmp" ]; then
  echo "[#] rm -f $A_key" >&2
  rm -f "$A_key" "$A_key.tmp"
fi
[ -z "$A_claim_owner" ] || claims_drop "$A_claim_owner"
rm -f "\${A_key%.key}.endpoints"
rmdir "\${A_key%/*}" 2>/dev/null || true
rmdir "\${A_key%/*/*}" 2>/dev/null || true
set +e
boot_remove "$A_entry" || exit 1
`;

/**
 * A side's script arguments: its interface, its key file, its boot entry, for prepare the mode,
 * and the claim on the interface (prepare takes it, delete drops it).
 */
export function tunnelArgs(a: {
  ifname: string;
  keyFile: string;
  entry: string;
  mode?: "create" | "update";
  claim?: { owner: string; keys: string[]; from?: string };
}): string[] {
  return encodeArgs({ if: a.ifname, key: a.keyFile, entry: a.entry, mode: a.mode, claim_owner: a.claim?.owner, claims: a.claim?.keys.join(" "), claim_from: a.claim?.from });
}
