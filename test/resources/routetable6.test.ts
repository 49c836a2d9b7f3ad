// PolicyRouteTable with IPv6 routes (issue 10) on the lab router's real kernel: one table holding
// both families, no drift on read, a route removed by hand shown as
// drift, and delete leaving `ip route` and `ip -6 route` of every table as they were.
// Run: node_modules/.bin/tsx test/lab/cli.ts run -- node_modules/.bin/mocha test/resources/routetable6.test.ts
import * as assert from "node:assert/strict";
import { getLab, type LabHost } from "../lab";
import { providers } from "../../provider";
import { closeAll } from "../../provider/ssh";

const TABLE = 8799;

function connectionOf(h: LabHost) {
  const s = h.ssh!;
  return { host: s.host, port: s.port, user: s.user, privateKey: s.privateKey, hostKey: s.hostKey };
}

/** Every route of every table in both families (the link-local and cache routes the kernel adds by itself are there before and after alike). */
const routes = (h: LabHost) => h.run("echo '# v4'; ip -4 route show table all; echo '# v6'; ip -6 route show table all; echo '# rules'; ip rule; ip -6 rule");

describe("PolicyRouteTable with IPv6 routes (lab router)", function () {
  this.timeout(120_000);
  const lab = getLab();
  const router = lab.hosts.router;
  const p = providers.PolicyRouteTable!;
  let id = "";
  let outs: Record<string, any> = {};
  let initial = "";

  const news = () => ({
    connection: connectionOf(router),
    name: "dual",
    table: TABLE,
    persist: false,
    routes: [
      { to: "default", via: lab.hosts.lan.addr, dev: "br-lan" },
      { to: "::/0", via: lab.hosts.lan.addr6!, dev: "br-lan" },
      { to: "2001:db8:abc::/48", dev: "br-lan", metric: 5 },
    ],
  });

  before(async () => {
    assert.ok(lab.hosts.lan.addr6, "the lab gives the LAN host an IPv6 address");
    initial = await routes(router);
  });

  after(async () => {
    if (id) await p.delete!(id, outs).catch(() => undefined);
    closeAll();
  });

  it("create: one table holds the routes of both families", async () => {
    const c = await p.check!({}, news());
    assert.deepEqual(c.failures ?? [], []);
    const r = await p.create(c.inputs);
    id = r.id;
    outs = r.outs;
    assert.deepEqual(outs.drift, []);
    // `ip -6 route get` takes no table: the kernel's IPv6 table as it lists it.
    const v6 = await router.run(`ip -6 route show table ${TABLE}`);
    assert.match(v6, /^default via fd00:1::99 dev br-lan/m);
    assert.match(v6, /^2001:db8:abc::\/48 dev br-lan metric 5/m);
    assert.match(await router.run(`ip -4 route show table ${TABLE}`), new RegExp(`^default via ${lab.hosts.lan.addr.replace(/\./g, "\\.")} dev br-lan`, "m"));
  });

  it("read finds no drift; an IPv6 route removed by hand shows as drift, the IPv4 one untouched", async () => {
    const r = await p.read!(id, outs);
    assert.deepEqual(r.props!.drift, []);
    await router.run(`ip -6 route del ::/0 table ${TABLE}`);
    const d = await p.read!(id, outs);
    assert.equal(d.props!.drift.length, 1, JSON.stringify(d.props!.drift));
    assert.match(d.props!.drift[0], /missing route: ip -6 route replace table 8799 ::\/0 via fd00:1::99 dev br-lan/);
    const u = await p.update!(id, outs, (await p.check!({}, news())).inputs);
    outs = u.outs!;
    assert.deepEqual(outs.drift, []);
    assert.match(await router.run(`ip -6 route show table ${TABLE}`), /^default via fd00:1::99 dev br-lan/m);
  });

  it("delete leaves both families' routes of every table as they were", async () => {
    await p.delete!(id, outs);
    id = "";
    assert.equal((await router.run(`ip -6 route show table ${TABLE}; ip -4 route show table ${TABLE}`)).trim(), "");
    assert.equal(await routes(router), initial);
  });
});
