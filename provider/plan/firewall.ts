/**
 * The firewall part of a host plan: what a DnatRule or ConnmarkReturnPath wants in the kernel's
 * packet filter, as data that says nothing about the tool. The backends in ../backends/ turn it
 * into nft or iptables text; both read the host back into lines of their own notation, which are
 * compared with the lines the same backend renders from the plan.
 */

export type Backend = "nftables" | "iptables";
export const BACKEND_CHOICES = ["auto", "nftables", "iptables"] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];

export type Proto = "tcp" | "udp";

export interface PortRange {
  lo: number;
  hi: number;
}

/** One DNAT mapping: packets to `ports` (and the interface/address given) go to toAddress:toPorts. */
export interface DnatMapping {
  inInterface?: string;
  destination?: string;
  protocols: Proto[];
  ports: PortRange;
  toAddress: string;
  toPorts: PortRange;
  /** Sources forwarded (addresses or CIDRs); absent: every source. */
  allowFrom?: string[];
}

/** An IP version: what a rule's addresses are, and so which tables and tools it is written in. */
export type Family = 4 | 6;

/** Everything a DnatRule owns in the packet filter. */
export interface DnatFirewall {
  name: string;
  /** The family of every address in the mapping (toAddress's). */
  family: Family;
  mapping: DnatMapping;
  /** Clamp the MSS of the mapping's forwarded TCP SYNs to the route MTU. */
  clampMss: boolean;
  /** What sources outside allowFrom get (only with allowFrom). */
  refuse?: "drop" | "reject";
}

/**
 * Whether a mapping rewrites nothing: a forward to the host's own destination address on the same
 * ports (a router forward that keeps its port). The kernel then marks no connection as DNATed, so
 * `ct status dnat` never matches; the mapping's packets are told by arriving on its inInterface.
 */
export function identityMapping(m: DnatMapping): boolean {
  return m.destination !== undefined && m.destination === m.toAddress && m.ports.lo === m.toPorts.lo && m.ports.hi === m.toPorts.hi;
}

/** Everything a ConnmarkReturnPath owns in the packet filter. */
export interface ReturnPathFirewall {
  name: string;
  tunnelInterface: string;
  mark: number;
  mask: number;
  /** Also give locally generated replies (router-local services) the connection's mark. */
  restoreInOutput: boolean;
}

/** Packet and byte counts of one protocol of a forward, as the host's counter rules show them. */
export interface Counter {
  packets: number;
  bytes: number;
}
/** By protocol, and `refused`: packets of sources outside allowFrom that were dropped or rejected. */
export type Counters = Partial<Record<Proto | "refused", Counter>>;

/** What a host offers for packet filtering: read before anything is rendered for it. */
export interface FirewallFacts {
  /** `nft list tables` works (the binary exists and the kernel answers). */
  nft: boolean;
  /** Which iptables `iptables -V` names (legacy or nf_tables), undefined without iptables-restore. */
  iptables: "legacy" | "nf_tables" | undefined;
}

/** The packages that provide each backend, for errors that say what to install. */
export const BACKEND_PACKAGES = "nftables (and nftables-json / nft on OpenWrt) or iptables (iptables-legacy or iptables-nft, with iptables-restore)";

/** The backend a choice resolves to on a host with these facts; a message saying what to install when none fits. */
export function resolveBackend(choice: BackendChoice, facts: FirewallFacts): Backend | string {
  if (choice === "nftables") return facts.nft ? "nftables" : "backend \"nftables\" was asked for but nft does not work on this host: install nftables (OpenWrt: nftables-json), or use backend \"iptables\" or \"auto\"";
  if (choice === "iptables") return facts.iptables ? "iptables" : "backend \"iptables\" was asked for but iptables-restore is not on this host: install iptables (or iptables-legacy / iptables-nft), or use backend \"nftables\" or \"auto\"";
  if (facts.nft) return "nftables";
  if (facts.iptables) return "iptables";
  return `neither nft nor iptables-restore works on this host: install ${BACKEND_PACKAGES}`;
}

/** `iptables -V` and the nft probe's output lines → facts. */
export function parseFirewallFacts(lines: string[]): FirewallFacts {
  let nft = false;
  let iptables: FirewallFacts["iptables"];
  for (const l of lines) {
    if (l.trim() === "nft yes") nft = true;
    const m = /^iptables (.*)$/.exec(l.trim());
    if (m && m[1] !== "none") iptables = /nf_tables/.test(m[1]!) ? "nf_tables" : "legacy";
  }
  return { nft, iptables };
}
