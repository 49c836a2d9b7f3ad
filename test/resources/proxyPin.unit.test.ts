// The jump host's key is kept like the host's own (issue 11): a one-host kind and a Tunnel pass the
// proxy fingerprint their state kept to runScript, while the jump host's host:port is the same,
// and keep what it presented; without a jump host their outputs are as before. runScript is
// replaced by a fake that records what it was asked to expect (no SSH).
import * as assert from "node:assert/strict";
import { z } from "zod";
import { ConnectionSchema, type Connection } from "../../provider/ssh";
import type { RunOptions, RunResult } from "../../provider/ssh/run";
import { confirmFreshLogin, Host, keptProxyFingerprint } from "../../provider/resources/common/host";
import { hostFor, hostKind, type BaseInputs, type ResourceKind } from "../../provider/resources/common/hostKind";
import { TunnelKind } from "../../provider/resources/tunnel";
import { inputsOf } from "../../provider/engine/check";

const TARGET_FP = "SHA256:target";
const JUMP_FP = "SHA256:jump";

interface Call {
  host: string;
  opts: RunOptions;
}

/** runScript's module with runScript replaced, while `body` runs; the calls it saw. */
async function withFakeRun<T>(stdout: string, body: (calls: Call[]) => Promise<T>): Promise<T> {
  const file = require.resolve("../../provider/ssh/run");
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  require(file);
  const cached = require.cache[file]!;
  const original = cached.exports;
  const calls: Call[] = [];
  const fake = async (conn: Connection, _script: string, _args: readonly string[], opts: RunOptions = {}): Promise<RunResult> => {
    calls.push({ host: conn.host, opts });
    return { code: 0, stdout: opts.fresh ? "cancelled\n" : stdout, stderr: "", fingerprint: TARGET_FP, ...(conn.proxy ? { proxyFingerprint: JUMP_FP } : {}) };
  };
  cached.exports = { ...original, runScript: fake };
  try {
    return await body(calls);
  } finally {
    cached.exports = original;
  }
}

const conn = (over: Record<string, unknown> = {}): Connection => ConnectionSchema.parse({ host: "10.0.0.2", password: "x", ...over });
const jump = (host = "203.0.113.7", port?: number) => ({ host, password: "y", ...(port ? { port } : {}) });

describe("jump host key pinning (issue 11, no SSH)", () => {
  describe("keptProxyFingerprint", () => {
    it("keeps the state's key only for the same jump host host:port", () => {
      const now = conn({ proxy: jump() });
      assert.equal(keptProxyFingerprint(conn({ proxy: jump() }), now, JUMP_FP), JUMP_FP);
      assert.equal(keptProxyFingerprint(conn({ proxy: jump("203.0.113.7", 22) }), now, JUMP_FP), JUMP_FP, "port 22 written out is the same");
      assert.equal(keptProxyFingerprint(conn({ proxy: jump("203.0.113.8") }), now, JUMP_FP), undefined, "another jump host address");
      assert.equal(keptProxyFingerprint(conn({ proxy: jump("203.0.113.7", 2222) }), now, JUMP_FP), undefined, "another jump host port");
      assert.equal(keptProxyFingerprint(conn(), now, JUMP_FP), undefined, "no jump host before");
      assert.equal(keptProxyFingerprint(conn({ proxy: jump() }), conn(), JUMP_FP), undefined, "no jump host now");
      assert.equal(keptProxyFingerprint(undefined, now, JUMP_FP), undefined, "no state");
      assert.equal(keptProxyFingerprint(conn({ proxy: jump() }), now, undefined), undefined, "a state from before the key was kept");
      assert.equal(keptProxyFingerprint(conn({ proxy: jump() }), now, ""), undefined);
    });

    it("hostFor: the target's key for the same host:port, the jump host's for the same jump host", () => {
      const props = (c: Connection) => ({ connection: c, hostKeyFingerprint: TARGET_FP, proxyHostKeyFingerprint: JUMP_FP });
      const both = hostFor(conn({ proxy: jump() }), props(conn({ proxy: jump() })));
      assert.deepEqual([both.fingerprint, both.proxyFingerprint], [TARGET_FP, JUMP_FP]);
      const moved = hostFor(conn({ proxy: jump("203.0.113.8") }), props(conn({ proxy: jump() })));
      assert.deepEqual([moved.fingerprint, moved.proxyFingerprint], [TARGET_FP, undefined]);
      const none = hostFor(conn(), props(conn()));
      assert.deepEqual([none.fingerprint, none.proxyFingerprint], [TARGET_FP, undefined]);
      const fresh = hostFor(conn({ proxy: jump() }), undefined);
      assert.deepEqual([fresh.fingerprint, fresh.proxyFingerprint], [undefined, undefined]);
    });
  });

  describe("Host", () => {
    it("passes both kept keys to every run, and keeps what the jump host presented", () =>
      withFakeRun("", async (calls) => {
        const host = new Host(conn({ proxy: jump() }), undefined, undefined);
        await host.run("a", "true", []);
        await host.run("b", "true", []);
        await confirmFreshLogin(host, "test", "token");
        assert.deepEqual(
          calls.map((c) => [c.opts.knownFingerprint, c.opts.knownProxyFingerprint, c.opts.fresh ?? false]),
          [
            [undefined, undefined, false],
            [TARGET_FP, JUMP_FP, false],
            [TARGET_FP, JUMP_FP, true],
          ],
        );
        assert.equal(host.proxyFingerprint, JUMP_FP);
      }));

    it("takes no jump host key for a connection without a proxy", () =>
      withFakeRun("", async (calls) => {
        const host = new Host(conn(), TARGET_FP, JUMP_FP);
        await host.run("a", "true", []);
        assert.deepEqual([calls[0]!.opts.knownProxyFingerprint, host.proxyFingerprint], [undefined, undefined]);
      }));
  });

  describe("a one-host kind", () => {
    // The smallest kind: one script per operation, nothing on the host to compare.
    const schema = z.object({ connection: ConnectionSchema, name: z.string() }).strict();
    const k: ResourceKind<BaseInputs> = {
      kind: "Probe",
      schema,
      crossCheck: () => [],
      render: () => [],
      identityFields: [],
      deleteBeforeReplace: false,
      converge: async (host) => (await host.run("probe", "true", []), { rendered: [], drift: [], facts: {} }),
      observe: async (host) => (await host.run("probe", "true", []), { rendered: [], drift: [], facts: {} }),
      remove: async (host) => void (await host.run("probe", "true", [])),
    };
    const kind = hostKind(k);
    const inputs = (c: Connection): BaseInputs => ({ connection: c, name: "p" });

    it("create keeps the jump host's key next to the host's; the next update, refresh and delete expect both", () =>
      withFakeRun("", async (calls) => {
        const i = inputs(conn({ proxy: jump() }));
        const created = await kind.apply(i, undefined);
        assert.deepEqual([created.hostKeyFingerprint, created.proxyHostKeyFingerprint], [TARGET_FP, JUMP_FP]);
        await kind.apply(i, created);
        const read = await kind.read(i, created);
        assert.equal(read!.proxyHostKeyFingerprint, JUMP_FP);
        await kind.remove(i, created);
        assert.deepEqual(
          calls.map((c) => c.opts.knownProxyFingerprint),
          [undefined, JUMP_FP, JUMP_FP, JUMP_FP],
        );
      }));

    it("a new jump host address is trusted on first use again; a state from before the key was kept too", () =>
      withFakeRun("", async (calls) => {
        const created = await kind.apply(inputs(conn({ proxy: jump() })), undefined);
        await kind.apply(inputs(conn({ proxy: jump("203.0.113.8") })), created);
        const { proxyHostKeyFingerprint: _dropped, ...older } = created;
        await kind.apply(inputs(conn({ proxy: jump() })), older);
        assert.deepEqual(
          calls.map((c) => [c.opts.knownFingerprint, c.opts.knownProxyFingerprint]),
          [
            [undefined, undefined],
            [TARGET_FP, undefined],
            [TARGET_FP, undefined],
          ],
        );
      }));

    it("without a jump host, the outputs have no new key", () =>
      withFakeRun("", async () => {
        const created = await kind.apply(inputs(conn()), undefined);
        assert.ok(!("proxyHostKeyFingerprint" in created), JSON.stringify(created));
        assert.ok(kind.outputKeys.includes("proxyHostKeyFingerprint"));
      }));
  });

  describe("Tunnel", () => {
    const KEY = "0".repeat(43) + "=";
    const READ = `@@key\n${KEY}\n@@boot\ninit none\n@@end\n`;
    const tunnel = (listenerProxy?: object, dialerProxy?: object) =>
      inputsOf(TunnelKind, {
        listener: { connection: { host: "198.51.100.1", password: "x", ...(listenerProxy ? { proxy: listenerProxy } : {}) }, address: "10.10.10.1/24" },
        dialer: { connection: { host: "192.168.1.1", password: "x", ...(dialerProxy ? { proxy: dialerProxy } : {}) }, address: "10.10.10.2/24" },
      });
    const state = (a: object) => ({ ...a, listenerFingerprint: "SHA256:l", dialerFingerprint: "SHA256:d", dialerProxyFingerprint: JUMP_FP });

    it("refresh and delete expect each side's kept jump host key; refresh keeps it, for the side that has a jump host only", () =>
      withFakeRun(READ, async (calls) => {
        const a = tunnel(undefined, jump());
        const read = (await TunnelKind.read(a, state(a)))!;
        assert.deepEqual([read.listenerProxyFingerprint, read.dialerProxyFingerprint], [undefined, JUMP_FP]);
        assert.ok(!("listenerProxyFingerprint" in read));
        await TunnelKind.remove(a, state(a));
        const byHost = (h: string) => calls.filter((c) => c.host === h).map((c) => [c.opts.knownFingerprint, c.opts.knownProxyFingerprint]);
        assert.deepEqual(byHost("192.168.1.1"), [["SHA256:d", JUMP_FP], ["SHA256:d", JUMP_FP]]);
        assert.deepEqual(byHost("198.51.100.1"), [["SHA256:l", undefined], ["SHA256:l", undefined]]);
      }));

    it("a side whose jump host moved expects no kept key for it", () =>
      withFakeRun(READ, async (calls) => {
        const before = tunnel(undefined, jump());
        await TunnelKind.remove(tunnel(undefined, jump("203.0.113.8")), state(before));
        assert.equal(calls.find((c) => c.host === "192.168.1.1")!.opts.knownProxyFingerprint, undefined);
      }));

    it("without jump hosts, a refresh's outputs have no new key", () =>
      withFakeRun(READ, async () => {
        const a = tunnel();
        const read = (await TunnelKind.read(a, state(a)))!;
        assert.ok(!("listenerProxyFingerprint" in read) && !("dialerProxyFingerprint" in read), JSON.stringify(read));
      }));
  });
});
