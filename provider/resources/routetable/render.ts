import { batchReplace, IPV6_DEFAULT_METRIC, routeLine, type Route } from "../../backends/iproute";
import { ROUTES_APPLY_SH, routesArgs } from "../../backends/routesSh";
import { bootEntry, bootEntryName, bootRenderedLine, type BootEntry } from "../../backends/persist";
import { shPrelude } from "../common/host";
import { parseIp } from "../common/addresses";
import { canonicalNetwork, routeFamily, type PolicyRouteTableInputs, type RouteInput } from "./schema";

/**
 * A route as the kernel will list it: host routes without "/32" (IPv6: "/128"), metric 0 left out;
 * IPv6 addresses canonical (RFC 5952) and its metric 1024 (what 0 becomes) left out too.
 */
export function normalizeRoute(r: RouteInput): Route {
  if (routeFamily(r.to) === 6) {
    const to = canonicalNetwork(r.to);
    const out: Route = { to: to.endsWith("/128") ? to.slice(0, -4) : to };
    const ip = (a: string) => parseIp(a)?.address ?? a;
    if (r.via !== undefined) out.via = ip(r.via);
    if (r.dev !== undefined) out.dev = r.dev;
    if (r.src !== undefined) out.src = ip(r.src);
    if (r.metric !== undefined && r.metric !== 0 && r.metric !== IPV6_DEFAULT_METRIC) out.metric = r.metric;
    if (r.onlink) out.onlink = true;
    return out;
  }
  const out: Route = { to: r.to.endsWith("/32") ? r.to.slice(0, -3) : r.to };
  if (r.via !== undefined) out.via = r.via;
  if (r.dev !== undefined) out.dev = r.dev;
  if (r.src !== undefined) out.src = r.src;
  if (r.metric !== undefined && r.metric !== 0) out.metric = r.metric;
  if (r.onlink) out.onlink = true;
  return out;
}

/** Its entry in /etc/natgate/boot.d: the table is what the resource owns on the host. */
export function routesBootEntryName(table: number): string {
  return bootEntryName("routes", table);
}

export function renderRouteTable(i: PolicyRouteTableInputs): string[] {
  return [...i.routes.map((r) => routeLine(i.table, normalizeRoute(r))), ...(i.persist ? [bootRenderedLine(routesBootEntryName(i.table))] : [])];
}

/**
 * What rebuilds the table at boot: the apply script with every route as a `replace` (so a second
 * run changes nothing) and no dead-man switch (there is no SSH session to lose).
 */
export function routesBootEntry(i: PolicyRouteTableInputs): BootEntry {
  const batch = i.routes.map((r) => batchReplace(i.table, normalizeRoute(r)));
  const args = routesArgs({ table: i.table, entry: routesBootEntryName(i.table), batch });
  return bootEntry("routes", i.table, `PolicyRouteTable ${i.name} (table ${i.table})`, args, shPrelude() + ROUTES_APPLY_SH);
}
