// Variants found failing by the variants helper whose fix was in provider/ (moved here from pending/findings.ts
// once they passed). Each states what a new user would expect.
import { strict as assert } from "assert";
import { getLab, type Lab } from "../lab";
import type { Stack } from "../engine/stack";
import {
  assertHostsAsBefore,
  CLIENT,
  cleanup,
  CLOUD_PUBLIC,
  cloudNat,
  connectionTo,
  lanServices,
  oneForwardArgs,
  portForwardProgram,
  snapshotAll,
  stopAll,
  variantStack,
} from "./variantLab";
import type { PortForwardArgs } from "natgate";

/** The first check failure line of a failed preview, or "" when the preview passed. */
async function previewFailure(stack: Stack, args: PortForwardArgs): Promise<string> {
  try {
    await stack.preview(portForwardProgram("home", args));
    return "";
  } catch (e) {
    return (e as Error).message.split("\n").find((l) => l.includes("failed its check")) ?? (e as Error).message;
  }
}

const base = oneForwardArgs;

describe("variants: provider findings", function () {
  this.timeout(180_000);
  let lab: Lab;
  let stack: Stack;
  beforeEach(() => {
    lab = getLab();
    stack = variantStack();
  });
  afterEach(async () => cleanup(stack));

  it("a VPS behind its cloud's 1:1 NAT (public address on no interface, as on EC2/GCP/Azure): forwards work, or up fails naming publicAddress", async () => {
    // The cloud's NAT: 198.51.100.77 (what the user knows as the VPS's public address) → the VPS's own 198.51.100.1.
    await cloudNat.add(lab);
    const services = await lanServices(lab, [["tcp", 5000]]);
    const before = await snapshotAll(lab);
    try {
      const args = { ...base(lab), vps: { ...base(lab).vps, publicAddress: CLOUD_PUBLIC } };
      const up = await stack.up(portForwardProgram("home", args)).then(
        () => "",
        (e: Error) => e.message,
      );
      if (up) {
        assert.match(up, /198\.51\.100\.77 is not an address of host 198\.51\.100\.1 .*vps\.localAddress/, up);
      } else {
        const r = await lab.hosts.client.exec(`socat -T3 - TCP:${CLOUD_PUBLIC}:5000,connect-timeout=3 </dev/null`);
        assert.equal(r.stdout.trim(), `tcp/5000 saw ${CLIENT}`, `up succeeded but the forward does not work: ${r.stderr.trim()}`);
      }
    } finally {
      await cleanup(stack);
      await stopAll(services);
      await cloudNat.remove(lab);
    }
    await assertHostsAsBefore(lab, before);
  });

  it("a tunnel interface name wg-quick allows but the route fields do not ('wg+home') is refused under the field the user wrote, by the rule every resource uses", async () => {
    const f = await previewFailure(stack, { ...base(lab), tunnel: { interfaceName: "wg+home" } });
    assert.match(f, /PortForward home:\n {2}tunnel\.interfaceName: may contain only A-Z, a-z, 0-9, '_', '\.' and '-'/, f);
  });

  it("a non-root user without sudo: the error says to set sudo: true or connect as root", async () => {
    const router = { ...(connectionTo(lab, "router", "ops") as object), sudo: false } as PortForwardArgs["router"]["connection"];
    const before = await snapshotAll(lab);
    const e = await stack.up(portForwardProgram("home", { ...base(lab), router: { ...base(lab).router, connection: router } })).then(
      () => undefined,
      (x: Error) => x,
    );
    assert.ok(e, "up should fail");
    const first = e.message.split("\n").slice(0, 6).join("\n");
    assert.match(e.message, /sudo/, `the error does not say what to do:\n${first}`);
    assert.match(e.message, /as ops \(uid \d+\), but natgate needs root there: set connection\.sudo = true/, first);
    await cleanup(stack);
    await assertHostsAsBefore(lab, before);
  });
});
