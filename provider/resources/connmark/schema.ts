import { z } from "zod";
import { ConnectionSchema } from "../../ssh/schema";
import { backendChoice } from "../common/backend";
import { hex, interfaceName, ipv4, ipv6, mark32, refuseNonHost, resourceName, rulePriority, tableId } from "../common/fields";
import type { Failure } from "../../engine/failures";

/**
 * Defaults chosen not to collide with what routers already run (DESIGN.md "Marks, priorities,
 * tables"): mwan3 uses mark mask 0x3F00, pbr 0x00FF0000, kube-proxy 0x4000/0x8000, tailscale
 * 0x00FF0000's neighbours; bit 28 is in 0xFF000000, which none of them uses.
 */
export const DEFAULT_MARK = 0x10000000;
/**
 * Before mwan3 (1001-1060 iif rules, 2001-2062 fwmark rules that would send our marked replies to
 * a WAN), far from pbr's 29745-30001 cleanup window, and before main (32766).
 */
export const DEFAULT_PRIORITY = 950;
/** "NG" on a phone pad: above 255, outside mwan3's 1-60 and pbr's rt_tables+1, in no distribution's rt_tables. */
export const DEFAULT_TABLE = 8764;

export const ConnmarkReturnPathSchema = z.strictObject({
  connection: ConnectionSchema,
  /** Names what this resource owns: nft table natgate_ret_<name>. */
  name: resourceName,
  /** The tunnel interface whose incoming connections are marked (e.g. wg0, tun0). */
  tunnelInterface: interfaceName,
  /** Routing table the marked replies use (a PolicyRouteTable's table). */
  table: tableId.default(DEFAULT_TABLE),
  /** Mark value set on connections from the tunnel; all its bits must be inside mask. */
  mark: mark32.default(DEFAULT_MARK),
  /** The bits natgate owns in the packet and connection marks; default: the bits of mark. */
  mask: mark32.optional(),
  /** Priority of `ip rule fwmark <mark>/<mask> lookup <table>`. */
  priority: rulePriority.default(DEFAULT_PRIORITY),
  /** The router's tunnel address: adds `ip rule from <it> lookup <table>` (for router-local services). */
  localSource: ipv4.superRefine(refuseNonHost).optional(),
  /** Priority of the `from` rule; default priority + 1. */
  localSourcePriority: rulePriority.optional(),
  /**
   * Also IPv6: the same marks in an nft table ip6 (or ip6tables chains) and the same rules as
   * `ip -6 rule`, so IPv6 forwards' replies take the table's IPv6 routes back into the tunnel.
   */
  ipv6: z.boolean({ error: "must be true or false" }).default(false),
  /** The router's IPv6 tunnel address: adds `ip -6 rule from <it> lookup <table>` (router-local IPv6 services), at localSourcePriority. */
  localSource6: ipv6.superRefine(refuseNonHost).optional(),
  /** Also restore the mark on locally generated packets (replies of the router's own services). */
  restoreInOutput: z.boolean({ error: "must be true or false" }).default(true),
  /** Set rp_filter=2 (loose) on the interface: strict mode drops tunnel packets from internet sources. */
  looseRpFilter: z.boolean({ error: "must be true or false" }).default(true),
  /** Which tool writes natgate's own rules: "auto" (nftables where nft works, else iptables), "nftables" or "iptables". */
  backend: backendChoice,
  /** Restore the return path at boot: an entry in /etc/natgate/boot.d, run by the host's init system. */
  persist: z.boolean({ error: "must be true or false" }).default(true),
});

export type ConnmarkReturnPathInputs = z.output<typeof ConnmarkReturnPathSchema>;

export function effectiveMask(i: ConnmarkReturnPathInputs): number {
  return (i.mask ?? i.mark) >>> 0;
}

export function effectiveLocalSourcePriority(i: ConnmarkReturnPathInputs): number {
  return i.localSourcePriority ?? i.priority + 1;
}

export function connmarkCrossCheck(i: ConnmarkReturnPathInputs): Failure[] {
  const out: Failure[] = [];
  const mask = effectiveMask(i);
  if ((i.mark & ~mask) >>> 0 !== 0) {
    out.push({ property: "mark", reason: `${hex(i.mark)} has bits outside mask ${hex(mask)}: every bit of mark must be in mask` });
  }
  if (i.localSourcePriority !== undefined && i.localSource === undefined && i.localSource6 === undefined) {
    out.push({ property: "localSourcePriority", reason: "is only used with localSource (or localSource6): give localSource too, or remove localSourcePriority" });
  }
  if (i.localSource6 !== undefined && !i.ipv6) {
    out.push({ property: "localSource6", reason: "is an IPv6 rule, and this return path is IPv4 only: set ipv6: true too, or remove localSource6" });
  }
  if ((i.localSource !== undefined || i.localSource6 !== undefined) && effectiveLocalSourcePriority(i) > 32765) {
    out.push({ property: "localSourcePriority", reason: "priority + 1 is past 32765: give localSourcePriority explicitly" });
  }
  return out;
}
