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

  it("names the component's own fields for a bad lanSubnet, lanHost, forwards[].to or port (issue 11)", () => {
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
    // the component names its own port fields (the VPS's DnatRule would say "ports")
    assert.deepEqual(forwardLayoutProblems({ ...seed, forwards: [{ ports: "6000-5000" }] }), ['forwards[0].ports "6000-5000": range 6000-5000 is backwards: write 5000-6000']);
    assert.deepEqual(forwardLayoutProblems({ ...seed, routerForwards: [{ ports: 2222, toPorts: "22;x" }] }), ['routerForwards[0].toPorts "22;x": must be a port 1-65535 or a range like "5000-6000"']);
    // a toPorts of another size than ports, named as the component's field, not the child DnatRule's
    assert.deepEqual(forwardLayoutProblems({ ...seed, forwards: [{ ports: "5000-5009", toPorts: "80-81" }] }), [
      'forwards[0].toPorts "80-81": maps 10 ports (forwards[0].ports "5000-5009") to 2: give a range of the same size, one port for one port, or omit toPorts to keep the port numbers',
    ]);
    assert.match(forwardLayoutProblems({ ...seed, forwards: [{ ports: "1000-3000", toPorts: "11000-13000" }] })[0]!, /^forwards\[0\]\.toPorts "11000-13000": remapping 2001 ports .* at most 1024/);
    assert.deepEqual(forwardLayoutProblems({ ...seed, forwards: [{ ports: "5000-5009", toPorts: "6000-6009" }] }), [], "same size is fine");
  });
});

describe("PortForward addresses named as the user wrote them (issue 11)", () => {
  const at = (field: string, value: unknown, as: NonNullable<ForwardLayout["addresses"]>[number]["as"]) => forwardLayoutProblems({ ...seed, addresses: [{ field, value, as }] });
  it("accepts the seed's and the slots' defaults, and values not given", () => {
    assert.deepEqual(at("vps.publicAddress", "198.51.100.1", "ipv4"), []);
    assert.deepEqual(at("vps.publicAddress6", "2001:db8::1", "ipv6"), []);
    assert.deepEqual(at("tunnel.vpsAddress", "10.10.10.1/24", "cidr4"), []);
    assert.deepEqual(at("tunnel.vpsAddress6", "fd00:4e47::1/64", "cidr6"), []);
    assert.deepEqual(at("existingTunnel.routerAddress", "10.10.10.2", "ipv4Target"), []);
    assert.deepEqual(at("existingTunnel.routerAddress6", "fd00:4e47::2", "ipv6Target"), []);
    assert.deepEqual(at("vps.localAddress", undefined, "ipv4"), []);
  });
  it("refuses, under the component's field, what its children would refuse under theirs", () => {
    const cases: Array<[string, unknown, NonNullable<ForwardLayout["addresses"]>[number]["as"], RegExp]> = [
      ["vps.publicAddress", "198.51.100.1; reboot", "ipv4", /^vps\.publicAddress: "198\.51\.100\.1; reboot" must be an IPv4 address like/],
      ["vps[1].publicAddress", "255.255.255.255", "ipv4", /^vps\[1\]\.publicAddress: .*broadcast/],
      ["vps.publicAddress", "2001:db8::1", "ipv4", /^vps\.publicAddress: "2001:db8::1" must be an IPv4 address/],
      ["vps.publicAddress6", "198.51.100.1", "ipv6", /^vps\.publicAddress6: "198\.51\.100\.1" must be an IPv6 address like fd00::1/],
      ["vps.localAddress", "224.0.0.1", "ipv4", /^vps\.localAddress: .*multicast/],
      ["tunnel.vpsAddress", "10.10.10.1", "cidr4", /^tunnel\.vpsAddress: .*10\.10\.10\.1\/24/],
      ["tunnel.routerAddress", "fd00::2/64", "cidr4", /^tunnel\.routerAddress: "fd00::2\/64" is IPv6/],
      ["tunnel.vpsAddress6", "10.10.10.1/24", "cidr6", /^tunnel\.vpsAddress6: "10\.10\.10\.1\/24" is IPv4/],
      ["existingTunnel.routerAddress", "127.0.0.1", "ipv4Target", /^existingTunnel\.routerAddress: .*loopback/],
      ["existingTunnel.vpsAddress", "10.10.10.1/24", "ipv4", /^existingTunnel\.vpsAddress: "10\.10\.10\.1\/24" must be an IPv4 address/],
      ["existingTunnel.routerAddress6", "fe80::2", "ipv6Target", /^existingTunnel\.routerAddress6: .*link-local/],
    ];
    for (const [field, value, as, want] of cases) {
      const p = at(field, value, as);
      assert.equal(p.length, 1, `${field} ${String(value)}: ${p.join("; ")}`);
      assert.match(p[0]!, want);
    }
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
