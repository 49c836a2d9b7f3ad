import * as pulumi from "@pulumi/pulumi";
import { HostResource, type FirewallResourceArgs } from "./hostResource";

export interface ConnmarkReturnPathArgs extends FirewallResourceArgs {
  /** The tunnel interface connections arrive on (e.g. `wg0`, `tun0`). */
  tunnelInterface: pulumi.Input<string>;
  /** Routing table marked replies are looked up in (default 8764, as {@link PolicyRouteTable}'s). */
  table?: pulumi.Input<number>;
  /**
   * Conntrack/packet mark (default 0x10000000, a bit in 0xFF000000, away from mwan3's 0x3F00 and pbr's 0x00FF0000).
   * Set and matched under `mask`, so other tools' bits survive.
   */
  mark?: pulumi.Input<number | string>;
  /** Mask the mark lives under (default: the mark's own bit). */
  mask?: pulumi.Input<number | string>;
  /** `ip rule` priority of the fwmark rule (default 950: before mwan3's 1001+, far from pbr's 29745-30001). */
  priority?: pulumi.Input<number>;
  /** Priority of the `from <localSource>` rule (default priority + 1). */
  localSourcePriority?: pulumi.Input<number>;
  /** Restore the mark on the router's own outgoing packets too (default true). */
  restoreInOutput?: pulumi.Input<boolean>;
  /** Set rp_filter=2 (loose) on the tunnel interface, restored on delete (default true). */
  looseRpFilter?: pulumi.Input<boolean>;
  /**
   * The router's own tunnel address: adds `ip rule from <address> lookup <table>` so replies of
   * services on the router itself (they never pass PREROUTING) go back through the tunnel.
   */
  localSource?: pulumi.Input<string>;
}

/**
 * The return path: marks connections that entered through the tunnel, restores the mark on their
 * packets (PREROUTING and OUTPUT), routes marked packets by `ip rule fwmark`, and sets loose
 * rp_filter on the tunnel (strict mode drops tunnel packets from internet sources).
 */
export class ConnmarkReturnPath extends HostResource {
  /** Sysctl values found before natgate changed them (restored on delete). */
  declare public readonly sysctlPrevious: pulumi.Output<Record<string, string>>;
  /** The backend that wrote the return path's own objects: `nftables` or `iptables`. */
  declare public readonly activeBackend: pulumi.Output<string>;

  constructor(name: string, args: ConnmarkReturnPathArgs, opts?: pulumi.CustomResourceOptions) {
    super("ConnmarkReturnPath", name, args, ["sysctlPrevious", "activeBackend"], opts);
  }
}
