import * as pulumi from "@pulumi/pulumi";
import { HostResource, type FirewallResourceArgs } from "./hostResource";

export type Protocol = "tcp" | "udp" | "both";

/** Who may connect: enforced before DNAT, possible because the client's real address reaches the VPS. */
export interface Admission {
  /** Client addresses or networks (`["203.0.113.0/24", "198.51.100.7"]`); other sources are refused. Default: everyone. */
  allowFrom?: pulumi.Input<pulumi.Input<string>[]>;
  /** What sources outside allowFrom get: `drop` (default) or `reject` (TCP reset, ICMP port unreachable for UDP). */
  refuse?: pulumi.Input<"drop" | "reject">;
}

export interface DnatRuleArgs extends FirewallResourceArgs, Admission {
  /** `tcp`, `udp` or `both` (default `tcp`). */
  protocol?: pulumi.Input<Protocol>;
  /** Port or range matched: `2222` or `"5000-6000"`. */
  ports: pulumi.Input<number | string>;
  /** Match packets arriving on this interface (on the router: the tunnel). */
  inInterface?: pulumi.Input<string>;
  /** Match packets to this address (on the VPS: its public address). At least one of inInterface/destination. */
  destination?: pulumi.Input<string>;
  /** Address packets are sent to. The source is never rewritten: the target sees the client's address. */
  toAddress: pulumi.Input<string>;
  /** Target port or a range of the same size (default: keep the port), e.g. 2222 → 22. */
  toPorts?: pulumi.Input<number | string>;
  /** Clamp forwarded TCP SYNs' MSS to the route MTU (default true; tunnels have MTU < 1500). */
  clampMss?: pulumi.Input<boolean>;
}

/**
 * One DNAT mapping on one host, with the forward accept it needs (also where another firewall's
 * FORWARD policy would drop it) and `net.ipv4.ip_forward` on. No SNAT.
 */
export class DnatRule extends HostResource {
  /** Sysctl values found before natgate changed them (restored when the last user is deleted). */
  declare public readonly sysctlPrevious: pulumi.Output<Record<string, string>>;
  /** Accepts natgate placed in other firewalls' dropping forward chains (ufw/Docker FORWARD, fw4, firewalld). */
  declare public readonly forwardAccept: pulumi.Output<string[]>;
  /** The backend that wrote the rule's own objects: `nftables` or `iptables`. */
  declare public readonly activeBackend: pulumi.Output<string>;
  /**
   * Packets and bytes of the forward's connections per protocol, both directions as they pass the
   * host (a target on the host itself: inbound only), as read by the last `up` or `refresh`; with
   * allowFrom, `refused` counts the packets of other sources that were dropped or rejected.
   */
  declare public readonly counters: pulumi.Output<Partial<Record<"tcp" | "udp" | "refused", { packets: number; bytes: number }>>>;

  constructor(name: string, args: DnatRuleArgs, opts?: pulumi.CustomResourceOptions) {
    super("DnatRule", name, args, ["sysctlPrevious", "forwardAccept", "activeBackend", "counters"], opts);
  }
}
