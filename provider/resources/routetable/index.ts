import { DEADMAN_SECONDS, inverseBatch, liveRouteLine, parseRoutes, routeKey, routeLine, routeSpec, type LiveRoute, type Route } from "../../backends/iproute";
import { ROUTES_APPLY_SH, ROUTES_DELETE_SH, ROUTES_READ_SH } from "../../backends/routesSh";
import { bootEntry, bootEntryName, bootEntryPath, bootRenderedLine, observeBoot, parseBootShow, type BootEntry, type BootStatus } from "../../backends/persist";
import type { Host } from "../common/host";
import { confirmFreshLogin, deadmanToken, runGuarded, shPrelude, splitSections, syncBoot } from "../common/host";
import { hostProvider, lineDrift, type Observation, type ResourceKind } from "../common/hostKind";
import { NatgateError } from "../../ssh/errors";
import { isLegacyState } from "../common/version";
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

/** Its entry in /etc/natgate/boot.d: the table is what the resource owns on the host. */
export function routesBootEntryName(table: number): string {
  return bootEntryName("routes", table);
}

export function renderRouteTable(i: PolicyRouteTableInputs): string[] {
  return [...i.routes.map((r) => routeLine(i.table, normalizeRoute(r))), ...(i.persist ? [bootRenderedLine(routesBootEntryName(i.table))] : [])];
}

export { ROUTES_APPLY_SH, ROUTES_DELETE_SH, ROUTES_READ_SH };

export interface RoutesLive {
  routes: LiveRoute[];
  boot: BootStatus;
}

export function parseRoutesLive(stdout: string): RoutesLive {
  const sections = splitSections(stdout);
  const s = sections.get("routes");
  const boot = sections.get("boot");
  if (!s || !boot) throw new NatgateError("unexpected-output", `unexpected output from the PolicyRouteTable read script:\n${stdout.slice(0, 500)}`);
  return { routes: parseRoutes(s.lines.join("\n")), boot: parseBootShow(boot.lines) };
}

/**
 * What rebuilds the table at boot: the apply script with every route as a `replace` (so a second
 * run changes nothing) and no dead-man switch (there is no SSH session to lose).
 */
export function routesBootEntry(i: PolicyRouteTableInputs): BootEntry {
  const batch = i.routes.map((r) => `route replace table ${i.table} ${routeSpec(normalizeRoute(r))}`);
  const args = [String(i.table), batch.join("\n"), "", "", "", routesBootEntryName(i.table)];
  return bootEntry("routes", i.table, `PolicyRouteTable ${i.name} (table ${i.table})`, args, shPrelude() + ROUTES_APPLY_SH);
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

/**
 * Routes a new resource would have to delete because someone else put them in its table: another
 * PortForward's return path on the same router, the user's own policy routing. The resource owns
 * its table whole, so it refuses to take one that holds anything it would not put there itself
 * (a create retried after a partial apply only finds its own routes).
 */
export function foreignRoutes(i: PolicyRouteTableInputs, live: LiveRoute[]): string[] {
  const wantLines = i.routes.map((r) => routeLine(i.table, normalizeRoute(r)));
  const prefix = `ip route replace table ${i.table} `;
  return live
    .map((r) => liveRouteLine(i.table, r))
    .filter((l) => !wantLines.includes(l))
    .map((l) => (l.startsWith(prefix) ? l.slice(prefix.length) : l));
}

function observation(i: PolicyRouteTableInputs, live: RoutesLive, legacy = false): Observation {
  const boot = observeBoot(routesBootEntryName(i.table), i.persist ? routesBootEntry(i) : undefined, live.boot, legacy);
  return {
    rendered: [...live.routes.map((r) => liveRouteLine(i.table, r)), ...boot.rendered],
    drift: [...planRoutes(i, live.routes).drift, ...boot.drift],
    facts: { ...boot.facts },
  };
}

async function readLive(host: Host, i: PolicyRouteTableInputs): Promise<RoutesLive> {
  const out = await host.run(`reading routing table ${i.table}`, ROUTES_READ_SH, [String(i.table), routesBootEntryName(i.table)]);
  return parseRoutesLive(out.stdout);
}

export const PolicyRouteTableKind: ResourceKind<PolicyRouteTableInputs> = {
  kind: "PolicyRouteTable",
  schema: PolicyRouteTableSchema,
  crossCheck: routeTableCrossCheck,
  render: renderRouteTable,
  identityFields: ["table"],
  // The new resource would own the same table (same id on the same host): delete first.
  deleteBeforeReplace: true,

  async converge(host, i, olds) {
    let after = await readLive(host, i);
    const foreign = olds === undefined ? foreignRoutes(i, after.routes) : [];
    if (foreign.length) {
      throw new NatgateError(
        "config",
        `PolicyRouteTable ${i.name}: routing table ${i.table} on ${host.label} already holds routes natgate would not put there:\n  ` +
          `${foreign.join("\n  ")}\nnatgate owns its table whole and would delete them: choose another table id (PortForward: ` +
          `returnPath.table), or, if they are leftovers, remove them with: ip route flush table ${i.table}`,
      );
    }
    const plan = planRoutes(i, after.routes);
    if (plan.drift.length > 0) after = await apply(host, i, plan);
    after.boot = await syncBoot(host, `PolicyRouteTable ${i.name}`, routesBootEntryName(i.table), i.persist ? routesBootEntry(i) : undefined, after.boot);
    return observation(i, after);
  },

  async observe(host, i, props) {
    return observation(i, await readLive(host, i), isLegacyState(props));
  },

  async remove(host, i) {
    const live = await readLive(host, i);
    const entry = bootEntryPath(routesBootEntryName(i.table));
    const hasEntry = (s: RoutesLive) => (s.boot.files.get(entry) ?? "-") !== "-";
    if (live.routes.length === 0 && !hasEntry(live)) return;
    const out = await host.run(`deleting routing table ${i.table}`, ROUTES_DELETE_SH, [String(i.table), routesBootEntryName(i.table)], { writes: true });
    const left = parseRoutesLive(out.stdout);
    if (left.routes.length || hasEntry(left)) {
      const what = [...left.routes.map((r) => liveRouteLine(i.table, r)), ...(hasEntry(left) ? [entry] : [])];
      throw new NatgateError("remote", `PolicyRouteTable ${i.name} on ${host.label}: table ${i.table} still has this after delete:\n  ${what.join("\n  ")}`);
    }
  },
};

/** Runs the plan (non-empty) behind the dead-man switch; returns the state read back. */
async function apply(host: Host, i: PolicyRouteTableInputs, plan: ReturnType<typeof planRoutes>): Promise<RoutesLive> {
  const token = deadmanToken(`routes_${i.table}`);
  const out = await runGuarded(true, () =>
    host.run(
      `applying routing table ${i.table}`,
      ROUTES_APPLY_SH,
      [String(i.table), plan.batch.join("\n"), token, String(DEADMAN_SECONDS), inverseBatch(plan.batch, plan.replaced).join("\n"), routesBootEntryName(i.table)],
      { writes: true },
    ),
  );
  await confirmFreshLogin(host, `PolicyRouteTable ${i.name}`, token);
  return parseRoutesLive(out.stdout);
}

export const policyRouteTableProvider = hostProvider(PolicyRouteTableKind);
