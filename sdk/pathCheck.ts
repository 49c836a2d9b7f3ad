import * as pulumi from "@pulumi/pulumi";
import { providerFor } from "./dynamic";
import { ConnectionArgs, secretConnection } from "./connection";

export interface PathCheckArgs {
  /** SSH connection to the VPS (its conntrack table shows the probe arriving and being DNATed). */
  vpsConnection: pulumi.Input<ConnectionArgs>;
  /** SSH connection to the router (its conntrack table shows the probe leaving the tunnel). */
  routerConnection: pulumi.Input<ConnectionArgs>;
  /** The VPS's public address; the probe connects to it from the machine running Pulumi. */
  publicAddress: pulumi.Input<string>;
  /** The VPS's own address when a cloud NATs publicAddress to it 1:1 (what its conntrack sees). */
  vpsAddress?: pulumi.Input<string>;
  /** A forwarded TCP port with a service behind it (a refusing service also proves the path). */
  port: pulumi.Input<number>;
  /** The router's address inside the tunnel, without prefix (what the VPS DNATs to), e.g. `10.10.10.2`. */
  routerTunnelAddress: pulumi.Input<string>;
  /** The tunnel interface on the router, e.g. `wg0`; its state is reported when the tunnel hop fails. */
  tunnelInterface: pulumi.Input<string>;
  /** The return path's conntrack mark; when given, the router's entry must carry it (under `mask`). */
  mark?: pulumi.Input<number | string>;
  /** The bits of the mark to compare (default: the bits of `mark`). */
  mask?: pulumi.Input<number | string>;
  /** The port forwards to a service on the router itself (e.g. 2222 → its sshd), so the router does not DNAT it. */
  routerLocal?: pulumi.Input<boolean>;
  /** How long the probe waits to be connected or refused (default 5 s). */
  timeoutSeconds?: pulumi.Input<number>;
}

// The report's shapes are the provider's own (a type-only import: nothing of the provider is loaded here).
export type { Hop as PathCheckHop, ReportEntry as PathCheckEntry } from "../provider/verify/report";
import type { Hop as PathCheckHop, ReportEntry as PathCheckEntry } from "../provider/verify/report";

/**
 * Proof that a forwarded port works end to end, run on `up` (create, or update when an input
 * changes): this process opens a TCP connection to `publicAddress:port` while both hosts watch
 * their conntrack events, then checks hop by hop that the VPS DNATed it to the router's tunnel
 * address with the caller's own public address as source, that it came out of the tunnel on the
 * router, that the router DNATed it to the LAN host, and that the reply went back through the
 * tunnel. A broken hop fails the deployment with a message naming it and what to look at.
 * Nothing is left on the hosts; refresh does not re-probe. Like the other resources, it trusts
 * each host's key on first use and refuses a changed one on a later run.
 */
export class PathCheck extends pulumi.dynamic.Resource {
  /** The caller's public address as the VPS saw it (the address the LAN service sees). */
  declare public readonly callerAddress: pulumi.Output<string>;
  /** Each hop in path order: VPS DNAT, tunnel, router DNAT, return path. */
  declare public readonly hops: pulumi.Output<PathCheckHop[]>;
  /** The probe's connection on the VPS. */
  declare public readonly vpsEntry: pulumi.Output<PathCheckEntry | undefined>;
  /** The same connection on the router. */
  declare public readonly routerEntry: pulumi.Output<PathCheckEntry | undefined>;
  /** How the probe ended: connected, refused, timeout... and after how many milliseconds. */
  declare public readonly probe: pulumi.Output<{ outcome: string; ms: number; errorCode?: string }>;
  /**
   * Host-key fingerprints seen on first use, of the VPS and the router (and of each one's jump host,
   * when its connection has a `proxy`): the next run refuses a changed key.
   */
  declare public readonly vpsFingerprint: pulumi.Output<string>;
  declare public readonly routerFingerprint: pulumi.Output<string>;
  declare public readonly vpsProxyFingerprint: pulumi.Output<string | undefined>;
  declare public readonly routerProxyFingerprint: pulumi.Output<string | undefined>;

  constructor(name: string, args: PathCheckArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      providerFor("PathCheck"),
      name,
      {
        ...args,
        vpsConnection: secretConnection(args.vpsConnection),
        routerConnection: secretConnection(args.routerConnection),
        callerAddress: undefined,
        hops: undefined,
        vpsEntry: undefined,
        routerEntry: undefined,
        probe: undefined,
        vpsFingerprint: undefined,
        routerFingerprint: undefined,
        vpsProxyFingerprint: undefined,
        routerProxyFingerprint: undefined,
      },
      opts,
    );
  }
}
