/**
 * A PortForward's slot when the program gives none (issue 12: two components on one router, the
 * natural program, must work): the lowest free run of slots among the PortForwards this program
 * has built so far on the same router or the same VPS (the tunnel's interface, subnet and listen
 * port come from the slot on the VPS too). The first keeps slot 0 (a stack from before slots keeps
 * its numbers), and every number is known at preview, which picking a free slot on the host could
 * not give. Another program's (another stack's) paths are not seen here: the hosts' claims refuse
 * those collisions before anything changes.
 */
import * as pulumi from "@pulumi/pulumi";
import { SLOTS } from "../provider/plan/slots";

/** Slots one PortForward holds on its router: from, from + 1... (one per VPS). */
export interface SlotHold {
  name: string;
  from: number;
  span: number;
  /** picked here (the program gave no slot) */
  picked: boolean;
}

/** A host as the program names it: host and port, and the jump host's (another jump host may reach another machine). */
export function hostKey(connection: unknown): string | undefined {
  const endpoint = (c: unknown): string | undefined => {
    if (c === null || typeof c !== "object" || pulumi.Output.isInstance(c) || c instanceof Promise) return undefined;
    const { host, port } = c as { host?: unknown; port?: unknown };
    if (typeof host !== "string" || (port !== undefined && typeof port !== "number")) return undefined;
    return `${host.toLowerCase()}:${port ?? 22}`;
  };
  const at = endpoint(connection);
  if (!at) return undefined;
  const proxy = (connection as { proxy?: unknown }).proxy;
  if (proxy === undefined) return at;
  const via = endpoint(proxy);
  return via ? `${at} via ${via}` : undefined;
}

const range = (from: number, span: number) => (span > 1 ? `${from}-${from + span - 1}` : `${from}`);
const overlaps = (a: number, n: number, h: SlotHold) => a < h.from + h.span && h.from < a + n;

/**
 * The slot for PortForward `name` needing `span` slots, given those `held` on its router and VPSes:
 * `wanted` when it is free, else the lowest free run; a problem when there is none.
 */
export function chooseSlot(held: readonly SlotHold[], name: string, wanted: number | undefined, span: number): { slot: number } | { problem: string } {
  const holder = (h: SlotHold) => `PortForward ${h.name} (slot ${range(h.from, h.span)}${h.picked ? ", picked as it gives none" : ""})`;
  if (wanted !== undefined) {
    const clash = held.find((h) => overlaps(wanted, span, h));
    if (!clash) return { slot: wanted };
    return {
      problem:
        `slot ${range(wanted, span)} is already taken by ${holder(clash)}, which shares a router or VPS with it: each PortForward there needs ` +
        `slots of its own (0-${SLOTS - 1}); give another, or leave slot out and natgate picks a free one`,
    };
  }
  for (let s = 0; s + span <= SLOTS; s++) if (!held.some((h) => overlaps(s, span, h))) return { slot: s };
  return {
    problem: `no ${span > 1 ? `${span} free slots in a row` : "free slot"} left (0-${SLOTS - 1}) on its router and VPSes: held by ${held.map(holder).join(", ")}`,
  };
}

/**
 * Per program run: a real program runs once per process, but the engine harness runs many in one,
 * each under its own resource monitor.
 */
const runs = new WeakMap<object, Map<string, SlotHold[]>>();

/**
 * chooseSlot against this program's PortForwards on the same router or VPSes (`hosts`: the
 * router's connection first, then each VPS's), recording the choice on each; throws the problem.
 * A router not known yet (its host an output) gets `wanted` ?? 0, as does a component built
 * outside a program run (no resource monitor: nothing is deployed then); a VPS not known yet is
 * left out.
 */
export function slotFor(name: string, hosts: readonly unknown[], wanted: number | undefined, span: number): number {
  const keys = hosts.map(hostKey);
  const monitor = pulumi.runtime.getMonitor() as object | undefined;
  if (keys[0] === undefined || monitor === undefined) return wanted ?? 0;
  let byHost = runs.get(monitor);
  if (!byHost) runs.set(monitor, (byHost = new Map()));
  const known = [...new Set(keys.filter((k): k is string => k !== undefined))];
  // A second PortForward of the same name is the same component declared again (the engine refuses
  // a duplicate name in a real run; a test may build one many times): its new hold replaces the old.
  const held = [...new Map(known.flatMap((k) => byHost.get(k) ?? []).filter((h) => h.name !== name).map((h) => [h.name, h])).values()];
  const r = chooseSlot(held, name, wanted, span);
  if ("problem" in r) throw new Error(`PortForward ${name}: ${r.problem}`);
  const hold = { name, from: r.slot, span, picked: wanted === undefined };
  for (const k of known) byHost.set(k, [...(byHost.get(k) ?? []).filter((h) => h.name !== name), hold]);
  return r.slot;
}
