import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "./connection";
import { Tunnel } from "./tunnel";
import { DnatRule, Protocol } from "./dnatRule";
import { ConnmarkReturnPath } from "./connmarkReturnPath";
import { PolicyRouteTable } from "./policyRouteTable";
import { PathCheck } from "./pathCheck";
import { forwardLayoutProblems, type ForwardLayout } from "./forwardChecks";
import type { Backend } from "./hostResource";

/** One public port (or range) on the VPS forwarded to a LAN host. */
export interface ForwardArgs {
  /** `tcp`, `udp` or `both` (default `tcp`). */
  protocol?: pulumi.Input<Protocol>;
  /** Public port or range on the VPS: `443`, `"5000-6000"`. */
  ports: pulumi.Input<number | string>;
  /** LAN host for this forward (default: the component's `lanHost`). */
  to?: pulumi.Input<string>;
  /** Port or equally sized range on the LAN host (default: the same as `ports`). */
  toPorts?: pulumi.Input<number | string>;
}

/** A public VPS port forwarded to a service on the router itself (e.g. 2222 → the router's sshd on 22). */
export interface RouterForwardArgs {
  protocol?: pulumi.Input<Protocol>;
  ports: pulumi.Input<number | string>;
  toPorts?: pulumi.Input<number | string>;
}

/** The traffic one forward carried, per host and protocol. */
export interface ForwardCounters {
  /** `<protocol> <ports>` as written in the forward. */
  forward: string;
  vps: Partial<Record<"tcp" | "udp", { packets: number; bytes: number }>>;
  router: Partial<Record<"tcp" | "udp", { packets: number; bytes: number }>>;
}

export interface PortForwardArgs {
  vps: {
    connection: pulumi.Input<ConnectionArgs>;
    /** The VPS's public address: clients connect to it and the router dials it. */
    publicAddress: pulumi.Input<string>;
    /**
     * The address forwarded packets arrive for on the VPS itself, when that is not the public one:
     * behind a cloud's 1:1 NAT (EC2, GCP, Azure) the public address is on no interface and packets
     * arrive for the VPS's private address. Default: publicAddress.
     */
    localAddress?: pulumi.Input<string>;
    /** Which tool writes natgate's rules on the VPS: `auto` (default: nftables where nft works, else iptables), `nftables`, `iptables`. */
    backend?: pulumi.Input<Backend>;
  };
  router: {
    connection: pulumi.Input<ConnectionArgs>;
    /** The router's LAN interface, e.g. OpenWrt's `br-lan`. */
    lanInterface: pulumi.Input<string>;
    /** The LAN's subnet, e.g. `192.168.1.0/24`. */
    lanSubnet: pulumi.Input<string>;
    /** Which tool writes natgate's rules on the router: `auto` (default), `nftables`, `iptables` (OpenWrt 21.02 and older with fw3). */
    backend?: pulumi.Input<Backend>;
  };
  /** The LAN host that receives the forwards (each forward may name another with `to`). */
  lanHost?: pulumi.Input<string>;
  forwards: ForwardArgs[];
  /** Forwards to services running on the router itself. */
  routerForwards?: RouterForwardArgs[];
  /**
   * The WireGuard tunnel natgate creates (default `wg0`, VPS 10.10.10.1/24, router 10.10.10.2/24,
   * port 51820, keepalive 25 s). Leave out when `existingTunnel` is given.
   */
  tunnel?: {
    interfaceName?: pulumi.Input<string>;
    vpsAddress?: pulumi.Input<string>;
    routerAddress?: pulumi.Input<string>;
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
  };
  /** Mark, mask, routing table and rule priorities of the return path (defaults avoid mwan3 and pbr). */
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

const DEFAULT_TUNNEL = { interfaceName: "wg0", vpsAddress: "10.10.10.1/24", routerAddress: "10.10.10.2/24" };

const withoutPrefix = (cidr: pulumi.Input<string>) => pulumi.output(cidr).apply((c) => c.split("/")[0]);

/**
 * The whole setup of the seed: a tunnel from the router to the VPS, DNAT on both, the conntrack-mark
 * return path and its routing table on the router. Children are created in the order the data path
 * needs (tunnel → routing table → return path → router DNAT → VPS DNAT), so the VPS only starts
 * forwarding once the router can answer, and destroy tears down in reverse.
 */
export class PortForward extends pulumi.ComponentResource {
  public readonly tunnel?: Tunnel;
  public readonly routeTable: PolicyRouteTable;
  public readonly returnPath: ConnmarkReturnPath;
  public readonly routerRules: DnatRule[];
  public readonly vpsRules: DnatRule[];
  public readonly pathCheck?: PathCheck;
  /** The router's address inside the tunnel (what the VPS DNATs every public port to, unchanged). */
  public readonly routerTunnelAddress: pulumi.Output<string>;
  /**
   * Per forward (in the order of forwards, then routerForwards): its ports and the packet and byte
   * counts of its connections on the VPS and on the router, per protocol, as of the last up or refresh.
   */
  public readonly counters: pulumi.Output<ForwardCounters[]>;

  constructor(name: string, args: PortForwardArgs, opts?: pulumi.ComponentResourceOptions) {
    super("natgate:index:PortForward", name, {}, opts);
    if (args.tunnel && args.existingTunnel) {
      throw new Error(`PortForward ${name}: give either tunnel (natgate creates it) or existingTunnel, not both`);
    }
    if (args.forwards.length === 0 && (args.routerForwards ?? []).length === 0) {
      throw new Error(`PortForward ${name}: forwards and routerForwards are both empty: nothing to forward`);
    }
    const child = { parent: this };
    const rp = args.returnPath ?? {};
    // Contradictions between fields fail before any child touches a host: every child's
    // connection waits for this check, so a bad layout stops the whole component at preview.
    const layoutOk = pulumi
      .output({
        lanSubnet: args.router.lanSubnet,
        lanHost: args.lanHost,
        forwards: args.forwards,
        routerForwards: args.routerForwards ?? [],
        priority: rp.priority,
        localSourcePriority: rp.localSourcePriority,
      })
      .apply((layout) => {
        const problems = forwardLayoutProblems(layout as ForwardLayout);
        if (problems.length) throw new Error(`PortForward ${name}:\n  ${problems.join("\n  ")}`);
        return true;
      });
    const afterCheck = <T>(v: pulumi.Input<T>) => pulumi.all([layoutOk, v]).apply(([, x]) => x);
    const vpsConn = afterCheck(args.vps.connection);
    const routerConn = afterCheck(args.router.connection);

    let routerIf: pulumi.Input<string>;
    let vpsTunnelIp: pulumi.Output<string>;
    let routerTunnelIp: pulumi.Output<string>;
    let pathStart: pulumi.Resource[] = [];
    if (args.existingTunnel) {
      const t = args.existingTunnel;
      routerIf = t.interfaceName;
      vpsTunnelIp = pulumi.output(t.vpsAddress);
      routerTunnelIp = pulumi.output(t.routerAddress);
    } else {
      const t = { ...DEFAULT_TUNNEL, ...args.tunnel };
      this.tunnel = new Tunnel(`${name}-tunnel`, {
        interfaceName: t.interfaceName,
        mtu: t.mtu,
        listenPort: t.listenPort,
        persistentKeepalive: t.persistentKeepalive,
        persist: args.persist,
        listener: { connection: vpsConn, address: t.vpsAddress, endpoint: args.vps.publicAddress },
        dialer: { connection: routerConn, address: t.routerAddress },
      }, child);
      routerIf = this.tunnel.interfaceName;
      vpsTunnelIp = withoutPrefix(t.vpsAddress);
      routerTunnelIp = withoutPrefix(t.routerAddress);
      pathStart = [this.tunnel];
    }
    this.routerTunnelAddress = routerTunnelIp;

    // Unset, both resources fall back to the same provider default (8764).
    const table = rp.table;
    this.routeTable = new PolicyRouteTable(`${name}-routes`, {
      connection: routerConn,
      table,
      persist: args.persist,
      routes: [
        { to: "default", via: vpsTunnelIp, dev: routerIf },
        { to: args.router.lanSubnet, dev: args.router.lanInterface },
      ],
    }, { ...child, dependsOn: pathStart });

    const hasRouterLocal = (args.routerForwards ?? []).length > 0;
    this.returnPath = new ConnmarkReturnPath(`${name}-return`, {
      connection: routerConn,
      tunnelInterface: routerIf,
      table,
      mark: rp.mark,
      mask: rp.mask,
      priority: rp.priority,
      localSourcePriority: rp.localSourcePriority,
      // Router-local services answer from the tunnel address; those replies never pass PREROUTING.
      localSource: hasRouterLocal ? routerTunnelIp : undefined,
      persist: args.persist,
      backend: args.router.backend,
    }, { ...child, dependsOn: [this.routeTable] });

    // The VPS forwards every public port unchanged; the router does all remapping, also for its
    // own services (2222 → its sshd on 22): a DNAT to one of its own addresses is what puts the
    // accept where an INPUT policy of drop (ufw, fw4's input REJECT) would stop it.
    const routerDnat = (ruleName: string, f: { protocol?: pulumi.Input<Protocol>; ports: pulumi.Input<number | string>; toPorts?: pulumi.Input<number | string> }, to: pulumi.Input<string>) =>
      new DnatRule(ruleName, {
        connection: routerConn,
        inInterface: routerIf,
        destination: routerTunnelIp,
        protocol: f.protocol,
        ports: f.ports,
        toAddress: to,
        toPorts: f.toPorts,
        persist: args.persist,
        backend: args.router.backend,
      }, { ...child, dependsOn: [this.returnPath] });
    this.routerRules = [
      ...args.forwards.map((f, i) => {
        const to = f.to ?? args.lanHost;
        if (to === undefined) throw new Error(`PortForward ${name}: forwards[${i}] has no "to" and the component has no lanHost`);
        return routerDnat(`${name}-router-${i}`, f, to);
      }),
      ...(args.routerForwards ?? []).map((f, i) => routerDnat(`${name}-router-local-${i}`, f, routerTunnelIp)),
    ];

    const publicPorts = [...args.forwards, ...(args.routerForwards ?? [])];
    this.vpsRules = publicPorts.map((f, i) =>
      new DnatRule(`${name}-vps-${i}`, {
        connection: vpsConn,
        destination: args.vps.localAddress ?? args.vps.publicAddress,
        protocol: f.protocol,
        ports: f.ports,
        toAddress: routerTunnelIp,
        persist: args.persist,
        backend: args.vps.backend,
      }, { ...child, dependsOn: [this.returnPath, ...this.routerRules] }),
    );
    this.counters = pulumi.all(
      publicPorts.map((f, i) =>
        pulumi.all([f.protocol ?? "tcp", f.ports, this.vpsRules[i]!.counters, this.routerRules[i]!.counters]).apply(([protocol, ports, vps, router]) => ({
          forward: `${protocol} ${ports}`,
          vps: vps ?? {},
          router: router ?? {},
        })),
      ),
    );

    if (args.verify) {
      this.pathCheck = new PathCheck(`${name}-check`, {
        vpsConnection: vpsConn,
        routerConnection: routerConn,
        publicAddress: args.vps.publicAddress,
        vpsAddress: args.vps.localAddress,
        port: args.verify.port,
        routerTunnelAddress: routerTunnelIp,
        tunnelInterface: routerIf,
        mark: rp.mark,
        mask: rp.mask,
        routerLocal: pulumi.output(args.verify.port).apply((p) =>
          (args.routerForwards ?? []).some((f) => f.ports === p || f.ports === String(p))),
      }, { ...child, dependsOn: [...this.vpsRules] });
    }

    this.registerOutputs({ routerTunnelAddress: this.routerTunnelAddress, counters: this.counters });
  }
}
