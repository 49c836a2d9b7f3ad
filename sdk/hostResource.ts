import * as pulumi from "@pulumi/pulumi";
import { providerFor } from "./dynamic";
import { ConnectionArgs, secretConnection } from "./connection";
import { hostSideName } from "./names";

/** Inputs every single-host natgate resource takes. */
export interface HostResourceArgs {
  /** SSH connection to the host. */
  connection: pulumi.Input<ConnectionArgs>;
  /**
   * Host-side name: part of the nft table and comments the resource owns (a-z, 0-9, _; at most
   * 32). Default: derived from the Pulumi resource name.
   */
  name?: pulumi.Input<string>;
  /**
   * Restore this resource at boot (default true): an entry in `/etc/natgate/boot.d/` on the host,
   * run by `/etc/natgate/boot.sh`, which the host's init system starts (systemd or OpenWrt's procd;
   * see `boot`). false: nothing is written, and a reboot loses the state until the next `pulumi up`.
   */
  persist?: pulumi.Input<boolean>;
}

/** Which tool writes a resource's packet-filter rules on its host. */
export type Backend = "auto" | "nftables" | "iptables";

/** Inputs of the resources that write packet-filter rules (DnatRule, ConnmarkReturnPath). */
export interface FirewallResourceArgs extends HostResourceArgs {
  /**
   * `auto` (default): nftables where `nft` exists and works on the host, else iptables
   * (iptables-legacy or iptables-nft, through iptables-restore); the output `activeBackend` says
   * which. `nftables` / `iptables` insist on one and fail, before writing, where it is missing.
   */
  backend?: pulumi.Input<Backend>;
}

/**
 * A natgate resource acting on one host. Its provider is `providerFor(kind)`; the connection is a
 * secret in state; `outputs` names the provider's output-only properties, which Pulumi only
 * exposes when they are present (as undefined) among the properties handed to it.
 */
export abstract class HostResource extends pulumi.dynamic.Resource {
  /** The host-state lines this resource owns (nft, ip, sysctl), as `pulumi preview --diff` shows them; after a refresh, the live ones. */
  declare public readonly rendered: pulumi.Output<string[]>;
  /**
   * Differences between the host and the inputs found by the last read (empty = in sync); when
   * there are some, the last line says what ran on the host since natgate applied, where that left
   * a trace ("probably by: nftables.service stopped, 40 s ago").
   */
  declare public readonly drift: pulumi.Output<string[]>;
  /** When natgate last made the host match (the clock of the machine that ran `pulumi up`). */
  declare public readonly appliedAt: pulumi.Output<string>;
  /** The host key seen on first use (a later connection that sees another key is refused). */
  declare public readonly hostKeyFingerprint: pulumi.Output<string>;
  /**
   * The jump host's key (`connection.proxy`) seen on first use, kept the same way while the jump
   * host's host:port stays the same; undefined without a jump host.
   */
  declare public readonly proxyHostKeyFingerprint: pulumi.Output<string | undefined>;
  declare public readonly name: pulumi.Output<string>;
  /** What restores it at boot: the host's init system (`systemd`, `procd`, `none`: run /etc/natgate/boot.sh yourself), or `off`. */
  declare public readonly boot: pulumi.Output<string>;
  /** `boot` in a sentence, saying what to do when no init system was found. */
  declare public readonly bootNote: pulumi.Output<string>;

  protected constructor(
    kind: string,
    name: string,
    args: HostResourceArgs,
    outputs: string[],
    opts?: pulumi.CustomResourceOptions,
  ) {
    const props: pulumi.Inputs = {
      ...args,
      name: args.name ?? hostSideName(name),
      connection: secretConnection(args.connection),
      rendered: undefined,
      drift: undefined,
      appliedAt: undefined,
      hostKeyFingerprint: undefined,
      proxyHostKeyFingerprint: undefined,
      boot: undefined,
      bootNote: undefined,
    };
    for (const o of outputs) props[o] = undefined;
    super(providerFor(kind), name, props, opts);
  }
}
