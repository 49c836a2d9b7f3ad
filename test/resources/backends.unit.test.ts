import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { forwardNeedsAccept, parseForwardChain, splitIptablesLine, assertSafeRule } from "../../provider/backends/iptables";
import { parseRoutes, parseRules, liveRouteLine, liveRuleLine, ruleLine, routeLine } from "../../provider/backends/iproute";
import { parseNftTableJson, printRule, replaceTableTransaction, tableLines, maskedSet, maskedMatch, ct, meta } from "../../provider/backends/nftables";
import { parseSysctlShow, sysctlLine, sysctlName } from "../../provider/backends/sysctl";
import { splitSections } from "../../provider/resources/common/host";
import { dnatTable } from "../../provider/resources/dnat/render";
import { DnatRuleSchema } from "../../provider/resources/dnat/schema";
import { cmarkChainNames, cmarkFirewall, cmarkTable } from "../../provider/resources/connmark/render";
import { dnatChainNames, dnatFirewall } from "../../provider/resources/dnat/render";
import { IPT_TABLES, iptCounters, iptDnatChains, iptLines, iptReturnPathChains, liveIptLines, parseIptTable } from "../../provider/backends/iptablesFirewall";
import { nftCounters } from "../../provider/backends/nftFirewall";
import { parseNftJson } from "../../provider/backends/nftables";
import { splitSections as sections } from "../../provider/resources/common/host";
import { DNAT_CASES, RET_CASES } from "../golden/cases";
import { ConnmarkReturnPathSchema } from "../../provider/resources/connmark/schema";

// Fixtures are real output of nft 1.0.6 / iproute2 6.1 / iptables-nft 1.8.9 for the tables natgate
// renders (captured by applying the rendered text in a network namespace).
const fixture = (name: string) => fs.readFileSync(path.join(__dirname, "fixtures", name), "utf8");
const conn = { host: "198.51.100.1", password: "x" };

describe("nftables backend", () => {
  const dnatCases = DNAT_CASES;
  for (const [k, v] of Object.entries(dnatCases)) {
    it(`nft -j of the applied DnatRule table "${k}" reads back as exactly the rendered lines`, () => {
      const t = dnatTable(DnatRuleSchema.parse({ connection: conn, ...v }));
      assert.deepEqual(parseNftTableJson(fixture(`nft-dnat-${k}.json`)), tableLines(t));
    });
  }
  const retCases = RET_CASES;
  for (const [k, v] of Object.entries(retCases)) {
    it(`nft -j of the applied ConnmarkReturnPath table "${k}" reads back as exactly the rendered lines`, () => {
      const t = cmarkTable(ConnmarkReturnPathSchema.parse({ connection: conn, ...v }));
      assert.deepEqual(parseNftTableJson(fixture(`nft-ret-${k}.json`)), tableLines(t));
    });
  }

  it("the seed's VPS forward renders as golden text", () => {
    const t = dnatTable(DnatRuleSchema.parse({ connection: conn, ...dnatCases.vps }));
    assert.equal(
      replaceTableTransaction(t),
      [
        "add table ip natgate_dnat_vps",
        "delete table ip natgate_dnat_vps",
        "add table ip natgate_dnat_vps",
        "add chain ip natgate_dnat_vps prerouting { type nat hook prerouting priority -100; policy accept; }",
        "add rule ip natgate_dnat_vps prerouting ip daddr 198.51.100.1 meta l4proto { tcp, udp } th dport 5000-6000 dnat to 10.10.10.2",
        "add chain ip natgate_dnat_vps forward { type filter hook forward priority 0; policy accept; }",
        "add rule ip natgate_dnat_vps forward tcp flags & (syn | rst) == syn ct status dnat ct reply ip saddr 10.10.10.2 ct reply proto-src 5000-6000 tcp option maxseg size set rt mtu",
        "add chain ip natgate_dnat_vps count { type filter hook prerouting priority -99; policy accept; }",
        "add rule ip natgate_dnat_vps count meta l4proto tcp ct status dnat ct reply ip saddr 10.10.10.2 ct reply proto-src 5000-6000 counter",
        "add rule ip natgate_dnat_vps count meta l4proto udp ct status dnat ct reply ip saddr 10.10.10.2 ct reply proto-src 5000-6000 counter",
        "",
      ].join("\n"),
    );
  });

  it("the seed's return path (mark 0x1234, its own bits as mask) renders as golden text", () => {
    const t = cmarkTable(ConnmarkReturnPathSchema.parse({ connection: conn, ...retCases.seed }));
    assert.deepEqual(tableLines(t), [
      "nft add table ip natgate_ret_seed",
      "nft add chain ip natgate_ret_seed prerouting { type filter hook prerouting priority -150; policy accept; }",
      'nft add rule ip natgate_ret_seed prerouting iifname "tun0" ct mark set ct mark | 0x00001234',
      "nft add rule ip natgate_ret_seed prerouting ct mark & 0x00001234 == 0x00001234 meta mark set meta mark | 0x00001234",
    ]);
  });

  it("a mark inside a wider mask clears the mask's other bits (nft's folded AND mask)", () => {
    assert.equal(printRule([maskedMatch(ct("mark"), 0x3000, 0x1000)]), "ct mark & 0x00003000 == 0x00001000");
    assert.deepEqual(maskedSet(meta("mark"), 0x3000, 0x1000), { "|": [{ "&": [{ meta: { key: "mark" } }, 0xffffdfff] }, 0x1000] });
    assert.equal(printRule([maskedMatch(ct("mark"), 0xffffffff, 0x1234)]), "ct mark 0x00001234");
  });

  it("a table that does not exist reads as no lines; unknown objects and statements show up as drift", () => {
    assert.deepEqual(parseNftTableJson(""), []);
    const json = JSON.stringify({
      nftables: [
        { metainfo: { version: "1.0.6" } },
        { table: { family: "ip", name: "natgate_dnat_x", handle: 1 } },
        { chain: { family: "ip", table: "natgate_dnat_x", name: "c", handle: 1, type: "filter", hook: "forward", prio: 0, policy: "accept" } },
        { rule: { family: "ip", table: "natgate_dnat_x", chain: "c", handle: 2, expr: [{ counter: { packets: 1, bytes: 2 } }, { log: { prefix: "x" } }], comment: "by hand" } },
        { set: { family: "ip", name: "s", table: "natgate_dnat_x", type: "ipv4_addr", handle: 3 } },
      ],
    });
    const lines = parseNftTableJson(json);
    assert.equal(lines[2], 'nft add rule ip natgate_dnat_x c counter <unsupported {"log":{"prefix":"x"}}> comment "by hand"');
    assert.match(lines[3]!, /^<unsupported \{"set"/);
    assert.throws(() => parseNftTableJson("not json"), /could not parse the output of nft -j/);
  });
});

describe("iproute backend", () => {
  it("ip -N -j rule: only rules at our priorities to our table, printed as ip rule commands", () => {
    const rules = parseRules(fixture("ip-rule.json"), [950, 951, 960, 970], [8764, 1234]);
    assert.deepEqual(rules.map(liveRuleLine), [
      "ip rule add priority 950 fwmark 0x10000000/0x10000000 lookup 8764",
      "ip rule add priority 951 from 10.10.10.2 lookup 8764",
      "ip rule add priority 960 fwmark 0x1234/0x1234 lookup 1234",
    ]);
  });

  it("a full mask is printed without /mask, as ip prints it; fields natgate never sets are kept visible", () => {
    assert.equal(ruleLine({ priority: 5, fwmark: 0x1234, fwmask: 0xffffffff, table: 300 }), "ip rule add priority 5 fwmark 0x1234 lookup 300");
    const [r] = parseRules('[{"priority":5,"src":"10.0.0.0","srclen":8,"iif":"wg0","table":"300"}]', [5], [300]);
    assert.equal(liveRuleLine(r!), 'ip rule add priority 5 from 10.0.0.0/8 lookup 300 <also: iif "wg0">');
  });

  it("ip -j route show table: routes printed as the commands that make them", () => {
    assert.deepEqual(parseRoutes(fixture("ip-route-8764.json")).map((r) => liveRouteLine(8764, r)), [
      "ip route replace table 8764 default via 10.10.10.1 dev tun0",
      "ip route replace table 8764 10.1.2.3 dev br-lan",
      "ip route replace table 8764 blackhole 10.97.0.0/16",
      "ip route replace table 8764 10.98.0.0/16 via 192.168.1.5 dev br-lan onlink",
      "ip route replace table 8764 10.99.0.0/16 via 192.168.1.5 dev br-lan src 192.168.1.1 metric 10",
      "ip route replace table 8764 192.168.1.0/24 dev br-lan",
    ]);
    assert.deepEqual(parseRoutes(""), []);
    assert.equal(routeLine(1, { to: "default", via: "10.0.0.1", dev: "wg0", metric: 0 }), "ip route replace table 1 default via 10.0.0.1 dev wg0");
  });

  it("refuses live values that could not be passed back to ip safely", () => {
    assert.throws(() => parseRoutes('[{"dst":"default","dev":"a b"}]'), /unexpected device "a b"/);
  });
});

describe("iptables backend", () => {
  const text = fixture("iptables-forward.txt");

  it("finds exactly this resource's rules by their comment (not natgate:fwd2, not a longer comment)", () => {
    const live = parseForwardChain(text, true, "fwd");
    assert.equal(live.policy, "DROP");
    assert.deepEqual(live.owned, [
      "-p tcp -m conntrack --ctstate DNAT --ctreplsrc 10.10.10.2 --ctreplsrcport 5000:6000 -m comment --comment natgate:fwd -j ACCEPT",
      "-p udp -m conntrack --ctstate DNAT --ctreplsrc 10.10.10.2 --ctreplsrcport 5000:6000 -m comment --comment natgate:fwd -j ACCEPT",
    ]);
    assert.equal(live.others, 4);
  });

  it("an accept is needed where something may drop, and never on an empty ACCEPT chain or without iptables", () => {
    assert.equal(forwardNeedsAccept(parseForwardChain(text, true, "x")), true);
    assert.equal(forwardNeedsAccept(parseForwardChain("-P FORWARD ACCEPT\n", true, "x")), false);
    assert.equal(forwardNeedsAccept(parseForwardChain("-P FORWARD DROP\n", true, "x")), true);
    assert.equal(forwardNeedsAccept(parseForwardChain("-P FORWARD ACCEPT\n-A FORWARD -j ufw-before-forward\n", true, "x")), true);
    assert.equal(forwardNeedsAccept(parseForwardChain("", false, "x")), false);
  });

  it("splits iptables -S words, undoing quotes; refuses rules the shell would have to quote", () => {
    assert.deepEqual(splitIptablesLine('-A FORWARD -m comment --comment "a b" -j ACCEPT'), ["-A", "FORWARD", "-m", "comment", "--comment", "a b", "-j", "ACCEPT"]);
    assert.throws(() => assertSafeRule("-m comment --comment natgate:x;rm -j ACCEPT"), /did not write it/);
    assert.doesNotThrow(() => assertSafeRule("-p tcp --ctreplsrcport 5000:6000 -j ACCEPT"));
  });
});

describe("sysctl backend and script output", () => {
  it("names keys as sysctl -w does (dots in interface names become slashes)", () => {
    assert.equal(sysctlName("net/ipv4/conf/eth0.100/rp_filter"), "net.ipv4.conf.eth0/100.rp_filter");
    assert.equal(sysctlLine({ path: "net/ipv4/ip_forward", value: "1" }), "sysctl -w net.ipv4.ip_forward=1");
  });

  it("parses sysctl_show lines and the @@ sections of a read script", () => {
    const out = "@@nft\n\n@@iptables present\n-P FORWARD ACCEPT\n@@sysctl\nsysctl net/ipv4/ip_forward 1 0 1\nsysctl net/ipv4/conf/tun0/rp_filter - - 0\n";
    const s = splitSections(out);
    assert.equal(s.get("iptables")!.arg, "present");
    assert.deepEqual(parseSysctlShow(s.get("sysctl")!.lines), [
      { path: "net/ipv4/ip_forward", value: "1", prev: "0", held: true },
      { path: "net/ipv4/conf/tun0/rp_filter", value: undefined, prev: undefined, held: false },
    ]);
  });
});

describe("iptables backend (fixtures: iptables-legacy and iptables-nft 1.8.9, applied and read with -S -v)", () => {
  const readBack = (file: string, names: string[], family: 4 | 6 = 4) => {
    const s = sections(fixture(file));
    return liveIptLines(IPT_TABLES.flatMap((t) => parseIptTable(t, s.get(`iptfw_${t}`)?.lines.join("\n") ?? "", names)), names, family);
  };
  for (const variant of ["legacy", "nft"]) {
    for (const [k, v] of Object.entries(DNAT_CASES)) {
      it(`iptables-${variant}: the DnatRule chains "${k}" read back as exactly the rendered lines`, () => {
        const fw = dnatFirewall(DnatRuleSchema.parse({ connection: conn, ...v }));
        assert.deepEqual(readBack(`ipt-${variant}-dnat-${k}.txt`, dnatChainNames(fw.name), fw.family), iptLines(iptDnatChains(fw), fw.family));
      });
    }
    for (const [k, v] of Object.entries(RET_CASES)) {
      it(`iptables-${variant}: the ConnmarkReturnPath chains "${k}" read back as exactly the rendered lines`, () => {
        const fw = cmarkFirewall(ConnmarkReturnPathSchema.parse({ connection: conn, ...v }));
        assert.deepEqual(readBack(`ipt-${variant}-ret-${k}.txt`, cmarkChainNames(fw.name)), iptLines(iptReturnPathChains(fw)));
      });
    }
  }
  it("a long resource name gets a chain name within iptables' 28 characters, still its own", () => {
    const names = dnatChainNames("a_rather_long_resource_name_32ch");
    assert.ok(names.every((n) => n.length <= 28), names.join(" "));
    assert.notDeepEqual(names, dnatChainNames("a_rather_long_resource_name_32cx"));
  });
  it("counters come from the count rules: -c PACKETS BYTES per protocol (iptables), counter statements (nft)", () => {
    const live = parseIptTable("mangle", "-N natgate-cnt-x\n-A natgate-cnt-x -p tcp -m conntrack --ctstate DNAT --ctreplsrc 1.2.3.4 --ctreplsrcport 80 -c 12 3400\n-A natgate-cnt-x -p udp -m conntrack --ctstate DNAT --ctreplsrc 1.2.3.4 --ctreplsrcport 80 -c 5 600\n", ["natgate-cnt-x"]);
    assert.deepEqual(iptCounters(live, "natgate-cnt-x"), { tcp: { packets: 12, bytes: 3400 }, udp: { packets: 5, bytes: 600 } });
    const items = parseNftJson(fixture("nft-dnat-vps.json"));
    assert.deepEqual(nftCounters(items, "natgate_dnat_vps"), { tcp: { packets: 0, bytes: 0 }, udp: { packets: 0, bytes: 0 } });
  });
});
