import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import ipaddr from "ipaddr.js";
import { getLab, type LabHost, type LabProcess } from "../lab";
import { providers } from "../../provider";
import { closeAll } from "../../provider/ssh";

// IPv6 forwarding (issue 10), built by DnatRule, ConnmarkReturnPath (ipv6: true) and
// PolicyRouteTable over a pre-made tunnel (a veth pair tun0 between the VPS and the router with
// IPv6 addresses only), with real traffic from the internet client's IPv6 address to services on
// the LAN host's ULA and on the router itself. The router has no IPv6 default route: a reply gets
// back only by the return path's mark and table.

const lab = getLab();
const { vps, router, lan, client, core } = lab.hosts;
const PUBLIC6 = vps.addr6!;
const CLIENT6 = client.addr6!;
const VPS_TUN6 = "fd00:10::1";
const ROUTER_TUN6 = "fd00:10::2";
const canonical = (a: string) => ipaddr.parse(a.trim().replace(/^\[|\]$/g, "")).toString();

function connectionOf(h: LabHost) {
  const s = h.ssh!;
  return { host: s.host, port: s.port, user: s.user, privateKey: s.privateKey, hostKey: s.hostKey };
}

type Props = Record<string, any>;
interface Res {
  kind: string;
  id: string;
  outs: Props;
}

async function check(kind: string, news: Props): Promise<Props> {
  const r = await providers[kind]!.check!({}, news);
  assert.deepEqual(r.failures ?? [], [], `${kind} check failures`);
  return r.inputs;
}

async function create(kind: string, news: Props): Promise<Res> {
  const r = await providers[kind]!.create(await check(kind, news));
  assert.deepEqual(r.outs.drift, [], `${kind} drift right after create`);
  return { kind, id: r.id, outs: r.outs };
}

async function refresh(res: Res): Promise<Props> {
  const r = await providers[res.kind]!.read!(res.id, res.outs);
  res.outs = r.props!;
  return r.props!;
}

/** Everything natgate could touch on a host, both families, as text (counters move with traffic: not state). */
async function snapshot(h: LabHost): Promise<string> {
  return (await h.run(
    "echo '# nft'; nft list ruleset;" +
      "echo '# iptables'; iptables -S; echo '# ip6tables'; ip6tables -S;" +
      "echo '# ip rule'; ip rule; echo '# ip -6 rule'; ip -6 rule;" +
      "echo '# ip route'; ip -4 route show table all; echo '# ip -6 route'; ip -6 route show table all;" +
      "echo '# sysctl'; sysctl net.ipv4.ip_forward net.ipv6.conf.all.forwarding; for f in /proc/sys/net/ipv6/conf/*/accept_ra; do echo \"$f $(cat $f)\"; done;" +
      "echo '# files'; find /run/natgate /var/run/natgate /etc/natgate 2>/dev/null; true",
  )).replace(/counter packets \d+ bytes \d+/g, "counter");
}

function lineDiff(before: string, after: string): string {
  const a = before.split("\n");
  const b = after.split("\n");
  return [...a.filter((l) => !b.includes(l)).map((l) => `- ${l}`), ...b.filter((l) => !a.includes(l)).map((l) => `+ ${l}`)].join("\n");
}

/** The address a service behind the VPS saw for a connection from `from` (the client unless given). */
async function askTcp6(port: number, from: LabHost = client, bind?: string): Promise<string> {
  const b = bind ? `,bind=[${bind}]` : "";
  const r = await from.exec(`socat -t 2 -T 5 - TCP6:[${PUBLIC6}]:${port},connect-timeout=5${b} </dev/null`);
  return r.stdout.trim() ? canonical(r.stdout) : `(no answer: ${r.stderr.trim()})`;
}

async function askUdp6(port: number): Promise<string> {
  const r = await client.exec(`echo hello | socat -t 1 -T 3 - UDP6:[${PUBLIC6}]:${port}`);
  return r.stdout.trim() ? canonical(r.stdout) : `(no answer: ${r.stderr.trim()})`;
}

describe("IPv6: DnatRule + ConnmarkReturnPath + PolicyRouteTable (lab: a pre-made tun0 with IPv6 addresses)", function () {
  this.timeout(120_000);

  const vpsConn = connectionOf(vps);
  const routerConn = connectionOf(router);
  const services: LabProcess[] = [];
  let vpsBefore = "";
  let routerBefore = "";
  const res: Record<string, Res> = {};

  // Spelled as a user may write them: the rules compare with the host's canonical listing anyway.
  const vpsFwd = { connection: vpsConn, name: "fwd6", protocol: "both", ports: "5000-5001", destination: PUBLIC6.toUpperCase(), toAddress: "FD00:10:0::2" };
  const vpsWeb = { connection: vpsConn, name: "web6", ports: 8080, destination: PUBLIC6, toAddress: ROUTER_TUN6, allowFrom: [`${CLIENT6}`], refuse: "reject" };
  const vpsLocal = { connection: vpsConn, name: "local6", ports: 7000, destination: PUBLIC6, toAddress: ROUTER_TUN6, backend: "iptables" };
  const routerFwd = { connection: routerConn, name: "fwd6", protocol: "both", ports: "5000-5001", inInterface: "tun0", toAddress: lan.addr6! };
  const routerWeb = { connection: routerConn, name: "web6", ports: 8080, inInterface: "tun0", toAddress: lan.addr6!, toPorts: 80, backend: "iptables" };
  const returnPath = { connection: routerConn, name: "home6", tunnelInterface: "tun0", ipv6: true, localSource6: ROUTER_TUN6, looseRpFilter: false };
  const routes = { connection: routerConn, name: "home6", routes: [{ to: "::/0", via: VPS_TUN6, dev: "tun0" }, { to: "fd00:1::/64", dev: "br-lan" }] };

  before(async () => {
    execFileSync("ip", ["link", "add", "tun0", "netns", vps.netns, "mtu", "1420", "type", "veth", "peer", "name", "tun0", "netns", router.netns]);
    // A veth has neighbour discovery (WireGuard has none), and the kernel solicits a forwarded
    // packet's next hop from the interface's link-local address: without one (addrgenmode none) the
    // VPS never asks for the router's address and clients get "No route to host". So the link-local
    // addresses stay, and the snapshots are taken once they are there.
    for (const [h, a] of [[vps, `${VPS_TUN6}/64`], [router, `${ROUTER_TUN6}/64`]] as const) {
      await h.run(`ip addr add ${a} dev tun0 nodad && ip link set tun0 up`);
    }
    for (const h of [vps, router]) await h.run("for i in $(seq 50); do ip -6 addr show dev tun0 scope link | grep -q 'inet6 fe80' && exit 0; sleep 0.1; done; exit 1");
    // A VPS that takes its own IPv6 default route from router advertisements: forwarding would stop that.
    await vps.run("echo 1 > /proc/sys/net/ipv6/conf/eth0/accept_ra");
    const echo = "SYSTEM:'echo $SOCAT_PEERADDR; sleep 0.3'";
    for (const port of [5000, 5001]) {
      services.push(await lan.start(`socat TCP6-LISTEN:${port},fork,reuseaddr ${echo}`, { waitForTcpPort: port }));
      services.push(await lan.start(`socat UDP6-RECVFROM:${port},fork,reuseaddr ${echo}`, { waitForUdpPort: port }));
    }
    services.push(await lan.start(`socat TCP6-LISTEN:80,fork,reuseaddr ${echo}`, { waitForTcpPort: 80 }));
    // A router-local IPv6 service on the router's tunnel address (its replies leave by the `from` rule).
    services.push(await router.start(`socat TCP6-LISTEN:7000,bind=[${ROUTER_TUN6}],fork,reuseaddr ${echo}`, { waitForTcpPort: 7000 }));
    vpsBefore = await snapshot(vps);
    routerBefore = await snapshot(router);
  });

  after(async () => {
    for (const p of services) await p.stop();
    await closeAll();
    await vps.exec("ip link del tun0; echo 0 > /proc/sys/net/ipv6/conf/eth0/accept_ra");
  });

  it("without natgate, the client's IPv6 connection does not reach the LAN service", async () => {
    assert.notEqual(await askTcp6(5000), canonical(CLIENT6));
  });

  it("creates the IPv6 path; the LAN service sees the client's own IPv6 address on tcp and udp", async () => {
    res.routes = await create("PolicyRouteTable", routes);
    res.returnPath = await create("ConnmarkReturnPath", returnPath);
    res.routerFwd = await create("DnatRule", routerFwd);
    res.routerWeb = await create("DnatRule", routerWeb);
    res.vpsFwd = await create("DnatRule", vpsFwd);
    res.vpsWeb = await create("DnatRule", vpsWeb);
    res.vpsLocal = await create("DnatRule", vpsLocal);
    const answers = [await askTcp6(5000), await askTcp6(5001), await askUdp6(5000), await askUdp6(5001)];
    assert.deepEqual(answers, answers.map(() => canonical(CLIENT6)), "tcp 5000, 5001, udp 5000, 5001");
  });

  it("the VPS's own IPv6 forwarding was 0 and is held; its WAN keeps taking router advertisements (accept_ra 2)", async () => {
    assert.deepEqual(res.vpsFwd.outs.sysctlPrevious, { "net.ipv6.conf.all.forwarding": "0", "net.ipv6.conf.eth0.accept_ra": "1" });
    assert.equal((await vps.run("cat /proc/sys/net/ipv6/conf/all/forwarding /proc/sys/net/ipv6/conf/eth0/accept_ra")).trim().split("\n").join(" "), "1 2");
    assert.ok(res.vpsFwd.outs.rendered.some((l: string) => l.startsWith("nft add table ip6 natgate_dnat_fwd6")), res.vpsFwd.outs.rendered.join("\n"));
    assert.ok(res.vpsLocal.outs.rendered.some((l: string) => l.startsWith("ip6tables -t nat -A natgate-dnat-local6")), res.vpsLocal.outs.rendered.join("\n"));
  });

  it("a remapped port (ip6tables on the router: 8080 → 80) and an allow-listed client get through", async () => {
    assert.equal(await askTcp6(8080), canonical(CLIENT6));
  });

  it("a source outside allowFrom is rejected at the VPS (connection refused), counted as refused", async () => {
    const r = await core.exec(`socat -t 2 -T 3 - TCP6:[${PUBLIC6}]:8080,connect-timeout=3 </dev/null`);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Connection refused/, r.stderr);
    const outs = await refresh(res.vpsWeb);
    assert.ok((outs.counters.refused?.packets ?? 0) >= 1, JSON.stringify(outs.counters));
    assert.ok((outs.counters.tcp?.packets ?? 0) >= 1, JSON.stringify(outs.counters));
  });

  it("a router-local IPv6 service (the VPS's rule written with ip6tables) sees the client's address; its replies take the from rule", async () => {
    assert.equal(await askTcp6(7000), canonical(CLIENT6));
    const rules = await router.run("ip -6 rule");
    assert.match(rules, new RegExp(`from ${ROUTER_TUN6} lookup 8764`), rules);
    assert.match(rules, /fwmark 0x10000000\/0x10000000 lookup 8764/, rules);
  });

  it("refresh finds every resource in sync; an extra accept_ra=1 interface (a new WAN) is drift the next up fixes", async () => {
    for (const r of Object.values(res)) assert.deepEqual((await refresh(r)).drift, [], r.id);
    // A new interface takes "default"'s accept_ra, which natgate holds at 2 too: this one is set to 1 by hand.
    await vps.run("ip link add ngdummy type veth peer name ngdummy1 && echo 1 > /proc/sys/net/ipv6/conf/ngdummy/accept_ra");
    try {
      const drift = (await refresh(res.vpsFwd)).drift as string[];
      assert.ok(drift.some((d) => /net\.ipv6\.conf\.ngdummy\.accept_ra is 1/.test(d)), drift.join("\n"));
      const r = await providers.DnatRule!.update!(res.vpsFwd.id, res.vpsFwd.outs, await check("DnatRule", vpsFwd));
      res.vpsFwd.outs = r.outs!;
      assert.deepEqual(r.outs!.drift, []);
      assert.equal((await vps.run("cat /proc/sys/net/ipv6/conf/ngdummy/accept_ra")).trim(), "2");
    } finally {
      await vps.run("ip link del ngdummy");
    }
  });

  it("an update that changes a rule's family (IPv4 → IPv6) removes the IPv4 objects and their sysctl hold first", async () => {
    const v4 = { connection: vpsConn, name: "flip", ports: 9000, destination: "198.51.100.1", toAddress: "10.99.0.2" };
    const flip = await create("DnatRule", v4);
    assert.equal((await vps.run("cat /proc/sys/net/ipv4/ip_forward")).trim(), "1");
    try {
      const r = await providers.DnatRule!.update!(flip.id, flip.outs, await check("DnatRule", { ...v4, destination: PUBLIC6, toAddress: ROUTER_TUN6 }));
      flip.outs = r.outs!;
      assert.deepEqual(r.outs!.drift, []);
      assert.equal((await vps.exec("nft list table ip natgate_dnat_flip")).code, 1, "the IPv4 table is gone");
      assert.match(await vps.run("nft list table ip6 natgate_dnat_flip"), /dnat to fd00:10::2/);
      assert.equal((await vps.run("cat /proc/sys/net/ipv4/ip_forward")).trim(), "0", "ip_forward back to what it was");
    } finally {
      await providers.DnatRule!.delete!(flip.id, flip.outs);
    }
  });

  it("delete leaves both hosts' IPv4 and IPv6 state exactly as before (rules, routes, nft, ip6tables, sysctls)", async () => {
    for (const k of ["vpsLocal", "vpsWeb", "vpsFwd", "routerWeb", "routerFwd", "returnPath", "routes"]) {
      await providers[res[k]!.kind]!.delete!(res[k]!.id, res[k]!.outs);
    }
    const [v, r] = [await snapshot(vps), await snapshot(router)];
    if (v !== vpsBefore) assert.fail(`vps differs from before create:\n${lineDiff(vpsBefore, v)}`);
    if (r !== routerBefore) assert.fail(`router differs from before create:\n${lineDiff(routerBefore, r)}`);
    assert.notEqual(await askTcp6(5000), canonical(CLIENT6));
  });
});
