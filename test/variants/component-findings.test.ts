// Contradictions only the component can see, and a VPS behind its cloud's 1:1 NAT: found by trying
// layouts no other test names (they passed preview, then failed silently at traffic time).
import { strict as assert } from "assert";
import { getLab, type Lab } from "../lab";
import type { Stack } from "../engine/stack";
import { assertHostsAsBefore, CLIENT, cleanup, CLOUD_PUBLIC, cloudNat, lanServices, oneForwardArgs, portForwardProgram, snapshotAll, sshLogins, stopAll, variantStack } from "./variantLab";
import type { PortForwardArgs } from "natgate";

const base = oneForwardArgs;

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
    await cloudNat.add(lab);
    const services = await lanServices(lab, [["tcp", 5000]]);
    const before = await snapshotAll(lab);
    try {
      // The router dials the public address too: the cloud NAT forwards WireGuard's port like any other.
      const args: PortForwardArgs = {
        ...base(lab),
        vps: { ...base(lab).vps, publicAddress: CLOUD_PUBLIC, localAddress: "198.51.100.1" },
        verify: { port: 5000 },
      };
      await stack.up(portForwardProgram("home", args));
      const r = await lab.hosts.client.exec(`socat -T3 - TCP:${CLOUD_PUBLIC}:5000,connect-timeout=3 </dev/null`);
      assert.equal(r.stdout.trim(), `tcp/5000 saw ${CLIENT}`, r.stderr.trim());
    } finally {
      await cleanup(stack);
      await stopAll(services);
      await cloudNat.remove(lab);
    }
    await assertHostsAsBefore(lab, before);
  });
});

describe("PortForward: a router whose INPUT policy drops (ufw's default; fw4's input reject)", function () {
  this.timeout(180_000);

  it("router-local forwards (VPS:2222 → its sshd) still arrive; destroy leaves INPUT as it was", async () => {
    const lab = getLab();
    const stack = variantStack();
    const router = lab.hosts.router;
    const hadFilter = (await router.exec("nft list table ip filter")).code === 0;
    const banner = async () => (await lab.hosts.client.exec("socat -T 2 -u TCP:198.51.100.1:2222,connect-timeout=2 STDOUT")).stdout;
    // Established flows and the LAN (the lab's SSH) only, as a hardened router would.
    await router.run("iptables -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT && iptables -A INPUT -i br-lan -j ACCEPT && iptables -P INPUT DROP");
    try {
      const inputBefore = await router.run("iptables -S INPUT");
      const before = await snapshotAll(lab);
      try {
        await stack.up(portForwardProgram("home", { ...base(lab), routerForwards: [{ protocol: "tcp", ports: 2222, toPorts: 22 }] }));
        assert.match(await banner(), /^SSH-2\.0-/, "the router's sshd answers through VPS:2222");
        assert.match(await router.run("iptables -S INPUT"), /natgate:home_router_local_0/, "the accept sits where the drop is");
      } finally {
        await cleanup(stack);
      }
      await assertHostsAsBefore(lab, before);
      assert.equal(await router.run("iptables -S INPUT"), inputBefore);
    } finally {
      await router.run(`iptables -P INPUT ACCEPT && iptables -F INPUT${hadFilter ? "" : " && nft delete table ip filter"}`);
    }
  });
});
