import * as pulumi from "@pulumi/pulumi";
import { providerFor } from "./dynamic";
import { ConnectionArgs, secretConnection } from "./connection";
import { hostSideName } from "./names";

/** One side of a {@link Tunnel}. */
export interface TunnelSideArgs {
  /** SSH connection to this side's host. */
  connection: pulumi.Input<ConnectionArgs>;
  /** This side's tunnel address with the tunnel's prefix, e.g. `10.10.10.1/24`. Both sides share the subnet. */
  address: pulumi.Input<string>;
  /**
   * Dual stack: this side's IPv6 tunnel address besides the IPv4 `address`, with the tunnel's IPv6
   * prefix, e.g. `fd00:4e47::1/64`. Give it on both sides (same prefix, two different addresses)
   * or on neither; not link-local or multicast. The tunnel then carries IPv4 and IPv6 at once,
   * whatever family its endpoint is (`address` must then be the IPv4 one).
   */
  address6?: pulumi.Input<string>;
  /** Interface name on this side, when it differs from the Tunnel's `interfaceName`. */
  interfaceName?: pulumi.Input<string>;
}

export interface TunnelArgs {
  /**
   * Host-side name: who holds the interface in natgate's claims on both hosts, so a second Tunnel
   * on the same interface is refused instead of taking it over (a-z, 0-9, _; default: derived
   * from the Pulumi name).
   */
  name?: pulumi.Input<string>;
  /** WireGuard interface name on both hosts (default `wg0`; at most 15 characters). */
  interfaceName?: pulumi.Input<string>;
  /** Interface MTU (default 1420: 1500 less WireGuard's worst-case overhead). */
  mtu?: pulumi.Input<number>;
  /** UDP port the listener waits on (default 51820). */
  listenPort?: pulumi.Input<number>;
  /** Seconds between the dialer's keepalives (default 25; keeps NAT mappings from expiring; 0 = off). */
  persistentKeepalive?: pulumi.Input<number>;
  /**
   * Restore both sides at boot (default true): an entry in `/etc/natgate/boot.d/` on each host, run
   * by its init system (see `listenerBoot`/`dialerBoot`). The private keys stay in their files.
   */
  persist?: pulumi.Input<boolean>;
  /** The side with a public endpoint (the VPS). */
  listener: pulumi.Input<TunnelSideArgs & {
    /** Host or address the dialer dials (default: the listener connection's host). */
    endpoint?: pulumi.Input<string>;
    /** Sources the listener accepts from the dialer besides the dialer's tunnel address(es: its `address6` too, as a /128). */
    allowedIps?: pulumi.Input<pulumi.Input<string>[]>;
  }>;
  /** The side behind NAT (the router): it dials the listener and keeps the mapping alive. */
  dialer: pulumi.Input<TunnelSideArgs & {
    /**
     * Sources the dialer accepts from the listener (default `0.0.0.0/0`, `::/0` for an IPv6 tunnel,
     * both when `address6` is given: forwarded packets keep their internet source, and replies to
     * them go back into the tunnel). No default route is added to the dialer's main table.
     */
    allowedIps?: pulumi.Input<pulumi.Input<string>[]>;
  }>;
}

/**
 * One point-to-point WireGuard link. Each host generates its own key pair (private keys never
 * leave their host: `/etc/natgate/wg/<interface>.key`, mode 600); kernel WireGuard where the module
 * exists, wireguard-go otherwise.
 */
export class Tunnel extends pulumi.dynamic.Resource {
  /** The listener's WireGuard public key. */
  declare public readonly listenerPublicKey: pulumi.Output<string>;
  /** The dialer's WireGuard public key. */
  declare public readonly dialerPublicKey: pulumi.Output<string>;
  /** Host-key fingerprints seen on first use (trust on first use; a changed key is refused). */
  declare public readonly listenerFingerprint: pulumi.Output<string>;
  declare public readonly dialerFingerprint: pulumi.Output<string>;
  /**
   * The same for a side's jump host (its `connection.proxy`), kept while the jump host's host:port
   * stays the same; undefined for a side without one.
   */
  declare public readonly listenerProxyFingerprint: pulumi.Output<string | undefined>;
  declare public readonly dialerProxyFingerprint: pulumi.Output<string | undefined>;
  /** The commands that build this tunnel on each host, as `pulumi preview --diff` shows them. */
  declare public readonly renderedListener: pulumi.Output<string[]>;
  declare public readonly renderedDialer: pulumi.Output<string[]>;
  declare public readonly interfaceName: pulumi.Output<string>;
  /** How each side runs WireGuard: `kernel` or `wireguard-go` (where the host has no module). */
  declare public readonly listenerBackend: pulumi.Output<string>;
  declare public readonly dialerBackend: pulumi.Output<string>;
  /** What restores each side at boot: the host's init system (`systemd`, `procd`, `none`), or `off`. */
  declare public readonly listenerBoot: pulumi.Output<string>;
  declare public readonly dialerBoot: pulumi.Output<string>;
  /** The same in a sentence, saying what to do when a host has no init system natgate knows. */
  declare public readonly bootNote: pulumi.Output<string>;

  constructor(name: string, args: TunnelArgs, opts?: pulumi.CustomResourceOptions) {
    const side = (s: pulumi.Input<TunnelSideArgs>) =>
      pulumi.output(s).apply((v) => ({ ...v, connection: secretConnection(v.connection) }));
    super(
      providerFor("Tunnel"),
      name,
      {
        ...args,
        name: args.name ?? hostSideName(name),
        listener: side(args.listener),
        dialer: side(args.dialer),
        listenerPublicKey: undefined,
        dialerPublicKey: undefined,
        listenerFingerprint: undefined,
        dialerFingerprint: undefined,
        listenerProxyFingerprint: undefined,
        dialerProxyFingerprint: undefined,
        renderedListener: undefined,
        renderedDialer: undefined,
        listenerBackend: undefined,
        dialerBackend: undefined,
        listenerBoot: undefined,
        dialerBoot: undefined,
        bootNote: undefined,
      },
      opts,
    );
  }
}
