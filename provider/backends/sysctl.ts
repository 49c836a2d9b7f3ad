/**
 * sysctl backend: kernel settings several natgate resources may need (net.ipv4.ip_forward for
 * every DnatRule on a host, rp_filter of a tunnel interface), set while at least one of them holds
 * the setting and put back to the value found before the first holder when the last one lets go.
 *
 * Holders are files under $NG_STATE/sysctl/<key>/ (see hoststate.ts): `prev` keeps the value
 * before natgate, `holder.<owner>` one per resource. A value that was already right is recorded
 * as its own previous value, so releasing it changes nothing.
 */

export interface SysctlSetting {
  /** Path under /proc/sys, e.g. "net/ipv4/ip_forward". */
  path: string;
  value: string;
}

export interface LiveSysctl {
  path: string;
  /** Current value; undefined when the key does not exist (e.g. the interface is gone). */
  value: string | undefined;
  /** The value before natgate first set it; undefined when no natgate resource holds it. */
  prev: string | undefined;
  /** Whether this resource is one of the holders. */
  held: boolean;
}

/** `sysctl -w` notation: path separators become dots, dots inside a component (eth0.100) slashes. */
export function sysctlName(path: string): string {
  return path
    .split("/")
    .map((c) => c.replace(/\./g, "/"))
    .join(".");
}

export function sysctlLine(s: { path: string; value: string | undefined }): string {
  return s.value === undefined ? `sysctl ${sysctlName(s.path)}: missing` : `sysctl -w ${sysctlName(s.path)}=${s.value}`;
}

/** Forwarding of one IP version: net.ipv4.ip_forward, or net.ipv6.conf.all.forwarding (which sets every interface's). */
export function ipForward(family: 4 | 6 = 4): SysctlSetting {
  return { path: family === 6 ? "net/ipv6/conf/all/forwarding" : "net/ipv4/ip_forward", value: "1" };
}

/** An interface's accept_ra as sysctl_ra_show prints it, and whether this resource holds it at 2. */
export interface LiveAcceptRa {
  path: string;
  value: string;
  held: boolean;
}

export function rpFilter(iface: string, value: "0" | "1" | "2"): SysctlSetting {
  return { path: `net/ipv4/conf/${iface}/rp_filter`, value };
}

/** Needs HOSTSTATE_SH. OWNER is "<kind>_<name>"; PATH is checked to be under /proc/sys by construction. */
export const SYSCTL_SH = `
sysctl_dir() { printf '%s/sysctl/%s' "$NG_STATE" "$(printf '%s' "$1" | tr / :)"; }
# sysctl_hold PATH VALUE OWNER
sysctl_hold() {
  ng_f=/proc/sys/$1
  if [ ! -e "$ng_f" ]; then
    echo "natgate: $ng_f does not exist (is the interface up? does this kernel have it?)" >&2; return 1
  fi
  ng_d=$(sysctl_dir "$1")
  mkdir -p "$ng_d" || return 1
  [ -f "$ng_d/prev" ] || cat "$ng_f" > "$ng_d/prev" || return 1
  : > "$ng_d/holder.$3" || return 1
  [ "$(cat "$ng_f")" = "$2" ] || echo "$2" > "$ng_f" || { echo "natgate: could not write $2 to $ng_f" >&2; return 1; }
}
# sysctl_release PATH OWNER: the last holder puts the previous value back
sysctl_release() {
  ng_d=$(sysctl_dir "$1")
  [ -d "$ng_d" ] || return 0
  rm -f "$ng_d/holder.$2"
  for ng_h in "$ng_d"/holder.*; do [ -e "$ng_h" ] && return 0; done
  ng_f=/proc/sys/$1
  if [ -f "$ng_d/prev" ] && [ -e "$ng_f" ]; then
    ng_p=$(cat "$ng_d/prev")
    [ "$(cat "$ng_f")" = "$ng_p" ] || echo "$ng_p" > "$ng_f" || { echo "natgate: could not restore $ng_p to $ng_f" >&2; return 1; }
  fi
  rm -f "$ng_d/prev"
  rmdir "$ng_d" 2>/dev/null
  return 0
}
# sysctl_ra_hold OWNER: IPv6 forwarding turns off router advertisements on every interface whose
# accept_ra is 1 (a VPS's own IPv6 default route often comes from one, and goes when it expires);
# 2 takes them while forwarding. Those at 1, and those this owner holds already, are held at 2,
# "default" too, so an interface made later takes them as well.
sysctl_ra_hold() {
  for ng_f in /proc/sys/net/ipv6/conf/*/accept_ra; do
    case $ng_f in */conf/lo/accept_ra) continue ;; esac # loopback hears no router
    [ -e "$ng_f" ] || continue
    ng_p=\${ng_f#/proc/sys/}
    if [ "$(cat "$ng_f")" = 1 ] || [ -e "$(sysctl_dir "$ng_p")/holder.$1" ]; then sysctl_hold "$ng_p" 2 "$1" || return 1; fi
  done
}
# sysctl_ra_release OWNER: let go of every accept_ra this owner holds (after forwarding, so the
# interfaces never ignore advertisements in between)
sysctl_ra_release() {
  for ng_d in "$NG_STATE"/sysctl/net:ipv6:conf:*:accept_ra; do
    [ -e "$ng_d/holder.$1" ] || continue
    sysctl_release "$(basename "$ng_d" | tr : /)" "$1" || return 1
  done
}
# sysctl_ra_show OWNER: "ra PATH VALUE HELD" for each accept_ra that is 1 or held by OWNER
sysctl_ra_show() {
  for ng_f in /proc/sys/net/ipv6/conf/*/accept_ra; do
    case $ng_f in */conf/lo/accept_ra) continue ;; esac
    [ -e "$ng_f" ] || continue
    ng_p=\${ng_f#/proc/sys/}
    ng_v=$(cat "$ng_f")
    ng_held=0; [ -e "$(sysctl_dir "$ng_p")/holder.$1" ] && ng_held=1
    [ "$ng_v" = 1 ] || [ $ng_held = 1 ] && printf 'ra %s %s %s\n' "$ng_p" "$ng_v" "$ng_held"
  done
  return 0
}
# sysctl_show PATH OWNER: "sysctl PATH <value|-> <prev|-> <held 1|0>"
sysctl_show() {
  ng_d=$(sysctl_dir "$1")
  ng_v=-; [ -e "/proc/sys/$1" ] && ng_v=$(cat "/proc/sys/$1")
  ng_p=-; [ -f "$ng_d/prev" ] && ng_p=$(cat "$ng_d/prev")
  ng_held=0; [ -e "$ng_d/holder.$2" ] && ng_held=1
  printf 'sysctl %s %s %s %s\\n' "$1" "$ng_v" "$ng_p" "$ng_held"
}
`;

/** Lines "sysctl PATH VALUE PREV HELD" printed by sysctl_show. */
export function parseSysctlShow(lines: string[]): LiveSysctl[] {
  const out: LiveSysctl[] = [];
  for (const line of lines) {
    const m = /^sysctl (\S+) (\S+) (\S+) ([01])$/.exec(line.trim());
    if (!m) continue;
    out.push({
      path: m[1]!,
      value: m[2] === "-" ? undefined : m[2],
      prev: m[3] === "-" ? undefined : m[3],
      held: m[4] === "1",
    });
  }
  return out;
}

/** Lines "ra PATH VALUE HELD" printed by sysctl_ra_show. */
export function parseAcceptRa(lines: string[]): LiveAcceptRa[] {
  const out: LiveAcceptRa[] = [];
  for (const line of lines) {
    const m = /^ra (\S+) (\S+) ([01])$/.exec(line.trim());
    if (m) out.push({ path: m[1]!, value: m[2]!, held: m[3] === "1" });
  }
  return out;
}
