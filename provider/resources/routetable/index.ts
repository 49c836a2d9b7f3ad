import { batchDel, batchReplace, DEADMAN_SECONDS, inverseBatch, liveRouteLine, routeIs6, routeKey, routeLine, routeShort, routeSpec, type LiveRoute } from "../../backends/iproute";
import { ROUTES_APPLY_SH, ROUTES_DELETE_SH, ROUTES_READ_SH, routesArgs } from "../../backends/routesSh";
import { bootEntryPath, observeBoot } from "../../backends/persist";
import type { ScriptPart } from "../../backends/chain";
import type { Host } from "../common/host";
import { bootFirst, confirmFreshLogin, deadmanToken, readSettled, runGuarded } from "../common/host";
import { hostProvider, lineDrift, type Observation, type ResourceKind } from "../common/hostKind";
import { NatgateError } from "../../ssh/errors";
import { isLegacyState } from "../../engine/version";
import { PolicyRouteTableSchema, routeTableCrossCheck, type PolicyRouteTableInputs } from "./schema";
import { normalizeRoute, renderRouteTable, routesBootEntry, routesBootEntryName } from "./render";
import { parseRoutesLive, type RoutesLive } from "./live";
import { claimKeys, claimPlan, claimsHeldBy } from "../../backends/claims";

const routesOwner = (i: PolicyRouteTableInputs) => `routes_${i.name}`;
const routesClaim = (i: PolicyRouteTableInputs) => ({ owner: routesOwner(i), keys: claimKeys.routeTable(i.table) });

export { normalizeRoute, renderRouteTable, routesBootEntry, routesBootEntryName, parseRoutesLive, type RoutesLive };

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
    const line = batchReplace(i.table, r);
    batch.push(line);
    const old = live.find((l) => !l.type && !l.extra && routeKey(l) === routeKey(r));
    if (old) replaced.set(line, `table ${i.table} ${routeSpec(old)}`);
  });
  const wantKeys = new Set(want.map(routeKey));
  live.forEach((r, k) => {
    if (wantLines.includes(liveLines[k]!)) return;
    if (!r.type && !r.extra && wantKeys.has(routeKey(r))) return; // replaced above
    batch.push(batchDel(i.table, r));
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
  return live
    .map((r) => liveRouteLine(i.table, r))
    .filter((l) => !wantLines.includes(l))
    .map((l) => routeShort(l, i.table));
}

/**
 * The live routes as lines in the order the desired ones are written in (then any others): the
 * kernel lists a table's IPv6 routes in its trie's order, which changes as routes come and go,
 * and a refresh must not show a reordering as a change.
 */
function liveLinesInOrder(i: PolicyRouteTableInputs, live: LiveRoute[]): string[] {
  const want = i.routes.map((r) => routeLine(i.table, normalizeRoute(r)));
  const rank = (l: string) => (want.includes(l) ? want.indexOf(l) : want.length);
  return live.map((r) => liveRouteLine(i.table, r)).map((l, k) => ({ l, k })).sort((a, b) => rank(a.l) - rank(b.l) || a.k - b.k).map((x) => x.l);
}

function observation(i: PolicyRouteTableInputs, live: RoutesLive, legacy = false): Observation {
  const boot = observeBoot(routesBootEntryName(i.table), i.persist ? routesBootEntry(i) : undefined, live.boot, legacy);
  return {
    rendered: [...liveLinesInOrder(i, live.routes), ...boot.rendered],
    drift: [...planRoutes(i, live.routes).drift, ...claimDrift(i, live), ...boot.drift],
    facts: { ...boot.facts },
  };
}

/** Another owner holding the table is drift (the apply would refuse it); a missing claim of its own is not. */
function claimDrift(i: PolicyRouteTableInputs, live: RoutesLive): string[] {
  const c = claimPlan(routesOwner(i), routesClaim(i).keys, live.claims, "the host");
  return c.conflict ? [c.conflict.message] : [];
}

/** The host's state; `settle`: first settle rollbacks an interrupted apply left (before a change). */
async function readLive(host: Host, i: PolicyRouteTableInputs, settle = false): Promise<RoutesLive> {
  const read = () => host.run(`reading routing table ${i.table}`, ROUTES_READ_SH, routesArgs({ table: i.table, entry: routesBootEntryName(i.table), deadmanOwner: routesDeadmanOwner(i) }));
  const out = settle ? await readSettled(host, `PolicyRouteTable ${i.name}`, read) : await read();
  return parseRoutesLive(out.stdout);
}

/** Names this table's dead-man tokens. */
const routesDeadmanOwner = (i: PolicyRouteTableInputs) => `routes_${i.table}`;

export const PolicyRouteTableKind: ResourceKind<PolicyRouteTableInputs> = {
  kind: "PolicyRouteTable",
  schema: PolicyRouteTableSchema,
  crossCheck: routeTableCrossCheck,
  render: renderRouteTable,
  identityFields: ["table"],
  // The new resource would own the same table (same id on the same host): delete first.
  deleteBeforeReplace: true,

  async converge(host, i, olds) {
    let after = await readLive(host, i, true);
    const claim = claimPlan(routesOwner(i), routesClaim(i).keys, after.claims, host.label);
    if (claim.conflict) throw claim.conflict;
    const foreign = olds === undefined ? foreignRoutes(i, after.routes) : [];
    if (foreign.length) {
      throw new NatgateError(
        "config",
        `PolicyRouteTable ${i.name}: routing table ${i.table} on ${host.label} already holds routes natgate would not put there:\n  ` +
          `${foreign.join("\n  ")}\nnatgate owns its table whole and would delete them: choose another table id (PortForward: ` +
          `slot: 1, or returnPath.table), or, if they are leftovers, remove them with: ip route flush table ${i.table}` +
          (after.routes.some(routeIs6) ? ` && ip -6 route flush table ${i.table}` : ""),
      );
    }
    const plan = planRoutes(i, after.routes);
    after = await bootFirst(host, `PolicyRouteTable ${i.name}`, routesBootEntryName(i.table), i.persist ? routesBootEntry(i) : undefined, after,
      plan.drift.length > 0 || claim.changes.length > 0 ? (before) => apply(host, i, plan, before) : undefined);
    return observation(i, after);
  },

  async observe(host, i, props) {
    return observation(i, await readLive(host, i), isLegacyState(props));
  },

  async remove(host, i) {
    const live = await readLive(host, i, true);
    const entry = bootEntryPath(routesBootEntryName(i.table));
    const hasEntry = (s: RoutesLive) => (s.boot.files.get(entry) ?? "-") !== "-";
    const owned = (s: RoutesLive) => claimsHeldBy(s.claims, routesOwner(i));
    if (live.routes.length === 0 && !hasEntry(live) && owned(live).length === 0) return;
    const out = await host.run(
      `deleting routing table ${i.table}`,
      ROUTES_DELETE_SH,
      routesArgs({ table: i.table, entry: routesBootEntryName(i.table), claim: { owner: routesOwner(i), keys: [] } }),
      { writes: true },
    );
    const left = parseRoutesLive(out.stdout);
    if (left.routes.length || hasEntry(left) || owned(left).length) {
      const what = [...left.routes.map((r) => liveRouteLine(i.table, r)), ...(hasEntry(left) ? [entry] : []), ...owned(left).map((k) => `claim ${k}`)];
      throw new NatgateError("remote", `PolicyRouteTable ${i.name} on ${host.label}: table ${i.table} still has this after delete:\n  ${what.join("\n  ")}`);
    }
  },
};

/** Runs the plan behind the dead-man switch (none when only the claim changes); returns the state read back. */
async function apply(host: Host, i: PolicyRouteTableInputs, plan: ReturnType<typeof planRoutes>, before?: ScriptPart): Promise<RoutesLive> {
  const token = deadmanToken(routesDeadmanOwner(i));
  const armed = plan.batch.length > 0;
  const out = await runGuarded(armed, () =>
    host.run(
      `applying routing table ${i.table}`,
      ROUTES_APPLY_SH,
      routesArgs({
        table: i.table,
        entry: routesBootEntryName(i.table),
        batch: plan.batch,
        claim: routesClaim(i),
        deadman: armed ? { token, seconds: DEADMAN_SECONDS, undo: inverseBatch(plan.batch, plan.replaced) } : undefined,
      }),
      { writes: true, before },
    ),
  );
  if (armed) await confirmFreshLogin(host, `PolicyRouteTable ${i.name}`, token);
  return parseRoutesLive(out.stdout);
}

export const policyRouteTableProvider = hostProvider(PolicyRouteTableKind);
