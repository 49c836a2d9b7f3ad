// Upgrades keep stacks (issue 8): a stack created by the released natgate 0.1.0 and then run with
// this checkout's code refreshes without drift, and `up` changes at most in place: no replace, no
// new WireGuard key, the client's real address still reaches the LAN service, and destroy with
// the new code leaves both hosts as they were before 0.1.0 touched them.
//
// 0.1.0 is built from its commit by scripts/build-release.sh into a cache outside the checkout
// (release.ts). Its phase runs the program with 0.1.0's SDK and the dynamic-provider server in
// the release's directory (natgate/provider = 0.1.0); the state goes to a file, and a new Stack
// reads it with the checkout's SDK and a server in the repository (natgate/provider = the new
// code), as `npm install natgate@new` between two `pulumi up`s would.
// Run: node_modules/.bin/tsx test/lab/cli.ts run -- node_modules/.bin/mocha test/upgrade/upgrade.test.ts
import { strict as assert } from "assert";
import * as fs from "fs";
import * as path from "path";
import { getLab, type Lab, type LabProcess } from "../lab";
import type { ProviderServer } from "../engine/harness";
import { Stack, type RefreshStep, type StateResource, type Step } from "../engine/stack";
import { askBanner, askTcp, askUdp, stopAll } from "../engine/seedLab";
import { answered, assertHostsAsBefore, CLIENT, lanServices, opsOf, snapshotAll } from "../variants/variantLab";
import { buildRelease, currentSdk, RELEASE_0_1_0, seedLikeProgram, type Release } from "./release";

const PROJECT = "natgate-upgrade";
const DATA_PATH = ["home", "home-tunnel", "home-routes", "home-return", "home-router-0", "home-router-local-0", "home-vps-0", "home-vps-1"];
/** The seed's WireGuard interface on both hosts (Tunnel's default). */
const WG = "wg0";
/** Step ops an upgrade may show: anything else (replace, create, delete) is a new resource identity. */
const IN_PLACE = ["same", "update"];

type Keys = Record<"vps" | "router", string>;

async function wgKeys(lab: Lab): Promise<Keys> {
  return {
    vps: (await lab.hosts.vps.run(`wg show ${WG} public-key`)).trim(),
    router: (await lab.hosts.router.run(`wg show ${WG} public-key`)).trim(),
  };
}

/** Steps that are not in place, with what forced them. */
function notInPlace(steps: Step[]): string[] {
  return steps
    .filter((s) => !IN_PLACE.includes(s.op))
    .map((s) => `${s.name} (${s.kind ?? s.type}): ${s.op}${s.replaces.length ? `, replaces [${s.replaces.join(", ")}]` : ""}`);
}

function describeUpdates(steps: Step[]): string[] {
  return steps.filter((s) => s.op === "update").map((s) => `${s.name}: ${s.changes.map((c) => c.property).join(", ") || "(provider diff only)"}`);
}

/** The client's real address on tcp and udp, and VPS:2222 is the router's sshd. */
async function assertTraffic(lab: Lab): Promise<void> {
  assert.equal(answered(await askTcp(lab, 5000)), `tcp/5000 saw ${CLIENT}`);
  assert.equal(answered(await askUdp(lab, 6000)), `udp/6000 saw ${CLIENT}`);
  assert.match(answered(await askBanner(lab, 2222)), /^SSH-2\.0-OpenSSH/);
}

/**
 * What a refresh must not find: a non-empty `drift` on every resource that has one (what the new
 * code reads back differs from what it expects for the same inputs), and for the Tunnel, which
 * has no `drift`, a changed live rendering or public key.
 */
function driftFound(stateBefore: StateResource[], after: StateResource[], steps: RefreshStep[]): string[] {
  const problems: string[] = [];
  for (const old of stateBefore.filter((r) => r.custom && r.id !== undefined)) {
    const now = after.find((r) => r.urn === old.urn);
    const step = steps.find((s) => s.urn === old.urn);
    if (!now || step?.op === "delete") {
      problems.push(`${old.name}: gone after refresh (the new code does not find what 0.1.0 created)`);
      continue;
    }
    if ("drift" in old.outputs) {
      const drift = now.outputs.drift;
      if (!Array.isArray(drift)) problems.push(`${old.name}: drift is ${JSON.stringify(drift)}, not a list`);
      else if (drift.length) problems.push(`${old.name}: drift\n      ${drift.join("\n      ")}`);
    } else {
      for (const c of step?.changes ?? []) {
        if (c.property.startsWith("rendered") || /PublicKey$/.test(c.property)) {
          problems.push(`${old.name}: ${c.property} changed on refresh: ${JSON.stringify(c.old)} → ${JSON.stringify(c.new)}`);
        }
      }
    }
  }
  return problems;
}

describe(`upgrade from natgate ${RELEASE_0_1_0.version}: a stack it created keeps its resources under the new code`, function () {
  this.timeout(300_000);
  let lab: Lab;
  let release: Release;
  let oldServer: ProviderServer | undefined;
  let oldStack: Stack | undefined;
  let newStack: Stack | undefined;
  let stateFile: string;
  let services: LabProcess[] = [];
  let initial: Awaited<ReturnType<typeof snapshotAll>>;
  let keys: Keys;
  let oldState: StateResource[];
  /** The stack under the new code; fails naming the step that did not get that far. */
  const upgraded = (): Stack => {
    assert.ok(newStack, "the stack never reached the new code (an earlier step failed)");
    return newStack;
  };

  before(async function () {
    this.timeout(300_000);
    lab = getLab();
    const started = Date.now();
    release = buildRelease(RELEASE_0_1_0);
    console.log(`      natgate ${release.version} at ${release.dir} (${Date.now() - started} ms)`);
    const dir = path.join(lab.dir, "upgrade");
    fs.mkdirSync(dir, { recursive: true });
    stateFile = path.join(dir, "state.json");
    fs.rmSync(stateFile, { force: true });
    initial = await snapshotAll(lab);
    services = await lanServices(lab, [["tcp", 5000], ["udp", 5000], ["udp", 6000]]);
  });

  after(async () => {
    await stopAll(services);
    // Leave no natgate state behind: destroy with whichever code holds the stack now.
    const holder = newStack ?? oldStack;
    if (holder?.state.length) await holder.destroy().catch((e) => console.error(`      cleanup destroy failed: ${(e as Error).message}`));
    await newStack?.close();
    await oldStack?.close();
    await oldServer?.close();
  });

  it(`${RELEASE_0_1_0.version}: up creates the seed's layout, the client's real address reaches the LAN service`, async () => {
    oldServer = await release.startServer(PROJECT);
    oldStack = new Stack({ project: PROJECT, stateFile, server: oldServer });
    const program = seedLikeProgram(release.sdk, lab);
    const r = await oldStack.up(program);
    assert.deepEqual(opsOf(r.steps), Object.fromEntries(DATA_PATH.map((n) => [n, "create"])));
    console.log(`      ${release.version} up: ${r.durationMs} ms`);
    await assertTraffic(lab);

    keys = await wgKeys(lab);
    const tunnel = oldStack.get("home-tunnel").outputs;
    assert.deepEqual({ vps: tunnel.listenerPublicKey, router: tunnel.dialerPublicKey }, keys, "the state's keys are the hosts'");

    // 0.1.0 against itself, so a drift found under the new code is the upgrade's, not the lab's.
    const refreshed = await oldStack.refresh();
    assert.deepEqual(driftFound(oldStack.state, oldStack.state, refreshed), [], `${release.version}'s own refresh`);
    assert.deepEqual(notInPlace((await oldStack.preview(program)).steps), []);
    assert.deepEqual(refreshed.filter((s) => s.op !== "same").map((s) => s.name), [], `${release.version}'s own refresh changes nothing`);

    oldState = JSON.parse(JSON.stringify(oldStack.state)) as StateResource[];
    await oldStack.close();
    await oldServer.close();
    oldServer = undefined;
    assert.ok(fs.existsSync(stateFile), "the stack's state is kept in its file");
  });

  it("the new code: refresh finds no drift in what 0.1.0 created", async () => {
    assert.ok(oldState, `${release.version} never created the stack (the first step failed)`);
    newStack = new Stack({ project: PROJECT, stateFile });
    oldStack = undefined;
    assert.deepEqual(newStack.state.map((r) => r.urn), oldState.map((r) => r.urn), "the new Stack reads the same state");
    const steps = await newStack.refresh();
    const problems = driftFound(oldState, newStack.state, steps);
    assert.deepEqual(problems, [], `drift after upgrading:\n  ${problems.join("\n  ")}`);
    const changed = steps.filter((s) => s.op !== "same").map((s) => `${s.name}: ${s.changes.map((c) => c.property).join(", ")}`);
    if (changed.length) console.log(`      refresh changed outputs (no drift): ${changed.join("; ")}`);
  });

  it("the new code: preview shows no replace, only same or update", async () => {
    const r = await upgraded().preview(seedLikeProgram(currentSdk(), lab));
    assert.deepEqual(notInPlace(r.steps), [], `not in place:\n  ${notInPlace(r.steps).join("\n  ")}`);
    assert.deepEqual(Object.keys(opsOf(r.steps)).sort(), [...DATA_PATH].sort(), "the same resources (names, URNs) as 0.1.0's");
    const updates = describeUpdates(r.steps);
    if (updates.length) console.log(`      updates: ${updates.join("; ")}`);
  });

  it("the new code: up changes at most in place, keeps both WireGuard keys, the client's real address still arrives", async () => {
    const r = await upgraded().up(seedLikeProgram(currentSdk(), lab));
    assert.deepEqual(notInPlace(r.steps), [], `not in place:\n  ${notInPlace(r.steps).join("\n  ")}`);
    console.log(`      new code's first up: ${r.durationMs} ms (${describeUpdates(r.steps).join("; ") || "nothing changed"})`);
    for (const old of oldState.filter((x) => x.id !== undefined)) {
      assert.equal(upgraded().get(old.name).id, old.id, `${old.name} keeps its id`);
    }
    assert.deepEqual(await wgKeys(lab), keys, "the hosts' WireGuard public keys");
    const tunnel = upgraded().get("home-tunnel").outputs;
    assert.deepEqual({ vps: tunnel.listenerPublicKey, router: tunnel.dialerPublicKey }, keys, "the state's WireGuard public keys");
    await assertTraffic(lab);
  });

  it("the new code: a second up changes nothing, and a refresh after it finds nothing", async () => {
    const r = await upgraded().up(seedLikeProgram(currentSdk(), lab));
    assert.deepEqual(opsOf(r.steps), Object.fromEntries(DATA_PATH.map((n) => [n, "same"])));
    const steps = await upgraded().refresh();
    const changed = steps.filter((s) => s.op !== "same").map((s) => `${s.name}: ${s.op} ${s.changes.map((c) => c.property).join(", ")}`);
    if (changed.length) assert.fail(`a refresh right after up changed outputs:\n  ${changed.join("\n  ")}`);
    assert.deepEqual(await wgKeys(lab), keys);
    await assertTraffic(lab);
  });

  it("the new code: destroy removes what 0.1.0 created and leaves both hosts as they were", async () => {
    const steps = await upgraded().destroy();
    assert.deepEqual(steps.map((s) => s.name).sort(), [...DATA_PATH].sort());
    assert.ok(steps.every((s) => s.op === "delete"));
    assert.deepEqual(upgraded().state, []);
    await assertHostsAsBefore(lab, initial, "destroy with the new code");
    assert.equal((await askTcp(lab, 5000)).answer, "");
  });
});
