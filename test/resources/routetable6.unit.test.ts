import * as assert from "node:assert/strict";
import { parseRoutes } from "../../provider/backends/iproute";
import { planRoutes, renderRouteTable, routesBootEntry } from "../../provider/resources/routetable";
import { PolicyRouteTableSchema, routeTableCrossCheck } from "../../provider/resources/routetable/schema";

const connection = { host: "198.51.100.1", password: "x" };
const base = { connection, name: "home", table: 8764, persist: false };
const parse = (routes: object[]) => PolicyRouteTableSchema.safeParse({ ...base, routes });
const issues = (routes: object[]) => {
  const r = parse(routes);
  if (!r.success) return Object.fromEntries(r.error.issues.map((i) => [i.path.join("."), i.message]));
  return Object.fromEntries(routeTableCrossCheck(r.data).map((f) => [f.property, f.reason]));
};

describe("PolicyRouteTable IPv6 routes (unit)", () => {
  it("renders ip -6 lines, canonical, host routes without /128, metric 1024 as none", () => {
    const i = PolicyRouteTableSchema.parse({ ...base, routes: [
      { to: "default", via: "10.10.10.1", dev: "wg0" },
      { to: "0::/0", via: "FD00:0::1", dev: "wg0" },
      { to: "fd00:1:0::5/128", dev: "wg0", src: "fd00::2", metric: 1024 },
      { to: "fd00:2::/64", via: "fe80::1", dev: "br-lan", metric: 10 },
    ] });
    assert.deepEqual(renderRouteTable(i), [
      "ip route replace table 8764 default via 10.10.10.1 dev wg0",
      "ip -6 route replace table 8764 ::/0 via fd00::1 dev wg0",
      "ip -6 route replace table 8764 fd00:1::5 dev wg0 src fd00::2",
      "ip -6 route replace table 8764 fd00:2::/64 via fe80::1 dev br-lan metric 10",
    ]);
    assert.match(routesBootEntry({ ...i, persist: true }).prefix, /route replace table 8764 ::\/0 via fd00::1 dev wg0/);
  });

  it("bad input names the field", () => {
    assert.match(issues([{ to: "fd00::5/64", dev: "wg0" }])["routes.0.to"]!, /host bits set: write fd00::\/64/);
    assert.match(issues([{ to: "fd00::/129", dev: "wg0" }])["routes.0.to"]!, /"::\/0"/);
    assert.match(issues([{ to: "::/0", via: "fd00::zz", dev: "wg0" }])["routes.0.via"]!, /IPv6 address/);
    assert.match(issues([{ to: "default", via: "fd00::1" }])["routes[0].via"]!, /fd00::1 is IPv6 but routes\[0\]\.to is IPv4/);
    assert.match(issues([{ to: "::/0", via: "10.0.0.1" }])["routes[0].via"]!, /10\.0\.0\.1 is IPv4 but routes\[0\]\.to is IPv6/);
    assert.match(issues([{ to: "::/0", dev: "wg0", src: "10.0.0.1" }])["routes[0].src"]!, /is IPv4/);
    assert.match(issues([{ to: "::/0", via: "fe80::1" }])["routes[0].via"]!, /link-local .*give dev/);
    assert.deepEqual(issues([{ to: "::/0", via: "fe80::1", dev: "wg0" }]), {});
    assert.match(issues([{ to: "::/0", via: "ff02::1", dev: "wg0" }])["routes[0].via"]!, /multicast/);
  });

  it("duplicates across spellings and the IPv6 default metric; v4 and v6 defaults are not duplicates", () => {
    assert.match(issues([{ to: "::/0", dev: "wg0" }, { to: "0::/0", dev: "wg1" }])["routes[1].to"]!, /routes\[0\] has the same destination and metric/);
    assert.match(issues([{ to: "fd00::/64", dev: "wg0" }, { to: "fd00:0::/64", dev: "wg1", metric: 1024 }])["routes[1].to"]!, /same destination/);
    assert.deepEqual(issues([{ to: "default", dev: "wg0" }, { to: "::/0", dev: "wg0" }]), {});
    assert.deepEqual(issues([{ to: "::/0", dev: "wg0" }, { to: "::/0", dev: "wg1", metric: 5 }]), {});
  });

  it("ip -6 -j output reads back as the desired route: no drift", () => {
    const i = PolicyRouteTableSchema.parse({ ...base, routes: [{ to: "default", dev: "wg0" }, { to: "::/0", via: "fd00::1", dev: "wg0" }] });
    const v4 = parseRoutes('[{"dst":"default","dev":"wg0","scope":"link","flags":[]}]');
    const v6 = parseRoutes('[{"dst":"default","gateway":"fd00::1","dev":"wg0","metric":1024,"flags":[],"pref":"medium"}]', 6);
    assert.deepEqual(planRoutes(i, [...v4, ...v6]).drift, []);
    const moved = parseRoutes('[{"dst":"default","gateway":"fd00::9","dev":"wg0","metric":1024,"flags":[],"pref":"medium"}]', 6);
    const p = planRoutes(i, [...v4, ...moved]);
    assert.ok(p.drift.length > 0);
    assert.deepEqual(p.batch, ["route replace table 8764 ::/0 via fd00::1 dev wg0"]);
  });
});
