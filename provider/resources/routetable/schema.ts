import { z } from "zod";
import { ConnectionSchema } from "../../ssh/schema";
import { interfaceName, ipv4, networkCidr, resourceName, tableId } from "../common/fields";
import type { Failure } from "../../engine/failures";
import { DEFAULT_TABLE } from "../connmark/schema";

export const RouteSchema = z.strictObject({
  /** "default" or a network like "192.168.1.0/24". */
  to: z.union([z.literal("default"), networkCidr], { error: 'must be "default" or a network like 192.168.1.0/24' }),
  /** Gateway address (e.g. the VPS's tunnel address). */
  via: ipv4.optional(),
  /** Output interface (e.g. wg0, br-lan). */
  dev: interfaceName.optional(),
  /** Preferred source address. */
  src: ipv4.optional(),
  metric: z
    .number({ error: "must be a number" })
    .int({ error: "must be an integer" })
    .min(0, { error: "must be 0-4294967295" })
    .max(0xffffffff, { error: "must be 0-4294967295" })
    .optional(),
  /** Treat the gateway as on-link even without a matching connected route. */
  onlink: z.boolean({ error: "must be true or false" }).optional(),
});

export const PolicyRouteTableSchema = z.strictObject({
  connection: ConnectionSchema,
  name: resourceName,
  /** The routing table this resource owns entirely (every route in it). */
  table: tableId.default(DEFAULT_TABLE),
  routes: z.array(RouteSchema, { error: "must be a list of routes" }).min(1, { error: "must have at least one route" }),
  /** Restore the table's routes at boot: an entry in /etc/natgate/boot.d, run by the host's init system. */
  persist: z.boolean({ error: "must be true or false" }).default(true),
});

export type RouteInput = z.output<typeof RouteSchema>;
export type PolicyRouteTableInputs = z.output<typeof PolicyRouteTableSchema>;

export function routeTableCrossCheck(i: PolicyRouteTableInputs): Failure[] {
  const out: Failure[] = [];
  const seen = new Map<string, number>();
  i.routes.forEach((r, k) => {
    if (r.via === undefined && r.dev === undefined) {
      out.push({ property: `routes[${k}]`, reason: "give via (a gateway), dev (an interface) or both" });
    }
    if (r.onlink && r.via === undefined) out.push({ property: `routes[${k}].onlink`, reason: "needs via: onlink applies to a gateway" });
    // The kernel keys IPv4 routes on destination and metric: a second one would replace the first.
    // "default" is 0.0.0.0/0 to the kernel.
    const key = `${r.to === "default" ? "0.0.0.0/0" : r.to} ${r.metric ?? 0}`;
    const prev = seen.get(key);
    if (prev !== undefined) {
      out.push({ property: `routes[${k}].to`, reason: `routes[${prev}] has the same destination and metric; one would replace the other (give a different metric to keep both)` });
    } else {
      seen.set(key, k);
    }
  });
  return out;
}
