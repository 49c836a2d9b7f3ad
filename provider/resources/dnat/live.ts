/** A DnatRule's host as read back: the same lines its render produces, and the host's facts. */
import { NatgateError } from "../../ssh/errors";
import { commentOf, parseForwardChain, type IptablesForward } from "../../backends/iptables";
import { IPT_TABLES, iptCounters, iptSection, liveIptLines, parseIptTable, type LiveIptChain } from "../../backends/iptablesFirewall";
import { parseFw4Show, type Fw4Live } from "../../backends/fw4Include";
import { nftCounters, nftFamily } from "../../backends/nftFirewall";
import { foreignForwardState, parseNftJson, tableLinesFromItems, type ChainRef, type ForeignRule } from "../../backends/nftables";
import { parseBootShow, type BootStatus } from "../../backends/persist";
import { parseAcceptRa, parseSysctlShow, type LiveAcceptRa, type LiveSysctl } from "../../backends/sysctl";
import { parseFirewallFacts, type Counters, type Family, type FirewallFacts } from "../../plan/firewall";
import { splitSections } from "../common/host";
import { dnatChainNames, dnatTableName } from "./render";
import type { DnatRuleInputs } from "./schema";

/** The host's view of addresses: which of those asked about it takes as its own, and its IPv4 addresses. */
export interface Locality {
  local: Map<string, boolean>;
  addresses: string[];
}

export interface DnatLive {
  facts: FirewallFacts;
  /** This rule's own nft table (nftables backend). */
  nft: string[];
  /** This rule's own iptables chains and the jumps to them (iptables backend). */
  ipt: LiveIptChain[];
  /** Packets and bytes of the forward, from whichever backend's count rules exist. */
  counters: Counters;
  /** Forward chains of other nftables firewalls that may drop, and this rule's accepts in them. */
  foreign: { dropChains: ChainRef[]; owned: ForeignRule[] };
  iptables: IptablesForward;
  /**
   * Where the accepts go instead when toAddress is an address of the host (the DNATed packet is
   * delivered locally, through INPUT, not FORWARD): filter INPUT and other firewalls' input chains.
   */
  iptablesInput?: IptablesForward;
  foreignInput?: ChainRef[];
  /** Whether fw4 re-applies include files on this host, and this rule's files there. */
  fw4?: Fw4Live;
  forward: LiveSysctl;
  /** IPv6 rules: interfaces whose accept_ra is 1 (ignoring advertisements once forwarding is on) or held at 2 by this rule. */
  acceptRa?: LiveAcceptRa[];
  boot: BootStatus;
  /** From the read script only; apply carries it over. */
  locality?: Locality;
}

export function parseLocality(stdout: string): Locality {
  const s = splitSections(stdout);
  const local = new Map<string, boolean>();
  for (const l of s.get("local")?.lines ?? []) {
    const m = /^(\S+) (local|remote)$/.exec(l.trim());
    if (m) local.set(m[1]!, m[2] === "local");
  }
  // Loopback and link-local addresses are never what a forward's public address is.
  const addresses = (s.get("addrs")?.lines ?? []).map((l) => l.trim()).filter((a) => a !== "" && !a.startsWith("127.") && a !== "::1" && !/^fe[89ab]/.test(a));
  return { local, addresses: [...new Set(addresses)] };
}

/** The iptables chain lines of a live rule, in render order. */
export function dnatLiveIptLines(live: Pick<DnatLive, "ipt">, name: string, family: Family = 4): string[] {
  return liveIptLines(live.ipt, dnatChainNames(name), family);
}

/** The read (or apply, delete) script's output for the rule `name` of IP version `family`. */
export function parseDnatShow(stdout: string, name: string, family: Family = 4): DnatLive {
  const s = splitSections(stdout);
  const ipt = s.get("iptables");
  const forward = parseSysctlShow(s.get("sysctl")?.lines ?? [])[0];
  const boot = s.get("boot");
  const facts = s.get("fwfacts");
  if (!facts || !ipt || !forward || !boot) throw new NatgateError("unexpected-output", `unexpected output from the DnatRule read script:\n${stdout.slice(0, 500)}`);
  const items = s.has("nft") ? parseNftJson(s.get("nft")!.lines.join("\n")) : [];
  const chains = dnatChainNames(name);
  const iptOwn = IPT_TABLES.flatMap((t) => parseIptTable(t, s.get(iptSection(t, family))?.lines.join("\n") ?? "", chains));
  const iptInput = s.get("iptinput");
  const nftCount = nftCounters(items, dnatTableName(name), family);
  return {
    facts: parseFirewallFacts(facts.lines),
    nft: tableLinesFromItems(items, nftFamily(family), dnatTableName(name)),
    ipt: iptOwn,
    counters: Object.keys(nftCount).length ? nftCount : iptCounters(iptOwn, chains[2]!, chains[3]!),
    foreign: foreignForwardState(items, commentOf(name), "forward", nftFamily(family)),
    foreignInput: foreignForwardState(items, commentOf(name), "input", nftFamily(family)).dropChains,
    iptables: parseForwardChain(ipt.lines.join("\n"), ipt.arg === "present", name),
    iptablesInput: parseForwardChain(iptInput?.lines.join("\n") ?? "", ipt.arg === "present" && iptInput !== undefined, name, "INPUT"),
    fw4: parseFw4Show(s.get("fw4")),
    ...(s.has("local") ? { locality: parseLocality(stdout) } : {}),
    forward,
    ...(s.has("acceptra") ? { acceptRa: parseAcceptRa(s.get("acceptra")!.lines) } : {}),
    boot: parseBootShow(boot.lines),
  };
}

/**
 * Why a rule cannot work on this host, or undefined. A destination the host does not take as its
 * own never appears in prerouting: behind a cloud's 1:1 NAT (EC2, GCP, Azure) the public address
 * is on no interface and packets arrive for the host's private address.
 */
export function localityProblem(i: DnatRuleInputs, where: string, loc: Locality): string | undefined {
  if (i.destination === undefined || loc.local.get(i.destination) !== false) return undefined;
  const sameFamily = loc.addresses.filter((a) => a.includes(":") === i.destination!.includes(":"));
  const addrs = sameFamily.length ? sameFamily.join(", ") : "none found";
  return (
    `destination ${i.destination} is not an address of host ${where} (its addresses: ${addrs}): ` +
    `behind a cloud's 1:1 NAT packets arrive for the host's own address: match that (PortForward: vps.localAddress)`
  );
}
