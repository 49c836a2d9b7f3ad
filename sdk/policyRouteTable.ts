import * as pulumi from "@pulumi/pulumi";
import { HostResource, HostResourceArgs } from "./hostResource";

export interface RouteArgs {
  /** `default` or a network in CIDR form, e.g. `192.168.1.0/24`. */
  to: pulumi.Input<string>;
  /** Gateway address (e.g. the VPS's tunnel address); omit for an on-link route. */
  via?: pulumi.Input<string>;
  /** Outgoing interface. At least one of via/dev. */
  dev?: pulumi.Input<string>;
  /** Preferred source address. */
  src?: pulumi.Input<string>;
  /** Route metric (two routes to one destination need different metrics). */
  metric?: pulumi.Input<number>;
  /** Treat the gateway as on-link even without a connected route to it. */
  onlink?: pulumi.Input<boolean>;
}

export interface PolicyRouteTableArgs extends HostResourceArgs {
  /** Routing table id (default 8764): above 255, not in /etc/iproute2/rt_tables, used by no other tool. */
  table?: pulumi.Input<number>;
  /** Every route of the table; natgate owns the table whole. */
  routes: pulumi.Input<pulumi.Input<RouteArgs>[]>;
}

/** One routing table and its routes, owned whole: apply replaces them, delete flushes the table. */
export class PolicyRouteTable extends HostResource {
  declare public readonly table: pulumi.Output<number>;

  constructor(name: string, args: PolicyRouteTableArgs, opts?: pulumi.CustomResourceOptions) {
    super("PolicyRouteTable", name, args, [], opts);
  }
}
