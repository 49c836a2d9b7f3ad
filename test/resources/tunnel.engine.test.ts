import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { getLab, type LabHost } from "../lab";
import { providerFor } from "../../sdk/dynamic";
import { serializeProvider, startProviderServer, urnOf, UNKNOWN, type ProviderServer } from "../engine/harness";

// The Tunnel as `pulumi up` runs it: the serialized provider revived by @pulumi/pulumi's own
// dynamic-provider server (which loads natgate/provider from the build, dist/), driven over gRPC
// in the engine's order against the lab's VPS and router. Run after `tsc -p tsconfig.json`
// (scripts/test.sh does).

const lab = getLab();
const { vps, router } = lab.hosts;
const repoRoot = path.resolve(__dirname, "..", "..");

function connectionOf(h: LabHost) {
  const s = h.ssh!;
  return { host: s.host, port: s.port, user: s.user, privateKey: s.privateKey, hostKey: s.hostKey };
}

describe("Tunnel through the real dynamic-provider server (lab)", function () {
  this.timeout(120_000);
  let server: ProviderServer;
  let providerText: string;
  const urn = urnOf("tunnel");

  before(async () => {
    assert.ok(
      fs.existsSync(path.join(repoRoot, "dist", "provider", "index.js")) && fs.existsSync(path.join(repoRoot, "node_modules", "natgate")),
      "build first: npx tsc -p tsconfig.json && node scripts/link-self.js (scripts/test.sh does both)",
    );
    providerText = await serializeProvider(providerFor("Tunnel"));
    server = await startProviderServer({ cwd: repoRoot });
    await server.configure();
  });
  after(async () => server?.close());

  it("previews with unknowns, then check → create → diff → read → delete → read (gone)", async () => {
    const news = {
      __provider: providerText,
      listener: { connection: connectionOf(vps), address: "10.10.10.1/24" },
      dialer: { connection: connectionOf(router), address: "10.10.10.2/24" },
    };
    // preview while the router's host is not known yet
    const preview = await server.check(urn, {}, { ...news, dialer: { ...news.dialer, connection: { ...news.dialer.connection, host: UNKNOWN } } });
    assert.deepEqual(preview.failures, []);

    const checked = await server.check(urn, {}, news);
    assert.deepEqual(checked.failures, []);
    assert.ok((checked.inputs.renderedDialer as string[]).some((l) => l.includes("<listener public key>")));

    const bad = await server.check(urn, {}, { ...news, listenPort: 0 });
    assert.deepEqual(bad.failures.map((f) => f.property), ["listenPort"]);

    const created = await server.create(urn, checked.inputs);
    try {
      const outs = created.properties;
      assert.match(String(outs.listenerPublicKey), /^[A-Za-z0-9+/]{43}=$/);
      assert.equal(outs.dialerBackend, "wireguard-go");
      const privateKeys = [await vps.run("cat /etc/natgate/wg/wg0.key"), await router.run("cat /etc/natgate/wg/wg0.key")];
      for (const k of privateKeys) assert.ok(!JSON.stringify(outs).includes(k.trim()), "a private key reached the state");

      const same = await server.diff(created.id, urn, outs, checked.inputs);
      assert.equal(same.changes, "none");

      const read = await server.read(created.id, urn, outs);
      assert.equal(read.id, created.id);
      assert.deepEqual(read.properties, outs);
    } finally {
      await server.delete(created.id, urn, created.properties);
    }
    const gone = await server.read(created.id, urn, created.properties);
    assert.equal(gone.id, "");
    assert.equal((await vps.exec("ip link show dev wg0")).code !== 0, true);
    assert.equal((await router.exec("test -e /etc/natgate/wg/wg0.key")).code !== 0, true);
  });

  it("dual stack (address6): a preview names a bad address6, then create → diff → read → delete", async () => {
    const news = {
      __provider: providerText,
      listener: { connection: connectionOf(vps), address: "10.10.10.1/24", address6: "fd00:4e47::1/64" },
      dialer: { connection: connectionOf(router), address: "10.10.10.2/24", address6: "fd00:4e47::2/64" },
    };
    const bad = await server.check(urn, {}, { ...news, dialer: { ...news.dialer, address6: "fd00:4e48::2/64" } });
    assert.deepEqual(bad.failures.map((f) => f.property), ["dialer.address6"]);
    const half = await server.check(urn, {}, { ...news, dialer: { ...news.dialer, address6: undefined } });
    assert.deepEqual(half.failures.map((f) => f.property), ["dialer.address6"]);
    const preview = await server.check(urn, {}, { ...news, listener: { ...news.listener, address6: UNKNOWN } });
    assert.deepEqual(preview.failures, []);

    const checked = await server.check(urn, {}, news);
    assert.deepEqual(checked.failures, []);
    assert.deepEqual((checked.inputs.dialer as { allowedIps: string[] }).allowedIps, ["0.0.0.0/0", "::/0"]);
    const created = await server.create(urn, checked.inputs);
    try {
      const outs = created.properties;
      assert.ok((outs.renderedDialer as string[]).includes("ip address add fd00:4e47::2/64 dev wg0"));
      assert.match(await router.run("ip -6 -o addr show dev wg0 scope global"), /inet6 fd00:4e47::2\/64 /);
      assert.equal((await server.diff(created.id, urn, outs, checked.inputs)).changes, "none");
      const read = await server.read(created.id, urn, outs);
      assert.deepEqual(read.properties, outs);
    } finally {
      await server.delete(created.id, urn, created.properties);
    }
    assert.equal((await server.read(created.id, urn, created.properties)).id, "");
    assert.equal((await vps.exec("ip link show dev wg0")).code !== 0, true);
  });
});
