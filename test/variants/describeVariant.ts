// One variant's lifecycle as mocha tests: snapshot both hosts, up, traffic with the client's real
// address, refresh without drift, (more), destroy, hosts exactly as before.
import { strict as assert } from "assert";
import type { PortForwardArgs } from "natgate";
import { getLab, type Lab, type LabProcess } from "../lab";
import type { Stack } from "../engine/stack";
import {
  assertHostsAsBefore,
  cleanup,
  lanServices,
  opsOf,
  portForwardProgram,
  snapshotAll,
  stopAll,
  timedDestroy,
  timedUp,
  variantStack,
} from "./variantLab";

export interface VariantContext {
  lab: Lab;
  stack: Stack;
  /** The program with the variant's args (or others: e.g. a changed port range). */
  program(args?: PortForwardArgs): () => unknown;
  args: PortForwardArgs;
  services: LabProcess[];
}

export interface VariantSpec {
  /** The describe title. */
  title: string;
  /** Short label in the timings table. */
  label: string;
  /** The PortForward's Pulumi name (default "home"). */
  pulumiName?: string;
  args(lab: Lab): PortForwardArgs;
  /** LAN services started before up (each answers with the client address it saw). */
  services: Array<["tcp" | "udp", number]>;
  /** Host setup that is part of "before" (a stricter host...): runs before the snapshot. */
  prepareHosts?(lab: Lab): Promise<void>;
  /** Undoes prepareHosts, after the comparison. */
  restoreHosts?(lab: Lab): Promise<void>;
  /** Runs after the snapshot, before up (e.g. another tool's rules that must survive); undone by afterDestroy. */
  beforeUp?(ctx: VariantContext): Promise<void>;
  /** Checks right after up (host-side objects, logins...). */
  afterUp?(ctx: VariantContext): Promise<void>;
  /** The traffic test: what the client gets back through the VPS. */
  traffic(ctx: VariantContext): Promise<void>;
  /** Further steps between traffic and destroy, each an `it`. */
  more?: Array<[string, (ctx: VariantContext) => Promise<void>]>;
  /** Runs after destroy, before the comparison with the snapshot. */
  afterDestroy?(ctx: VariantContext): Promise<void>;
}

export function describeVariant(spec: VariantSpec): void {
  describe(spec.title, function () {
    this.timeout(180_000);
    const ctx = {} as VariantContext;
    let initial: Awaited<ReturnType<typeof snapshotAll>>;
    let prepared = false;

    before(async () => {
      ctx.lab = getLab();
      ctx.args = spec.args(ctx.lab);
      ctx.program = (args = ctx.args) => portForwardProgram(spec.pulumiName ?? "home", args);
      if (spec.prepareHosts) {
        prepared = true;
        await spec.prepareHosts(ctx.lab);
      }
      initial = await snapshotAll(ctx.lab);
      ctx.services = await lanServices(ctx.lab, spec.services);
      ctx.stack = variantStack();
      await spec.beforeUp?.(ctx);
    });

    after(async () => {
      await stopAll(ctx.services ?? []);
      await cleanup(ctx.stack);
      if (prepared) await spec.restoreHosts?.(ctx.lab);
    });

    it("up creates every resource of the component, each in sync with its host", async () => {
      const r = await timedUp(spec.label, ctx.stack, ctx.program());
      assert.ok(Object.values(opsOf(r.steps)).every((op) => op === "create"), JSON.stringify(opsOf(r.steps)));
      for (const res of ctx.stack.state.filter((x) => x.custom)) {
        const drift = res.outputs.drift;
        if (drift !== undefined) assert.deepEqual(drift, [], `${res.name} drift right after up`);
      }
      await spec.afterUp?.(ctx);
    });

    it("the LAN service sees the internet client's real address", async () => {
      await spec.traffic(ctx);
    });

    it("refresh finds no drift, and up again changes nothing", async () => {
      const steps = await ctx.stack.refresh();
      assert.deepEqual(steps.filter((s) => s.op !== "same").map((s) => [s.name, s.op, s.changes]), []);
      const r = await ctx.stack.up(ctx.program());
      assert.ok(Object.values(opsOf(r.steps)).every((op) => op === "same"), JSON.stringify(opsOf(r.steps)));
    });

    for (const [title, fn] of spec.more ?? []) it(title, () => fn(ctx));

    it("destroy removes everything: both hosts are exactly as before", async () => {
      await timedDestroy(spec.label, ctx.stack);
      assert.deepEqual(ctx.stack.state, []);
      await spec.afterDestroy?.(ctx);
      await assertHostsAsBefore(ctx.lab, initial);
    });
  });
}
