/**
 * Claims: which natgate resource holds a number or a name that only one path on a host can use
 * (a routing table, an ip rule priority, a mark bit, a WireGuard interface). Two PortForwards on
 * one router with the same defaults would otherwise share table 8764 and priority 950, and the
 * second's create or the first's delete would take the other's path with it.
 *
 * A claim is a file `/etc/natgate/claims/<key>` holding its owner. It lives in /etc, not /run,
 * because it stands for the Pulumi resource, which outlives a reboot (its boot entry rebuilds the
 * kernel state, not the claim). Taking is all-or-nothing and runs under ng_lock, so two creates in
 * parallel cannot both take a key; a resource's delete drops all of its claims.
 */
import { NatgateError } from "../ssh/errors";
import { NATGATE_DIR } from "./bootPaths";

export const CLAIMS_DIR = `${NATGATE_DIR}/claims`;
/** Exit code of claims_take when another owner holds a key. */
export const CLAIMED_EXIT = 76;

export const CLAIMS_SH = `
NG_CLAIMS=${CLAIMS_DIR}
# claims_take OWNER KEYS [FROM]: take every key for OWNER, or none if another owner than OWNER or
# FROM (the resource's previous host-side name) holds one (prints "natgate-claimed <key> <holder>"
# on stderr, exit ${CLAIMED_EXIT}); OWNER's other claims are dropped. Root-only, like the rest of /etc/natgate.
claims_take() {
  for ng_ck in $2; do
    [ -f "$NG_CLAIMS/$ng_ck" ] || continue
    ng_ch=$(cat "$NG_CLAIMS/$ng_ck")
    if [ "$ng_ch" != "$1" ] && { [ -z "$3" ] || [ "$ng_ch" != "$3" ]; }; then echo "natgate-claimed $ng_ck $ng_ch" >&2; exit ${CLAIMED_EXIT}; fi
  done
  [ -z "$2" ] || (umask 077; mkdir -p "$NG_CLAIMS") || return 1
  for ng_ck in $2; do
    if [ -f "$NG_CLAIMS/$ng_ck" ] && [ "$(cat "$NG_CLAIMS/$ng_ck")" = "$1" ]; then continue; fi
    printf '%s\\n' "$1" > "$NG_CLAIMS/$ng_ck.tmp" && mv "$NG_CLAIMS/$ng_ck.tmp" "$NG_CLAIMS/$ng_ck" || return 1
  done
  claims_drop "$1" "$2"
}
# claims_drop OWNER [KEEP]: remove OWNER's claims except the keys in KEEP; the directory goes with the last
claims_drop() {
  [ -d "$NG_CLAIMS" ] || return 0
  for ng_cf in "$NG_CLAIMS"/*; do
    [ -f "$ng_cf" ] || continue
    [ "$(cat "$ng_cf")" = "$1" ] || continue
    case " $2 " in *" \${ng_cf##*/} "*) continue ;; esac
    rm -f "$ng_cf" || return 1
  done
  rmdir "$NG_CLAIMS" 2>/dev/null || true
  rmdir ${NATGATE_DIR} 2>/dev/null || true
}
# claims_show: every claim on the host, "<key> <owner>" per line
claims_show() {
  echo "@@claims"
  [ -d "$NG_CLAIMS" ] || return 0
  for ng_cf in "$NG_CLAIMS"/*; do [ -f "$ng_cf" ] && printf '%s %s\\n' "\${ng_cf##*/}" "$(cat "$ng_cf")"; done
  return 0
}
`;

/** claims_show's lines → key → owner. */
export function parseClaims(lines: string[] | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const l of lines ?? []) {
    const m = /^(\S+) (.+)$/.exec(l.trim());
    if (m) out.set(m[1]!, m[2]!);
  }
  return out;
}

/**
 * What an apply has to change in an owner's claims (`changes`: not drift, since a claim records
 * natgate's bookkeeping, not the host's state; a resource from before claims takes them at its
 * next up), and the error when another owner holds one of the keys it needs (before anything is
 * written).
 */
export function claimPlan(owner: string, wanted: string[], live: Map<string, string>, where: string): { changes: string[]; conflict?: NatgateError } {
  const changes: string[] = [];
  for (const k of wanted) {
    const holder = live.get(k);
    if (holder === undefined) changes.push(`missing claim: ${CLAIMS_DIR}/${k}`);
    else if (holder !== owner) return { changes, conflict: conflictError(k, holder, where) };
  }
  for (const [k, holder] of live) if (holder === owner && !wanted.includes(k)) changes.push(`stale claim: ${CLAIMS_DIR}/${k}`);
  return { changes };
}

/** The keys `owner` holds among a host's claims (what its delete must leave none of). */
export function claimsHeldBy(live: Map<string, string>, owner: string): string[] {
  return [...live].filter(([, o]) => o === owner).map(([k]) => k);
}

/** Keys of what a routing table, a return path and a tunnel side hold. */
export const claimKeys = {
  routeTable: (table: number) => [`table-${table}.routes`],
  returnPath: (table: number, priorities: number[], mask: number) => [
    `table-${table}.ret`,
    ...priorities.map((p) => `priority-${p}`),
    ...Array.from({ length: 32 }, (_, b) => b).filter((b) => ((mask >>> b) & 1) === 1).map((b) => `markbit-${b}`),
  ],
  wireguard: (ifname: string) => [`wireguard-${ifname}`],
};

/** What a key stands for, in words. */
function describeKey(key: string): string {
  let m: RegExpExecArray | null;
  if ((m = /^table-(\d+)\.routes$/.exec(key))) return `routing table ${m[1]}`;
  if ((m = /^table-(\d+)\.ret$/.exec(key))) return `routing table ${m[1]} (for a return path)`;
  if ((m = /^priority-(\d+)$/.exec(key))) return `ip rule priority ${m[1]}`;
  if ((m = /^markbit-(\d+)$/.exec(key))) return `mark bit 0x${(2 ** Number(m[1])).toString(16).padStart(8, "0")}`;
  if ((m = /^wireguard-(.+)$/.exec(key))) return `WireGuard interface ${m[1]}`;
  return key;
}

/** The holder's owner string in words ("ret_web_return" → "ConnmarkReturnPath web_return"). */
function describeOwner(owner: string): string {
  const kinds: Record<string, string> = { ret: "ConnmarkReturnPath", routes: "PolicyRouteTable", tunnel: "Tunnel" };
  const m = /^(ret|routes|tunnel)_(.+)$/.exec(owner);
  return m ? `${kinds[m[1]!]} ${m[2]}` : owner;
}

/** The error for a refused claim (claims_take's exit code and stderr), or undefined when the script failed otherwise. */
export function claimConflict(code: number, stderr: string, where: string): NatgateError | undefined {
  if (code !== CLAIMED_EXIT) return undefined;
  const m = /natgate-claimed (\S+) (.*)/.exec(stderr);
  return m ? conflictError(m[1]!, m[2]!.trim(), where) : undefined;
}

function conflictError(key: string, holder: string, where: string): NatgateError {
  return new NatgateError(
    "config",
    `${describeKey(key)} on ${where} is already used by another natgate resource (${describeOwner(holder)}; see ${CLAIMS_DIR}/${key}): nothing was changed. ${SLOT_FIX}`,
  );
}

/** The fix a PortForward user makes: one number picks every default a path holds. */
export const SLOT_FIX =
  "Two natgate paths on one router need their own numbers: the PortForwards of one program pick free slots by themselves, but not " +
  "around another stack's, so give this one a slot the other path does not hold (`slot: 1`, 2, 3...), " +
  "which picks its tunnel interface, tunnel subnet, listen port, mark, routing table and rule priorities; on the resources themselves, give other values.";
