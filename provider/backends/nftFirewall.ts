/**
 * nftables backend for natgate's own packet-filter objects: a DnatRule's or ConnmarkReturnPath's
 * plan becomes one table natgate owns (see nftables.ts for the printer, parser and transaction).
 */
import { identityMapping, type Counters, type DnatFirewall, type Family, type Proto, type ReturnPathFirewall } from "../plan/firewall";
import {
  PRIORITY,
  and,
  ct,
  insertRuleLine,
  mangle,
  maskedMatch,
  maskedSet,
  match,
  meta,
  payload,
  range,
  set,
  type ChainRef,
  type NftChain,
  type NftExpr,
  type NftStmt,
  type NftTable,
} from "./nftables";
import { nftSourceMatch } from "../plan/sources";

export const DNAT_TABLE_PREFIX = "natgate_dnat_";
export const RET_TABLE_PREFIX = "natgate_ret_";

/** After DNAT (-100): `ct status dnat` is set from a connection's first packet on. */
const COUNT_PRIORITY = PRIORITY.dstnat + 1;

/** The nft table family, and the payload protocol of addresses, for a rule of this IP version. */
export const nftFamily = (family: Family): "ip" | "ip6" => (family === 6 ? "ip6" : "ip");
const l3 = (fw: DnatFirewall) => nftFamily(fw.family);

function dnatStatement(fw: DnatFirewall, portExpr: NftExpr): NftStmt {
  const { ports: from, toPorts: to, toAddress } = fw.mapping;
  if (to.lo === from.lo) return { dnat: { addr: toAddress } }; // same numbers: keep the port
  if (from.lo === from.hi) return { dnat: { addr: toAddress, port: to.lo } };
  // A range to other numbers: nft has no port offset, so one map element per port.
  const elems: NftExpr[] = [];
  for (let p = from.lo; p <= from.hi; p++) elems.push([p, { concat: [toAddress, p - from.lo + to.lo] }]);
  return { dnat: { family: l3(fw), addr: { map: { key: portExpr, data: { set: elems } } } } };
}

/** The interface and address a mapping matches, as nft statements. */
function arrivalMatch(fw: DnatFirewall): NftStmt[] {
  const m = fw.mapping;
  return [
    ...(m.inInterface !== undefined ? [match(meta("iifname"), m.inInterface)] : []),
    ...(m.destination !== undefined ? [match(payload(l3(fw), "daddr"), m.destination)] : []),
  ];
}

function preroutingRule(fw: DnatFirewall): NftStmt[] {
  const m = fw.mapping;
  const r: NftStmt[] = arrivalMatch(fw);
  if (m.allowFrom !== undefined) r.push(match(payload(l3(fw), "saddr"), nftSourceMatch(m.allowFrom)));
  let portExpr: NftExpr;
  if (m.protocols.length > 1) {
    r.push(match(meta("l4proto"), set(m.protocols)));
    portExpr = payload("th", "dport");
  } else {
    portExpr = payload(m.protocols[0]!, "dport"); // nft drops the implied `meta l4proto` itself
  }
  r.push(match(portExpr, range(m.ports.lo, m.ports.hi)));
  r.push(dnatStatement(fw, portExpr));
  return r;
}

/** A forward's packets, both directions, by conntrack's reply tuple (the post-DNAT address and ports). */
function replyTuple(fw: DnatFirewall): NftStmt[] {
  const { toAddress, toPorts, inInterface } = fw.mapping;
  const dnatted = identityMapping(fw.mapping) ? (inInterface !== undefined ? [match(meta("iifname"), inInterface)] : []) : [match(ct("status"), "dnat", "in")];
  return [...dnatted, match(ct(`${l3(fw)} saddr`, "reply"), toAddress), match(ct("proto-src", "reply"), range(toPorts.lo, toPorts.hi))];
}

/**
 * SYN and SYN-ACK of this mapping's forwarded TCP connections get their MSS clamped to the MTU of
 * the route they leave by: on the VPS the client's SYN enters the tunnel, on the router the LAN
 * host's SYN-ACK does, so both directions end up at the tunnel's size. `tcp flags` comes first
 * because it gives nft the protocol context to parse `ct reply proto-src` with.
 */
function clampRule(fw: DnatFirewall): NftStmt[] {
  return [match(and(payload("tcp", "flags"), ["syn", "rst"]), "syn"), ...replyTuple(fw), mangle({ "tcp option": { name: "maxseg", field: "size" } }, { rt: { key: "mtu" } })];
}

/** One counting rule per protocol: `meta l4proto` gives nft the context for `ct reply proto-src`. */
function countRule(fw: DnatFirewall, p: Proto): NftStmt[] {
  return [match(meta("l4proto"), p), ...replyTuple(fw), { counter: null }];
}

/** Chains that refuse the mapping's packets from sources outside allowFrom (never DNATed, so still addressed to the original port). */
export const REFUSE_CHAINS = ["refuse_in", "refuse_fwd"] as const;

/**
 * Refusal of sources outside allowFrom: their packets were not DNATed, so they still carry the
 * public address and port and go on to this host's input (or, without a destination, forward)
 * hook, where they are counted and dropped or rejected before anything listening there sees them.
 */
function refuseRule(fw: DnatFirewall, p: Proto): NftStmt[] {
  const m = fw.mapping;
  const unreachable = { type: fw.family === 6 ? "icmpv6" : "icmp", expr: "port-unreachable" };
  const verdict: NftStmt = fw.refuse !== "reject" ? { drop: null } : p === "tcp" ? { reject: { type: "tcp reset" } } : { reject: unreachable };
  return [...arrivalMatch(fw), match(payload(p, "dport"), range(m.ports.lo, m.ports.hi)), match(payload(l3(fw), "saddr"), nftSourceMatch(m.allowFrom!), "!="), { counter: null }, verdict];
}

function refuseChains(fw: DnatFirewall): NftChain[] {
  if (fw.mapping.allowFrom === undefined) return [];
  const rules = fw.mapping.protocols.map((p) => refuseRule(fw, p));
  return [
    { name: REFUSE_CHAINS[0], type: "filter", hook: "input", priority: PRIORITY.filter - 1, policy: "accept", rules },
    { name: REFUSE_CHAINS[1], type: "filter", hook: "forward", priority: PRIORITY.filter - 1, policy: "accept", rules },
  ];
}

/**
 * The table a DnatRule owns. No accept here: an accept in our own forward chain cannot override
 * another table's drop, so where a drop exists the accept goes there. The count chain sits in
 * prerouting after DNAT, where both directions of a forward pass (also for a target on the host).
 */
export function nftDnatTable(fw: DnatFirewall): NftTable {
  const chains: NftChain[] = [{ name: "prerouting", type: "nat", hook: "prerouting", priority: PRIORITY.dstnat, policy: "accept", rules: [preroutingRule(fw)] }];
  if (fw.clampMss && fw.mapping.protocols.includes("tcp")) {
    chains.push({ name: "forward", type: "filter", hook: "forward", priority: PRIORITY.filter, policy: "accept", rules: [clampRule(fw)] });
  }
  chains.push({ name: "count", type: "filter", hook: "prerouting", priority: COUNT_PRIORITY, policy: "accept", rules: fw.mapping.protocols.map((p) => countRule(fw, p)) });
  chains.push(...refuseChains(fw));
  return { family: l3(fw), name: DNAT_TABLE_PREFIX + fw.name, chains };
}

/**
 * The accepts for another nftables firewall's forward (or input) chain (OpenWrt fw4, firewalld, a
 * hand-made `policy drop`), one rule per protocol, inserted with the resource's comment.
 */
export function nftDnatAccepts(fw: DnatFirewall, chain: ChainRef, comment: string): (ChainRef & { line: string })[] {
  return fw.mapping.protocols.map((p) => ({ ...chain, line: insertRuleLine(chain, [match(meta("l4proto"), p), ...replyTuple(fw), { accept: null }], comment) }));
}

/** Counts of a DnatRule's count chain from `nft -j` items, by protocol. */
export function nftCounters(items: Record<string, any>[], table: string, family: Family = 4): Counters {
  const out: Counters = {};
  for (const it of items) {
    const r = it.rule;
    if (!r || r.family !== nftFamily(family) || r.table !== table) continue;
    const expr = (r.expr ?? []) as Record<string, any>[];
    if ((REFUSE_CHAINS as readonly string[]).includes(r.chain)) {
      const c = expr.find((e) => e.counter)?.counter;
      if (c) out.refused = { packets: (out.refused?.packets ?? 0) + (Number(c.packets) || 0), bytes: (out.refused?.bytes ?? 0) + (Number(c.bytes) || 0) };
      continue;
    }
    if (r.chain !== "count") continue;
    const p = expr.find((e) => e.match?.left?.meta?.key === "l4proto")?.match.right as Proto | undefined;
    const c = expr.find((e) => e.counter)?.counter;
    if ((p === "tcp" || p === "udp") && c) out[p] = { packets: Number(c.packets) || 0, bytes: Number(c.bytes) || 0 };
  }
  return out;
}

/**
 * Copy our bits of the connection mark onto the packet. nft cannot compute
 * `(meta mark & ~M) | (ct mark & M)` (one runtime source per expression), but natgate only ever
 * puts one value under its mask, so "if the connection has our value, give the packet our value"
 * is the same thing, for any mask.
 */
function restoreRule(fw: ReturnPathFirewall): NftStmt[] {
  return [maskedMatch(ct("mark"), fw.mask, fw.mark), mangle(meta("mark"), maskedSet(meta("mark"), fw.mask, fw.mark))];
}

/**
 * Mangle priority (-150): before DNAT (-100) so the first packet of a connection already carries
 * the mark when it is routed towards the LAN host, and the OUTPUT chain is a `route` chain so a
 * changed mark makes the kernel route a local reply again.
 */
export function nftReturnPathTable(fw: ReturnPathFirewall, family: Family = 4): NftTable {
  const chains: NftChain[] = [
    {
      name: "prerouting",
      type: "filter",
      hook: "prerouting",
      priority: PRIORITY.mangle,
      policy: "accept",
      rules: [[match(meta("iifname"), fw.tunnelInterface), mangle(ct("mark"), maskedSet(ct("mark"), fw.mask, fw.mark))], restoreRule(fw)],
    },
  ];
  if (fw.restoreInOutput) chains.push({ name: "output", type: "route", hook: "output", priority: PRIORITY.mangle, policy: "accept", rules: [restoreRule(fw)] });
  return { family: nftFamily(family), name: RET_TABLE_PREFIX + fw.name, chains };
}
