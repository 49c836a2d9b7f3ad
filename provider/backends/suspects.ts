/**
 * What ran on a host that could have removed natgate's state: read when a refresh finds drift, so
 * it can say "by what" where natgate can tell. Only what leaves a trace is named: a systemd unit's
 * last start and stop, fw4's state file (written by every fw4 start and reload, removed by its
 * stop and flush), ufw.conf (rewritten by `ufw enable`/`disable`), the host's boot. A hand-typed
 * `nft flush ruleset` leaves none. POSIX sh; `date -r` is in GNU and BusyBox date alike.
 */
import { WIPING_SERVICES } from "./bootRunner";

export const SUSPECTS_SH = String.raw`echo @@suspects
now=$(date +%s)
echo "now $now"
up=$(cut -d' ' -f1 /proc/uptime 2>/dev/null)
[ -n "$up" ] && echo "booted $((now - ${"$"}{up%.*}))"
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  for u in ${WIPING_SERVICES.join(" ")}; do
    systemctl show --timestamp=unix -p LoadState -p ActiveEnterTimestamp -p InactiveEnterTimestamp "$u" 2>/dev/null |
      sed -n "s/^LoadState=/unit $u load /p; s/^ActiveEnterTimestamp=@/unit $u started /p; s/^InactiveEnterTimestamp=@/unit $u stopped /p"
  done
  systemctl is-failed -q natgate.service 2>/dev/null && echo "natgate-failed"
fi
if command -v fw4 >/dev/null 2>&1 && [ -e /etc/init.d/firewall ]; then
  if [ -e /var/run/fw4.state ]; then echo "fw4 loaded $(date -r /var/run/fw4.state +%s)"; else echo "fw4 stopped"; fi
fi
if [ -e /etc/ufw/ufw.conf ]; then
  echo "ufw conf $(date -r /etc/ufw/ufw.conf +%s) $(sed -n 's/^ENABLED=//p' /etc/ufw/ufw.conf)"
fi
`;

/** What of natgate's a drift line is about; each event below names what it can remove. */
type Touch = "own" | "fw4" | "ipt" | "rules" | "sysctl";

function touchesOf(drift: string[]): Set<Touch> {
  const t = new Set<Touch>();
  for (const d of drift) {
    if (/^(missing|unexpected) nft\b/.test(d)) t.add("own");
    else if (/^(missing|unexpected) (fw4 include|accept in inet fw4)|^unexpected rule:/.test(d)) t.add("fw4");
    else if (/^(missing|unexpected) iptables\b|^missing accept in /.test(d)) t.add("ipt");
    else if (/ ip rule|^(missing|unexpected) route\b/.test(d)) t.add("rules");
    else if (/^net\.|rp_filter|ip_forward/.test(d)) t.add("sysctl");
  }
  return t;
}

// From their sources: nftables.service flushes the ruleset when it starts and stops; networkd
// removes foreign rules and routes (and sets sysctls it is told to); ufw and firewalld rebuild
// filter chains (ufw also applies its sysctl.conf); Docker its chains and FORWARD's policy.
const UNIT_TOUCHES: Record<string, Touch[]> = {
  "nftables.service": ["own", "fw4", "ipt"],
  "systemd-networkd.service": ["rules", "sysctl"],
  "ufw.service": ["ipt", "sysctl"],
  "firewalld.service": ["ipt", "fw4"],
  "docker.service": ["ipt"],
};

/**
 * The events that could have removed what `drift` lists and came after natgate last applied the
 * resource, as phrases for a drift line: `appliedAge` is how many seconds ago the apply was (the
 * laptop's clock, so the host's may differ: only ages are compared); undefined takes every event.
 */
export function suspectsOf(lines: string[], appliedAge: number | undefined, drift: string[]): string[] {
  const touches = touchesOf(drift);
  const can = (what: Touch[]) => what.some((w) => touches.has(w));
  let now: number | undefined;
  const out: string[] = [];
  const loaded = new Set<string>();
  const events: { what: string; at: number }[] = [];
  for (const line of lines) {
    const w = line.trim().split(/\s+/);
    if (w[0] === "now") now = Number(w[1]);
    else if (w[0] === "booted") events.push({ what: "the host rebooted and natgate's boot entries did not restore it (persist off, or natgate's boot run failed)", at: Number(w[1]) });
    else if (w[0] === "unit" && w[2] === "load" && w[3] === "loaded") loaded.add(w[1]!);
    else if (w[0] === "unit" && (w[2] === "started" || w[2] === "stopped") && loaded.has(w[1]!) && can(UNIT_TOUCHES[w[1]!] ?? [])) {
      events.push({ what: `${w[1]} ${w[2]}`, at: Number(w[3]) });
    } else if (w[0] === "natgate-failed") out.push("natgate.service failed (systemctl status natgate.service says why)");
    else if (w[0] === "fw4" && w[1] === "stopped" && can(["own", "fw4"])) {
      out.push("the OpenWrt firewall is stopped (`/etc/init.d/firewall stop` runs `fw4 flush`, which deletes every nft table, natgate's too)");
    } else if (w[0] === "fw4" && w[1] === "loaded" && can(["fw4"])) events.push({ what: "fw4 reloaded its table", at: Number(w[2]) });
    else if (w[0] === "ufw" && w[1] === "conf" && can(["ipt", "sysctl"])) {
      const state = w[3] === "yes" ? "enabled" : w[3] === "no" ? "disabled" : "changed";
      events.push({ what: `ufw was ${state} (\`ufw ${state === "enabled" ? "enable" : "disable"}\` does not go through systemd: \`systemctl restart ufw\` or \`pulumi up\` puts natgate's accept back)`, at: Number(w[2]) });
    }
  }
  if (now === undefined || !Number.isFinite(now)) return out;
  const fresh = events
    .filter((e) => Number.isFinite(e.at) && e.at > 0)
    .map((e) => ({ ...e, age: now! - e.at }))
    .filter((e) => appliedAge === undefined || e.age < appliedAge)
    .sort((a, b) => a.age - b.age);
  return [...out, ...fresh.map((e) => `${e.what}, ${ago(e.age)}`)];
}

function ago(s: number): string {
  if (s < 120) return `${Math.max(0, Math.round(s))} s ago`;
  if (s < 7200) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}
