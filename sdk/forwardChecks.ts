import * as ipaddr from "ipaddr.js";
import { interfaceNameProblem, ipv4, networkCidr, sourceNetwork, unicastProblem } from "../provider/resources/common/fields";
import { isNetworkOrBroadcast, parseCidr } from "../provider/resources/common/addresses";

/** The parts of a PortForward's description that can contradict each other, resolved. */
export interface ForwardLayout {
  lanSubnet: string;
  lanHost?: string;
  forwards: { protocol?: string; ports: number | string; to?: string; toPorts?: number | string; allowFrom?: string[]; refuse?: string }[];
  routerForwards: { protocol?: string; ports: number | string; toPorts?: number | string; allowFrom?: string[]; refuse?: string }[];
  priority?: number;
  localSourcePriority?: number;
  /**
   * Interface names by the field that gives them (`router.lanInterface`,
   * `existingTunnel.vpsInterfaceName`...), checked with the rule every resource uses; one that no
   * child resource receives would otherwise not be checked at all.
   */
  interfaces?: Record<string, string | undefined>;
}

interface Range { lo: number; hi: number }

// Port syntax errors are the DnatRule check's to report (it names the field); here an unreadable
// spec is skipped so a contradiction is only claimed between specs that parse.
function range(spec: number | string | undefined): Range | undefined {
  if (spec === undefined) return undefined;
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(String(spec).trim());
  if (!m) return undefined;
  const lo = Number(m[1]);
  const hi = m[2] === undefined ? lo : Number(m[2]);
  return lo <= hi ? { lo, hi } : undefined;
}

function protocols(p: string | undefined): string[] {
  return p === "both" ? ["tcp", "udp"] : [p ?? "tcp"];
}

function show(r: Range): string {
  return r.lo === r.hi ? String(r.lo) : `${r.lo}-${r.hi}`;
}

interface Claim { what: string; protocols: string[]; range: Range }

function overlaps(claims: Claim[], where: string): string[] {
  const out: string[] = [];
  const pairs = claims.flatMap((a, i) => claims.slice(i + 1).map((b): [Claim, Claim] => [a, b]));
  for (const [a, b] of pairs) {
    const proto = a.protocols.filter((p) => b.protocols.includes(p));
    if (proto.length && a.range.lo <= b.range.hi && b.range.lo <= a.range.hi) {
      out.push(
        `${b.what} (${proto.join("+")} ${show(b.range)}) overlaps ${a.what} (${show(a.range)}) ${where}: ` +
          `only one of them would receive those ports; make the ranges disjoint`,
      );
    }
  }
  return out;
}

function inSubnet(address: string, subnet: string): boolean | undefined {
  try {
    const [net, len] = ipaddr.parseCIDR(subnet);
    // Host bits set: PolicyRouteTable's own check says how to write the network.
    if (net.kind() === "ipv4" && ipaddr.IPv4.networkAddressFromCIDR(subnet).toString() !== net.toString()) return undefined;
    const a = ipaddr.parse(address);
    return a.kind() === net.kind() && a.match(net, len);
  } catch {
    return undefined; // malformed: the resources' own checks name the field
  }
}

/** Why an address cannot be a LAN host: not IPv4, not one host's own, the subnet's network or broadcast address. */
function hostProblem(address: string, subnet: string | undefined): string | undefined {
  if (!ipv4.safeParse(address).success) return `${JSON.stringify(address)} must be an IPv4 address like 192.168.1.10`;
  const why = unicastProblem(address);
  if (why) return why;
  if (subnet === undefined) return undefined;
  // The address under the subnet's prefix: the network and broadcast rule every tunnel address follows.
  const c = parseCidr(`${address}/${subnet.split("/")[1]}`);
  if (typeof c === "string" || !isNetworkOrBroadcast(c)) return undefined;
  return `${address} is the ${c.network === c.text ? "network" : "broadcast"} address of router.lanSubnet ${subnet}, not a host: give the LAN host's own address`;
}

/** A forward's allowFrom and refuse, named as the user wrote them (the VPS's DnatRule would name its own fields). */
function allowFromProblems(field: string, f: { allowFrom?: unknown; refuse?: unknown }): string[] {
  const out: string[] = [];
  if (f.allowFrom !== undefined) {
    if (!Array.isArray(f.allowFrom)) return [`${field}.allowFrom: must be a list of addresses or networks like ["203.0.113.0/24"]`];
    if (f.allowFrom.length === 0) out.push(`${field}.allowFrom: must list at least one source: omit allowFrom to admit everyone`);
    f.allowFrom.forEach((a, k) => {
      const r = sourceNetwork.safeParse(a);
      if (!r.success) out.push(`${field}.allowFrom[${k}] ${JSON.stringify(a)}: ${r.error.issues[0]!.message}`);
      else if (a.includes(":")) out.push(`${field}.allowFrom[${k}] ${a}: is an IPv6 source, but the VPS's forwards are IPv4: list IPv4 sources like 203.0.113.0/24`);
    });
  }
  if (f.refuse !== undefined && f.refuse !== "drop" && f.refuse !== "reject") out.push(`${field}.refuse ${JSON.stringify(f.refuse)}: must be "drop" or "reject"`);
  else if (f.refuse !== undefined && f.allowFrom === undefined) out.push(`${field}.refuse: is only used with allowFrom (which sources to admit): give allowFrom too, or remove refuse`);
  return out;
}

/**
 * Contradictions between a PortForward's fields that no single child resource can see: a LAN
 * host the routing table cannot reach (its replies and DNATed packets would go back into the
 * tunnel), two forwards claiming the same public ports (the VPS passes them to the router
 * unchanged, so the router's rules would clash too), a return-path priority whose companion
 * rule would land after the main table, an interface name no resource may act on (all, lo,
 * -h...). Each message names the field to change.
 */
export function forwardLayoutProblems(l: ForwardLayout): string[] {
  const out: string[] = [];
  for (const [field, name] of Object.entries(l.interfaces ?? {})) {
    const why = name === undefined ? undefined : interfaceNameProblem(name);
    if (why) out.push(`${field}: ${why}`);
  }
  // The component's own fields, named as the user wrote them: the children they end up in
  // (routes[1].to of home-routes, toAddress of home-router-0) would report them under their names.
  const subnet = networkCidr.safeParse(l.lanSubnet);
  if (!subnet.success) out.push(`router.lanSubnet ${JSON.stringify(l.lanSubnet)}: ${subnet.error.issues[0]!.message}`);
  const hosts: Array<[string, string | undefined]> = [["lanHost", l.lanHost], ...l.forwards.map((f, i): [string, string | undefined] => [`forwards[${i}].to`, f.to])];
  for (const [field, address] of hosts) {
    if (address === undefined) continue;
    const problem = hostProblem(address, subnet.success ? l.lanSubnet : undefined);
    if (problem) out.push(`${field}: ${problem}`);
  }
  const publics: Array<[string, ForwardLayout["forwards"][number]]> = [
    ...l.forwards.map((f, i): [string, ForwardLayout["forwards"][number]] => [`forwards[${i}]`, f]),
    ...l.routerForwards.map((f, i): [string, ForwardLayout["forwards"][number]] => [`routerForwards[${i}]`, f]),
  ];
  for (const [field, f] of publics) out.push(...allowFromProblems(field, f));
  l.forwards.forEach((f, i) => {
    const to = f.to ?? l.lanHost;
    if (to !== undefined && inSubnet(to, l.lanSubnet) === false) {
      out.push(
        `forwards[${i}] goes to ${to}, which is not in router.lanSubnet ${l.lanSubnet}: the return path's ` +
          `routing table only reaches lanSubnet, so its packets would go back into the tunnel; fix lanSubnet or the address`,
      );
    }
  });
  const claim = (what: string, protocol: string | undefined, spec: number | string | undefined): Claim[] => {
    const r = range(spec);
    return r ? [{ what, protocols: protocols(protocol), range: r }] : [];
  };
  // On the VPS every forward claims its public ports.
  out.push(...overlaps([
    ...l.forwards.flatMap((f, i) => claim(`forwards[${i}]`, f.protocol, f.ports)),
    ...l.routerForwards.flatMap((f, i) => claim(`routerForwards[${i}]`, f.protocol, f.ports)),
  ], "on the VPS"));
  if (l.routerForwards.length && l.localSourcePriority === undefined && l.priority !== undefined && l.priority >= 32765) {
    out.push(
      `returnPath.priority ${l.priority}: routerForwards also need the rule after it (priority + 1), which would come ` +
        `after the main table's 32766; choose a priority of at most 32764, or set returnPath.localSourcePriority`,
    );
  }
  return out;
}
