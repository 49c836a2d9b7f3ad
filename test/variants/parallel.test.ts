// Pulumi applies independent resources in parallel (issue 11): 20 DnatRules on one host, created,
// updated and deleted at once through the engine harness. Afterwards every one is there (or none
// is), each holds net.ipv4.ip_forward exactly once, and the last delete puts the value found
// before back: the host lock serializes their read-then-write steps.
// Run: node_modules/.bin/tsx test/lab/cli.ts run -- node_modules/.bin/mocha test/variants/parallel.test.ts
import { strict as assert } from "assert";
import { DnatRule } from "natgate";
import { getLab, type Lab } from "../lab";
import type { Stack } from "../engine/stack";
import { assertHostsAsBefore, cleanup, connectionTo, PUBLIC, snapshotAll, variantStack } from "./variantLab";

const N = 20;
const BASE = 22000;

function program(lab: Lab, offset: number) {
  return () => {
    for (let i = 0; i < N; i++) {
      new DnatRule(`par-${i}`, { connection: connectionTo(lab, "vps"), destination: PUBLIC, protocol: "tcp", ports: BASE + offset + i, toAddress: "10.10.10.2" });
    }
  };
}

describe(`variants: ${N} DnatRules on one host at once`, function () {
  this.timeout(240_000);
  let lab: Lab;
  let stack: Stack | undefined;
  let initial: Awaited<ReturnType<typeof snapshotAll>>;
  let forwardBefore: string;

  const tables = async () => (await lab.hosts.vps.run("nft list tables")).split("\n").filter((l) => /natgate_dnat_par_\d+$/.test(l.trim())).length;
  const holders = async () =>
    (await lab.hosts.vps.run("ls /run/natgate/sysctl/*ip_forward*/ 2>/dev/null | grep -c '^holder\\.' || true")).trim();
  const dports = async () => [...(await lab.hosts.vps.run("nft list ruleset")).matchAll(/tcp dport (\d+)/g)].map((m) => Number(m[1])).filter((p) => p >= BASE && p < BASE + 1000).sort((a, b) => a - b);

  before(async () => {
    lab = getLab();
    initial = await snapshotAll(lab);
    forwardBefore = (await lab.hosts.vps.run("sysctl -n net.ipv4.ip_forward")).trim();
    stack = variantStack();
  });
  after(async () => {
    await cleanup(stack);
    stack = undefined;
  });

  it("create: all 20 tables, one ip_forward holder each", async () => {
    const r = await stack!.up(program(lab, 0));
    assert.equal(r.steps.filter((s) => s.op === "create").length, N);
    assert.equal(await tables(), N);
    assert.equal(await holders(), String(N));
    assert.deepEqual(await dports(), Array.from({ length: N }, (_, i) => BASE + i));
    assert.equal((await lab.hosts.vps.run("sysctl -n net.ipv4.ip_forward")).trim(), "1");
  });

  it("update: all 20 move to other ports at once, still one holder each", async () => {
    const r = await stack!.up(program(lab, 100));
    assert.equal(r.steps.filter((s) => s.op === "update").length, N, JSON.stringify(r.steps.map((s) => s.op)));
    assert.deepEqual(await dports(), Array.from({ length: N }, (_, i) => BASE + 100 + i));
    assert.equal(await holders(), String(N));
  });

  it("delete: none left, ip_forward back to what it was, the VPS as before", async () => {
    await stack!.destroy();
    assert.equal(await tables(), 0);
    assert.equal(await holders(), "0");
    assert.equal((await lab.hosts.vps.run("sysctl -n net.ipv4.ip_forward")).trim(), forwardBefore);
    await assertHostsAsBefore(lab, initial);
  });
});
