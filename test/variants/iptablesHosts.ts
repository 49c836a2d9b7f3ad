// Lab hosts without nft: root's SSH sessions on the VPS or the router find no `nft` on PATH and an
// iptables of one flavour only (xtables-legacy-multi, as on OpenWrt 21.02 or an old Debian, or
// xtables-nft-multi), and a router running an OpenWrt 21.02 fw3-shaped iptables firewall. Each
// setup returns its exact undo. Host snapshots here also cover iptables-legacy's tables, which
// neither `nft list ruleset` nor iptables-nft show.
//
// The PATH goes through ~/.ssh/environment, as in rootPath.ts: the router's sshd reads it
// (`PermitUserEnvironment PATH`, see test/lab/README.md); the VPS's sshd is given the same line
// here and restarted in place (SIGHUP: sshd re-execs with the same PID and mount namespace).
// Commands the tests run through lab.hosts.X.run (nsenter) keep the machine's PATH, with nft.
import { strict as assert } from "assert";
import { execFile } from "child_process";
import * as fs from "fs";
import * as path from "path";
import type { PortForwardArgs } from "natgate";
import { shQuote, type ExecResult, type Lab, type LabHost } from "../lab";
import { snapshotDiff } from "../engine/seedLab";
import { isLink, linkStandardPath } from "./rootPath";
import { hostState, scratchDir } from "./variantLab";

export type IptablesFlavour = "legacy" | "nft";
export type FirewallHost = "vps" | "router";
/** The backend choice natgate's DnatRule / ConnmarkReturnPath / PortForward hosts take. */
export type BackendChoice = "auto" | "nftables" | "iptables";

/** The names a host's iptables answers to, each resolved to the flavour's binary of the same role. */
const IPTABLES_NAMES = ["iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore"];

/** The other flavour's commands and nft's own: what a host of one flavour does not have. */
function absentOn(flavour: IptablesFlavour, name: string): boolean {
  if (name === "nft") return true;
  if (flavour === "legacy") return /(^|-)nft(-|$)/.test(name) || name === "xtables-monitor" || /-translate$/.test(name);
  return /(^|-)legacy(-|$)/.test(name);
}

/**
 * A directory to put first (and only) on root's PATH: every command of a standard PATH as a
 * symlink, except nft and the other flavour's iptables; iptables, iptables-save, iptables-restore
 * and ip6tables* link to this flavour's (iptables → /usr/sbin/iptables-legacy...; the multi
 * binaries dispatch on the name they are called by, which stays `iptables`).
 */
export function iptablesOnlyPath(lab: Lab, flavour: IptablesFlavour): string {
  const dir = scratchDir(lab, `path-iptables-${flavour}-only`);
  for (const name of IPTABLES_NAMES) {
    const link = path.join(dir, name);
    const target = `/usr/sbin/${name.replace(/^(ip6?tables)/, `$1-${flavour}`)}`;
    assert.ok(fs.existsSync(target), `${target} missing: the lab needs Debian's iptables package (iptables-legacy and iptables-nft)`);
    if (!isLink(link)) fs.symlinkSync(target, link);
  }
  linkStandardPath(dir, (name) => absentOn(flavour, name));
  return dir;
}

function sshdConfigOf(lab: Lab, host: FirewallHost): string {
  return path.join(lab.dir, "hosts", host, "sshd_config");
}

const USER_ENV_LINE = "PermitUserEnvironment PATH";

/** Restarts a host's sshd in place (SIGHUP re-execs it: same PID, same namespaces) and waits until it listens again. */
async function reloadSshd(h: LabHost): Promise<void> {
  const listening = () => (fs.readFileSync(h.sshdLog!, "utf8").match(/Server listening on 0\.0\.0\.0 port 22/g) ?? []).length;
  const n = listening();
  process.kill(h.sshdPid!, "SIGHUP");
  for (const deadline = Date.now() + 10_000; listening() <= n; ) {
    if (Date.now() > deadline) throw new Error(`${h.name}: sshd did not listen again after SIGHUP:\n${fs.readFileSync(h.sshdLog!, "utf8").slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Makes a host's sshd read PATH from ~/.ssh/environment; returns the undo (nothing to undo on the router, which has it from bring-up). */
async function enableUserEnvironment(lab: Lab, host: FirewallHost): Promise<() => Promise<void>> {
  const file = sshdConfigOf(lab, host);
  const text = fs.readFileSync(file, "utf8");
  if (text.split("\n").includes(USER_ENV_LINE)) return async () => undefined;
  fs.writeFileSync(file, `${text.endsWith("\n") ? text : `${text}\n`}${USER_ENV_LINE}\n`);
  await reloadSshd(lab.hosts[host]);
  return async () => {
    fs.writeFileSync(file, text);
    await reloadSshd(lab.hosts[host]);
  };
}

/**
 * Root's PATH for new SSH sessions on `host` (vps or router). Returns the exact undo: the host's
 * previous ~/.ssh/environment (none after bring-up) and its sshd config.
 */
export async function setRootPath(lab: Lab, host: FirewallHost, dirs: string[]): Promise<() => Promise<void>> {
  const h = lab.hosts[host];
  const had = (await h.exec("cat /root/.ssh/environment")).code === 0 ? await h.run("cat /root/.ssh/environment") : undefined;
  const undoSshd = await enableUserEnvironment(lab, host);
  await h.run(`printf 'PATH=%s\\n' ${shQuote(dirs.join(":"))} >/root/.ssh/environment`);
  return async () => {
    if (had === undefined) await h.run("rm -f /root/.ssh/environment");
    else await h.run("cat >/root/.ssh/environment", { input: had });
    await undoSshd();
  };
}

/** `host` as a host without nft whose iptables is `flavour`'s; returns the undo. */
export async function makeIptablesOnly(lab: Lab, host: FirewallHost, flavour: IptablesFlavour): Promise<() => Promise<void>> {
  return setRootPath(lab, host, [iptablesOnlyPath(lab, flavour)]);
}

// ---------------------------------------------------------------------------------------------
// fw3: OpenWrt 21.02's firewall, as `iptables-save` shows it on a router with the default
// /etc/config/firewall (zones lan: br-lan, ACCEPT/ACCEPT/ACCEPT; wan: REJECT input and forward,
// masq, mtu_fix; lan → wan forwarding; the default wan rules; syn_flood), plus a rule of the
// router's own in mangle that sets marks the way mwan3 does (0x100 under mwan3's mask 0x3f00) on
// LAN traffic.

export function fw3Ruleset(o: { lan: string; wan: string }): string {
  const { lan, wan } = o;
  const c = (what = "") => `-m comment --comment "!fw3${what ? `: ${what}` : ""}"`;
  const chains = (names: string[]) => names.map((n) => `:${n} - [0:0]`);
  return [
    "*filter",
    ":INPUT ACCEPT [0:0]",
    ":FORWARD DROP [0:0]",
    ":OUTPUT ACCEPT [0:0]",
    ...chains([
      "forwarding_lan_rule", "forwarding_rule", "forwarding_wan_rule", "input_lan_rule", "input_rule", "input_wan_rule",
      "output_lan_rule", "output_rule", "output_wan_rule", "reject", "syn_flood", "zone_lan_dest_ACCEPT", "zone_lan_forward",
      "zone_lan_input", "zone_lan_output", "zone_lan_src_ACCEPT", "zone_wan_dest_ACCEPT", "zone_wan_dest_REJECT",
      "zone_wan_forward", "zone_wan_input", "zone_wan_output", "zone_wan_src_REJECT",
    ]),
    `-A INPUT -i lo ${c()} -j ACCEPT`,
    `-A INPUT ${c("Custom input rule chain")} -j input_rule`,
    `-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED ${c()} -j ACCEPT`,
    `-A INPUT -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN ${c()} -j syn_flood`,
    `-A INPUT -i ${lan} ${c()} -j zone_lan_input`,
    `-A INPUT -i ${wan} ${c()} -j zone_wan_input`,
    `-A FORWARD ${c("Custom forwarding rule chain")} -j forwarding_rule`,
    `-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED ${c()} -j ACCEPT`,
    `-A FORWARD -i ${lan} ${c()} -j zone_lan_forward`,
    `-A FORWARD -i ${wan} ${c()} -j zone_wan_forward`,
    `-A FORWARD ${c()} -j reject`,
    `-A OUTPUT -o lo ${c()} -j ACCEPT`,
    `-A OUTPUT ${c("Custom output rule chain")} -j output_rule`,
    `-A OUTPUT -m conntrack --ctstate RELATED,ESTABLISHED ${c()} -j ACCEPT`,
    `-A OUTPUT -o ${lan} ${c()} -j zone_lan_output`,
    `-A OUTPUT -o ${wan} ${c()} -j zone_wan_output`,
    `-A reject -p tcp ${c()} -j REJECT --reject-with tcp-reset`,
    `-A reject ${c()} -j REJECT --reject-with icmp-port-unreachable`,
    `-A syn_flood -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m limit --limit 25/sec --limit-burst 50 ${c()} -j RETURN`,
    `-A syn_flood ${c()} -j DROP`,
    `-A zone_lan_dest_ACCEPT -o ${lan} ${c()} -j ACCEPT`,
    `-A zone_lan_forward ${c("Custom lan forwarding rule chain")} -j forwarding_lan_rule`,
    `-A zone_lan_forward ${c("Zone lan to wan forwarding policy")} -j zone_wan_dest_ACCEPT`,
    `-A zone_lan_forward -m conntrack --ctstate DNAT ${c("Accept port forwards")} -j ACCEPT`,
    `-A zone_lan_forward ${c()} -j zone_lan_dest_ACCEPT`,
    `-A zone_lan_input ${c("Custom lan input rule chain")} -j input_lan_rule`,
    `-A zone_lan_input -m conntrack --ctstate DNAT ${c("Accept port redirections")} -j ACCEPT`,
    `-A zone_lan_input ${c()} -j zone_lan_src_ACCEPT`,
    `-A zone_lan_output ${c("Custom lan output rule chain")} -j output_lan_rule`,
    `-A zone_lan_output ${c()} -j zone_lan_dest_ACCEPT`,
    `-A zone_lan_src_ACCEPT -i ${lan} -m conntrack --ctstate NEW,UNTRACKED ${c()} -j ACCEPT`,
    `-A zone_wan_dest_ACCEPT -o ${wan} -m conntrack --ctstate INVALID ${c("Prevent NAT leakage")} -j DROP`,
    `-A zone_wan_dest_ACCEPT -o ${wan} ${c()} -j ACCEPT`,
    `-A zone_wan_dest_REJECT -o ${wan} ${c()} -j reject`,
    `-A zone_wan_forward ${c("Custom wan forwarding rule chain")} -j forwarding_wan_rule`,
    `-A zone_wan_forward -p esp ${c("Allow-IPSec-ESP")} -j zone_lan_dest_ACCEPT`,
    `-A zone_wan_forward -p udp -m udp --dport 500 ${c("Allow-ISAKMP")} -j zone_lan_dest_ACCEPT`,
    `-A zone_wan_forward -m conntrack --ctstate DNAT ${c("Accept port forwards")} -j ACCEPT`,
    `-A zone_wan_forward ${c()} -j zone_wan_dest_REJECT`,
    `-A zone_wan_input ${c("Custom wan input rule chain")} -j input_wan_rule`,
    `-A zone_wan_input -p udp -m udp --dport 68 ${c("Allow-DHCP-Renew")} -j ACCEPT`,
    `-A zone_wan_input -p icmp -m icmp --icmp-type 8 ${c("Allow-Ping")} -j ACCEPT`,
    `-A zone_wan_input -p igmp ${c("Allow-IGMP")} -j ACCEPT`,
    `-A zone_wan_input -m conntrack --ctstate DNAT ${c("Accept port redirections")} -j ACCEPT`,
    `-A zone_wan_input ${c()} -j zone_wan_src_REJECT`,
    `-A zone_wan_output ${c("Custom wan output rule chain")} -j output_wan_rule`,
    `-A zone_wan_output ${c()} -j zone_wan_dest_ACCEPT`,
    `-A zone_wan_src_REJECT -i ${wan} ${c()} -j reject`,
    "COMMIT",
    "*mangle",
    ":PREROUTING ACCEPT [0:0]",
    ":INPUT ACCEPT [0:0]",
    ":FORWARD ACCEPT [0:0]",
    ":OUTPUT ACCEPT [0:0]",
    ":POSTROUTING ACCEPT [0:0]",
    ...chains(["fwmark"]),
    `-A PREROUTING ${c()} -j fwmark`,
    `-A FORWARD -o ${wan} -p tcp -m tcp --tcp-flags SYN,RST SYN ${c("Zone wan MTU fixing")} -j TCPMSS --clamp-mss-to-pmtu`,
    `-A fwmark -i ${lan} ${c("lan-mark (mwan3-style, mask 0x3f00)")} -j MARK --set-xmark 0x100/0x3f00`,
    "COMMIT",
    "*nat",
    ":PREROUTING ACCEPT [0:0]",
    ":INPUT ACCEPT [0:0]",
    ":OUTPUT ACCEPT [0:0]",
    ":POSTROUTING ACCEPT [0:0]",
    ...chains([
      "postrouting_lan_rule", "postrouting_rule", "postrouting_wan_rule", "prerouting_lan_rule", "prerouting_rule",
      "prerouting_wan_rule", "zone_lan_postrouting", "zone_lan_prerouting", "zone_wan_postrouting", "zone_wan_prerouting",
    ]),
    `-A PREROUTING ${c("Custom prerouting rule chain")} -j prerouting_rule`,
    `-A PREROUTING -i ${lan} ${c()} -j zone_lan_prerouting`,
    `-A PREROUTING -i ${wan} ${c()} -j zone_wan_prerouting`,
    `-A POSTROUTING ${c("Custom postrouting rule chain")} -j postrouting_rule`,
    `-A POSTROUTING -o ${lan} ${c()} -j zone_lan_postrouting`,
    `-A POSTROUTING -o ${wan} ${c()} -j zone_wan_postrouting`,
    `-A zone_lan_postrouting ${c("Custom lan postrouting rule chain")} -j postrouting_lan_rule`,
    `-A zone_lan_prerouting ${c("Custom lan prerouting rule chain")} -j prerouting_lan_rule`,
    `-A zone_wan_postrouting ${c("Custom wan postrouting rule chain")} -j postrouting_wan_rule`,
    `-A zone_wan_postrouting ${c()} -j MASQUERADE`,
    `-A zone_wan_prerouting ${c("Custom wan prerouting rule chain")} -j prerouting_wan_rule`,
    "COMMIT",
    "",
  ].join("\n");
}

const BUILTIN: Record<string, string[]> = {
  filter: ["INPUT", "FORWARD", "OUTPUT"],
  nat: ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
  mangle: ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
};
const FW3_TABLES = ["filter", "mangle", "nat"];

/** The router's wan and LAN interfaces in the lab (test/lab/lab.sh: the router's uplink is `wan`, its bridge `br-lan`). */
export async function routerInterfaces(lab: Lab): Promise<{ lan: string; wan: string }> {
  const wan = (await lab.hosts.router.run(`ip -o -4 addr show to ${lab.addresses.routerWan}`)).split(/\s+/)[1];
  const lan = (await lab.hosts.router.run(`ip -o -4 addr show to ${lab.addresses.routerLan}`)).split(/\s+/)[1];
  assert.ok(wan && lan, "router interfaces not found");
  return { lan, wan };
}

/** `*table` blocks of an iptables-save text, by table name (comment lines dropped). */
function saveBlocks(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of text.matchAll(/^\*(\w+)\n([\s\S]*?)^COMMIT$/gm)) out[m[1]!] = `*${m[1]}\n${m[2]!.split("\n").filter((l) => !l.startsWith("#")).join("\n")}COMMIT\n`;
  return out;
}

/**
 * Installs the fw3-shaped firewall on the router in `flavour`'s iptables (fw3 owns the filter,
 * mangle and nat tables, as on OpenWrt: a restore without --noflush replaces them). Returns the
 * exact undo: each table back to what it held before; with iptables-nft, a table that did not
 * exist before is deleted. (A legacy table cannot be unregistered from a network namespace: one
 * that did not exist before stays, empty with policies ACCEPT; snapshots here count such a table
 * as absent.)
 */
export async function installFw3(lab: Lab, flavour: IptablesFlavour): Promise<() => Promise<void>> {
  const r = lab.hosts.router;
  const ifs = await routerInterfaces(lab);
  const before = saveBlocks(await r.run(`iptables-${flavour}-save`));
  const nftTablesBefore = flavour === "nft" ? await r.run("nft list tables") : "";
  await r.run(`iptables-${flavour}-restore -w`, { input: fw3Ruleset(ifs) });
  return async () => {
    const restore: string[] = [];
    const drop: string[] = [];
    for (const t of FW3_TABLES) {
      if (before[t]) restore.push(before[t]!);
      else if (flavour === "nft" && !new RegExp(`^table ip ${t}$`, "m").test(nftTablesBefore)) drop.push(t);
      else restore.push(`*${t}\n${BUILTIN[t]!.map((c) => `:${c} ACCEPT [0:0]`).join("\n")}\nCOMMIT\n`);
    }
    if (restore.length) await r.run(`iptables-${flavour}-restore -w`, { input: restore.join("") });
    for (const t of drop) await r.run(`nft delete table ip ${t}`);
  };
}

// ---------------------------------------------------------------------------------------------
// Snapshots: variantLab's hostState plus iptables-legacy's tables; tables iptables leaves behind
// empty (built-in chains only, policy ACCEPT, no rules: legacy tables cannot be removed at all,
// iptables-nft never removes one) count as absent.

/** A save text without timestamps and counters, and without empty tables. */
export function normalizeSave(text: string): string {
  const blocks = saveBlocks(text.replace(/\[\d+:\d+\]/g, "[0:0]"));
  return Object.entries(blocks)
    .filter(([, b]) => b.split("\n").some((l) => l.startsWith("-A ") || (l.startsWith(":") && !/^:[A-Z]+ ACCEPT \[0:0\]$/.test(l))))
    .map(([, b]) => b)
    .join("");
}

/** `nft list ruleset` sections without iptables-nft's empty tables (only base chains, policy accept, no rules). */
export function withoutEmptyXtablesTables(state: string): string {
  return state.replace(
    /^table (ip|ip6|inet) (filter|nat|mangle|raw|security) \{\n(?:\t# Warning: [^\n]*\n)?(?:\n?\tchain [A-Z]+ \{\n\t\ttype \w+ hook \w+ priority [\w+-]+; policy accept;\n\t\}\n)*\}\n?/gm,
    "",
  // Blank lines separate tables in nft's listing and carry no state: one less table leaves one less.
  ).replace(/^[ \t]*\n/gm, "");
}

export async function hostStateWithLegacy(h: LabHost): Promise<string> {
  const legacy4 = normalizeSave(await h.run("iptables-legacy-save"));
  const legacy6 = normalizeSave(await h.run("ip6tables-legacy-save"));
  return `${withoutEmptyXtablesTables(await hostState(h))}\n## iptables-legacy-save\n${legacy4.trimEnd()}\n## ip6tables-legacy-save\n${legacy6.trimEnd()}`;
}

export type Snapshot = Record<FirewallHost, string>;

export async function snapshotWithLegacy(lab: Lab): Promise<Snapshot> {
  return { vps: await hostStateWithLegacy(lab.hosts.vps), router: await hostStateWithLegacy(lab.hosts.router) };
}

export async function assertAsBeforeWithLegacy(lab: Lab, before: Snapshot, when = "destroy"): Promise<void> {
  for (const h of ["vps", "router"] as const) {
    const diff = snapshotDiff(before[h], await hostStateWithLegacy(lab.hosts[h]));
    assert.deepEqual(diff, [], `${h} after ${when} differs from before:\n${diff.join("\n")}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Looking at a host the way natgate sees it, and probes.

/** A fresh `ssh root@host cmd` from this machine (the laptop, on br-lan), host key pinned. */
export function sshAsRoot(lab: Lab, host: FirewallHost, cmd: string, timeoutMs = 20_000): Promise<ExecResult> {
  const h = lab.hosts[host];
  const dir = scratchDir(lab, "ssh");
  const knownHosts = path.join(dir, `known_hosts_${host}`);
  fs.writeFileSync(knownHosts, `${h.addr} ${h.ssh!.hostKey}\n`);
  const key = path.join(lab.dir, "keys", "root_ed25519");
  const args = [
    "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", `UserKnownHostsFile=${knownHosts}`,
    "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", `root@${h.addr}`, cmd,
  ];
  return new Promise((resolve) => {
    execFile("ssh", args, { timeout: timeoutMs, encoding: "utf8" }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException).code === "number" ? ((err as unknown as { code: number }).code) : 124) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * A new TCP connection from the router's upstream (the ISP's side of its wan link, 100.64.0.1) to
 * a LAN host port, as a connection from the wan that no port forward opened. The ISP has no route
 * to the LAN: one /32 via the router's wan address is added for the probe and removed after it.
 * (To the router's own wan address no route is needed.) Returns the first line answered, or the
 * reason there was none.
 */
export async function probeFromWan(lab: Lab, port: number, to = lab.hosts.lan.addr): Promise<{ answer: string; error: string }> {
  const isp = lab.hosts.isp;
  const viaRouter = to !== lab.addresses.routerWan;
  if (viaRouter) await isp.run(`ip route add ${to}/32 via ${lab.addresses.routerWan}`);
  try {
    const r = await isp.exec(`socat -T3 - TCP:${to}:${port},connect-timeout=3 </dev/null`, { timeoutMs: 10_000 });
    const answer = r.stdout.split("\n")[0]!.trim();
    const last = r.stderr.trim().split("\n").pop() ?? "";
    return { answer, error: answer ? "" : (/:\s*([^:]+)$/.exec(last)?.[1] ?? last) || "no answer" };
  } finally {
    if (viaRouter) await isp.run(`ip route del ${to}/32 via ${lab.addresses.routerWan}`);
  }
}

/** PortForward args with a backend choice on both hosts (`vps.backend`, `router.backend`); a cast until the SDK's types have it. */
export function withBackend(args: PortForwardArgs, backend: BackendChoice): PortForwardArgs {
  return { ...args, vps: { ...args.vps, backend }, router: { ...args.router, backend } } as PortForwardArgs;
}
