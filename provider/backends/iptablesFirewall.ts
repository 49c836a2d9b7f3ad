/**
 * iptables backend for natgate's own packet-filter objects, for hosts without a working nft
 * (OpenWrt 21.02 and older with fw3, EdgeOS, VPS images with iptables-legacy). The plan becomes
 * chains natgate owns (`natgate-<what>-<name>`), jumped to from the built-in chains, written with one
 * `iptables-restore --noflush` (declaring a chain flushes it, so a second run changes nothing) and
 * read back with `iptables -S -v`, whose canonical words the rules below are written in, so desired
 * and live state compare as the same lines. Works the same with iptables-legacy and iptables-nft.
 *
 * The accepts in filter FORWARD/INPUT, where others' drops are, stay in iptables.ts: both
 * backends put them there.
 */
import { createHash } from "node:crypto";
import { identityMapping, type Counters, type DnatFirewall, type Family, type Proto, type ReturnPathFirewall } from "../plan/firewall";
import { runCidrs } from "../plan/sources";

export type IptTable = "nat" | "mangle" | "filter";
export const IPT_TABLES: IptTable[] = ["nat", "mangle", "filter"];
export type Builtin = "PREROUTING" | "FORWARD" | "INPUT" | "OUTPUT";

/** One chain natgate owns: its rules (words after `-A <chain>`, canonical) and where it is jumped to from. */
export interface IptChain {
  table: IptTable;
  name: string;
  from: Builtin[];
  rules: string[];
}

/** iptables chain names are at most 28 characters. */
const CHAIN_MAX = 28;

/** `natgate-<tag>-<name>`, shortened with a hash of the name when too long (still one name per resource). */
export function iptChainName(tag: string, name: string): string {
  const full = `natgate-${tag}-${name}`;
  if (full.length <= CHAIN_MAX) return full;
  const h = createHash("sha256").update(name).digest("hex").slice(0, 6);
  return `natgate-${tag}-${name.slice(0, CHAIN_MAX - tag.length - 16)}-${h}`;
}

/** The command of a family's tables: ip6tables keeps IPv6's, with the same chains and words. */
export const iptCommand = (family: Family = 4) => (family === 6 ? "ip6tables" : "iptables");

const ports = (lo: number, hi: number, sep = ":") => (lo === hi ? String(lo) : `${lo}${sep}${hi}`);

/** DNAT's --to-destination: keep the port, one port, or a range shifted by an offset (`/base`). */
function toDestination(fw: DnatFirewall): string {
  const { ports: from, toPorts: to, toAddress } = fw.mapping;
  if (to.lo === from.lo) return toAddress;
  const addr = fw.family === 6 ? `[${toAddress}]` : toAddress; // before a port, as ip6tables prints it
  if (from.lo === from.hi) return `${addr}:${to.lo}`;
  return `${addr}:${to.lo}-${to.hi}/${from.lo}`;
}

/** The conntrack match of a forward's packets (both directions): DNATed to the target's address and ports. */
function replyTuple(p: Proto, fw: DnatFirewall, tcpFlags = ""): string {
  const { toAddress, toPorts } = fw.mapping;
  return `${conntrackOf(fw)[0]}-p ${p}${tcpFlags} ${conntrackOf(fw)[1]} --ctreplsrc ${toAddress} --ctreplsrcport ${ports(toPorts.lo, toPorts.hi)}`;
}

/** `-i` before `-p` and the conntrack words, as iptables -S prints them; see identityMapping. */
export function conntrackOf(fw: DnatFirewall): [string, string] {
  if (!identityMapping(fw.mapping)) return ["", "-m conntrack --ctstate DNAT"];
  return [fw.mapping.inInterface !== undefined ? `-i ${fw.mapping.inInterface} ` : "", "-m conntrack"];
}

/** `-d`/`-i` of the mapping, in the order `iptables -S` prints them. */
function arrival(fw: DnatFirewall): string[] {
  const m = fw.mapping;
  return [...(m.destination !== undefined ? [`-d ${m.destination}/${fw.family === 6 ? 128 : 32}`] : []), ...(m.inInterface !== undefined ? [`-i ${m.inInterface}`] : [])];
}

const dportOf = (p: Proto, fw: DnatFirewall) => `-p ${p} -m ${p} --dport ${ports(fw.mapping.ports.lo, fw.mapping.ports.hi)}`;

/**
 * Sources outside allowFrom were not DNATed and go on to INPUT (or FORWARD) with the public port:
 * admitted sources return, the rest are dropped or rejected, counted by the rule's counter.
 */
function refuseChain(fw: DnatFirewall): IptChain[] {
  const m = fw.mapping;
  if (m.allowFrom === undefined) return [];
  const cidrs = runCidrs(m.allowFrom);
  const verdict = (p: Proto) => (fw.refuse !== "reject" ? "-j DROP" : p === "tcp" ? "-j REJECT --reject-with tcp-reset" : `-j REJECT --reject-with ${fw.family === 6 ? "icmp6" : "icmp"}-port-unreachable`);
  const rules = m.protocols.flatMap((p) => [...cidrs.map((c) => `-s ${c} ${dportOf(p, fw)} -j RETURN`), [...arrival(fw), dportOf(p, fw), verdict(p)].join(" ")]);
  return [{ table: "filter", name: iptChainName("ref", fw.name), from: ["INPUT", "FORWARD"], rules }];
}

export function iptDnatChains(fw: DnatFirewall): IptChain[] {
  const m = fw.mapping;
  const sources: (string | undefined)[] = m.allowFrom !== undefined ? runCidrs(m.allowFrom) : [undefined];
  const dnat = m.protocols.flatMap((p) =>
    sources.map((s) => [...(s !== undefined ? [`-s ${s}`] : []), ...arrival(fw), dportOf(p, fw), `-j DNAT --to-destination ${toDestination(fw)}`].join(" ")),
  );
  const chains: IptChain[] = [{ table: "nat", name: iptChainName("dnat", fw.name), from: ["PREROUTING"], rules: dnat }];
  if (fw.clampMss && m.protocols.includes("tcp")) {
    chains.push({
      table: "mangle",
      name: iptChainName("mss", fw.name),
      from: ["FORWARD"],
      rules: [`${replyTuple("tcp", fw, " -m tcp --tcp-flags SYN,RST SYN")} -j TCPMSS --clamp-mss-to-pmtu`],
    });
  }
  // Counting rules (no target): forwarded packets in both directions, and inbound ones of a target on the host itself.
  chains.push({ table: "mangle", name: iptChainName("cnt", fw.name), from: ["FORWARD", "INPUT"], rules: m.protocols.map((p) => replyTuple(p, fw)) });
  chains.push(...refuseChain(fw));
  return chains;
}

const hex = (n: number) => "0x" + (n >>> 0).toString(16);

/** connmark/MARK words as iptables prints them: a full mask is left out of a match. */
function markMatch(mark: number, mask: number): string {
  return mask >>> 0 === 0xffffffff ? hex(mark) : `${hex(mark)}/${hex(mask)}`;
}

export function iptReturnPathChains(fw: ReturnPathFirewall): IptChain[] {
  const restore = `-m connmark --mark ${markMatch(fw.mark, fw.mask)} -j MARK --set-xmark ${hex(fw.mark)}/${hex(fw.mask)}`;
  // mangle PREROUTING runs before nat PREROUTING: the first packet is marked before it is DNATed and routed.
  const chains: IptChain[] = [
    {
      table: "mangle",
      name: iptChainName("ret", fw.name),
      from: ["PREROUTING"],
      rules: [`-i ${fw.tunnelInterface} -j CONNMARK --set-xmark ${hex(fw.mark)}/${hex(fw.mask)}`, restore],
    },
  ];
  // A changed mark in mangle OUTPUT makes the kernel route the local reply again.
  if (fw.restoreInOutput) chains.push({ table: "mangle", name: iptChainName("out", fw.name), from: ["OUTPUT"], rules: [restore] });
  return chains;
}

/** The chains as commands a user would type, in the notation live state is read back into. */
export function iptLines(chains: IptChain[], family: Family = 4): string[] {
  return chainLines(chains.map((c) => ({ ...c, rules: c.rules.map((rule) => ({ rule })) })), family);
}

function chainLines(chains: { table: IptTable; name: string; rules: { rule: string }[]; from: Builtin[] }[], family: Family): string[] {
  const cmd = iptCommand(family);
  const out: string[] = [];
  for (const c of chains) {
    out.push(`${cmd} -t ${c.table} -N ${c.name}`);
    for (const r of c.rules) out.push(`${cmd} -t ${c.table} -A ${c.name} ${r.rule}`);
    for (const b of inBuiltinOrder(c.from)) out.push(`${cmd} -t ${c.table} -I ${b} -j ${c.name}`);
  }
  return out;
}

/** One `iptables-restore --noflush` text that leaves exactly these chains (declaring one flushes it). */
export function iptRestoreText(chains: IptChain[]): string {
  let out = "";
  for (const table of IPT_TABLES) {
    const mine = chains.filter((c) => c.table === table);
    if (!mine.length) continue;
    out += `*${table}\n` + mine.map((c) => `:${c.name} - [0:0]\n`).join("");
    for (const c of mine) for (const r of c.rules) out += `-A ${c.name} ${r}\n`;
    out += "COMMIT\n";
  }
  return out;
}

/** "table builtin chain" lines: the jumps the apply script makes sure of (or removes). */
export function iptJumpSpecs(chains: { table: string; name: string; from: string[] }[]): string {
  return chains.flatMap((c) => c.from.map((b) => `${c.table} ${b} ${c.name}`)).join("\n");
}

/** What an apply script takes to bring natgate's chains from the live ones to the wanted ones. */
export interface IptChange {
  ipt_restore: string;
  ipt_jumps: string;
  ipt_jumps_del: string;
  ipt_chains_del: string;
}

export const NO_IPT_CHANGE: IptChange = { ipt_restore: "", ipt_jumps: "", ipt_jumps_del: "", ipt_chains_del: "" };

/**
 * From `live` to `want` (none: remove them all): the wanted chains are rewritten in place
 * (hitless), then jumps and chains no longer wanted go.
 */
export function iptChange(want: IptChain[], live: LiveIptChain[]): IptChange {
  const wantJumps = new Set(iptJumpSpecs(want).split("\n"));
  return {
    ipt_restore: want.length ? iptRestoreText(want) : "",
    ipt_jumps: iptJumpSpecs(want),
    ipt_jumps_del: iptJumpSpecs(live).split("\n").filter((j) => j && !wantJumps.has(j)).join("\n"),
    ipt_chains_del: live.filter((c) => !want.some((w) => w.name === c.name)).map((c) => `${c.table} ${c.name}`).join("\n"),
  };
}

/** A chain of natgate's as found on the host, with the jumps to it. */
export interface LiveIptChain {
  table: IptTable;
  name: string;
  rules: { rule: string; packets: number; bytes: number }[];
  from: Builtin[];
}

/** Split `-c PACKETS BYTES` out of an `iptables -S -v` rule. */
function withoutCounters(words: string): { rule: string; packets: number; bytes: number } {
  const padded = " " + words;
  const m = / -c (\d+) (\d+)(?= |$)/.exec(padded);
  if (!m) return { rule: words, packets: 0, bytes: 0 };
  return { rule: (padded.slice(0, m.index) + padded.slice(m.index + m[0].length)).trim(), packets: Number(m[1]), bytes: Number(m[2]) };
}

/** Jumps are compared as a set: listed in one order, whatever order the host prints them in. */
const BUILTIN_ORDER: Builtin[] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT"];
const inBuiltinOrder = (from: Builtin[]) => BUILTIN_ORDER.filter((b) => from.includes(b));

/**
 * natgate's chains in one table's `iptables -S -v` output whose names start with `prefixes`
 * (the chains of one resource), with their rules and the built-in chains jumping to them.
 */
export function parseIptTable(table: IptTable, text: string, names: string[]): LiveIptChain[] {
  const chains = new Map<string, LiveIptChain>();
  const want = new Set(names);
  const jumps: [string, Builtin][] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    let m = /^-N (\S+)$/.exec(line);
    if (m && want.has(m[1]!)) chains.set(m[1]!, { table, name: m[1]!, rules: [], from: [] });
    m = /^-A (\S+) (.*)$/.exec(line);
    if (!m) continue;
    const { rule, packets, bytes } = withoutCounters(m[2]!);
    const own = chains.get(m[1]!);
    if (own) own.rules.push({ rule, packets, bytes });
    const j = /^-j (\S+)$/.exec(rule);
    if (j && want.has(j[1]!) && /^(PREROUTING|FORWARD|INPUT|OUTPUT)$/.test(m[1]!)) jumps.push([j[1]!, m[1] as Builtin]);
  }
  for (const [to, from] of jumps) {
    const c = chains.get(to) ?? { table, name: to, rules: [], from: [] };
    chains.set(to, c);
    c.from.push(from);
  }
  return [...chains.values()];
}

/** Live chains as lines, in the order the desired ones are rendered in (rules in chain order). */
export function liveIptLines(live: LiveIptChain[], order: string[], family: Family = 4): string[] {
  const rank = (n: string) => (order.indexOf(n) < 0 ? order.length : order.indexOf(n));
  return chainLines([...live].sort((a, b) => rank(a.name) - rank(b.name)), family);
}

/**
 * Counts of the counting chain, by protocol (its rules are one per protocol, `-p <proto>` first),
 * and of the refusing chain's drop/reject rules as `refused`.
 */
export function iptCounters(live: LiveIptChain[], countChain: string, refuseChain?: string): Counters {
  const out: Counters = {};
  for (const r of live.find((c) => c.name === countChain)?.rules ?? []) {
    const p = /^-p (tcp|udp) /.exec(r.rule)?.[1] as Proto | undefined;
    if (p) out[p] = { packets: (out[p]?.packets ?? 0) + r.packets, bytes: (out[p]?.bytes ?? 0) + r.bytes };
  }
  for (const r of live.find((c) => c.name === refuseChain)?.rules ?? []) {
    if (/ -j (DROP|REJECT)( |$)/.test(r.rule)) out.refused = { packets: (out.refused?.packets ?? 0) + r.packets, bytes: (out.refused?.bytes ?? 0) + r.bytes };
  }
  return out;
}

/** The section iptfw_show prints a table of one family's tool under. */
export const iptSection = (table: IptTable, family: Family = 4) => `${family === 6 ? "ip6tfw" : "iptfw"}_${table}`;

/** Shell functions of the iptables backend (POSIX sh; rules travel on stdin, never through the shell's parser). */
export const IPTFW_SH = `
: "\${NG_IPT:=iptables}"
# iptfw_show: "@@iptfw_<table>" (ip6tables: "@@ip6tfw_<table>") then that table as iptables -S -v
# prints it, for nat, mangle, filter
iptfw_show() {
  command -v "$NG_IPT-restore" >/dev/null 2>&1 || return 0
  ng_sec=iptfw; [ "$NG_IPT" != ip6tables ] || ng_sec=ip6tfw
  for ng_t in nat mangle filter; do
    echo "@@\${ng_sec}_$ng_t"
    "$NG_IPT" -w -t "$ng_t" -S -v 2>/dev/null | grep -v '^#'
  done
  return 0
}
# iptfw_apply RESTORE JUMPS: replace natgate's chains in one iptables-restore, then make sure of
# each jump "table builtin chain" (inserted first in the built-in chain when missing)
iptfw_apply() {
  command -v "$NG_IPT-restore" >/dev/null 2>&1 || { echo "natgate: $NG_IPT-restore is not on this host: install $NG_IPT (Debian: iptables; OpenWrt: $NG_IPT-nft or $NG_IPT-zz-legacy), or use the nftables backend" >&2; return 1; }
  iptfw_note_tables "$1" || return 1
  printf '%s' "$1" | "$NG_IPT-restore" -w --noflush || { echo "natgate: iptables-restore rejected natgate's chains" >&2; return 1; }
  printf '%s\\n' "$2" | while read -r ng_t ng_b ng_c; do
    [ -n "$ng_c" ] || continue
    "$NG_IPT" -w -t "$ng_t" -C "$ng_b" -j "$ng_c" 2>/dev/null || "$NG_IPT" -w -t "$ng_t" -I "$ng_b" 1 -j "$ng_c" || exit 1
  done
}
# iptfw_delete JUMPS CHAINS: every jump "table builtin chain" (while one is listed), then each
# chain "table chain"; one that is not there is success
iptfw_delete() {
  command -v "$NG_IPT" >/dev/null 2>&1 || return 0
  printf '%s\\n' "$1" | while read -r ng_t ng_b ng_c; do
    [ -n "$ng_c" ] || continue
    while "$NG_IPT" -w -t "$ng_t" -C "$ng_b" -j "$ng_c" 2>/dev/null; do "$NG_IPT" -w -t "$ng_t" -D "$ng_b" -j "$ng_c" || exit 1; done
  done || return 1
  printf '%s\\n' "$2" | while read -r ng_t ng_c; do
    [ -n "$ng_c" ] || continue
    if "$NG_IPT" -w -t "$ng_t" -S "$ng_c" >/dev/null 2>&1; then
      "$NG_IPT" -w -t "$ng_t" -F "$ng_c" && "$NG_IPT" -w -t "$ng_t" -X "$ng_c" || exit 1
    fi
  done || return 1
  iptfw_drop_tables
}
# iptables-nft makes an nft table (ip nat, ip6 mangle...) for the first chain in it, and nothing of
# iptables' removes one. iptfw_note_tables RESTORE notes those natgate's chains are about to bring
# (the "*table" lines of RESTORE) that nft does not list yet; iptfw_drop_tables, once no natgate
# chain is left in a noted table, deletes it when it holds nothing else (no rule, no chain but the
# built-in ones), and forgets it either way. With iptables-legacy nft lists no such table.
iptfw_table_family() { if [ "$NG_IPT" = ip6tables ]; then echo ip6; else echo ip; fi; }
iptfw_note_tables() {
  command -v nft >/dev/null 2>&1 || return 0
  ng_f=$(iptfw_table_family)
  for ng_t in $(printf '%s\n' "$1" | sed -n 's/^\*//p'); do
    nft list table "$ng_f" "$ng_t" >/dev/null 2>&1 && continue
    mkdir -p "$NG_STATE/ipt-tables" && : > "$NG_STATE/ipt-tables/$ng_f-$ng_t" || return 1
  done
}
iptfw_drop_tables() {
  for ng_m in "$NG_STATE"/ipt-tables/*; do
    [ -e "$ng_m" ] || continue
    ng_t=\${ng_m##*/}; ng_f=\${ng_t%%-*}; ng_t=\${ng_t#*-}
    if ng_j=$(nft -j list table "$ng_f" "$ng_t" 2>/dev/null); then
      case $ng_j in *natgate-*) continue ;; esac
      ng_c=$(printf '%s' "$ng_j" | grep -o '"chain": {' | wc -l)
      ng_h=$(printf '%s' "$ng_j" | grep -o '"hook": ' | wc -l)
      case $ng_j in
        *'"rule": {'*) ;;
        *) [ "$ng_c" != "$ng_h" ] || nft delete table "$ng_f" "$ng_t" || return 1 ;;
      esac
    fi
    rm -f "$ng_m"
  done
  rmdir "$NG_STATE/ipt-tables" 2>/dev/null
  return 0
}
# fw_facts: "@@fwfacts" then "nft yes|no" (also in NG_NFT) and "iptables <iptables -V>|none"
fw_facts() {
  echo "@@fwfacts"
  # The tables (with their chains, not their rules) are kept for nft_visible: nft 1.0 fetches
  # every rule for "list tables" (45 ms with 50 small tables, as much as the whole ruleset) but
  # not for "list chains" (23 ms).
  if command -v nft >/dev/null 2>&1 && NG_NFT_TABLES=$(nft list chains 2>/dev/null); then NG_NFT=yes; else NG_NFT=no; NG_NFT_TABLES=; fi
  echo "nft $NG_NFT"
  if command -v "$NG_IPT-restore" >/dev/null 2>&1 && ng_v=$("$NG_IPT" -V 2>/dev/null); then echo "iptables $ng_v"; else echo "iptables none"; fi
}
`;
