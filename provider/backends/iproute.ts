/**
 * iproute2 backend: policy rules and the routes of one table, as data (tailscale's linuxfw style),
 * printed as the `ip` commands that create them. Live state comes from `ip -j`, printed by the
 * same functions, so desired and live compare as text. Changes go through one `ip -batch -` whose
 * lines are built here from validated values only.
 *
 * BusyBox's `ip` has neither `-j` nor `fwmark X/MASK`; OpenWrt needs the ip-full package (mwan3
 * and pbr need it too).
 */
import { NatgateError } from "../ssh/errors";

export interface IpRule {
  /** 6: an IPv6 rule (`ip -6 rule`); absent: IPv4. */
  family?: 6;
  priority: number;
  /** Source address or network ("10.10.10.2", "10.10.10.0/24"); absent = from all. */
  from?: string;
  fwmark?: number;
  /** Absent = all 32 bits. */
  fwmask?: number;
  table: number;
}

export interface Route {
  /**
   * "default" or a network "192.168.1.0/24"; IPv6: "::/0" or a network "fd00:1::/64", canonical
   * (RFC 5952). The route's family is that of `to` (routeIs6).
   */
  to: string;
  via?: string;
  dev?: string;
  src?: string;
  metric?: number;
  onlink?: boolean;
}

function hexMark(n: number): string {
  return "0x" + (n >>> 0).toString(16);
}

/** The rule in the words `ip rule` takes after add/del. */
export function ruleSpec(r: IpRule): string {
  const parts = [`priority ${r.priority}`];
  if (r.from !== undefined) parts.push(`from ${r.from}`);
  if (r.fwmark !== undefined) {
    const full = r.fwmask === undefined || r.fwmask >>> 0 === 0xffffffff;
    parts.push(`fwmark ${hexMark(r.fwmark)}${full ? "" : "/" + hexMark(r.fwmask!)}`);
  }
  parts.push(`lookup ${r.table}`);
  return parts.join(" ");
}

export function ruleLine(r: IpRule): string {
  return `ip ${r.family === 6 ? "-6 " : ""}rule add ${ruleSpec(r)}`;
}

/**
 * An `ip -batch` line for the rule. A rule without an address has no family of its own, and ip
 * takes no -6 inside a batch: IPv6 lines carry a "-6 " mark that ip_batch sends to `ip -6 -batch`.
 */
export function ruleBatch(op: "add" | "del", r: IpRule): string {
  return `${r.family === 6 ? "-6 " : ""}rule ${op} ${ruleSpec(r)}`;
}

/** The route in the words `ip route` takes after add/replace/del and `table N`. */
export function routeSpec(r: Route & { type?: string }): string {
  const parts: string[] = [];
  if (r.type && r.type !== "unicast") parts.push(r.type);
  parts.push(r.to);
  if (r.via !== undefined) parts.push(`via ${r.via}`);
  if (r.dev !== undefined) parts.push(`dev ${r.dev}`);
  if (r.src !== undefined) parts.push(`src ${r.src}`);
  if (r.metric !== undefined && r.metric !== 0) parts.push(`metric ${r.metric}`);
  if (r.onlink) parts.push("onlink");
  return parts.join(" ");
}

/** An IPv6 route: its destination is an IPv6 network ("default" is IPv4's; IPv6's is written ::/0). */
export function routeIs6(r: { to: string }): boolean {
  return r.to.includes(":");
}

export function routeLine(table: number, r: Route & { type?: string }): string {
  return `ip ${routeIs6(r) ? "-6 " : ""}route replace table ${table} ${routeSpec(r)}`;
}

/**
 * `ip -batch` lines: a route put in place (replacing one with the same key), or removed. An IPv6
 * line needs no -6: ip takes the family from the destination ("::/0", never "default").
 */
export function batchReplace(table: number, r: Route & { type?: string }): string {
  return `route replace table ${table} ${routeSpec(r)}`;
}
export function batchDel(table: number, r: Route & { type?: string }): string {
  return `route del table ${table} ${routeSpec(r)}`;
}

/** A route as the rendered line shows it without its `ip route replace` prefix (an error lists a table's routes). */
export function routeShort(line: string, table: number): string {
  for (const prefix of [`ip route replace table ${table} `, `ip -6 route replace table ${table} `]) {
    if (line.startsWith(prefix)) return line.slice(prefix.length);
  }
  return line;
}

/** The metric the kernel gives an IPv6 route added without one (or with 0). */
export const IPV6_DEFAULT_METRIC = 1024;

/**
 * What identifies a route inside a table for the kernel (IPv4: destination, tos, metric; IPv6:
 * destination, metric). Routes compared are normalised (an IPv6 metric 1024 left out like 0).
 */
export function routeKey(r: { to: string; metric?: number; type?: string }): string {
  return `${r.to} ${r.metric ?? 0}`;
}

// ---------- live state from ip -j ----------

const SAFE = /^[A-Za-z0-9_.:\/-]+$/;

function safe(v: unknown, what: string): string {
  const s = String(v);
  if (!SAFE.test(s)) throw new NatgateError("unexpected-output", `ip printed an unexpected ${what} ${JSON.stringify(s)}`);
  return s;
}

export interface LiveRule extends IpRule {
  /** Fields natgate never sets (iif, oif, tos, ...): such a rule is never equal to a desired one. */
  extra?: string;
}

/** `ip -N -j rule` (family 6: `ip -6 -N -j rule`) → the rules with one of `priorities` that look up one of `tables`. */
export function parseRules(json: string, priorities: number[], tables: number[], family: 4 | 6 = 4): LiveRule[] {
  const all = JSON.parse(json.trim() || "[]") as Record<string, unknown>[];
  const out: LiveRule[] = [];
  for (const j of all) {
    const priority = Number(j.priority);
    const table = Number(j.table);
    if (!priorities.includes(priority) || !tables.includes(table)) continue;
    const r: LiveRule = family === 6 ? { family: 6, priority, table } : { priority, table };
    if (j.src !== undefined && j.src !== "all") {
      r.from = safe(j.src, "rule source") + (j.srclen !== undefined && Number(j.srclen) !== (family === 6 ? 128 : 32) ? `/${Number(j.srclen)}` : "");
    }
    if (j.fwmark !== undefined) r.fwmark = Number(j.fwmark);
    if (j.fwmask !== undefined) r.fwmask = Number(j.fwmask);
    const known = new Set(["priority", "table", "src", "srclen", "fwmark", "fwmask", "protocol"]);
    const extra = Object.keys(j).filter((k) => !known.has(k));
    if (extra.length) r.extra = extra.map((k) => `${k} ${JSON.stringify(j[k])}`).join(" ");
    out.push(r);
  }
  return out;
}

export function liveRuleLine(r: LiveRule): string {
  return ruleLine(r) + (r.extra ? ` <also: ${r.extra}>` : "");
}

export interface LiveRoute extends Route {
  type?: string;
  extra?: string;
}

/**
 * `ip -j route show table N` → routes; "" (the read script's output for a table that does not exist) → [].
 * family 6: `ip -6 -j route show table N`, normalised like a desired IPv6 route: "default" is
 * "::/0", the kernel's metric 1024 for a route given none is left out.
 */
export function parseRoutes(json: string, family: 4 | 6 = 4): LiveRoute[] {
  const all = JSON.parse(json.trim() || "[]") as Record<string, unknown>[];
  return all.map((j) => {
    const dst = safe(j.dst, "route destination");
    const r: LiveRoute = { to: family === 6 && dst === "default" ? "::/0" : dst };
    if (j.type !== undefined && j.type !== "unicast") r.type = safe(j.type, "route type");
    if (j.gateway !== undefined) r.via = safe(j.gateway, "gateway");
    if (j.dev !== undefined) r.dev = safe(j.dev, "device");
    if (j.prefsrc !== undefined) r.src = safe(j.prefsrc, "source");
    if (j.metric !== undefined && Number(j.metric) !== 0 && !(family === 6 && Number(j.metric) === IPV6_DEFAULT_METRIC)) r.metric = Number(j.metric);
    const flags = Array.isArray(j.flags) ? (j.flags as string[]) : [];
    if (flags.includes("onlink")) r.onlink = true;
    // State, not configuration: "linkdown"/"dead" come and go with the device.
    const known = new Set(["dst", "type", "gateway", "dev", "prefsrc", "metric", "flags", "scope", "protocol", "table"]);
    // IPv6 prints the router preference of every route ("medium" unless set, which natgate never does).
    if (family === 6 && j.pref === "medium") known.add("pref");
    const extra = Object.keys(j).filter((k) => !known.has(k));
    if (extra.length) r.extra = extra.map((k) => `${k} ${JSON.stringify(j[k])}`).join(" ");
    return r;
  });
}

export function liveRouteLine(table: number, r: LiveRoute): string {
  return routeLine(table, r) + (r.extra ? ` <also: ${r.extra}>` : "");
}

/** ip_deadman_wake TOKEN: end the claimed job's sleep, by its PID, if that PID is still a sleep. */
const DEADMAN_WAKE_SH = `ip_deadman_wake() {
  ng_p=$(cat "$NG_STATE/deadman.$1.pid" 2>/dev/null) || return 0
  test "$ng_p" -ge 1 2>/dev/null || return 0
  case "$(tr '\\0' ' ' < "/proc/$ng_p/cmdline" 2>/dev/null)" in "sleep "*) kill "$ng_p" 2>/dev/null ;; esac
  return 0
}`;

/**
 * Run over a fresh SSH login after an apply: "cancelled" if the change stays, "gone" if it was
 * rolled back. A rollback that has claimed the token but is still running is waited for (10 s at
 * most), so what the caller reads next is what the rollback left.
 */
export const DEADMAN_CANCEL_SH = `if [ -d /run ]; then NG_STATE=/run/natgate; else NG_STATE=/var/run/natgate; fi
${DEADMAN_WAKE_SH}
if rm "$NG_STATE/deadman.$1" 2>/dev/null; then ip_deadman_wake "$1"; rmdir "$NG_STATE" 2>/dev/null; echo cancelled; exit 0; fi
ng_n=0
while test -e "$NG_STATE/deadman.$1.pid" && test $ng_n -lt 100; do sleep 0.1 2>/dev/null || sleep 1; ng_n=$((ng_n + 1)); done
echo gone
`;

/** Seconds before an unconfirmed rule or route change is undone. */
export const DEADMAN_SECONDS = 30;

/** `ip -batch` lines that undo `batch` (rule/route add, del, replace), given what each replace overwrote. */
export function inverseBatch(batch: string[], replaced: Map<string, string> = new Map()): string[] {
  return [...batch].reverse().map((line) => {
    const m = /^((?:-6 )?(?:rule|route)) (add|del|replace) (.*)$/.exec(line);
    if (!m) throw new NatgateError("internal", `cannot invert ip batch line: ${line}`);
    const [, obj, op, rest] = m;
    if (op === "del") return `${obj} add ${rest}`;
    if (op === "add") return `${obj} del ${rest}`;
    const before = replaced.get(line);
    return before !== undefined ? `${obj} replace ${before}` : `${obj} del ${rest}`;
  });
}

export const IPROUTE_SH = `
# ip_need: ip from iproute2 (BusyBox ip lacks -j and fwmark masks)
ip_need() {
  need ip iproute2 ip-full
  ip -j rule show >/dev/null 2>&1 || {
    printf '%s %s %s%s\\n' 'natgate-missing-tool:' ip iproute2 ' ip-full' >&2; exit 127; }
}
# ip_rules: all policy rules, table ids as numbers
ip_rules() { ip -N -j rule show; }
# ip_rules6: the same for IPv6; nothing when the host has no IPv6
ip_rules6() { [ ! -e /proc/net/if_inet6 ] || ip -6 -N -j rule show; }
# ip_routes TABLE: the table's routes; nothing when the table does not exist yet
ip_routes() {
  if ng_out=$(ip -j route show table "$1" 2>&1); then
    printf '%s\\n' "$ng_out"
  else
    case $ng_out in
      *"does not exist"*) ;;
      *) printf 'natgate: ip route show table %s failed: %s\\n' "$1" "$ng_out" >&2; return 1 ;;
    esac
  fi
}
# ip_routes6 TABLE: the same for IPv6; nothing when the host has no IPv6
ip_routes6() {
  [ -e /proc/net/if_inet6 ] || return 0
  if ng_out=$(ip -6 -j route show table "$1" 2>&1); then
    printf '%s\\n' "$ng_out"
  else
    case $ng_out in
      *"does not exist"*) ;;
      *) printf 'natgate: ip -6 route show table %s failed: %s\\n' "$1" "$ng_out" >&2; return 1 ;;
    esac
  fi
}
# ip_batch_run OPTS TEXT: TEXT's lines through \`ip OPTS -batch -\`, those marked "-6 " (IPv6 rules,
# which no address gives a family, and ip takes no -6 inside a batch) through \`ip -6 OPTS -batch -\`
ip_batch_run() {
  ng_b=$(printf '%s\\n' "$2" | grep -v '^-6 ' || true)
  [ -z "$ng_b" ] || printf '%s\\n' "$ng_b" | ip $1 -batch - || return 1
  ng_b=$(printf '%s\\n' "$2" | sed -n 's/^-6 //p')
  [ -z "$ng_b" ] || printf '%s\\n' "$ng_b" | ip -6 $1 -batch - || return 1
}
# ip_batch TEXT: ip -batch lines (route/rule add, replace, del); stops at the first error
ip_batch() {
  [ -n "$1" ] || return 0
  ip_batch_run "" "$1" || { echo "natgate: ip -batch failed on the line above" >&2; return 1; }
}
# Lockout guard (wg-quick's lesson, DESIGN.md "Lockout"): a rule or route can cut the SSH session
# it was applied through. ip_deadman_arm TOKEN SECONDS ROLLBACK schedules ROLLBACK (ip -batch lines
# undoing the change) unless ip_deadman_cancel TOKEN, run over a fresh SSH login, claims the token
# first. Whoever removes the token file wins; the background job holds no fd of the session.
# The job's sleep is a process of its own, its PID in deadman.TOKEN.pid: whoever claims the token
# wakes it (ip_deadman_wake), so a confirmed change leaves no job sleeping out its time on the host.
ip_deadman_arm() {
  [ -n "$3" ] || return 0
  mkdir -p "$NG_STATE" && : > "$NG_STATE/deadman.$1" || return 1
  ( sleep "$2" & ng_s=$!
    echo "$ng_s" > "$NG_STATE/deadman.$1.pid"
    wait "$ng_s"
    if rm "$NG_STATE/deadman.$1" 2>/dev/null; then ip_batch_run -force "$3"; fi
    rm -f "$NG_STATE/deadman.$1.pid"
    rmdir "$NG_STATE" 2>/dev/null ) </dev/null >/dev/null 2>&1 &
}
${DEADMAN_WAKE_SH}
# ip_deadman_now TOKEN ROLLBACK: the apply failed part-way: undo at once
ip_deadman_now() {
  if rm "$NG_STATE/deadman.$1" 2>/dev/null; then ip_deadman_wake "$1"; ip_batch_run -force "$2" >/dev/null 2>&1; fi
  return 0
}
# ip_deadman_pending OWNER: "@@deadman", then the token of each of OWNER's rollbacks still armed or
# running: an apply whose confirming login was lost (connection cut, provider killed) left it
ip_deadman_pending() {
  echo "@@deadman"
  for ng_f in "$NG_STATE"/deadman."$1".*; do
    test -e "$ng_f" || continue
    ng_t=\${ng_f##*/deadman.}
    echo "\${ng_t%.pid}"
  done | sort -u
}
# ip_flush_table TABLE: not-found is success
ip_flush_table() {
  if ! ng_out=$(ip route flush table "$1" 2>&1); then
    case $ng_out in
      *"does not exist"*) ;;
      *) printf 'natgate: ip route flush table %s failed: %s\\n' "$1" "$ng_out" >&2; return 1 ;;
    esac
  fi
}
# ip_flush_table6 TABLE: the same for IPv6; nothing to do when the host has no IPv6
ip_flush_table6() {
  [ -e /proc/net/if_inet6 ] || return 0
  if ! ng_out=$(ip -6 route flush table "$1" 2>&1); then
    case $ng_out in
      *"does not exist"*) ;;
      *) printf 'natgate: ip -6 route flush table %s failed: %s\\n' "$1" "$ng_out" >&2; return 1 ;;
    esac
  fi
}
`;
