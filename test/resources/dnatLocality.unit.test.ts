// DnatRule's locality check: a destination the host does not take as its own (a cloud's 1:1 NAT)
// fails the converge before anything is written.
import * as assert from "node:assert/strict";
import { localityProblem, parseLocality } from "../../provider/resources/dnat/index";
import { DnatRuleSchema } from "../../provider/resources/dnat/schema";

const rule = (destination?: string) =>
  DnatRuleSchema.parse({
    connection: { host: "198.51.100.1", password: "x" },
    name: "fwd",
    ports: 5000,
    inInterface: "eth0",
    ...(destination ? { destination } : {}),
    toAddress: "10.10.10.2",
  });

const OUTPUT = [
  "@@boot 0",
  "whatever",
  "@@local",
  "198.51.100.77 remote",
  "198.51.100.1 local",
  "@@addrs",
  "127.0.0.1",
  "198.51.100.1",
  "10.10.10.1",
  "198.51.100.1",
  "2001:db8:100::1",
  "fe80::1",
  "",
].join("\n");

describe("DnatRule locality", () => {
  it("parses the kernel's answer per address and the host's addresses (loopback left out, once each)", () => {
    const l = parseLocality(OUTPUT);
    assert.deepEqual([...l.local], [["198.51.100.77", false], ["198.51.100.1", true]]);
    assert.deepEqual(l.addresses, ["198.51.100.1", "10.10.10.1", "2001:db8:100::1"]);
  });

  it("refuses a destination the host does not take as its own, naming its addresses of that family and what to match", () => {
    assert.equal(
      localityProblem(rule("198.51.100.77"), "198.51.100.1", parseLocality(OUTPUT)),
      "destination 198.51.100.77 is not an address of host 198.51.100.1 (its addresses: 198.51.100.1, 10.10.10.1): " +
        "behind a cloud's 1:1 NAT packets arrive for the host's own address: match that (PortForward: vps.localAddress)",
    );
  });

  it("accepts a local destination, no destination, and an address it was not asked about", () => {
    assert.equal(localityProblem(rule("198.51.100.1"), "h", parseLocality(OUTPUT)), undefined);
    assert.equal(localityProblem(rule(), "h", parseLocality(OUTPUT)), undefined);
    assert.equal(localityProblem(rule("203.0.113.9"), "h", parseLocality(OUTPUT)), undefined);
  });
});
