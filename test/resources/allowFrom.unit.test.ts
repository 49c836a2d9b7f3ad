// allowFrom (issue 10): the source list as the kernel holds it, and bad input named by field.
import { strict as assert } from "assert";
import { mergedRuns, nftSourceMatch, runCidrs } from "../../provider/plan/sources";
import { DnatRuleSchema, dnatCrossCheck } from "../../provider/resources/dnat/schema";
import { nftCounters } from "../../provider/backends/nftFirewall";
import { iptCounters } from "../../provider/backends/iptablesFirewall";
import { forwardLayoutProblems, type ForwardLayout } from "../../sdk/forwardChecks";

const conn = { host: "198.51.100.1", password: "x" };
const rule = (extra: object) => ({ connection: conn, name: "web", ports: 443, destination: "198.51.100.1", toAddress: "10.10.10.2", ...extra });
const problems = (extra: object) => {
  const r = DnatRuleSchema.safeParse(rule(extra));
  if (!r.success) return r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
  return dnatCrossCheck(r.data).map((f) => `${f.property}: ${f.reason}`);
};

describe("allowFrom: sources as nft and iptables hold them (pure)", () => {
  it("sorts, merges overlapping and adjacent entries, and writes what nft lists back", () => {
    assert.deepEqual(nftSourceMatch(["203.0.113.10"]), "203.0.113.10");
    assert.deepEqual(nftSourceMatch(["203.0.113.0/25"]), { prefix: { addr: "203.0.113.0", len: 25 } }, "one element: a plain comparison");
    assert.deepEqual(nftSourceMatch(["10.1.1.128/25", "10.1.1.0/25"]), { prefix: { addr: "10.1.1.0", len: 24 } }, "two halves are one /24");
    assert.deepEqual(nftSourceMatch(["10.0.2.0/24", "10.0.1.0/24", "9.9.9.9", "10.0.1.7"]), {
      set: ["9.9.9.9", { range: ["10.0.1.0", "10.0.2.255"] }],
    });
  });

  it("iptables gets the fewest CIDRs that cover the merged runs exactly", () => {
    assert.deepEqual(runCidrs(["10.0.2.0/24", "10.0.1.0/24"]), ["10.0.1.0/24", "10.0.2.0/24"]);
    assert.deepEqual(runCidrs(["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24"]), ["10.0.0.0/23", "10.0.2.0/24"]);
    assert.deepEqual(runCidrs(["203.0.113.10"]), ["203.0.113.10/32"]);
    const covered = mergedRuns(["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24"]);
    assert.deepEqual(covered.map((r) => [r.lo, r.hi]), [[0x0a000000n, 0x0a0002ffn]]);
  });

  it("refused packets are counted apart from the forward's traffic", () => {
    const item = (chain: string, expr: object[]) => ({ rule: { family: "ip", table: "natgate_dnat_web", chain, expr } });
    const counts = nftCounters([
      item("count", [{ match: { left: { meta: { key: "l4proto" } }, right: "tcp" } }, { counter: { packets: 10, bytes: 900 } }]),
      item("refuse_in", [{ counter: { packets: 3, bytes: 180 } }, { drop: null }]),
      item("refuse_fwd", [{ counter: { packets: 1, bytes: 60 } }, { drop: null }]),
    ], "natgate_dnat_web");
    assert.deepEqual(counts, { tcp: { packets: 10, bytes: 900 }, refused: { packets: 4, bytes: 240 } });
    const ipt = iptCounters([
      { table: "filter", name: "natgate-ref-web", from: ["INPUT"], rules: [
        { rule: "-s 203.0.113.0/25 -p tcp -m tcp --dport 443 -j RETURN", packets: 50, bytes: 5000 },
        { rule: "-d 198.51.100.1/32 -p tcp -m tcp --dport 443 -j DROP", packets: 2, bytes: 120 },
      ] },
    ], "natgate-cnt-web", "natgate-ref-web");
    assert.deepEqual(ipt, { refused: { packets: 2, bytes: 120 } }, "admitted sources' RETURNs are not refusals");
  });
});

describe("allowFrom: bad input is named at preview", () => {
  it("accepts addresses and networks of the rule's family", () => {
    assert.deepEqual(problems({ allowFrom: ["203.0.113.0/24", "198.51.100.7"], refuse: "reject" }), []);
  });

  it("names each bad entry and what a valid one looks like", () => {
    assert.deepEqual(problems({ allowFrom: ["203.0.113.5/24"] }), ["allowFrom.0: has host bits set: write 203.0.113.0/24 (or 203.0.113.5 for that one host)"]);
    assert.match(problems({ allowFrom: ["0.0.0.0/0"] })[0]!, /^allowFrom\.0: 0\.0\.0\.0\/0 admits every source: omit allowFrom/);
    assert.match(problems({ allowFrom: ["example.com"] })[0]!, /^allowFrom\.0: .*give an address or network like 203\.0\.113\.0\/24/);
    assert.match(problems({ allowFrom: ["10.0.0.0/33"] })[0]!, /^allowFrom\.0: prefix \/33 is longer than \/32/);
    assert.match(problems({ allowFrom: [] })[0]!, /^allowFrom: must list at least one source: omit allowFrom to admit everyone/);
    assert.match(problems({ allowFrom: "203.0.113.0/24" })[0]!, /^allowFrom: must be a list/);
    assert.match(problems({ allowFrom: ["1.2.3.4"], refuse: "deny" })[0]!, /^refuse: must be "drop" or "reject"/);
  });

  it("an IPv6 source for an IPv4 forward, and refuse without allowFrom, are contradictions", () => {
    assert.match(problems({ allowFrom: ["2001:db8::/32"] })[0]!, /^allowFrom\[0\]: 2001:db8::\/32 is an IPv6 source, but this rule forwards IPv4/);
    assert.match(problems({ refuse: "reject" })[0]!, /^refuse: is only used with allowFrom/);
  });

  it("the component names the forward's own field", () => {
    const seed: ForwardLayout = { lanSubnet: "192.168.1.0/24", lanHost: "192.168.1.99", forwards: [{ ports: 443, allowFrom: ["203.0.113.5/24"] }], routerForwards: [{ ports: 2222, toPorts: 22, refuse: "reject" }] };
    assert.deepEqual(forwardLayoutProblems(seed), [
      'forwards[0].allowFrom[0] "203.0.113.5/24": has host bits set: write 203.0.113.0/24 (or 203.0.113.5 for that one host)',
      "routerForwards[0].refuse: is only used with allowFrom (which sources to admit): give allowFrom too, or remove refuse",
    ]);
    assert.match(forwardLayoutProblems({ ...seed, forwards: [{ ports: 443, allowFrom: ["fd00::/8"] }], routerForwards: [] })[0]!, /forwards\[0\]\.allowFrom\[0\] fd00::\/8: is an IPv6 source, but the forward is published on the VPS's IPv4 address only/);
  });
});

describe("dual stack: the component's IPv6 fields", () => {
  const base: ForwardLayout = { lanSubnet: "192.168.1.0/24", lanHost: "192.168.1.99", ipv6: true, lanSubnet6: "fd00:1::/64", lanHost6: "fd00:1::99", forwards: [{ ports: 443 }], routerForwards: [] };
  it("a valid dual-stack layout, and an IPv6-only forward, have no problems", () => {
    assert.deepEqual(forwardLayoutProblems(base), []);
    assert.deepEqual(forwardLayoutProblems({ ...base, lanHost: undefined, forwards: [{ ports: 443, allowFrom: ["2001:db8::/32"] }] }), []);
    assert.deepEqual(forwardLayoutProblems({ ...base, forwards: [{ ports: 443, allowFrom: ["203.0.113.0/24", "2001:db8::/32"] }] }), []);
  });
  it("names what IPv6 needs, and IPv6 fields without a VPS address to publish on", () => {
    assert.deepEqual(forwardLayoutProblems({ ...base, lanSubnet6: undefined }), [
      "router.lanSubnet6: is required with vps.publicAddress6 (the return path's IPv6 routes reach the LAN by it): give the LAN's IPv6 prefix, like fd00:1::/64",
    ]);
    assert.match(forwardLayoutProblems({ ...base, ipv6: false })[0]!, /^router\.lanSubnet6: is only used when the forwards are also published on IPv6: give vps\.publicAddress6 too/);
    assert.match(forwardLayoutProblems({ ...base, lanSubnet6: "fd00:1::5/64" })[0]!, /^router\.lanSubnet6 "fd00:1::5\/64": has host bits set: write fd00:1::\/64/);
  });
  it("v4/v6 mix-ups and targets that are not one host's are named by field", () => {
    assert.match(forwardLayoutProblems({ ...base, lanHost6: "192.168.1.99" })[0]!, /^lanHost6: "192\.168\.1\.99" must be an IPv6 address like fd00:1::10/);
    assert.match(forwardLayoutProblems({ ...base, lanHost: "fd00:1::99" })[0]!, /^lanHost: "fd00:1::99" must be an IPv4 address/);
    assert.match(forwardLayoutProblems({ ...base, lanHost6: "fe80::1" })[0]!, /^lanHost6: fe80::1 is a link-local address/);
    assert.match(forwardLayoutProblems({ ...base, forwards: [{ ports: 443, to6: "ff02::1" }] })[0]!, /^forwards\[0\]\.to6: ff02::1 is a multicast address/);
    assert.match(forwardLayoutProblems({ ...base, lanHost6: "fd00:2::99" })[0]!, /^lanHost6 fd00:2::99 is not in router\.lanSubnet6 fd00:1::\/64/);
  });
  it("an allow-list published on both families must list sources of both (else one family would admit everyone)", () => {
    assert.deepEqual(forwardLayoutProblems({ ...base, forwards: [{ ports: 443, allowFrom: ["203.0.113.0/24"] }] }), [
      "forwards[0].allowFrom: lists no IPv6 source, but the forward is published on the VPS's IPv6 address too, which would then admit every source: add IPv6 sources (like 2001:db8::/32)",
    ]);
    assert.match(forwardLayoutProblems({ ...base, lanHost: undefined, forwards: [{ ports: 443, allowFrom: ["203.0.113.0/24"] }] })[0]!, /^forwards\[0\]\.allowFrom\[0\] 203\.0\.113\.0\/24: is an IPv4 source, but the forward is published on IPv6 only/);
    assert.match(forwardLayoutProblems({ ...base, lanHost: undefined, lanHost6: undefined })[0]!, /^forwards\[0\] has no target: give "to" \(or the component's lanHost\), "to6" \(or lanHost6\), or both/);
  });
});
