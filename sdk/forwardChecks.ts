import * as ipaddr from "ipaddr.js";
import { interfaceNameProblem, ipv4, ipv6, networkCidr, networkCidr6, nonHostProblem, parsePortSpec, sourceNetwork, unicastProblem, unicastProblem6 } from "../provider/resources/common/fields";
import { tunnelAddress, tunnelAddress6 } from "../provider/resources/tunnel/schema";
import { isNetworkOrBroadcast, parseCidr } from "../provider/resources/common/addresses";
import { toPortsProblem } from "../provider/resources/dnat/schema";

/** The parts of a PortForward's description that can contradict each other, resolved. */
export interface ForwardLayout {
  lanSubnet: string;
  lanHost?: string;
  /** Dual stack: whether a VPS has publicAddress6 (the forwards are published on IPv6 too), the LAN's prefix and host. */
  ipv6?: boolean;
  lanSubnet6?: string;
  lanHost6?: string;
  forwards: { protocol?: string; ports: number | string; to?: string; to6?: string; toPorts?: number | string; allowFrom?: string[]; refuse?: string }[];
  routerForwards: { protocol?: string; ports: number | string; toPorts?: number | string; allowFrom?: string[]; refuse?: string }[];
  priority?: number;
  localSourcePriority?: number;
  /**
   * Interface names by the field that gives them (`router.lanInterface`,
   * `existingTunnel.vpsInterfaceName`...), checked with the rule every resource uses; one that no
   * child resource receives would otherwise not be checked at all.
   */
  interfaces?: Record<string, string | undefined>;
  /**
   * Addresses by the field that gives them (`vps.publicAddress`, `existingTunnel.routerAddress`...)
   * and what they must be: a host's own address (`ipv4`, `ipv6`), a DNAT target (`ipv4Target`,
   * `ipv6Target`: not loopback or link-local either), a tunnel end with its prefix (`cidr4`, `cidr6`).
   */
  addresses?: Array<{ field: string; value: unknown; as: AddressUse }>;
}

export type AddressUse = "ipv4" | "ipv6" | "ipv4Target" | "ipv6Target" | "cidr4" | "cidr6";

/** Why `value` cannot be used as `as` says; undefined when it can. */
function addressProblem(value: unknown, as: AddressUse): string | undefined {
  if (as === "cidr4" || as === "cidr6") {
    const r = (as === "cidr4" ? tunnelAddress : tunnelAddress6).safeParse(value);
    if (r.success && as === "cidr4" && (value as string).includes(":")) return `${JSON.stringify(value)} is IPv6: give the IPv4 tunnel address, e.g. 10.10.10.1/24 (the IPv6 one goes in the field ending in 6)`;
    return r.success ? undefined : r.error.issues[0]!.message;
  }
  const six = as === "ipv6" || as === "ipv6Target";
  const r = (six ? ipv6 : ipv4).safeParse(value);
  if (!r.success) return `${JSON.stringify(value)} ${r.error.issues[0]!.message}`;
  const v = value as string;
  if (as === "ipv4Target") return unicastProblem(v) ?? nonHostProblem(v);
  if (as === "ipv6Target") return unicastProblem6(v) ?? nonHostProblem(v);
  return nonHostProblem(v);
}

/** Port fields as the user wrote them (the DnatRules they end up in would name theirs: ports, toPorts). */
function portProblems(field: string, f: { ports?: unknown; toPorts?: unknown }): string[] {
  const out: string[] = [];
  for (const k of ["ports", "toPorts"] as const) {
    if (f[k] === undefined && k === "toPorts") continue;
    const r = parsePortSpec(f[k]);
    if (typeof r === "string") out.push(`${field}.${k} ${JSON.stringify(f[k])}: ${r}`);
  }
  const from = parsePortSpec(f.ports);
  const to = f.toPorts === undefined ? undefined : parsePortSpec(f.toPorts);
  if (typeof from === "object" && typeof to === "object") {
    const reason = toPortsProblem(from, to, { ports: `${field}.ports ${JSON.stringify(f.ports)}`, toPorts: "", unit: "forward" });
    if (reason) out.push(`${field}.toPorts ${JSON.stringify(f.toPorts)}: ${reason}`);
  }
  return out;
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

/** Why an address cannot be an IPv6 LAN host: not IPv6, not one host's own. */
function hostProblem6(address: string): string | undefined {
  if (!ipv6.safeParse(address).success) return `${JSON.stringify(address)} must be an IPv6 address like fd00:1::10`;
  return unicastProblem6(address);
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

/**
 * A forward's allowFrom and refuse, named as the user wrote them (the VPS's DnatRule would name its
 * own fields). `families`: where the forward is published. Each published family's rule admits
 * that family's entries only, so a list without any of one family would leave that family open to
 * every source: refused, since that is never what an allow-list means.
 */
function allowFromProblems(field: string, f: { allowFrom?: unknown; refuse?: unknown }, families: { v4: boolean; v6: boolean }): string[] {
  const out: string[] = [];
  if (f.allowFrom !== undefined) {
    if (!Array.isArray(f.allowFrom)) return [`${field}.allowFrom: must be a list of addresses or networks like ["203.0.113.0/24"]`];
    if (f.allowFrom.length === 0) out.push(`${field}.allowFrom: must list at least one source: omit allowFrom to admit everyone`);
    let valid = true;
    f.allowFrom.forEach((a, k) => {
      const r = sourceNetwork.safeParse(a);
      if (!r.success) {
        valid = false;
        out.push(`${field}.allowFrom[${k}] ${JSON.stringify(a)}: ${r.error.issues[0]!.message}`);
      } else if (a.includes(":") && !families.v6) {
        out.push(`${field}.allowFrom[${k}] ${a}: is an IPv6 source, but the forward is published on the VPS's IPv4 address only: list IPv4 sources like 203.0.113.0/24 (or give vps.publicAddress6 and an IPv6 target)`);
      } else if (!a.includes(":") && !families.v4) {
        out.push(`${field}.allowFrom[${k}] ${a}: is an IPv4 source, but the forward is published on IPv6 only (it has no IPv4 target): list IPv6 sources like 2001:db8::/32`);
      }
    });
    const has = (six: boolean) => (f.allowFrom as unknown[]).some((a) => typeof a === "string" && a.includes(":") === six);
    if (valid && f.allowFrom.length > 0 && families.v4 && families.v6) {
      for (const six of [false, true]) {
        if (!has(six)) {
          out.push(
            `${field}.allowFrom: lists no IPv${six ? 6 : 4} source, but the forward is published on the VPS's IPv${six ? 6 : 4} address too, which would then admit every source: ` +
              `add IPv${six ? 6 : 4} sources (like ${six ? "2001:db8::/32" : "203.0.113.0/24"})`,
          );
        }
      }
    }
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
  for (const a of l.addresses ?? []) {
    const why = a.value === undefined ? undefined : addressProblem(a.value, a.as);
    if (why) out.push(`${a.field}: ${why}`);
  }
  l.forwards.forEach((f, i) => out.push(...portProblems(`forwards[${i}]`, f)));
  l.routerForwards.forEach((f, i) => out.push(...portProblems(`routerForwards[${i}]`, f)));
  const subnet = networkCidr.safeParse(l.lanSubnet);
  if (!subnet.success) out.push(`router.lanSubnet ${JSON.stringify(l.lanSubnet)}: ${subnet.error.issues[0]!.message}`);
  out.push(...dualStackProblems(l));
  const hosts: Array<[string, string | undefined]> = [["lanHost", l.lanHost], ...l.forwards.map((f, i): [string, string | undefined] => [`forwards[${i}].to`, f.to])];
  for (const [field, address] of hosts) {
    if (address === undefined) continue;
    const problem = hostProblem(address, subnet.success ? l.lanSubnet : undefined);
    if (problem) out.push(`${field}: ${problem}`);
  }
  const v6 = !!l.ipv6;
  l.forwards.forEach((f, i) => out.push(...allowFromProblems(`forwards[${i}]`, f, { v4: (f.to ?? l.lanHost) !== undefined, v6: v6 && (f.to6 ?? l.lanHost6) !== undefined })));
  l.routerForwards.forEach((f, i) => out.push(...allowFromProblems(`routerForwards[${i}]`, f, { v4: true, v6 })));
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

/**
 * The IPv6 half of the layout: its prefix and hosts, which need a VPS with publicAddress6 (and it
 * them), and every forward published on at least one family.
 */
function dualStackProblems(l: ForwardLayout): string[] {
  const out: string[] = [];
  const given6 = [["router.lanSubnet6", l.lanSubnet6], ["lanHost6", l.lanHost6], ...l.forwards.map((f, i) => [`forwards[${i}].to6`, f.to6])].filter(([, v]) => v !== undefined);
  if (!l.ipv6) {
    for (const [field] of given6) out.push(`${field}: is only used when the forwards are also published on IPv6: give vps.publicAddress6 too, or remove ${field}`);
  } else if (l.lanSubnet6 === undefined) {
    out.push("router.lanSubnet6: is required with vps.publicAddress6 (the return path's IPv6 routes reach the LAN by it): give the LAN's IPv6 prefix, like fd00:1::/64");
  } else if (!networkCidr6.safeParse(l.lanSubnet6).success) {
    out.push(`router.lanSubnet6 ${JSON.stringify(l.lanSubnet6)}: ${networkCidr6.safeParse(l.lanSubnet6).error!.issues[0]!.message}`);
  }
  const hosts6: Array<[string, string | undefined]> = [["lanHost6", l.lanHost6], ...l.forwards.map((f, i): [string, string | undefined] => [`forwards[${i}].to6`, f.to6])];
  for (const [field, address] of hosts6) {
    if (address === undefined || !l.ipv6) continue;
    const problem = hostProblem6(address);
    if (problem) out.push(`${field}: ${problem}`);
    else if (l.lanSubnet6 !== undefined && inSubnet(address, l.lanSubnet6) === false) {
      out.push(`${field} ${address} is not in router.lanSubnet6 ${l.lanSubnet6}: the return path's IPv6 routes only reach lanSubnet6; fix lanSubnet6 or the address`);
    }
  }
  l.forwards.forEach((f, i) => {
    if ((f.to ?? l.lanHost) === undefined && (!l.ipv6 || (f.to6 ?? l.lanHost6) === undefined)) {
      out.push(`forwards[${i}] has no target: give "to" (or the component's lanHost)${l.ipv6 ? ', "to6" (or lanHost6), or both' : ""}`);
    }
  });
  return out;
}
