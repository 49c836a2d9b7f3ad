// pathCheckProvider's pure parts: input validation (check), diff, read and delete.
import * as assert from "assert";
import { execFileSync } from "child_process";
import { pathCheckProvider } from "../../provider/verify";
import { START_CAPTURE_SCRIPT, STOP_CAPTURE_SCRIPT } from "../../provider/backends/conntrackSh";

const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";
const vps = { host: "198.51.100.1", password: "pw" };
const router = { host: "192.168.1.1", password: "pw" };
const seed = (over: Record<string, unknown> = {}) => ({
  vpsConnection: vps,
  routerConnection: router,
  publicAddress: "198.51.100.1",
  port: 5000,
  routerTunnelAddress: "10.10.10.2",
  tunnelInterface: "wg0",
  ...over,
});

async function failures(news: Record<string, unknown>): Promise<Record<string, string>> {
  const r = await pathCheckProvider.check!({}, news);
  return Object.fromEntries((r.failures ?? []).map((f) => [f.property, f.reason]));
}

describe("PathCheck provider (unit)", () => {
  it("check fills defaults (connections as @pulumi/command does, timeout 5 s, not router-local)", async () => {
    const r = await pathCheckProvider.check!({}, { ...seed(), __provider: "serialized" });
    assert.deepStrictEqual(r.failures, undefined);
    assert.deepStrictEqual(r.inputs, {
      ...seed(),
      vpsConnection: { ...vps, port: 22, user: "root", dialErrorLimit: 10, perDialTimeout: 15, sudo: false },
      routerConnection: { ...router, port: 22, user: "root", dialErrorLimit: 10, perDialTimeout: 15, sudo: false },
      routerLocal: false,
      timeoutSeconds: 5,
    });
  });

  it("check accepts marks as numbers or strings", async () => {
    const r = await pathCheckProvider.check!({}, seed({ mark: "0x10000000", mask: 0x10000000 }));
    assert.strictEqual(r.failures, undefined);
    assert.strictEqual(r.inputs.mark, 0x10000000);
  });

  it("check names every wrong field", async () => {
    assert.deepStrictEqual(
      await failures(
        seed({
          publicAddress: "vps.example.com",
          port: 70000,
          routerTunnelAddress: "10.10.10.2/24",
          tunnelInterface: "a-very-long-interface",
          timeoutSeconds: 0,
          routerConnection: { host: "192.168.1.1", password: "pw", colour: "red" },
          extra: true,
        }),
      ),
      {
        publicAddress: "must be an IP address like 198.51.100.1 (no prefix length, no hostname)",
        port: "must be 1-65535",
        routerTunnelAddress: "must be an IP address like 10.10.10.2 (no prefix length, no hostname)",
        tunnelInterface: "must be at most 15 characters (Linux IFNAMSIZ)",
        timeoutSeconds: "must be more than 0 seconds",
        "routerConnection.colour": "unknown field (not in @pulumi/command's ConnectionArgs, nor natgate's sudo)",
        extra: "unknown field",
      },
    );
    assert.deepStrictEqual(await failures({ ...seed(), port: undefined }), { port: "is required" });
    assert.deepStrictEqual(await failures(seed({ mask: 0xff })), { mask: "needs mark: give the mark the router's connections carry" });
  });

  it("check does not judge values a preview does not know yet", async () => {
    const r = await pathCheckProvider.check!({}, seed({ routerTunnelAddress: UNKNOWN, port: "x" }));
    assert.deepStrictEqual(r.failures, [{ property: "port", reason: "must be a port number 1-65535" }]);
    const ok = await pathCheckProvider.check!({}, seed({ routerTunnelAddress: UNKNOWN }));
    assert.deepStrictEqual(ok.failures ?? [], []);
    const fine = await pathCheckProvider.check!({}, seed({ tunnelInterface: UNKNOWN }));
    assert.deepStrictEqual(fine.failures ?? [], []);
  });

  it("diff: a change of any input re-runs the check; the report alone changes nothing", async () => {
    const olds = { ...seed(), callerAddress: "203.0.113.130", hops: [] };
    assert.deepStrictEqual(await pathCheckProvider.diff!("id", olds, seed()), { changes: false });
    assert.deepStrictEqual(await pathCheckProvider.diff!("id", olds, seed({ port: 5001 })), { changes: true });
  });

  it("read returns the state as it is and delete touches nothing (no connection attempted)", async () => {
    const props = { ...seed({ vpsConnection: { host: "192.0.2.250", password: "pw" } }), callerAddress: "203.0.113.130", hops: [] };
    assert.deepStrictEqual(await pathCheckProvider.read!("pathcheck/198.51.100.1:5000", props), { id: "pathcheck/198.51.100.1:5000", props });
    await pathCheckProvider.delete!("pathcheck/198.51.100.1:5000", props);
  });

  it("capture scripts are valid POSIX sh (dash -n)", () => {
    for (const s of [START_CAPTURE_SCRIPT, STOP_CAPTURE_SCRIPT]) execFileSync("dash", ["-n"], { input: s });
  });
});
