import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "./connection";
import { Tunnel } from "./tunnel";
import { DnatRule, type Protocol } from "./dnatRule";
import { ConnmarkReturnPath } from "./connmarkReturnPath";
import { PolicyRouteTable } from "./policyRouteTable";
import { PathCheck } from "./pathCheck";
import { slotDefaults } from "../provider/plan/slots";
import type { ForwardCounters, PortForward, PortForwardArgs, VpsArgs } from "./portForward";

/** One VPS's path through the router: what a PortForward creates for each of its VPSes. */
export interface ForwardPath {
  slot: number;
  tunnel?: Tunnel;
  routeTable: PolicyRouteTable;
  returnPath: ConnmarkReturnPath;
  /** IPv4 rules, of the forwards with an IPv4 target, then the router forwards. */
  routerRules: DnatRule[];
  vpsRules: DnatRule[];
  /** IPv6 rules (dual stack), of the forwards with an IPv6 target, then the router forwards. */
  routerRules6: DnatRule[];
  vpsRules6: DnatRule[];
  pathCheck?: PathCheck;
  routerTunnelAddress: pulumi.Output<string>;
  routerTunnelAddress6?: pulumi.Output<string>;
  counters: pulumi.Output<ForwardCounters[]>;
}

const withoutPrefix = (cidr: pulumi.Input<string>) => pulumi.output(cidr).apply((c) => c.split("/")[0]!);

interface PublicPort {
  protocol?: pulumi.Input<Protocol>;
  ports: pulumi.Input<number | string>;
  toPorts?: pulumi.Input<number | string>;
  allowFrom?: pulumi.Input<pulumi.Input<string>[]>;
  refuse?: pulumi.Input<"drop" | "reject">;
}

/** One family's sources of an allow-list (the other family's rule gets the others); none given stays none. */
function sourcesOf(list: PublicPort["allowFrom"], six: boolean): pulumi.Output<string[]> | undefined {
  if (list === undefined) return undefined;
  return pulumi.output(list).apply((l) => l.filter((a) => a.includes(":") === six));
}

/** One VPS's path: children named `<prefix>-tunnel`, `<prefix>-routes`..., numbers from `slot` where not given. */
export function buildPath(
  parent: PortForward,
  prefix: string,
  args: PortForwardArgs,
  vps: VpsArgs,
  slot: number,
  vpsConn: pulumi.Output<ConnectionArgs>,
  routerConn: pulumi.Output<ConnectionArgs>,
  several: boolean,
): ForwardPath {
  const child = { parent };
  const d = slotDefaults(slot);
  const rp = args.returnPath ?? {};
  // Dual stack on this path: the VPS has a public IPv6 address to publish the forwards on.
  const v6 = vps.publicAddress6 !== undefined;
  // Slot 0 leaves these unset, so a stack from before slots keeps the inputs it had (the provider's
  // defaults are slot 0's numbers).
  const fromSlot = <T>(given: pulumi.Input<T> | undefined, derived: T): pulumi.Input<T> | undefined => given ?? (slot === 0 ? undefined : derived);

  let routerIf: pulumi.Input<string>;
  let vpsTunnelIp: pulumi.Output<string>;
  let routerTunnelIp: pulumi.Output<string>;
  let vpsTunnelIp6: pulumi.Output<string> | undefined;
  let routerTunnelIp6: pulumi.Output<string> | undefined;
  let tunnel: Tunnel | undefined;
  if (args.existingTunnel) {
    const t = args.existingTunnel;
    routerIf = t.interfaceName;
    vpsTunnelIp = pulumi.output(t.vpsAddress);
    routerTunnelIp = pulumi.output(t.routerAddress);
    if (v6) {
      vpsTunnelIp6 = pulumi.output(t.vpsAddress6!);
      routerTunnelIp6 = pulumi.output(t.routerAddress6!);
    }
  } else {
    const t = args.tunnel ?? {};
    const vpsAddress = t.vpsAddress ?? d.vpsAddress;
    const routerAddress = t.routerAddress ?? d.routerAddress;
    const vpsAddress6 = t.vpsAddress6 ?? d.vpsAddress6;
    const routerAddress6 = t.routerAddress6 ?? d.routerAddress6;
    tunnel = new Tunnel(`${prefix}-tunnel`, {
      interfaceName: t.interfaceName ?? d.interfaceName,
      mtu: t.mtu,
      listenPort: fromSlot(t.listenPort, d.listenPort),
      persistentKeepalive: t.persistentKeepalive,
      persist: args.persist,
      listener: { connection: vpsConn, address: vpsAddress, endpoint: vps.publicAddress, ...(v6 ? { address6: vpsAddress6 } : {}) },
      dialer: { connection: routerConn, address: routerAddress, ...(v6 ? { address6: routerAddress6 } : {}) },
    }, child);
    routerIf = tunnel.interfaceName;
    vpsTunnelIp = withoutPrefix(vpsAddress);
    routerTunnelIp = withoutPrefix(routerAddress);
    if (v6) {
      vpsTunnelIp6 = withoutPrefix(vpsAddress6);
      routerTunnelIp6 = withoutPrefix(routerAddress6);
    }
  }

  const table = fromSlot(rp.table, d.table);
  const mark = fromSlot<number | string>(rp.mark, d.mark);
  const priority = fromSlot(rp.priority, d.priority);
  const routeTable = new PolicyRouteTable(`${prefix}-routes`, {
    connection: routerConn,
    table,
    persist: args.persist,
    routes: [
      { to: "default", via: vpsTunnelIp, dev: routerIf },
      { to: args.router.lanSubnet, dev: args.router.lanInterface },
      ...(v6 ? [{ to: "::/0", via: vpsTunnelIp6!, dev: routerIf }, { to: args.router.lanSubnet6!, dev: args.router.lanInterface }] : []),
    ],
  }, { ...child, dependsOn: tunnel ? [tunnel] : [] });

  const hasRouterLocal = (args.routerForwards ?? []).length > 0;
  const returnPath = new ConnmarkReturnPath(`${prefix}-return`, {
    connection: routerConn,
    tunnelInterface: routerIf,
    table,
    mark,
    mask: rp.mask,
    priority,
    localSourcePriority: rp.localSourcePriority,
    // Router-local services answer from the tunnel address; those replies never pass PREROUTING.
    localSource: hasRouterLocal ? routerTunnelIp : undefined,
    ...(v6 ? { ipv6: true, localSource6: hasRouterLocal ? routerTunnelIp6 : undefined } : {}),
    persist: args.persist,
    backend: args.router.backend,
  }, { ...child, dependsOn: [routeTable] });

  // The VPS forwards every public port unchanged; the router does all remapping, also for its
  // own services (2222 → its sshd on 22): a DNAT to one of its own addresses is what puts the
  // accept where an INPUT policy of drop (ufw, fw4's input REJECT) would stop it.
  const routerDnat = (ruleName: string, f: PublicPort, destination: pulumi.Input<string>, to: pulumi.Input<string>) =>
    new DnatRule(ruleName, {
      connection: routerConn,
      inInterface: routerIf,
      destination,
      protocol: f.protocol,
      ports: f.ports,
      toAddress: to,
      toPorts: f.toPorts,
      persist: args.persist,
      backend: args.router.backend,
    }, { ...child, dependsOn: [returnPath] });
  const vpsDnat = (ruleName: string, f: PublicPort, destination: pulumi.Input<string>, to: pulumi.Input<string>, six: boolean, after: DnatRule[]) =>
    new DnatRule(ruleName, {
      connection: vpsConn,
      destination,
      protocol: f.protocol,
      ports: f.ports,
      toAddress: to,
      // Each family's rule admits that family's sources (the component's check made sure both have some).
      allowFrom: sourcesOf(f.allowFrom, six),
      refuse: f.refuse,
      persist: args.persist,
      backend: vps.backend,
    }, { ...child, dependsOn: [returnPath, ...after] });

  // Every public port (forwards, then routerForwards: the router's tunnel address), with its
  // target per family. Names as before dual stack: router-<i> / router-local-<i>, vps-<k> over both lists.
  const targets = [
    ...args.forwards.map((f, i) => ({ f: f as PublicPort, router: `router-${i}`, to: f.to ?? args.lanHost, to6: f.to6 ?? args.lanHost6 })),
    ...(args.routerForwards ?? []).map((f, i) => ({ f: f as PublicPort, router: `router-local-${i}`, to: routerTunnelIp as pulumi.Input<string> | undefined, to6: routerTunnelIp6 as pulumi.Input<string> | undefined })),
  ];
  const router4 = targets.map((t) => (t.to === undefined ? undefined : routerDnat(`${prefix}-${t.router}`, t.f, routerTunnelIp, t.to)));
  const router6 = targets.map((t) => (!v6 || t.to6 === undefined ? undefined : routerDnat(`${prefix}-${t.router.replace("router", "router6")}`, t.f, routerTunnelIp6!, t.to6)));
  const routerRules = router4.flatMap((r) => (r ? [r] : []));
  const routerRules6 = router6.flatMap((r) => (r ? [r] : []));
  // The VPS starts forwarding once the router can answer.
  const allRouter = [...routerRules, ...routerRules6];
  const vps4 = targets.map((t, k) => (router4[k] ? vpsDnat(`${prefix}-vps-${k}`, t.f, vps.localAddress ?? vps.publicAddress, routerTunnelIp, false, allRouter) : undefined));
  const vps6 = targets.map((t, k) => (router6[k] ? vpsDnat(`${prefix}-vps6-${k}`, t.f, vps.publicAddress6!, routerTunnelIp6!, true, allRouter) : undefined));
  const vpsRules = vps4.flatMap((r) => (r ? [r] : []));
  const vpsRules6 = vps6.flatMap((r) => (r ? [r] : []));
  const counters = pulumi.all(
    targets.map((t, i) =>
      pulumi
        .all([t.f.protocol ?? "tcp", t.f.ports, vps.publicAddress, vps4[i]?.counters, router4[i]?.counters, vps6[i]?.counters, router6[i]?.counters])
        .apply(([protocol, ports, via, vpsCounts, routerCounts, v6Counts, r6Counts]) => ({
          forward: `${protocol} ${ports}`,
          ...(several ? { via } : {}),
          vps: vpsCounts ?? {},
          router: routerCounts ?? {},
          ...(vps6[i] ? { vps6: v6Counts ?? {}, router6: r6Counts ?? {} } : {}),
        })),
    ),
  );

  let pathCheck: PathCheck | undefined;
  if (args.verify) {
    const v = args.verify;
    pathCheck = new PathCheck(`${prefix}-check`, {
      vpsConnection: vpsConn,
      routerConnection: routerConn,
      publicAddress: vps.publicAddress,
      vpsAddress: vps.localAddress,
      port: v.port,
      routerTunnelAddress: routerTunnelIp,
      tunnelInterface: routerIf,
      mark,
      mask: rp.mask,
      routerLocal: pulumi.output(v.port).apply((p) =>
        (args.routerForwards ?? []).some((f) => f.ports === p || f.ports === String(p))),
    }, { ...child, dependsOn: [...vpsRules] });
  }
  return {
    slot,
    tunnel,
    routeTable,
    returnPath,
    routerRules,
    vpsRules,
    routerRules6,
    vpsRules6,
    pathCheck,
    routerTunnelAddress: routerTunnelIp,
    ...(routerTunnelIp6 ? { routerTunnelAddress6: routerTunnelIp6 } : {}),
    counters,
  };
}
