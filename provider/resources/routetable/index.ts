import { HOSTSTATE_SH } from "../../backends/hoststate";
import { DEADMAN_SECONDS, IPROUTE_SH, inverseBatch, liveRouteLine, parseRoutes, routeKey, routeLine, routeSpec, type LiveRoute, type Route } from "../../backends/iproute";
import type { Host } from "../common/host";
import { confirmFreshLogin, deadmanToken, runGuarded, splitSections } from "../common/host";
import { lineDrift, makeProvider, type Observation, type ResourceKind } from "../common/provider";
import { PolicyRouteTableSchema, routeTableCrossCheck, type PolicyRouteTableInputs, type RouteInput } from "./schema";

/** A route as the kernel will list it: host routes without "/32", metric 0 left out. */
export function normalizeRoute(r: RouteInput): Route {
  const out: Route = { to: r.to.endsWith("/32") ? r.to.slice(0, -3) : r.to };
  if (r.via !== undefined) out.via = r.via;
  if (r.dev !== undefined) out.dev = r.dev;
  if (r.src !== undefined) out.src = r.src;
  if (r.metric !== undefined && r.metric !== 0) out.metric = r.metric;
  if (r.onlink) out.onlink = true;
  return out;
}

export function renderRouteTable(i: PolicyRouteTableInputs): string[] {
  return i.routes.map((r) => routeLine(i.table, normalizeRoute(r)));
}

const PRELUDE = HOSTSTATE_SH + IPROUTE_SH + "ip_need\n";

/** $1 table */
export const ROUTES_READ_SH = PRELUDE + `echo "@@routes"; ip_routes "$1" || exit 1\n`;
/** $1 table, $2 ip batch, $3 dead-man token, $4 its seconds, $5 the batch that undoes $2 */
export const ROUTES_APPLY_SH =
  PRELUDE +
  `ng_lock
ip_deadman_arm "$3" "$4" "$5" || exit 1
ip_batch "$2" || { ip_deadman_now "$3" "$5"; exit 1; }
echo "@@routes"; ip_routes "$1" || exit 1
`;
/** $1 table */
export const ROUTES_DELETE_SH = PRELUDE + `ip_flush_table "$1" || exit 1\necho "@@routes"; ip_routes "$1" || exit 1\n`;

export function parseRoutesShow(stdout: string): LiveRoute[] {
  const s = splitSections(stdout).get("routes");
  if (!s) throw new Error(`unexpected output from the PolicyRouteTable read script:\n${stdout.slice(0, 500)}`);
  return parseRoutes(s.lines.join("\n"));
}

/**
 * `ip -batch` lines that turn the live table into the desired one: `replace` for every desired
 * route not there as such (it also rewrites a route with the same destination and metric, so there
 * is no moment without a default route), then `del` for live routes no desired route replaces.
 */
export function planRoutes(i: PolicyRouteTableInputs, live: LiveRoute[]): { drift: string[]; batch: string[]; replaced: Map<string, string> } {
  const want = i.routes.map(normalizeRoute);
  const wantLines = want.map((r) => routeLine(i.table, r));
  const liveLines = live.map((r) => liveRouteLine(i.table, r));
  const drift = lineDrift("route", wantLines, liveLines).filter((d) => !d.endsWith("out of order"));
  const batch: string[] = [];
  const replaced = new Map<string, string>(); // replace line → what it overwrites, to undo it
  want.forEach((r, k) => {
    if (liveLines.includes(wantLines[k]!)) return;
    const line = `route replace table ${i.table} ${routeSpec(r)}`;
    batch.push(line);
    const old = live.find((l) => !l.type && !l.extra && routeKey(l) === routeKey(r));
    if (old) replaced.set(line, `table ${i.table} ${routeSpec(old)}`);
  });
  const wantKeys = new Set(want.map(routeKey));
  live.forEach((r, k) => {
    if (wantLines.includes(liveLines[k]!)) return;
    if (!r.type && !r.extra && wantKeys.has(routeKey(r))) return; // replaced above
    batch.push(`route del table ${i.table} ${routeSpec(r)}`);
  });
  return { drift, batch, replaced };
}

function observation(i: PolicyRouteTableInputs, live: LiveRoute[]): Observation {
  return {
    rendered: live.map((r) => liveRouteLine(i.table, r)),
    drift: planRoutes(i, live).drift,
    facts: {},
  };
}

async function readLive(host: Host, i: PolicyRouteTableInputs): Promise<LiveRoute[]> {
  const out = await host.run(`reading routing table ${i.table}`, ROUTES_READ_SH, [String(i.table)]);
  return parseRoutesShow(out.stdout);
}

export const PolicyRouteTableKind: ResourceKind<PolicyRouteTableInputs> = {
  kind: "PolicyRouteTable",
  schema: PolicyRouteTableSchema,
  crossCheck: routeTableCrossCheck,
  render: renderRouteTable,
  identityFields: ["table"],
  // The new resource would own the same table (same id on the same host): delete first.
  deleteBeforeReplace: true,

  async converge(host, i) {
    const live = await readLive(host, i);
    const plan = planRoutes(i, live);
    if (plan.drift.length === 0) return observation(i, live);
    const token = deadmanToken(`routes_${i.table}`);
    const out = await runGuarded(true, () =>
      host.run(
        `applying routing table ${i.table}`,
        ROUTES_APPLY_SH,
        [String(i.table), plan.batch.join("\n"), token, String(DEADMAN_SECONDS), inverseBatch(plan.batch, plan.replaced).join("\n")],
        { writes: true },
      ),
    );
    await confirmFreshLogin(host, `PolicyRouteTable ${i.name}`, token);
    const obs = observation(i, parseRoutesShow(out.stdout));
    if (obs.drift.length) {
      throw new Error(`PolicyRouteTable ${i.name} (table ${i.table}) on ${host.label} does not read back as applied:\n  ${obs.drift.join("\n  ")}`);
    }
    return obs;
  },

  async observe(host, i) {
    return observation(i, await readLive(host, i));
  },

  async remove(host, i) {
    const live = await readLive(host, i);
    if (live.length === 0) return;
    const out = await host.run(`deleting routing table ${i.table}`, ROUTES_DELETE_SH, [String(i.table)], { writes: true });
    const left = parseRoutesShow(out.stdout);
    if (left.length) {
      throw new Error(`PolicyRouteTable ${i.name} on ${host.label}: table ${i.table} still has routes after flush:\n  ${left.map((r) => liveRouteLine(i.table, r)).join("\n  ")}`);
    }
  },
};

export const policyRouteTableProvider = makeProvider(PolicyRouteTableKind);
