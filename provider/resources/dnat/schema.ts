import { z } from "zod";
import { ConnectionSchema } from "../../ssh/schema";
import { backendChoice } from "../common/backend";
import { addressFamily, hostAddress, interfaceName, ipAddress, portRangeOf, portSpec, refuseNonHost, resourceName, sourceNetwork, type PortRange } from "../common/fields";
import type { Failure } from "../../engine/failures";

/**
 * Remapping a range to different port numbers needs one map element per port (nft has no port
 * offset), so it is kept to a size whose rule still reads in `nft list ruleset` and a preview.
 */
export const MAX_SHIFTED_PORTS = 1024;

export const DnatRuleSchema = z.strictObject({
  /** How to reach the host: @pulumi/command's remote.ConnectionArgs plus sudo. */
  connection: ConnectionSchema,
  /** Names what this resource owns on the host: nft table natgate_dnat_<name>, iptables comment natgate:<name>. */
  name: resourceName,
  protocol: z.enum(["tcp", "udp", "both"], { error: 'must be "tcp", "udp" or "both"' }).default("tcp"),
  /** Port or range matched: 2222, "2222" or "5000-6000". */
  ports: portSpec,
  /** Match packets arriving on this interface (e.g. the tunnel on the router). */
  inInterface: interfaceName.optional(),
  /** Match packets to this address (e.g. the VPS's public address); of toAddress's family. */
  destination: ipAddress.superRefine(refuseNonHost).optional(),
  /**
   * Where to send them: an IPv4 or an IPv6 address. Its family is the rule's: an IPv6 rule matches
   * IPv6 packets only (nft table ip6, ip6tables), so a dual-stack forward is two rules.
   */
  toAddress: hostAddress,
  /** Target port or range (same size as ports); absent = keep the port. */
  toPorts: portSpec.optional(),
  /**
   * Sources admitted (addresses or networks, e.g. ["203.0.113.0/24"]); absent: every source.
   * Enforced before DNAT: the rule forwards only these sources, and refuses the rest (`refuse`)
   * with a counter, whatever else listens on the port.
   */
  allowFrom: z.array(sourceNetwork, { error: "must be a list of addresses or networks like [\"203.0.113.0/24\"]" }).min(1, { error: "must list at least one source: omit allowFrom to admit everyone" }).optional(),
  /** What sources outside allowFrom get: "drop" (silence, the default) or "reject" (TCP reset, ICMP port unreachable for UDP). */
  refuse: z.enum(["drop", "reject"], { error: 'must be "drop" or "reject"' }).optional(),
  /** Clamp the MSS of forwarded TCP SYNs to the route MTU (tunnels have an MTU below 1500). */
  clampMss: z.boolean({ error: "must be true or false" }).default(true),
  /** Which tool writes natgate's own rules: "auto" (nftables where nft works, else iptables), "nftables" or "iptables". */
  backend: backendChoice,
  /** Restore the rule at boot: an entry in /etc/natgate/boot.d, run by the host's init system. */
  persist: z.boolean({ error: "must be true or false" }).default(true),
});

export type DnatRuleInputs = z.output<typeof DnatRuleSchema>;

export function dnatCrossCheck(i: DnatRuleInputs): Failure[] {
  const out: Failure[] = [];
  if (i.inInterface === undefined && i.destination === undefined) {
    out.push({
      property: "inInterface",
      reason: "give inInterface and/or destination: without either, every forwarded packet to these ports (even your LAN's own traffic to the internet) would be redirected",
    });
  }
  const fam = addressFamily(i.toAddress);
  const example = fam === 4 ? "203.0.113.0/24" : "2001:db8::/32";
  if (i.destination !== undefined && addressFamily(i.destination) !== fam) {
    out.push({
      property: "destination",
      reason: `${i.destination} is IPv${addressFamily(i.destination)} but toAddress ${i.toAddress} is IPv${fam}: DNAT keeps a packet's family; ` +
        `give an IPv${fam} destination, and forward IPv${addressFamily(i.destination)} with a second DnatRule to an IPv${addressFamily(i.destination)} address`,
    });
  }
  i.allowFrom?.forEach((a, k) => {
    if (addressFamily(a) !== fam) {
      out.push({ property: `allowFrom[${k}]`, reason: `${a} is an IPv${addressFamily(a)} source, but this rule forwards IPv${fam} (toAddress ${i.toAddress}): list IPv${fam} sources like ${example}` });
    }
  });
  if (i.refuse !== undefined && i.allowFrom === undefined) {
    out.push({ property: "refuse", reason: "is only used with allowFrom (which sources to admit): give allowFrom too, or remove refuse" });
  }
  if (i.toPorts !== undefined) {
    const reason = toPortsProblem(portRangeOf(i.ports), portRangeOf(i.toPorts), { ports: String(i.ports), toPorts: ` (${i.toPorts})`, unit: "rule" });
    if (reason) out.push({ property: "toPorts", reason });
  }
  return out;
}

/**
 * Why toPorts `to` cannot stand for ports `from`, or undefined: one rule for the DnatRule and for
 * the PortForward that makes it, each naming its fields as its user wrote them (`said`: how the
 * ports are shown, what follows the toPorts count, and what to split).
 */
export function toPortsProblem(from: PortRange, to: PortRange, said: { ports: string; toPorts: string; unit: string }): string | undefined {
  const n = from.hi - from.lo + 1;
  const m = to.hi - to.lo + 1;
  if (n !== m) {
    return `maps ${n} port${n === 1 ? "" : "s"} (${said.ports}) to ${m}${said.toPorts}: give a range of the same size, one port for one port, or omit toPorts to keep the port numbers`;
  }
  if (n > MAX_SHIFTED_PORTS && from.lo !== to.lo) {
    return `remapping ${n} ports to other numbers needs one nft map element per port; at most ${MAX_SHIFTED_PORTS} are supported: keep the numbers (omit toPorts) or split the ${said.unit}`;
  }
  return undefined;
}
