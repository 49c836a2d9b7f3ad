// The one engine every kind runs on: the same input handling for all five, checked through each
// kind's real provider (not the engine alone), so a kind that grew its own copy would show here.
import * as assert from "node:assert/strict";
import { providers } from "../../provider";
import { UNKNOWN } from "../../provider/engine/unknown";
import { NatgateError } from "../../provider/ssh/errors";
import { NATGATE_VERSION } from "../../provider/engine/version";

const vps = { host: "198.51.100.1", password: "x" };
const router = { host: "192.168.1.1", password: "x" };

/** Valid inputs of each kind, and the path to one of its connections. */
const KINDS: Record<string, { inputs: Record<string, unknown>; connection: string[] }> = {
  DnatRule: { inputs: { connection: vps, name: "fwd", ports: "5000", destination: "198.51.100.1", toAddress: "10.10.10.2" }, connection: ["connection"] },
  ConnmarkReturnPath: { inputs: { connection: router, name: "home", tunnelInterface: "wg0", localSource: "10.10.10.2" }, connection: ["connection"] },
  PolicyRouteTable: { inputs: { connection: router, name: "home", routes: [{ to: "default", via: "10.10.10.1", dev: "wg0" }] }, connection: ["connection"] },
  Tunnel: {
    inputs: { listener: { connection: vps, address: "10.10.10.1/24" }, dialer: { connection: router, address: "10.10.10.2/24" } },
    connection: ["dialer", "connection"],
  },
  PathCheck: {
    inputs: { vpsConnection: vps, routerConnection: router, publicAddress: "198.51.100.1", port: 5000, routerTunnelAddress: "10.10.10.2", tunnelInterface: "wg0" },
    connection: ["routerConnection"],
  },
};

function withAt(o: Record<string, unknown>, path: string[], value: unknown): Record<string, unknown> {
  const copy = structuredClone(o);
  let cur: Record<string, unknown> = copy;
  for (const k of path.slice(0, -1)) cur = cur[k] as Record<string, unknown>;
  cur[path[path.length - 1]!] = value;
  return copy;
}

async function failuresOf(kind: string, news: Record<string, unknown>): Promise<Record<string, string>> {
  const r = await providers[kind]!.check!({}, { __provider: "serialized", ...news });
  return Object.fromEntries((r.failures ?? []).map((f) => [f.property, f.reason]));
}

describe("the engine: every kind checks inputs the same way", () => {
  it("covers every kind the provider serves", () => {
    assert.deepEqual(Object.keys(providers).sort(), Object.keys(KINDS).sort());
  });

  for (const [kind, { inputs, connection }] of Object.entries(KINDS)) {
    describe(kind, () => {
      it("valid inputs pass, with no provider closure in what check returns", async () => {
        const r = await providers[kind]!.check!({}, { __provider: "serialized", ...inputs });
        assert.deepEqual(r.failures ?? [], []);
        assert.equal((r.inputs as Record<string, unknown>).__provider, undefined);
      });

      it("a misspelt field is named as written, even beside a value not known yet", async () => {
        const news = withAt({ ...inputs, colour: "red" }, [...connection, "host"], UNKNOWN);
        assert.deepEqual(await failuresOf(kind, news), { colour: "unknown field" });
      });

      it("a misspelt connection field says where the valid ones come from", async () => {
        const f = await failuresOf(kind, withAt(inputs, [...connection, "hots"], "x"));
        assert.deepEqual(Object.keys(f), [[...connection, "hots"].join(".")]);
        assert.match(Object.values(f)[0]!, /ConnectionArgs/);
      });

      it("a value not known yet is judged later; a wrong one now, by its path", async () => {
        assert.deepEqual(await failuresOf(kind, withAt(inputs, [...connection, "port"], UNKNOWN)), {});
        const f = await failuresOf(kind, withAt(inputs, [...connection, "port"], 70000));
        assert.deepEqual(Object.keys(f), [[...connection, "port"].join(".")]);
      });

      it("a state that does not check is refused with a NatgateError of code config, before any host", async () => {
        const bad = withAt(inputs, [...connection, "port"], "x");
        await assert.rejects(providers[kind]!.create(bad), (e: unknown) => e instanceof NatgateError && e.code === "config" && /invalid \w+ inputs/.test(e.message));
        await assert.rejects(providers[kind]!.delete!("id", bad), (e: unknown) => e instanceof NatgateError && e.code === "config");
      });

      it("a state with values not known yet is never acted on", async () => {
        const checked = (await providers[kind]!.check!({}, inputs)).inputs as Record<string, unknown>;
        const unknown = withAt(checked, [...connection, "host"], UNKNOWN);
        await assert.rejects(providers[kind]!.create(unknown), (e: unknown) => e instanceof NatgateError && /not all known yet/.test(e.message));
      });

      it("the same inputs diff as no change; a new host for the resource is not an update in place", async () => {
        const checked = (await providers[kind]!.check!({}, inputs)).inputs as Record<string, unknown>;
        const olds = { ...checked, natgateVersion: kind === "PathCheck" ? undefined : NATGATE_VERSION };
        assert.deepEqual(await providers[kind]!.diff!("id", olds, checked), { changes: false });
        const moved = (await providers[kind]!.check!({}, withAt(inputs, [...connection, "host"], "203.0.113.9"))).inputs as Record<string, unknown>;
        const d = await providers[kind]!.diff!("id", olds, moved);
        assert.equal(d.changes, true);
        // PathCheck is an action: a new host re-runs it. Every other kind is replaced.
        if (kind === "PathCheck") assert.equal(d.replaces, undefined);
        else assert.deepEqual(d.replaces, [[...connection, "host"].join(".")]);
      });
    });
  }
});
