import { strict as assert } from "assert";
import { forwardLayoutProblems, type ForwardLayout } from "../../sdk/forwardChecks";
import { DnatRuleSchema } from "../../provider/resources/dnat/schema";

const seed: ForwardLayout = {
  lanSubnet: "192.168.1.0/24",
  lanHost: "192.168.1.99",
  forwards: [{ protocol: "both", ports: "5000-6000" }],
  routerForwards: [{ protocol: "tcp", ports: 2222, toPorts: 22 }],
};

describe("PortForward layout checks (pure)", () => {
  it("the seed has no problem", () => {
    assert.deepEqual(forwardLayoutProblems(seed), []);
  });

  it("a LAN host outside lanSubnet is named with the field to fix", () => {
    const p = forwardLayoutProblems({ ...seed, lanSubnet: "192.168.2.0/24" });
    assert.equal(p.length, 1);
    assert.match(p[0], /forwards\[0\] goes to 192\.168\.1\.99, which is not in router\.lanSubnet 192\.168\.2\.0\/24/);
    assert.match(forwardLayoutProblems({ ...seed, forwards: [{ ports: 80, to: "10.0.0.5" }] })[0], /forwards\[0\] goes to 10\.0\.0\.5/);
  });

  it("overlapping public ports are refused, disjoint or other-protocol ones are not", () => {
    const p = forwardLayoutProblems({ ...seed, forwards: [{ ports: "5000-6000" }, { ports: 5500, toPorts: 80 }] });
    assert.equal(p.length, 1);
    assert.match(p[0], /forwards\[1\] \(tcp 5500\) overlaps forwards\[0\] \(5000-6000\) on the VPS/);
    assert.deepEqual(forwardLayoutProblems({ ...seed, forwards: [{ protocol: "tcp", ports: "5000-6000" }, { protocol: "udp", ports: 5500 }] }), []);
    assert.deepEqual(forwardLayoutProblems({ ...seed, forwards: [{ ports: "5000-5499" }, { ports: "5500-6000" }] }), []);
    assert.match(forwardLayoutProblems({ ...seed, routerForwards: [{ ports: 5999, toPorts: 22 }] })[0], /routerForwards\[0\] \(tcp 5999\) overlaps forwards\[0\]/);
  });

  it("a router-local target port inside a forwarded range is fine: the router matches public ports before DNAT", () => {
    assert.deepEqual(forwardLayoutProblems({ ...seed, forwards: [{ ports: "1-1000" }] }), []);
    const twoToSsh = [{ ports: 2222, toPorts: 22 }, { ports: 2223, toPorts: 22 }];
    assert.deepEqual(forwardLayoutProblems({ ...seed, routerForwards: twoToSsh }), [], "two public ports may reach one router port");
  });

  it("a return-path priority with no room for the router-local rule names returnPath fields", () => {
    const p = forwardLayoutProblems({ ...seed, priority: 32765 });
    assert.match(p[0], /returnPath\.priority 32765.*returnPath\.localSourcePriority/);
    assert.deepEqual(forwardLayoutProblems({ ...seed, priority: 32765, localSourcePriority: 900 }), []);
    assert.deepEqual(forwardLayoutProblems({ ...seed, routerForwards: [], priority: 32765 }), []);
  });

  it("names the component's own fields for a bad lanSubnet, lanHost or forwards[].to (issue 11), and leaves port syntax to DnatRule", () => {
    assert.deepEqual(forwardLayoutProblems({ ...seed, lanSubnet: "10.1.2.3/16" }), ['router.lanSubnet "10.1.2.3/16": has host bits set: write 10.1.0.0/16']);
    assert.match(forwardLayoutProblems({ ...seed, lanSubnet: "nonsense" })[0] ?? "", /^router\.lanSubnet "nonsense": must be an IPv4 network like 192\.168\.1\.0\/24/);
    const host = (lanHost: string) => forwardLayoutProblems({ ...seed, lanHost, forwards: [{ ports: 5000 }] });
    assert.deepEqual(host("192.168.1.0"), ["lanHost: 192.168.1.0 is the network address of router.lanSubnet 192.168.1.0/24, not a host: give the LAN host's own address"]);
    assert.match(host("192.168.1.255")[0] ?? "", /^lanHost: 192\.168\.1\.255 is the broadcast address of router\.lanSubnet/);
    for (const bad of ["0.0.0.0", "255.255.255.255", "224.0.0.251", "127.0.0.1"]) {
      assert.match(host(bad).join("\n"), new RegExp(`^lanHost: ${bad.replace(/\./g, "\\.")} is .*: give one host's own address, e.g\\. 192\\.168\\.1\\.10`), bad);
    }
    assert.match(host("192.168.1.x")[0] ?? "", /^lanHost: "192\.168\.1\.x" must be an IPv4 address like 192\.168\.1\.10/);
    assert.deepEqual(forwardLayoutProblems({ ...seed, forwards: [{ ports: 5000, to: "192.168.1.255" }] }).map((p) => p.split(":")[0]), ["forwards[0].to"]);
    assert.deepEqual(forwardLayoutProblems({ ...seed, forwards: [{ ports: "6000-5000" }] }), [], "port syntax is DnatRule's to name");
  });
});

describe("DnatRule toAddress: one host's own address", () => {
  it("refuses 0.0.0.0, broadcast, multicast, loopback and link-local targets, saying what to give", () => {
    const base = { connection: { host: "192.168.1.1", privateKey: "x" }, name: "web", inInterface: "wg0", ports: 80 };
    for (const bad of ["0.0.0.0", "255.255.255.255", "239.1.2.3", "127.0.0.1", "169.254.1.1", "240.0.0.1"]) {
      const r = DnatRuleSchema.safeParse({ ...base, toAddress: bad });
      assert.equal(r.success, false, bad);
      const issue = r.error!.issues.find((i) => i.path.join(".") === "toAddress");
      assert.match(issue?.message ?? "", /: give one host's own address, e\.g\. 192\.168\.1\.10$/, bad);
    }
    assert.equal(DnatRuleSchema.safeParse({ ...base, toAddress: "192.168.1.99" }).error?.issues.find((i) => i.path.join(".") === "toAddress"), undefined);
  });
});
