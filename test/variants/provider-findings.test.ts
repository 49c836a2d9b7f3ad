// Variants found failing by the variants helper whose fix was in provider/ (moved here from pending/findings.ts
// once they passed). Each states what a new user would expect.
import { strict as assert } from "assert";
import { getLab, type Lab } from "../lab";
import type { Stack } from "../engine/stack";
import { assertHostsAsBefore, baseArgs, cleanup, connectionTo, portForwardProgram, snapshotAll, variantStack } from "./variantLab";
import type { PortForwardArgs } from "natgate";

const base = (lab: Lab): PortForwardArgs => ({ ...baseArgs(lab), forwards: [{ protocol: "tcp", ports: 5000 }] });

describe("variants: provider findings", function () {
  this.timeout(180_000);
  let lab: Lab;
  let stack: Stack;
  beforeEach(() => {
    lab = getLab();
    stack = variantStack();
  });
  afterEach(async () => cleanup(stack));

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
