// Contradictions only the component can see, and a VPS behind its cloud's 1:1 NAT: found by trying
// layouts no other test names (they passed preview, then failed silently at traffic time).
import { strict as assert } from "assert";
import { getLab, type Lab } from "../lab";
import type { Stack } from "../engine/stack";
import { assertHostsAsBefore, baseArgs, CLIENT, cleanup, lanServices, portForwardProgram, snapshotAll, sshLogins, stopAll, variantStack } from "./variantLab";
import type { PortForwardArgs } from "natgate";

const base = (lab: Lab): PortForwardArgs => ({ ...baseArgs(lab), forwards: [{ protocol: "tcp", ports: 5000 }] });

/** The failure of a preview that must fail, with the logins it caused on the hosts (must be none). */
async function previewError(lab: Lab, stack: Stack, args: PortForwardArgs): Promise<string> {
  const logins = () => [lab.hosts.vps, lab.hosts.router].map((h) => sshLogins(h));
  const before = logins();
  const message = await stack.preview(portForwardProgram("home", args)).then(() => "", (e: Error) => e.message);
  assert.notEqual(message, "", "the preview passed");
  assert.deepEqual(logins(), before, "a failing preview logged in to a host");
  return message;
}

describe("PortForward: layouts that contradict themselves fail at preview, naming the field", function () {
  this.timeout(180_000);
  let lab: Lab;
  let stack: Stack;
  beforeEach(() => {
    lab = getLab();
    stack = variantStack();
  });
  afterEach(async () => cleanup(stack));

  it("a LAN host outside lanSubnet (the routing table would send its packets back into the tunnel)", async () => {
    const m = await previewError(lab, stack, { ...base(lab), router: { ...base(lab).router, lanSubnet: "192.168.2.0/24" } });
    assert.match(m, /forwards\[0\] goes to 192\.168\.1\.99, which is not in router\.lanSubnet 192\.168\.2\.0\/24/);
  });

  it("two forwards claiming the same public ports", async () => {
    const m = await previewError(lab, stack, { ...base(lab), forwards: [{ ports: "5000-6000" }, { ports: 5500, toPorts: 80 }] });
    assert.match(m, /forwards\[1\] \(tcp 5500\) overlaps forwards\[0\] \(5000-6000\) on the VPS/);
  });

  it("returnPath.priority with no room for the router-local rule names the component's own fields", async () => {
    const m = await previewError(lab, stack, { ...base(lab), routerForwards: [{ ports: 2222, toPorts: 22 }], returnPath: { priority: 32765 } });
    assert.match(m, /returnPath\.priority 32765.*returnPath\.localSourcePriority/);
  });
});

describe("PortForward: a VPS behind its cloud's 1:1 NAT (public address on no interface)", function () {
  this.timeout(180_000);

  it("forwards with vps.localAddress = the VPS's own address; the LAN service sees the client; the PathCheck follows it", async () => {
    const lab = getLab();
    const stack = variantStack();
    // The cloud's NAT in the lab's core: 198.51.100.77 (the public address users know) → the VPS's 198.51.100.1.
    await lab.hosts.core.run("nft -f -", {
      input: "table ip variants_cloudnat {\n  chain pre { type nat hook prerouting priority dstnat; policy accept; ip daddr 198.51.100.77 dnat to 198.51.100.1; }\n}\n",
    });
    const services = await lanServices(lab, [["tcp", 5000]]);
    const before = await snapshotAll(lab);
    try {
      // The router dials the public address too: the cloud NAT forwards WireGuard's port like any other.
      const args: PortForwardArgs = {
        ...base(lab),
        vps: { ...base(lab).vps, publicAddress: "198.51.100.77", localAddress: "198.51.100.1" },
        verify: { port: 5000 },
      };
      await stack.up(portForwardProgram("home", args));
      const r = await lab.hosts.client.exec("socat -T3 - TCP:198.51.100.77:5000,connect-timeout=3 </dev/null");
      assert.equal(r.stdout.trim(), `tcp/5000 saw ${CLIENT}`, r.stderr.trim());
    } finally {
      await cleanup(stack);
      await stopAll(services);
      await lab.hosts.core.run("nft delete table ip variants_cloudnat");
    }
    await assertHostsAsBefore(lab, before);
  });
});
