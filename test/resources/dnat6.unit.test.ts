// IPv6 DnatRules (issue 10): the family is toAddress's, every address of the rule is of it, and
// targets that cannot be one host's are refused at preview, naming the field.
import { strict as assert } from "assert";
import { DnatRuleSchema, dnatCrossCheck } from "../../provider/resources/dnat/schema";
import { dnatFirewall, renderDnat } from "../../provider/resources/dnat/render";
import { parseAcceptRa } from "../../provider/backends/sysctl";
import { parseLocality } from "../../provider/resources/dnat/live";

const conn = { host: "198.51.100.1", password: "x" };
const rule = (extra: object) => ({ connection: conn, name: "web6", ports: 443, destination: "2001:db8:100::1", toAddress: "fd00:10::2", ...extra });
const problems = (extra: object) => {
  const r = DnatRuleSchema.safeParse(rule(extra));
  if (!r.success) return r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
  return dnatCrossCheck(r.data).map((f) => `${f.property}: ${f.reason}`);
};

describe("DnatRule IPv6: input", () => {
  it("an all-IPv6 rule is valid, and its addresses come out canonical however they were written", () => {
    assert.deepEqual(problems({ allowFrom: ["2001:db8:113::/64"] }), []);
    const i = DnatRuleSchema.parse(rule({ destination: "2001:DB8:100:0:0::1", toAddress: "FD00:10:0::2" }));
    assert.equal(i.destination, "2001:db8:100::1");
    assert.equal(i.toAddress, "fd00:10::2");
    assert.equal(dnatFirewall(i).family, 6);
    const lines = renderDnat(i);
    assert.ok(lines.some((l) => l.startsWith("nft add table ip6 natgate_dnat_web6")), lines.join("\n"));
    assert.ok(lines.includes("sysctl -w net.ipv6.conf.all.forwarding=1"), lines.join("\n"));
  });

  it("a destination of the other family than toAddress is named, with what to do", () => {
    assert.match(problems({ destination: "198.51.100.1" })[0]!, /^destination: 198\.51\.100\.1 is IPv4 but toAddress fd00:10::2 is IPv6: DNAT keeps a packet's family; give an IPv6 destination, and forward IPv4 with a second DnatRule/);
    assert.match(problems({ destination: "2001:db8:100::1", toAddress: "10.10.10.2" })[0]!, /^destination: 2001:db8:100::1 is IPv6 but toAddress 10\.10\.10\.2 is IPv4/);
  });

  it("allowFrom entries of the other family are named", () => {
    assert.match(problems({ allowFrom: ["203.0.113.0/24"] })[0]!, /^allowFrom\[0\]: 203\.0\.113\.0\/24 is an IPv4 source, but this rule forwards IPv6 \(toAddress fd00:10::2\): list IPv6 sources like 2001:db8::\/32/);
    assert.match(problems({ allowFrom: ["2001:db8:113::5/64"] })[0]!, /^allowFrom\.0: has host bits set: write 2001:db8:113::\/64 \(or 2001:db8:113::5 for that one host\)/);
  });

  it("a target that is not one host's own address is refused", () => {
    for (const [addr, what] of [
      ["fe80::1", /link-local/],
      ["ff02::1", /multicast/],
      ["::1", /loopback/],
      ["::", /unspecified/],
      ["::ffff:192.168.1.10", /IPv4-mapped/],
    ] as const) {
      const p = problems({ toAddress: addr });
      assert.match(p[0]!, /^toAddress: /, addr);
      assert.match(p[0]!, what, addr);
      assert.match(p[0]!, /give one host's own address, e\.g\. fd00:1::10/, addr);
    }
    assert.match(problems({ toAddress: "fd00::1::2" })[0]!, /^toAddress: must be an IPv4 address like 10\.10\.10\.2 or an IPv6 address like fd00::1/);
    assert.match(problems({ destination: "2001:db8::zz" })[0]!, /^destination: must be an IPv4 address/);
  });
});

describe("DnatRule IPv6: host facts", () => {
  it("accept_ra lines: 1 is drift (forwarding would stop advertisements), 2 held by the rule is its own", () => {
    assert.deepEqual(parseAcceptRa(["ra net/ipv6/conf/eth0/accept_ra 1 0", "ra net/ipv6/conf/default/accept_ra 2 1", "junk"]), [
      { path: "net/ipv6/conf/eth0/accept_ra", value: "1", held: false },
      { path: "net/ipv6/conf/default/accept_ra", value: "2", held: true },
    ]);
  });

  it("the host's addresses listed in a locality error leave out loopback and link-local", () => {
    const loc = parseLocality("@@local\n2001:db8:100::9 remote\n@@addrs\n127.0.0.1\n198.51.100.1\n::1\nfe80::1\n2001:db8:100::1\n");
    assert.deepEqual(loc.addresses, ["198.51.100.1", "2001:db8:100::1"]);
    assert.equal(loc.local.get("2001:db8:100::9"), false);
  });
});
