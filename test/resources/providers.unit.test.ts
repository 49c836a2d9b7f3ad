import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { providers } from "../../provider";
import { UNKNOWN } from "../../provider/engine/unknown";
import { parseRoutes } from "../../provider/backends/iproute";
import { parseForwardChain } from "../../provider/backends/iptables";
import { foreignForwardState, parseNftJson, parseNftTableJson, tableLines } from "../../provider/backends/nftables";
import { planDnat as planDnatFor } from "../../provider/resources/dnat";
import type { DnatLive } from "../../provider/resources/dnat/live";
import { AUTO_NOTE, dnatTable, renderDnat } from "../../provider/resources/dnat/render";
import { NATGATE_VERSION } from "../../provider/engine/version";
import { DnatRuleSchema } from "../../provider/resources/dnat/schema";
import { planConnmark as planConnmarkFor } from "../../provider/resources/connmark";
import { ConnmarkReturnPathSchema } from "../../provider/resources/connmark/schema";
import { foreignRoutes, planRoutes } from "../../provider/resources/routetable";
import { PolicyRouteTableSchema } from "../../provider/resources/routetable/schema";

const fixture = (name: string) => fs.readFileSync(path.join(__dirname, "fixtures", name), "utf8");
const connection = { host: "198.51.100.1", password: "x" };
const dnat = { connection, name: "fwd", protocol: "both", ports: "5000-6000", destination: "198.51.100.1", toAddress: "10.10.10.2" };
const ret = { connection, name: "home", tunnelInterface: "tun0", localSource: "10.10.10.2" };
const routes = { connection, name: "home", routes: [{ to: "default", via: "10.10.10.1", dev: "tun0" }, { to: "192.168.1.0/24", dev: "br-lan" }] };

async function check(kind: string, news: object) {
  const r = await providers[kind]!.check!({}, { __provider: "serialized", ...news });
  return { inputs: r.inputs as Record<string, any>, failures: r.failures ?? [] };
}

async function failures(kind: string, news: object): Promise<Record<string, string>> {
  const r = await check(kind, news);
  return Object.fromEntries(r.failures.map((f) => [f.property, f.reason]));
}

describe("check (pure validation, no SSH)", () => {
  it("DnatRule: fills defaults and adds the rendered lines", async () => {
    const { inputs, failures } = await check("DnatRule", { ...dnat, protocol: undefined, ports: 2222, toPorts: 22 });
    assert.deepEqual(failures, []);
    assert.equal(inputs.protocol, "tcp");
    assert.equal(inputs.clampMss, true);
    assert.equal(inputs.connection.port, 22);
    assert.ok(!("__provider" in inputs) && !("protocol" in inputs && inputs.protocol === undefined));
    assert.ok(inputs.rendered.includes("nft add rule ip natgate_dnat_fwd prerouting ip daddr 198.51.100.1 tcp dport 2222 dnat to 10.10.10.2:22"));
    assert.deepEqual(inputs.rendered.slice(-2), ["sysctl -w net.ipv4.ip_forward=1", "# at boot: /etc/natgate/boot.sh runs /etc/natgate/boot.d/dnat-fwd.sh"]);
    assert.equal(inputs.persist, true);
    const off = await check("DnatRule", { ...dnat, persist: false });
    assert.equal(off.inputs.rendered.at(-1), "sysctl -w net.ipv4.ip_forward=1", "persist: false renders no boot entry");
  });

  it("DnatRule: a port change replaces exactly the lines of the rules that use the ports", async () => {
    const a = (await check("DnatRule", dnat)).inputs.rendered as string[];
    const b = (await check("DnatRule", { ...dnat, ports: "5000-5100" })).inputs.rendered as string[];
    assert.equal(a.length, b.length);
    const changed = a.map((l, k) => (l === b[k] ? undefined : k)).filter((k) => k !== undefined);
    assert.equal(a[0], AUTO_NOTE, "backend auto: the preview says which lines may be iptables instead");
    assert.deepEqual(changed, [3, 5, 7, 8]);
    assert.match(b[3]!, /th dport 5000-5100 dnat/);
    assert.match(b[5]!, /ct reply proto-src 5000-5100/);
    assert.match(b[7]!, /count meta l4proto tcp .* ct reply proto-src 5000-5100 counter$/);
  });

  it("DnatRule: every problem names its field and what to do", async () => {
    assert.deepEqual(await failures("DnatRule", { ...dnat, ports: "6000-5000" }), { ports: "range 6000-5000 is backwards: write 5000-6000" });
    assert.match((await failures("DnatRule", { ...dnat, ports: 70000 })).ports!, /1-65535/);
    assert.match((await failures("DnatRule", { ...dnat, toPorts: 22 })).toPorts!, /maps 1001 ports \(5000-6000\) to 1 \(22\)/);
    assert.match((await failures("DnatRule", { ...dnat, ports: "1-2000", toPorts: "10001-12000" })).toPorts!, /at most 1024/);
    assert.match((await failures("DnatRule", { ...dnat, destination: undefined })).inInterface!, /give inInterface and\/or destination/);
    assert.match((await failures("DnatRule", { ...dnat, inInterface: "averyveryverylongname" })).inInterface!, /at most 15/);
    assert.match((await failures("DnatRule", { ...dnat, inInterface: "tun0;reboot" })).inInterface!, /may contain only/);
    assert.match((await failures("DnatRule", { ...dnat, toAddress: "10.10.10.256" })).toAddress!, /IPv4 address/);
    assert.match((await failures("DnatRule", { ...dnat, destination: "198.51.100.0/24" })).destination!, /IPv4 address/);
    assert.match((await failures("DnatRule", { ...dnat, name: "Web-1" })).name!, /a-z, 0-9 and _/);
    assert.match((await failures("DnatRule", { ...dnat, name: "x".repeat(33) })).name!, /at most 32/);
    assert.match((await failures("DnatRule", { ...dnat, protocol: "sctp" })).protocol!, /"tcp", "udp" or "both"/);
    assert.equal((await failures("DnatRule", { ...dnat, portz: 1 })).portz, "unknown field");
    assert.match((await failures("DnatRule", { ...dnat, connection: { ...connection, port: 0 } }))["connection.port"]!, /1-65535/);
    assert.deepEqual(await failures("DnatRule", { ...dnat, toAddress: undefined }), { toAddress: "is required" });
  });

  it("values not known yet (preview) are not failures, and rendered is unknown", async () => {
    const r = await check("DnatRule", { ...dnat, toAddress: UNKNOWN });
    assert.deepEqual(r.failures, []);
    assert.equal(r.inputs.rendered, UNKNOWN);
    const r2 = await check("DnatRule", { ...dnat, toAddress: UNKNOWN, ports: "9-1" });
    assert.deepEqual(r2.failures.map((f) => f.property), ["ports"]);
  });

  it("ConnmarkReturnPath: defaults avoid mwan3/pbr; the seed's 0x1234 is accepted, also as a string", async () => {
    const { inputs, failures } = await check("ConnmarkReturnPath", ret);
    assert.deepEqual(failures, []);
    assert.equal(inputs.mark, 0x10000000);
    assert.equal(inputs.table, 8764);
    assert.equal(inputs.priority, 950);
    assert.deepEqual(inputs.rendered.slice(-4), [
      "ip rule add priority 950 fwmark 0x10000000/0x10000000 lookup 8764",
      "ip rule add priority 951 from 10.10.10.2 lookup 8764",
      "sysctl -w net.ipv4.conf.tun0.rp_filter=2",
      "# at boot: /etc/natgate/boot.sh runs /etc/natgate/boot.d/ret-home.sh",
    ]);
    const seed = await check("ConnmarkReturnPath", { ...ret, mark: "0x1234", table: 1234 });
    assert.equal(seed.inputs.mark, 0x1234);
    assert.ok(seed.inputs.rendered.includes("ip rule add priority 950 fwmark 0x1234/0x1234 lookup 1234"));
  });

  it("ConnmarkReturnPath: problems name their field", async () => {
    assert.match((await failures("ConnmarkReturnPath", { ...ret, mark: 0x3000, mask: 0x1000 })).mark!, /0x3000 has bits outside mask 0x1000/);
    assert.match((await failures("ConnmarkReturnPath", { ...ret, mark: 0 })).mark!, /1-0xffffffff/);
    assert.match((await failures("ConnmarkReturnPath", { ...ret, table: 254 })).table!, /main/);
    assert.match((await failures("ConnmarkReturnPath", { ...ret, priority: 32766 })).priority!, /32765/);
    assert.match((await failures("ConnmarkReturnPath", { ...ret, localSource: undefined, localSourcePriority: 5 })).localSourcePriority!, /give localSource/);
    assert.equal((await failures("ConnmarkReturnPath", { ...ret, tunnelInterface: undefined })).tunnelInterface, "is required");
  });

  it("PolicyRouteTable: problems name the route and field", async () => {
    const r = (k: object) => failures("PolicyRouteTable", { ...routes, routes: [k] });
    assert.match((await r({ to: "192.168.1.5/24", dev: "br-lan" }))["routes[0].to"]!, /host bits set: write 192\.168\.1\.0\/24/);
    assert.match((await r({ to: "default" }))["routes[0]"]!, /give via/);
    assert.match((await r({ to: "default", dev: "x", onlink: true }))["routes[0].onlink"]!, /needs via/);
    const dup = await failures("PolicyRouteTable", { ...routes, routes: [routes.routes[0], { to: "default", dev: "wg1" }] });
    assert.match(dup["routes[1].to"]!, /routes\[0\] has the same destination and metric/);
    const spelled = await failures("PolicyRouteTable", { ...routes, routes: [{ to: "default", dev: "wg0" }, { to: "0.0.0.0/0", dev: "wg1" }] });
    assert.match(spelled["routes[1].to"]!, /routes\[0\] has the same destination and metric/, '"default" and 0.0.0.0/0 are one destination');
    assert.match((await failures("PolicyRouteTable", { ...routes, routes: [] })).routes!, /at least one/);
  });
});

describe("diff (pure)", () => {
  async function diff(kind: string, olds: object, news: object, outs: object = {}) {
    // Old outputs as this release writes them: the check's inputs plus what create adds.
    const o = { ...(await check(kind, olds)).inputs, natgateVersion: NATGATE_VERSION, ...outs, drift: [] };
    const n = (await check(kind, news)).inputs;
    return providers[kind]!.diff!("id", o, n);
  }

  it("a state an older release wrote (no natgateVersion): an in-place update, never a replace", async () => {
    const { natgateVersion: _v, ...legacy } = { ...(await check("DnatRule", dnat)).inputs, natgateVersion: undefined };
    assert.deepEqual(await providers.DnatRule!.diff!("id", legacy, (await check("DnatRule", dnat)).inputs), { changes: true });
  });

  it("backend auto on a host found to use iptables: the same inputs are no change, though the preview shows nft lines", async () => {
    const checked = (await check("DnatRule", dnat)).inputs;
    const ran = { ...checked, natgateVersion: NATGATE_VERSION, activeBackend: "iptables", rendered: renderDnat(DnatRuleSchema.parse(dnat), "iptables"), drift: [] };
    assert.deepEqual(await providers.DnatRule!.diff!("id", ran, checked), { changes: false });
    assert.deepEqual(await providers.DnatRule!.diff!("id", ran, (await check("DnatRule", { ...dnat, ports: 2223 })).inputs), { changes: true });
  });

  it("same inputs: no change; drift found by refresh: change", async () => {
    assert.deepEqual(await diff("DnatRule", dnat, dnat), { changes: false });
    const o = { ...(await check("DnatRule", dnat)).inputs, drift: ["missing nft: ..."] };
    assert.equal((await providers.DnatRule!.diff!("id", o, (await check("DnatRule", dnat)).inputs)).changes, true);
  });

  it("ports or protocol: an in-place update", async () => {
    assert.deepEqual(await diff("DnatRule", dnat, { ...dnat, ports: "5000-5100", protocol: "tcp" }), { changes: true });
  });

  it("host, name or table id: a replacement; delete first where the new one would collide on the same host", async () => {
    assert.deepEqual(await diff("DnatRule", dnat, { ...dnat, name: "other" }), { changes: true, replaces: ["name"] });
    assert.deepEqual(await diff("DnatRule", dnat, { ...dnat, connection: { ...connection, host: "203.0.113.5" } }), {
      changes: true,
      replaces: ["connection.host"],
    });
    assert.deepEqual(await diff("PolicyRouteTable", routes, { ...routes, table: 300 }), { changes: true, replaces: ["table"], deleteBeforeReplace: true });
    assert.deepEqual(await diff("ConnmarkReturnPath", ret, { ...ret, name: "x" }), { changes: true, replaces: ["name"], deleteBeforeReplace: true });
    assert.deepEqual(await diff("ConnmarkReturnPath", ret, { ...ret, mark: 0x1234 }), { changes: true });
    assert.deepEqual(await diff("ConnmarkReturnPath", ret, { ...ret, connection: { ...connection, host: "x.example" } }), {
      changes: true,
      replaces: ["connection.host"],
    });
  });
});

/** Plans on an nftables host: live state without iptables chains of natgate's. */
const NFT_HOST = { nft: true, iptables: "nf_tables" as const };
const planDnat = (r: Parameters<typeof planDnatFor>[0], l: Omit<DnatLive, "boot" | "facts" | "ipt" | "counters">) => planDnatFor(r, { facts: NFT_HOST, ipt: [], counters: {}, ...l }, "nftables");
const planConnmark = (r: Parameters<typeof planConnmarkFor>[0], l: Omit<Parameters<typeof planConnmarkFor>[1], "facts" | "ipt">) => planConnmarkFor(r, { facts: NFT_HOST, ipt: [], ...l }, "nftables");
const ownTableOps = (nft: string) => nft.split("\n").filter(Boolean);

describe("plans (what a converge would write, from live state)", () => {
  const i = DnatRuleSchema.parse(dnat);
  const none = { dropChains: [], owned: [] };

  it("DnatRule: in sync → nothing; flushed table → one nft transaction; policy DROP → the accepts", () => {
    const t = tableLines(dnatTable(i));
    const held = { path: "net/ipv4/ip_forward", value: "1", prev: "0", held: true };
    const accept = parseForwardChain("-P FORWARD ACCEPT\n", true, "fwd");
    assert.deepEqual(planDnat(i, { nft: t, foreign: none, iptables: accept, forward: held }).drift, []);
    const flushed = planDnat(i, { foreign: none, nft: t.filter((l) => !l.includes(" rule ")), iptables: accept, forward: held });
    assert.match(flushed.nft, /^add table ip natgate_dnat_fwd\ndelete table ip natgate_dnat_fwd\n/);
    assert.equal(flushed.drift.length, t.filter((l) => l.includes(" rule ")).length);
    const drop = planDnat(i, { nft: t, foreign: none, iptables: parseForwardChain("-P FORWARD DROP\n", true, "fwd"), forward: held });
    assert.equal(drop.nft, "");
    assert.deepEqual(drop.fwdAdd, [
      "-p tcp -m conntrack --ctstate DNAT --ctreplsrc 10.10.10.2 --ctreplsrcport 5000:6000 -m comment --comment natgate:fwd -j ACCEPT",
      "-p udp -m conntrack --ctstate DNAT --ctreplsrc 10.10.10.2 --ctreplsrcport 5000:6000 -m comment --comment natgate:fwd -j ACCEPT",
    ]);
    const off = planDnat(i, { nft: t, foreign: none, iptables: accept, forward: { ...held, value: "0" } });
    assert.deepEqual(off.drift, ["net.ipv4.ip_forward is 0, forwarding needs 1"]);
  });

  it("DnatRule to an address of the host itself: the accepts go where INPUT drops, not FORWARD; moving the target moves them", () => {
    const r = DnatRuleSchema.parse({ connection, name: "fwd", ports: 2222, inInterface: "tun0", toAddress: "10.10.10.2", toPorts: 22 });
    const t = tableLines(dnatTable(r));
    const held = { path: "net/ipv4/ip_forward", value: "1", prev: "1", held: true };
    const locality = { local: new Map([["10.10.10.2", true]]), addresses: ["10.10.10.2"] };
    const iptables = parseForwardChain("-P FORWARD DROP\n", true, "fwd");
    const iptablesInput = parseForwardChain("-P INPUT DROP\n-A INPUT -i br-lan -j ACCEPT\n", true, "fwd", "INPUT");
    const fw4 = { family: "inet", table: "fw4", chain: "input" };
    const live = { nft: t, foreign: none, foreignInput: [fw4], iptables, iptablesInput, forward: held, locality };
    const plan = planDnat(r, live);
    assert.deepEqual(plan.fwdAdd, [], "FORWARD never sees these packets");
    assert.deepEqual(plan.inAdd, ["-p tcp -m conntrack --ctstate DNAT --ctreplsrc 10.10.10.2 --ctreplsrcport 22 -m comment --comment natgate:fwd -j ACCEPT"]);
    assert.deepEqual(ownTableOps(plan.nft), ['insert rule inet fw4 input meta l4proto tcp ct status dnat ct reply ip saddr 10.10.10.2 ct reply proto-src 22 accept comment "natgate:fwd"']);
    assert.match(plan.drift.join("\n"), /missing iptables accept \(filter INPUT drops packets to this host, the DNAT target\): iptables -t filter -I INPUT -p tcp/);
    // The same rule once its target is another host: the INPUT accept is stale, FORWARD gets one.
    const elsewhere = { ...live, locality: { local: new Map([["10.10.10.2", false]]), addresses: [] }, iptablesInput: { ...iptablesInput, owned: plan.inAdd } };
    const moved = planDnat(r, elsewhere);
    assert.deepEqual(moved.inDel, plan.inAdd);
    assert.deepEqual(moved.fwdAdd, plan.inAdd);
    assert.deepEqual(ownTableOps(moved.nft), []);
  });

  it("DnatRule: a stale accept of this rule (ports changed) is deleted, other rules' are not", () => {
    const live = parseForwardChain(fixture("iptables-forward.txt"), true, "fwd");
    const narrower = DnatRuleSchema.parse({ ...dnat, protocol: "tcp" });
    const plan = planDnat(narrower, { foreign: none, nft: tableLines(dnatTable(narrower)), iptables: live, forward: { path: "net/ipv4/ip_forward", value: "1", prev: "0", held: true } });
    assert.deepEqual(plan.fwdDel, ["-p udp -m conntrack --ctstate DNAT --ctreplsrc 10.10.10.2 --ctreplsrcport 5000:6000 -m comment --comment natgate:fwd -j ACCEPT"]);
    assert.deepEqual(plan.fwdAdd, []);
  });

  it("DnatRule: accepts go into other nftables firewalls' dropping forward chains (fw4), not iptables' or natgate's", () => {
    // Real ruleset: inet fw4 (forward policy drop) holding this rule's two accepts, iptables-nft's
    // filter FORWARD with policy DROP, and natgate tables of other rules.
    const items = parseNftJson(fixture("nft-ruleset-fw4.json"));
    const foreign = foreignForwardState(items, "natgate:fwd");
    assert.deepEqual(foreign.dropChains, [{ family: "inet", table: "fw4", chain: "forward" }]);
    const r = DnatRuleSchema.parse({ connection, name: "fwd", protocol: "both", ports: "5000-6000", inInterface: "tun0", toAddress: "192.168.1.99" });
    const held = { path: "net/ipv4/ip_forward", value: "1", prev: "1", held: true };
    const iptables = parseForwardChain("-P FORWARD ACCEPT\n", true, "fwd");
    const same = planDnat(r, { nft: tableLines(dnatTable(r)), foreign, iptables, forward: held });
    assert.deepEqual(same.drift, []);
    const narrower = DnatRuleSchema.parse({ ...r, connection, protocol: "tcp", ports: "5000-5100" });
    const plan = planDnat(narrower, { nft: tableLines(dnatTable(narrower)), foreign, iptables, forward: held });
    const handles = foreign.owned.map((o) => o.handle);
    assert.deepEqual(ownTableOps(plan.nft), [
      `delete rule inet fw4 forward handle ${handles[0]}`,
      `delete rule inet fw4 forward handle ${handles[1]}`,
      'insert rule inet fw4 forward meta l4proto tcp ct status dnat ct reply ip saddr 192.168.1.99 ct reply proto-src 5000-5100 accept comment "natgate:fwd"',
    ]);
    assert.deepEqual(foreignForwardState(items, "natgate:other").owned, []);
  });

  it("ConnmarkReturnPath: a changed mark deletes the old rule before adding the new one", () => {
    const c = ConnmarkReturnPathSchema.parse({ ...ret, mark: 0x1234 });
    const live = {
      nft: [],
      rules: [
        { priority: 950, fwmark: 0x10000000, fwmask: 0x10000000, table: 8764 },
        { priority: 951, from: "10.10.10.2", table: 8764 },
      ],
      sysctls: [{ path: "net/ipv4/conf/tun0/rp_filter", value: "2", prev: "0", held: true }],
      claims: new Map<string, string>(),
    };
    const plan = planConnmark(c, live);
    assert.deepEqual(plan.batch, ["rule del priority 950 fwmark 0x10000000/0x10000000 lookup 8764", "rule add priority 950 fwmark 0x1234/0x1234 lookup 8764"]);
    assert.deepEqual(plan.hold, []);
    assert.match(plan.nft, /^add table ip natgate_ret_home/);
    const noRp = planConnmark(ConnmarkReturnPathSchema.parse({ ...ret, looseRpFilter: false }), live);
    assert.deepEqual(noRp.release, ["net/ipv4/conf/tun0/rp_filter"], "turning looseRpFilter off restores the old value");
  });

  it("PolicyRouteTable: replace what differs, delete what no desired route replaces", () => {
    const p = PolicyRouteTableSchema.parse({ ...routes, table: 8764 });
    const live = parseRoutes(fixture("ip-route-8764.json"));
    const plan = planRoutes(p, live);
    assert.deepEqual(plan.batch, [
      "route del table 8764 10.1.2.3 dev br-lan",
      "route del table 8764 blackhole 10.97.0.0/16",
      "route del table 8764 10.98.0.0/16 via 192.168.1.5 dev br-lan onlink",
      "route del table 8764 10.99.0.0/16 via 192.168.1.5 dev br-lan src 192.168.1.1 metric 10",
    ]);
    const moved = PolicyRouteTableSchema.parse({ ...routes, table: 8764, routes: [{ to: "default", via: "10.10.10.9", dev: "tun0" }] });
    assert.deepEqual(planRoutes(moved, live.slice(0, 1)).batch, ["route replace table 8764 default via 10.10.10.9 dev tun0"], "no delete: replace rewrites it in place");
    assert.deepEqual(planRoutes(p, live.filter((r) => r.to === "default" || r.to === "192.168.1.0/24")).drift, []);
  });

  it("PolicyRouteTable: a new resource names the routes of others it would have to delete; its own (a retried create) are not others'", () => {
    const p = PolicyRouteTableSchema.parse({ ...routes, table: 8764 });
    const live = parseRoutes(fixture("ip-route-8764.json"));
    assert.deepEqual(foreignRoutes(p, live), [
      "10.1.2.3 dev br-lan",
      "blackhole 10.97.0.0/16",
      "10.98.0.0/16 via 192.168.1.5 dev br-lan onlink",
      "10.99.0.0/16 via 192.168.1.5 dev br-lan src 192.168.1.1 metric 10",
    ]);
    assert.deepEqual(foreignRoutes(p, live.filter((r) => r.to === "default")), [], "a partial apply of its own routes is not foreign");
    assert.deepEqual(foreignRoutes(p, []), []);
  });

  it("the nft fixture of the seed's router rule reads back with no drift", () => {
    const r = DnatRuleSchema.parse({ connection, name: "router", protocol: "both", ports: "5000-6000", inInterface: "wg0", toAddress: "192.168.1.99" });
    const plan = planDnat(r, {
      nft: parseNftTableJson(fixture("nft-dnat-router.json")),
      foreign: none,
      iptables: parseForwardChain("", false, "router"),
      forward: { path: "net/ipv4/ip_forward", value: "1", prev: "1", held: true },
    });
    assert.deepEqual(plan.drift, []);
  });
});
