import { commentOf, iptablesLine } from "../../backends/iptables";
import { conntrackOf, iptChainName, iptDnatChains, iptLines } from "../../backends/iptablesFirewall";
import { DNAT_TABLE_PREFIX, nftDnatAccepts, nftDnatTable } from "../../backends/nftFirewall";
import { tableLines, type ChainRef, type NftTable } from "../../backends/nftables";
import { bootEntryName, bootRenderedLine } from "../../backends/persist";
import { ipForward, sysctlLine } from "../../backends/sysctl";
import type { Backend, DnatFirewall, Family } from "../../plan/firewall";
import { addressFamily, formatPortRange, portRangeOf, type PortRange } from "../common/fields";
import type { DnatRuleInputs } from "./schema";

export { DNAT_TABLE_PREFIX };

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

/** The ports after DNAT: what the LAN service listens on. */
export function targetPorts(i: DnatRuleInputs): PortRange {
  return portRangeOf(i.toPorts ?? i.ports);
}

/** The rule's IP version: its target's. */
export function dnatFamily(i: Pick<DnatRuleInputs, "toAddress">): Family {
  return addressFamily(i.toAddress);
}

/** The forwarding sysctl the rule needs. */
export function dnatForwarding(i: Pick<DnatRuleInputs, "toAddress">) {
  return ipForward(dnatFamily(i));
}

/** The rule's packet-filter plan: the same data for both backends. */
export function dnatFirewall(i: DnatRuleInputs): DnatFirewall {
  return {
    name: i.name,
    family: dnatFamily(i),
    mapping: {
      ...(i.inInterface !== undefined ? { inInterface: i.inInterface } : {}),
      ...(i.destination !== undefined ? { destination: i.destination } : {}),
      protocols: i.protocol === "both" ? ["tcp", "udp"] : [i.protocol],
      ports: portRangeOf(i.ports),
      toAddress: i.toAddress,
      toPorts: targetPorts(i),
      ...(i.allowFrom !== undefined ? { allowFrom: i.allowFrom } : {}),
    },
    clampMss: i.clampMss,
    ...(i.allowFrom !== undefined ? { refuse: i.refuse ?? "drop" } : {}),
  };
}

/** The nft table this rule owns (nftables backend). */
export function dnatTable(i: DnatRuleInputs): NftTable {
  return nftDnatTable(dnatFirewall(i));
}

/** Names of the iptables chains this rule may own (iptables backend), whatever its inputs. */
export function dnatChainNames(name: string): string[] {
  return ["dnat", "mss", "cnt", "ref"].map((t) => iptChainName(t, name));
}

/** The rule's own packet-filter objects as lines, in the notation its backend reads them back in. */
export function dnatFirewallLines(i: DnatRuleInputs, backend: Backend): string[] {
  return backend === "nftables" ? tableLines(dnatTable(i)) : iptLines(iptDnatChains(dnatFirewall(i)), dnatFamily(i));
}

/**
 * The filter FORWARD accepts for this mapping (iptables words after the chain name): every
 * packet of a connection DNATed to toAddress:toPorts, both directions, by its conntrack entry.
 * Both backends put them where a drop is (ufw, Docker, fw3).
 */
export function dnatForwardAccepts(i: DnatRuleInputs): string[] {
  const to = targetPorts(i);
  const fw = dnatFirewall(i);
  const [iface, conntrack] = conntrackOf(fw);
  return fw.mapping.protocols.map((p) =>
    [`${iface}-p ${p}`, conntrack, `--ctreplsrc ${i.toAddress}`, `--ctreplsrcport ${formatPortRange(to, ":")}`, `-m comment --comment ${commentOf(i.name)}`, "-j ACCEPT"].join(" "),
  );
}

/** The same accepts for another nftables firewall's forward or input chain (fw4, firewalld). */
export function dnatNftAccepts(i: DnatRuleInputs, chain: ChainRef): (ChainRef & { line: string })[] {
  return nftDnatAccepts(dnatFirewall(i), chain, commentOf(i.name));
}

/** A note leading the lines of a preview whose backend the host decides. */
export const AUTO_NOTE = "# backend auto: these nftables lines where nft works on the host, else the same as iptables chains (output `activeBackend` says which)";

/**
 * What this resource owns, as commands (pure; the accepts in others' chains depend on the host
 * and are in `forwardAccept`). `auto` previews as nftables, with a note saying so.
 */
export function renderDnat(i: DnatRuleInputs, backend?: Backend): string[] {
  const b = backend ?? (i.backend === "iptables" ? "iptables" : "nftables");
  return [
    ...(backend === undefined && i.backend === "auto" ? [AUTO_NOTE] : []),
    ...dnatFirewallLines(i, b),
    sysctlLine(dnatForwarding(i)),
    ...(i.persist ? [bootRenderedLine(dnatBootEntryName(i.name))] : []),
  ];
}

export { iptablesLine };
