/**
 * A path's slot on its router: the one number from which every default that two natgate paths on
 * one router must not share is derived (tunnel interface, tunnel subnet, listen port, mark, routing
 * table, rule priorities). Slot 0 is the defaults natgate always had, so existing stacks keep them.
 */
import { DEFAULT_PRIORITY, DEFAULT_TABLE } from "../resources/connmark/schema";
import { TUNNEL_DEFAULTS } from "../resources/tunnel/schema";

export const SLOTS = 8;

// One bit of 0xFF000000 each (none of mwan3, pbr, kube-proxy or tailscale use that byte), slot 0
// on bit 28 as before; each mask is its own bit, so one path's mark never matches another's rule.
const MARK_BITS = [28, 29, 30, 31, 24, 25, 26, 27] as const;

export interface SlotDefaults {
  interfaceName: string;
  vpsAddress: string;
  routerAddress: string;
  /** The tunnel's IPv6 subnet (dual stack only): a ULA /64 per slot, "NG" (0x4e47) in its global ID. */
  vpsAddress6: string;
  routerAddress6: string;
  listenPort: number;
  mark: number;
  table: number;
  /** The fwmark rule's; the router-local rule takes priority + 1. */
  priority: number;
}

export function slotProblem(slot: unknown): string | undefined {
  if (typeof slot !== "number" || !Number.isInteger(slot) || slot < 0 || slot >= SLOTS) {
    return `must be a whole number 0-${SLOTS - 1}, or left out for the lowest free one, got ${JSON.stringify(slot)}`;
  }
  return undefined;
}

/** Slot 0 comes out as the defaults natgate always had (wg0, 10.10.10.0/24, 51820, 0x10000000, 8764, 950). */
export function slotDefaults(slot: number): SlotDefaults {
  const problem = slotProblem(slot);
  if (problem) throw new RangeError(`slot ${slot}: ${problem}`);
  return {
    interfaceName: `wg${slot}`,
    vpsAddress: `10.10.${10 + slot}.1/24`,
    routerAddress: `10.10.${10 + slot}.2/24`,
    vpsAddress6: `fd00:4e47:${slot ? `0:${slot}:` : ""}:1/64`,
    routerAddress6: `fd00:4e47:${slot ? `0:${slot}:` : ""}:2/64`,
    listenPort: TUNNEL_DEFAULTS.listenPort + slot,
    mark: 2 ** MARK_BITS[slot]!,
    table: DEFAULT_TABLE + slot,
    // Two per slot (fwmark and router-local rules): 950-965, all before mwan3's 1001.
    priority: DEFAULT_PRIORITY + 2 * slot,
  };
}
