import { commentOf, iptablesLine } from "../../backends/iptables";
import {
  PRIORITY,
  and,
  ct,
  mangle,
  match,
  meta,
  payload,
  range,
  set,
  tableLines,
  insertRuleLine,
  type ChainRef,
  type NftChain,
  type NftExpr,
  type NftStmt,
  type NftTable,
} from "../../backends/nftables";
import { bootEntryName, bootRenderedLine } from "../../backends/persist";
import { ipForward, sysctlLine } from "../../backends/sysctl";
import { formatPortRange, portRangeOf, type PortRange } from "../common/fields";
import type { DnatRuleInputs } from "./schema";

export const DNAT_TABLE_PREFIX = "natgate_dnat_";

export function dnatTableName(name: string): string {
  return DNAT_TABLE_PREFIX + name;
}

/** Its entry in /etc/natgate/boot.d. */
export function dnatBootEntryName(name: string): string {
  return bootEntryName("dnat", name);
}

/** Owner tag of this resource's holder files. */
export function dnatOwner(name: string): string {
  return `dnat_${name}`;
}

function protocols(i: DnatRuleInputs): ("tcp" | "udp")[] {
  return i.protocol === "both" ? ["tcp", "udp"] : [i.protocol];
}

/** The ports after DNAT: what the LAN service listens on. */
export function targetPorts(i: DnatRuleInputs): PortRange {
  return portRangeOf(i.toPorts ?? i.ports);
}

function dnatStatement(i: DnatRuleInputs, portExpr: NftExpr): NftStmt {
  const from = portRangeOf(i.ports);
  const to = targetPorts(i);
  if (to.lo === from.lo) return { dnat: { addr: i.toAddress } }; // same numbers: keep the port
  if (from.lo === from.hi) return { dnat: { addr: i.toAddress, port: to.lo } };
  // A range to other numbers: nft has no port offset, so one map element per port.
  const elems: NftExpr[] = [];
  for (let p = from.lo; p <= from.hi; p++) elems.push([p, { concat: [i.toAddress, p - from.lo + to.lo] }]);
  return { dnat: { family: "ip", addr: { map: { key: portExpr, data: { set: elems } } } } };
}

function preroutingRule(i: DnatRuleInputs): NftStmt[] {
  const r: NftStmt[] = [];
  if (i.inInterface !== undefined) r.push(match(meta("iifname"), i.inInterface));
  if (i.destination !== undefined) r.push(match(payload("ip", "daddr"), i.destination));
  let portExpr: NftExpr;
  if (i.protocol === "both") {
    r.push(match(meta("l4proto"), set(["tcp", "udp"])));
    portExpr = payload("th", "dport");
  } else {
    portExpr = payload(i.protocol, "dport"); // nft drops the implied `meta l4proto` itself
  }
  const p = portRangeOf(i.ports);
  r.push(match(portExpr, range(p.lo, p.hi)));
  r.push(dnatStatement(i, portExpr));
  return r;
}

/**
 * SYN and SYN-ACK of this mapping's forwarded TCP connections get their MSS clamped to the MTU of
 * the route they leave by: on the VPS the client's SYN enters the tunnel, on the router the LAN
 * host's SYN-ACK does, so both directions end up at the tunnel's size. Matched by conntrack's reply
 * tuple (the post-DNAT address and port), the same in both directions. `tcp flags` comes first
 * because it gives nft the protocol context to parse `ct reply proto-src` with.
 */
function clampRule(i: DnatRuleInputs): NftStmt[] {
  const to = targetPorts(i);
  return [
    match(and(payload("tcp", "flags"), ["syn", "rst"]), "syn"),
    match(ct("status"), "dnat", "in"),
    match(ct("ip saddr", "reply"), i.toAddress),
    match(ct("proto-src", "reply"), range(to.lo, to.hi)),
    mangle({ "tcp option": { name: "maxseg", field: "size" } }, { rt: { key: "mtu" } }),
  ];
}

/**
 * The table this DnatRule owns. No accept here: an accept in our own forward chain cannot
 * override another table's drop, so where a drop exists the accept goes there (iptables backend).
 */
export function dnatTable(i: DnatRuleInputs): NftTable {
  const chains: NftChain[] = [
    { name: "prerouting", type: "nat", hook: "prerouting", priority: PRIORITY.dstnat, policy: "accept", rules: [preroutingRule(i)] },
  ];
  if (i.clampMss && i.protocol !== "udp") {
    chains.push({ name: "forward", type: "filter", hook: "forward", priority: PRIORITY.filter, policy: "accept", rules: [clampRule(i)] });
  }
  return { family: "ip", name: dnatTableName(i.name), chains };
}

/**
 * The filter FORWARD accepts for this mapping (iptables words after the chain name): every
 * packet of a connection DNATed to toAddress:toPorts, both directions, by its conntrack entry.
 */
export function dnatForwardAccepts(i: DnatRuleInputs): string[] {
  const to = targetPorts(i);
  return protocols(i).map((p) =>
    [
      `-p ${p}`,
      "-m conntrack --ctstate DNAT",
      `--ctreplsrc ${i.toAddress}`,
      `--ctreplsrcport ${formatPortRange(to, ":")}`,
      `-m comment --comment ${commentOf(i.name)}`,
      "-j ACCEPT",
    ].join(" "),
  );
}

/**
 * The same accepts for another nftables firewall's forward chain (OpenWrt fw4, firewalld, a
 * hand-made `policy drop`), one rule per protocol: `meta l4proto` gives nft the protocol context
 * for `ct reply proto-src` and, being the only protocol match, is kept as written.
 */
export function dnatNftAccepts(i: DnatRuleInputs, chain: ChainRef): (ChainRef & { line: string })[] {
  const to = targetPorts(i);
  return protocols(i).map((p) => ({
    ...chain,
    line: insertRuleLine(
      chain,
      [
        match(meta("l4proto"), p),
        match(ct("status"), "dnat", "in"),
        match(ct("ip saddr", "reply"), i.toAddress),
        match(ct("proto-src", "reply"), range(to.lo, to.hi)),
        { accept: null },
      ],
      commentOf(i.name),
    ),
  }));
}

/** What this resource owns, as commands (pure; the iptables accepts depend on the host and are in `forwardAccept`). */
export function renderDnat(i: DnatRuleInputs): string[] {
  return [...tableLines(dnatTable(i)), sysctlLine(ipForward()), ...(i.persist ? [bootRenderedLine(dnatBootEntryName(i.name))] : [])];
}

export { iptablesLine };
