import { z } from "zod";
import { ConnectionSchema } from "../../ssh/schema";
import { addressFamily, interfaceName, ipAddress, networkCidr, networkCidr6, refuseNonHost, resourceName, tableId } from "../common/fields";
import type { Failure } from "../../engine/failures";
import { DEFAULT_TABLE } from "../connmark/schema";
import { typeError } from "../../ssh/schema";
import ipaddr from "ipaddr.js";
import { parseCidr, parseIp } from "../common/addresses";

/**
 * A gateway or a source address: one host's. An IPv6 multicast one is the cross-check's to name,
 * beside the route's other link-local and family rules.
 */
const address = ipAddress.superRefine((v, ctx) => {
  const ip = parseIp(v);
  if (ip?.family === 6 && ipaddr.IPv6.parse(ip.address).range() === "multicast") return;
  refuseNonHost(v, ctx);
});

const TO_ERROR = 'must be "default" (IPv4), "::/0" (IPv6) or a network like 192.168.1.0/24 or fd00:1::/64';
/** v4 routes keep their schema (and messages); a destination with a ":" is judged as IPv6. */
const routeTo = z.string({ error: typeError(TO_ERROR) }).superRefine((v, ctx) => {
  const r = v === "default" ? undefined : v.includes(":") ? networkCidr6.safeParse(v) : networkCidr.safeParse(v);
  if (r && !r.success) {
    const msg = r.error.issues[0]?.message ?? TO_ERROR;
    ctx.addIssue({ code: "custom", message: /host bits/.test(msg) ? msg : TO_ERROR });
  }
});

/** An IPv6 network as `ip -j` prints it (RFC 5952); the text itself when it is not one (the schema said so). */
export function canonicalNetwork(to: string): string {
  const c = parseCidr(to);
  return typeof c === "string" ? to : c.network;
}

/** A route's address family: that of its destination ("default" is IPv4's). */
export function routeFamily(to: string): 4 | 6 {
  return addressFamily(to);
}

export const RouteSchema = z.strictObject({
  /**
   * "default" (the IPv4 default route), a network like "192.168.1.0/24", "::/0" (the IPv6 default
   * route) or an IPv6 network like "fd00:1::/64". The route's family is that of `to`.
   */
  to: routeTo,
  /** Gateway address (e.g. the VPS's tunnel address), of the family of `to`. */
  via: address.optional(),
  /** Output interface (e.g. wg0, br-lan). */
  dev: interfaceName.optional(),
  /** Preferred source address, of the family of `to`. */
  src: address.optional(),
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
    if (r.onlink && r.via === undefined) out.push({ property: `routes[${k}].onlink`, reason: 'needs via: onlink applies to a gateway; give via (like "10.10.10.1") or remove onlink' });
    const fam = routeFamily(r.to);
    for (const f of ["via", "src"] as const) {
      const v = r[f];
      if (v === undefined || routeFamily(v) === fam) continue;
      out.push({
        property: `routes[${k}].${f}`,
        reason: `${v} is IPv${routeFamily(v)} but routes[${k}].to is IPv${fam} (${r.to}): a route's addresses are all of one family ` +
          (fam === 4 ? '(write to: "::/0" or an IPv6 network for an IPv6 route)' : "(an IPv4 route needs its own entry)"),
      });
    }
    if (fam === 6 && r.via !== undefined && routeFamily(r.via) === 6) {
      const range = ipaddr.IPv6.parse(parseIp(r.via)!.address).range();
      if (range === "multicast") out.push({ property: `routes[${k}].via`, reason: `${r.via} is a multicast address: a gateway is one host; give its own address, like fd00:4e47::1` });
      else if (range === "linkLocal" && r.dev === undefined) {
        out.push({ property: `routes[${k}].via`, reason: `${r.via} is link-local (fe80::/10): give dev too, the interface the gateway is on` });
      }
    }
    // The kernel keys routes on destination and metric (IPv4 also tos): a second one would replace
    // the first. "default" is 0.0.0.0/0 to the kernel; an IPv6 metric 0 is 1024.
    const key = fam === 4 ? `${r.to === "default" ? "0.0.0.0/0" : r.to} ${r.metric ?? 0}` : `${canonicalNetwork(r.to)} ${r.metric || 1024}`;
    const prev = seen.get(key);
    if (prev !== undefined) {
      out.push({ property: `routes[${k}].to`, reason: `routes[${prev}] has the same destination and metric; one would replace the other (give a different metric to keep both)` });
    } else {
      seen.set(key, k);
    }
  });
  return out;
}
