import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "./connection";
import type { Tunnel } from "./tunnel";
import type { DnatRule, Protocol, Admission } from "./dnatRule";
import type { ConnmarkReturnPath } from "./connmarkReturnPath";
import type { PolicyRouteTable } from "./policyRouteTable";
import type { PathCheck } from "./pathCheck";
import { forwardLayoutProblems, type ForwardLayout } from "./forwardChecks";
import type { Backend } from "./hostResource";
import { SLOTS, slotProblem } from "../provider/plan/slots";
import { slotFor } from "./slotChoice";
import { redact } from "../provider/engine/redact";
import { buildPath, type ForwardPath } from "./forwardPath";

export type { ForwardPath };

/** One public port (or range) on the VPS forwarded to a LAN host. */
export interface ForwardArgs extends Admission {
  /** `tcp`, `udp` or `both` (default `tcp`). */
  protocol?: pulumi.Input<Protocol>;
  /** Public port or range on the VPS: `443`, `"5000-6000"`. */
  ports: pulumi.Input<number | string>;
  /** LAN host for this forward (default: the component's `lanHost`). */
  to?: pulumi.Input<string>;
  /**
   * The LAN host's IPv6 address for this forward (default: the component's `lanHost6`): with
   * `vps.publicAddress6`, the forward is also published on the VPS's IPv6 address, to this one.
   * A forward with only `to6` (and no `to`/`lanHost`) is IPv6 only.
   */
  to6?: pulumi.Input<string>;
  /** Port or equally sized range on the LAN host (default: the same as `ports`). */
  toPorts?: pulumi.Input<number | string>;
}

/** A public VPS port forwarded to a service on the router itself (e.g. 2222 → the router's sshd on 22). */
export interface RouterForwardArgs extends Admission {
  protocol?: pulumi.Input<Protocol>;
  ports: pulumi.Input<number | string>;
  toPorts?: pulumi.Input<number | string>;
}

/** The traffic one forward carried, per host and protocol. */
export interface ForwardCounters {
  /** `<protocol> <ports>` as written in the forward. */
  forward: string;
  /** The VPS's public address, when the component has several VPSes. */
  via?: string;
  /** On the VPS; `refused`: packets of sources outside allowFrom, dropped or rejected there. */
  vps: Partial<Record<"tcp" | "udp" | "refused", { packets: number; bytes: number }>>;
  router: Partial<Record<"tcp" | "udp", { packets: number; bytes: number }>>;
  /** The same for the forward's IPv6 half, when it is published on the VPS's IPv6 address. */
  vps6?: Partial<Record<"tcp" | "udp" | "refused", { packets: number; bytes: number }>>;
  router6?: Partial<Record<"tcp" | "udp", { packets: number; bytes: number }>>;
}

/** The VPS end of a path: where clients connect and the router's tunnel goes. */
export interface VpsArgs {
  connection: pulumi.Input<ConnectionArgs>;
  /** The VPS's public address: clients connect to it and the router dials it. */
  publicAddress: pulumi.Input<string>;
  /**
   * The address forwarded packets arrive for on the VPS itself, when that is not the public one:
   * behind a cloud's 1:1 NAT (EC2, GCP, Azure) the public address is on no interface and packets
   * arrive for the VPS's private address. Default: publicAddress.
   */
  localAddress?: pulumi.Input<string>;
  /**
   * The VPS's public IPv6 address (dual stack): the same forwards are published on it too, each to
   * its LAN host's IPv6 address (`to6`/`lanHost6`), through IPv6 addresses inside the tunnel. The
   * tunnel's own endpoint stays `publicAddress`. Needs `router.lanSubnet6`.
   */
  publicAddress6?: pulumi.Input<string>;
  /** Which tool writes natgate's rules on the VPS: `auto` (default: nftables where nft works, else iptables), `nftables`, `iptables`. */
  backend?: pulumi.Input<Backend>;
}

export interface PortForwardArgs {
  /**
   * The VPS, or several: each gets its own tunnel, return path and DNAT rules, and the same
   * `forwards` are published on every one (the second VPS's path takes slot + 1, and so on).
   */
  vps: VpsArgs | VpsArgs[];
  router: {
    connection: pulumi.Input<ConnectionArgs>;
    /** The router's LAN interface, e.g. OpenWrt's `br-lan`. */
    lanInterface: pulumi.Input<string>;
    /** The LAN's subnet, e.g. `192.168.1.0/24`. */
    lanSubnet: pulumi.Input<string>;
    /** The LAN's IPv6 prefix (dual stack), e.g. `fd00:1::/64` or the /64 your ISP delegates. */
    lanSubnet6?: pulumi.Input<string>;
    /** Which tool writes natgate's rules on the router: `auto` (default), `nftables`, `iptables` (OpenWrt 21.02 and older with fw3). */
    backend?: pulumi.Input<Backend>;
  };
  /** The LAN host that receives the forwards (each forward may name another with `to`). */
  lanHost?: pulumi.Input<string>;
  /** The LAN host's IPv6 address (dual stack: ULA or global, not link-local), for forwards without `to6`. */
  lanHost6?: pulumi.Input<string>;
  forwards: ForwardArgs[];
  /** Forwards to services running on the router itself. */
  routerForwards?: RouterForwardArgs[];
  /**
   * The WireGuard tunnel natgate creates (defaults from `slot`: slot 0 is `wg0`, VPS 10.10.10.1/24,
   * router 10.10.10.2/24, port 51820; keepalive 25 s). Leave out when `existingTunnel` is given.
   */
  tunnel?: {
    interfaceName?: pulumi.Input<string>;
    vpsAddress?: pulumi.Input<string>;
    routerAddress?: pulumi.Input<string>;
    /** Dual stack: the tunnel's IPv6 addresses with prefix (default from slot: fd00:4e47:0:<slot>::1/64 and ::2/64). */
    vpsAddress6?: pulumi.Input<string>;
    routerAddress6?: pulumi.Input<string>;
    listenPort?: pulumi.Input<number>;
    mtu?: pulumi.Input<number>;
    persistentKeepalive?: pulumi.Input<number>;
  };
  /** Use a tunnel that already exists (OpenVPN `tun0`, a wg-quick interface...) instead of creating one. */
  existingTunnel?: {
    /** The tunnel's interface name on the router. */
    interfaceName: pulumi.Input<string>;
    /**
     * The tunnel's interface on the VPS, if it has another name there. Checked like every interface
     * name, but nothing on the VPS depends on it: its rules DNAT to `routerAddress`, which the VPS
     * routes into the tunnel itself.
     */
    vpsInterfaceName?: pulumi.Input<string>;
    /** The VPS's address inside the tunnel (no prefix), e.g. `10.10.10.1`. */
    vpsAddress: pulumi.Input<string>;
    /** The router's address inside the tunnel (no prefix), e.g. `10.10.10.2`. */
    routerAddress: pulumi.Input<string>;
    /** Dual stack: the tunnel's IPv6 addresses (no prefix); needed with vps.publicAddress6. */
    vpsAddress6?: pulumi.Input<string>;
    routerAddress6?: pulumi.Input<string>;
  };
  /**
   * This path's slot on the router, 0-7. The slot picks the defaults two paths on one router must
   * not share: tunnel interface (`wg0`, `wg1`...), tunnel subnet (10.10.10.0/24, 10.10.11.0/24...),
   * listen port (51820, 51821...), mark (one bit of 0xFF000000 each), routing table (8764,
   * 8765...) and rule priorities (950/951, 952/953...). Default: the lowest slot free among the
   * PortForwards this program has built before this one on the same router, or on the same VPS when
   * the slot picks the tunnel's numbers there (a connection's host and port), so the first takes 0,
   * the next 1 (or the one after the first's VPSes); give it to keep a path's numbers when
   * components are added or reordered. Fields given in `tunnel` and `returnPath` still win.
   * natgate records on each host which resource holds each number, so a collision with another
   * stack's path is refused before anything is changed.
   */
  slot?: number;
  /** Mark, mask, routing table and rule priorities of the return path (defaults: from `slot`; they avoid mwan3 and pbr). */
  returnPath?: {
    mark?: pulumi.Input<number | string>;
    mask?: pulumi.Input<number | string>;
    table?: pulumi.Input<number>;
    priority?: pulumi.Input<number>;
    /** Priority of the rule for router-local services' replies (default priority + 1). */
    localSourcePriority?: pulumi.Input<number>;
  };
  /**
   * After everything is applied, prove the path: connect from the machine running Pulumi to this
   * forwarded TCP port on the VPS and confirm from both hosts' conntrack tables that the connection
   * arrived with the caller's public address and that its reply went back through the tunnel.
   * Failure names the hop that broke. Opt-in. A refusal from the LAN host proves the path too (the
   * reset came back through the tunnel); the report says whether the service answered.
   */
  verify?: { port: pulumi.Input<number> };
  /** Restore everything at boot on both hosts (default true); see each resource's `persist`. */
  persist?: pulumi.Input<boolean>;
}

/** Whether a value holds no Output or Promise anywhere (the program wrote it out). */
function isPlain(v: unknown): boolean {
  if (pulumi.Output.isInstance(v) || v instanceof Promise) return false;
  if (Array.isArray(v)) return v.every(isPlain);
  if (v !== null && typeof v === "object") return Object.values(v).every(isPlain);
  return true;
}

/** The addresses the component hands to its children, named as the user wrote them. */
function addressFields(args: PortForwardArgs, vpses: VpsArgs[]): NonNullable<ForwardLayout["addresses"]> {
  const at = (k: number) => (Array.isArray(args.vps) ? `vps[${k}]` : "vps");
  const t = args.tunnel;
  const e = args.existingTunnel;
  return [
    ...vpses.flatMap((v, k) => [
      { field: `${at(k)}.publicAddress`, value: v.publicAddress, as: "ipv4" as const },
      { field: `${at(k)}.localAddress`, value: v.localAddress, as: "ipv4" as const },
      { field: `${at(k)}.publicAddress6`, value: v.publicAddress6, as: "ipv6" as const },
    ]),
    { field: "tunnel.vpsAddress", value: t?.vpsAddress, as: "cidr4" },
    { field: "tunnel.routerAddress", value: t?.routerAddress, as: "cidr4" },
    { field: "tunnel.vpsAddress6", value: t?.vpsAddress6, as: "cidr6" },
    { field: "tunnel.routerAddress6", value: t?.routerAddress6, as: "cidr6" },
    { field: "existingTunnel.vpsAddress", value: e?.vpsAddress, as: "ipv4" },
    { field: "existingTunnel.routerAddress", value: e?.routerAddress, as: "ipv4Target" },
    { field: "existingTunnel.vpsAddress6", value: e?.vpsAddress6, as: "ipv6" },
    { field: "existingTunnel.routerAddress6", value: e?.routerAddress6, as: "ipv6Target" },
  ];
}

/** Contradictions visible in the component's own arguments, before any child exists. */
function argumentProblems(args: PortForwardArgs, vpses: VpsArgs[]): string[] {
  const out: string[] = [];
  if (args.tunnel && args.existingTunnel) out.push("give either tunnel (natgate creates it) or existingTunnel, not both");
  if (args.forwards.length === 0 && (args.routerForwards ?? []).length === 0) out.push("forwards and routerForwards are both empty: nothing to forward");
  if (vpses.length === 0) out.push("vps is an empty list: give at least one VPS");
  const slot = args.slot ?? 0;
  const bad = args.slot === undefined ? undefined : slotProblem(args.slot);
  if (bad) out.push(`slot ${bad}`);
  else if (slot + vpses.length > SLOTS) out.push(`slot ${slot} with ${vpses.length} VPSes needs slots up to ${slot + vpses.length - 1}; there are ${SLOTS} (0-${SLOTS - 1})`);
  if (vpses.length > 1) {
    // Every path after the first takes its numbers from its own slot; one value for all would collide.
    const shared = [
      ...(args.existingTunnel ? ["existingTunnel"] : []),
      ...(["interfaceName", "vpsAddress", "routerAddress", "vpsAddress6", "routerAddress6", "listenPort"] as const).filter((k) => args.tunnel?.[k] !== undefined).map((k) => `tunnel.${k}`),
      ...(["mark", "mask", "table", "priority", "localSourcePriority"] as const).filter((k) => args.returnPath?.[k] !== undefined).map((k) => `returnPath.${k}`),
    ];
    if (shared.length) out.push(`${shared.join(", ")}: with several VPSes each path takes these from its slot (slot, slot + 1...); remove them, or use one PortForward per VPS`);
  }
  return out;
}

/**
 * The whole setup of the seed: a tunnel from the router to the VPS, DNAT on both, the conntrack-mark
 * return path and its routing table on the router. Children are created in the order the data path
 * needs (tunnel → routing table → return path → router DNAT → VPS DNAT), so the VPS only starts
 * forwarding once the router can answer, and destroy tears down in reverse. With several VPSes,
 * each has such a path of its own, in slot, slot + 1...
 */
export class PortForward extends pulumi.ComponentResource {
  /** The first VPS's path (the only one unless `vps` is a list): its tunnel... */
  public readonly tunnel?: Tunnel;
  public readonly routeTable: PolicyRouteTable;
  public readonly returnPath: ConnmarkReturnPath;
  public readonly routerRules: DnatRule[];
  public readonly vpsRules: DnatRule[];
  /** Dual stack: the (first VPS's) IPv6 rules, and the router's IPv6 address inside the tunnel. */
  public readonly routerRules6: DnatRule[];
  public readonly vpsRules6: DnatRule[];
  public readonly routerTunnelAddress6?: pulumi.Output<string>;
  public readonly pathCheck?: PathCheck;
  /** Every VPS's path, in the order of `vps`. */
  public readonly paths: ForwardPath[];
  /** The router's address inside the (first VPS's) tunnel: what the VPS DNATs every public port to, unchanged. */
  public readonly routerTunnelAddress: pulumi.Output<string>;
  /**
   * Per forward (in the order of forwards, then routerForwards; with several VPSes, for each VPS in
   * turn): its ports and the packet and byte counts of its connections on the VPS and on the
   * router, per protocol, as of the last up or refresh.
   */
  public readonly counters: pulumi.Output<ForwardCounters[]>;

  constructor(name: string, args: PortForwardArgs, opts?: pulumi.ComponentResourceOptions) {
    super("natgate:index:PortForward", name, {}, opts);
    const vpses = Array.isArray(args.vps) ? args.vps : [args.vps];
    const problems = argumentProblems(args, vpses);
    if (problems.length) throw new Error(`PortForward ${name}: ${problems.join("; ")}`);
    const ipv6 = vpses.some((v) => v.publicAddress6 !== undefined);
    args.forwards.forEach((f, i) => {
      if ((f.to ?? args.lanHost) === undefined && (!ipv6 || (f.to6 ?? args.lanHost6) === undefined)) {
        throw new Error(`PortForward ${name}: forwards[${i}] has no "to" and the component has no lanHost` + (ipv6 ? ' (nor "to6" / lanHost6)' : ""));
      }
    });
    if (ipv6 && args.existingTunnel && (args.existingTunnel.vpsAddress6 === undefined || args.existingTunnel.routerAddress6 === undefined)) {
      throw new Error(`PortForward ${name}: vps.publicAddress6 with existingTunnel needs existingTunnel.vpsAddress6 and routerAddress6 (the tunnel's IPv6 addresses, which the IPv6 forwards go through)`);
    }
    const rp = args.returnPath ?? {};
    const layout = {
      lanSubnet: args.router.lanSubnet,
      lanHost: args.lanHost,
      ipv6,
      lanSubnet6: args.router.lanSubnet6,
      lanHost6: args.lanHost6,
      forwards: args.forwards,
      routerForwards: args.routerForwards ?? [],
      priority: rp.priority,
      localSourcePriority: rp.localSourcePriority,
      addresses: addressFields(args, vpses),
      interfaces: {
        "router.lanInterface": args.router.lanInterface,
        "tunnel.interfaceName": args.tunnel?.interfaceName,
        "existingTunnel.interfaceName": args.existingTunnel?.interfaceName,
        "existingTunnel.vpsInterfaceName": args.existingTunnel?.vpsInterfaceName,
      },
    };
    // Written out in the program (the usual case), the layout is judged now: the error is the
    // component's, naming its own fields, and no child is registered.
    const judge = (l: unknown) => {
      const found = forwardLayoutProblems(l as ForwardLayout);
      if (found.length) throw new Error(redact(`PortForward ${name}:\n  ${found.join("\n  ")}`));
      return true;
    };
    // Values from other resources are judged once known, before any child touches a host: every
    // child's connection waits for this check, so a bad layout stops the whole component at preview.
    const layoutOk = isPlain(layout) ? pulumi.output(judge(layout)) : pulumi.output(layout).apply(judge);
    const afterCheck = <T>(v: pulumi.Input<T>) => pulumi.all([layoutOk, v]).apply(([, x]) => x);
    const routerConn = afterCheck(args.router.connection);

    // The VPSes count when the slot picks numbers there (a tunnel natgate creates, its interface,
    // listen port or address not given): two routers behind one VPS then take different slots.
    // Given all three, as a stack from before slots had to, a router's own numbers stay slot 0's.
    const t = args.tunnel;
    const vpsSide = !args.existingTunnel && (t?.interfaceName === undefined || t.listenPort === undefined || t.vpsAddress === undefined);
    const slot = slotFor(name, [args.router.connection, ...(vpsSide ? vpses.map((v) => v.connection) : [])], args.slot, vpses.length);
    this.paths = vpses.map((vps, k) =>
      buildPath(this, k === 0 ? name : `${name}-vps${k}`, args, vps, slot + k, afterCheck(vps.connection), routerConn, vpses.length > 1),
    );
    const first = this.paths[0]!;
    this.tunnel = first.tunnel;
    this.routeTable = first.routeTable;
    this.returnPath = first.returnPath;
    this.routerRules = first.routerRules;
    this.vpsRules = first.vpsRules;
    this.routerRules6 = first.routerRules6;
    this.vpsRules6 = first.vpsRules6;
    this.routerTunnelAddress6 = first.routerTunnelAddress6;
    this.pathCheck = first.pathCheck;
    this.routerTunnelAddress = first.routerTunnelAddress;
    this.counters = pulumi.all(this.paths.map((p) => p.counters)).apply((lists) => lists.flat());
    this.registerOutputs({ routerTunnelAddress: this.routerTunnelAddress, counters: this.counters });
  }
}

