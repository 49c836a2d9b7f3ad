import { NatgateError } from "../../ssh/errors";
import { parseRules, type LiveRule } from "../../backends/iproute";
import { iptSection, parseIptTable, type LiveIptChain } from "../../backends/iptablesFirewall";
import { parseNftTableJson } from "../../backends/nftables";
import { parseBootShow, type BootStatus } from "../../backends/persist";
import { parseFw4Show, type Fw4Live } from "../../backends/fw4Include";
import { parseSysctlShow, type LiveSysctl } from "../../backends/sysctl";
import { parseFirewallFacts, type FirewallFacts } from "../../plan/firewall";
import { parseClaims } from "../../backends/claims";
import { splitSections } from "../common/host";
import { cmarkChainNames } from "./render";
import { effectiveLocalSourcePriority, type ConnmarkReturnPathInputs } from "./schema";

/** Which rules and sysctls to look at: this resource's, and during an update also the old inputs'. */
export interface Scope {
  priorities: number[];
  tables: number[];
  sysctlPaths: string[];
}

export function scopeOf(list: ConnmarkReturnPathInputs[]): Scope {
  const s: Scope = { priorities: [], tables: [], sysctlPaths: [] };
  const add = <T>(arr: T[], v: T) => arr.includes(v) || arr.push(v);
  for (const i of list) {
    add(s.priorities, i.priority);
    if (i.localSource !== undefined || i.localSource6 !== undefined) add(s.priorities, effectiveLocalSourcePriority(i));
    add(s.tables, i.table);
    // rp_filter is owned even when looseRpFilter is now off, so turning it off restores it.
    add(s.sysctlPaths, `net/ipv4/conf/${i.tunnelInterface}/rp_filter`);
  }
  return s;
}

export interface CmarkLive {
  facts: FirewallFacts;
  /** The table's lines: IPv4's, then its IPv6 twin's. */
  nft: string[];
  ipt: LiveIptChain[];
  /** The IPv6 twin's ip6tables chains (absent: none). */
  ipt6?: LiveIptChain[];
  /** IPv4 and IPv6 rules (family 6). */
  rules: LiveRule[];
  sysctls: LiveSysctl[];
  boot: BootStatus;
  /** OpenWrt: whether fw4 re-applies include files, and the table's file there. */
  fw4?: Fw4Live;
  /** Every natgate claim on the host: key → owner. */
  claims: Map<string, string>;
}

export function parseCmarkShow(stdout: string, scope: Scope, name: string): CmarkLive {
  const s = splitSections(stdout);
  if (!s.has("fwfacts") || !s.has("rules") || !s.has("sysctl") || !s.has("boot")) {
    throw new NatgateError("unexpected-output", `unexpected output from the ConnmarkReturnPath read script:\n${stdout.slice(0, 500)}`);
  }
  return {
    facts: parseFirewallFacts(s.get("fwfacts")!.lines),
    nft: [...parseNftTableJson(s.get("nft")?.lines.join("\n") ?? ""), ...parseNftTableJson(s.get("nft6")?.lines.join("\n") ?? "")],
    ipt: parseIptTable("mangle", s.get(iptSection("mangle"))?.lines.join("\n") ?? "", cmarkChainNames(name)),
    ipt6: parseIptTable("mangle", s.get(iptSection("mangle", 6))?.lines.join("\n") ?? "", cmarkChainNames(name)),
    // A rule at our priority and table with fields natgate never sets is someone else's: left alone.
    rules: [
      ...parseRules(s.get("rules")!.lines.join("\n"), scope.priorities, scope.tables),
      ...parseRules(s.get("rules6")?.lines.join("\n") ?? "", scope.priorities, scope.tables, 6),
    ].filter((r) => !r.extra),
    sysctls: parseSysctlShow(s.get("sysctl")!.lines),
    boot: parseBootShow(s.get("boot")!.lines),
    fw4: parseFw4Show(s.get("fw4")),
    claims: parseClaims(s.get("claims")?.lines),
  };
}
