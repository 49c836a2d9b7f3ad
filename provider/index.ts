/**
 * What the dynamic-provider process loads: `require("natgate/provider").providers[kind]` (see
 * sdk/dynamic.ts). One pulumi.dynamic.ResourceProvider per resource kind.
 */
import type * as pulumi from "@pulumi/pulumi";
import { connmarkReturnPathProvider } from "./resources/connmark";
import { dnatRuleProvider } from "./resources/dnat";
import { policyRouteTableProvider } from "./resources/routetable";
import { tunnelProvider } from "./resources/tunnel";
import { pathCheckProvider } from "./verify";

export const providers: Record<string, pulumi.dynamic.ResourceProvider> = {
  DnatRule: dnatRuleProvider,
  ConnmarkReturnPath: connmarkReturnPathProvider,
  PolicyRouteTable: policyRouteTableProvider,
  Tunnel: tunnelProvider,
  PathCheck: pathCheckProvider,
};
