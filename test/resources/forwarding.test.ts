import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { getLab, type LabHost, type LabProcess } from "../lab";
import { providers } from "../../provider";
import { remoteStats } from "../../provider/resources/common/host";
import { closeAll, poolStats, runScript } from "../../provider/ssh";

// The seed's forwarding, built by DnatRule, ConnmarkReturnPath and PolicyRouteTable over a
// pre-made tunnel (a veth pair named tun0 between the VPS and the router, made and removed here),
// exercised with real traffic from the internet client to services on the LAN host and the router.

const lab = getLab();
const { vps, router, lan, client } = lab.hosts;
const PUBLIC = "198.51.100.1";
const CLIENT = "203.0.113.10";

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
  const inputs = await check(kind, news);
  const r = await providers[kind]!.create(inputs);
  assert.deepEqual(r.outs.drift, [], `${kind} drift right after create`);
  return { kind, id: r.id, outs: r.outs };
}

/** What `pulumi up` does for an existing resource: check, diff, and update only when diff says so. */
async function up(res: Res, news: Props): Promise<{ changed: boolean }> {
  const p = providers[res.kind]!;
  const inputs = await check(res.kind, news);
  const d = await p.diff!(res.id, res.outs, inputs);
  assert.equal((d.replaces ?? []).length, 0, `unexpected replacement of ${res.id}: ${d.replaces}`);
  if (!d.changes) return { changed: false };
  const r = await p.update!(res.id, res.outs, inputs);
  res.outs = r.outs!;
  return { changed: true };
}

async function refresh(res: Res): Promise<Props> {
  const r = await providers[res.kind]!.read!(res.id, res.outs);
  res.outs = r.props!;
  return r.props!;
}

async function destroy(res: Res): Promise<void> {
  await providers[res.kind]!.delete!(res.id, res.outs);
}

/** Everything natgate could touch on a host, as text. */
async function snapshot(h: LabHost): Promise<string> {
  // Packet counters move with traffic: not state.
  return (await h.run(
    "echo '# nft'; nft list ruleset;" +
      "echo '# iptables'; iptables -S;" +
      "echo '# ip rule'; ip rule;" +
      // IPv4 only: natgate's resources are IPv4, and link-local IPv6 routes appear on their own after boot.
      "echo '# ip route'; ip -4 route show table all;" +
      "echo '# ip link'; ip -o link | sed 's/^[0-9]*: //';" +
      "echo '# sysctl'; sysctl net.ipv4.ip_forward net.ipv4.conf.all.rp_filter net.ipv4.conf.tun0.rp_filter;" +
      // natgate's state files, its boot entries and runner, and the init hooks (and the directories made for them)
      "echo '# files'; find /run/natgate /var/run/natgate /var/lib/natgate /etc/natgate /etc/systemd/system/natgate.service /etc/systemd/system/multi-user.target.wants/natgate.service /etc/init.d/natgate /etc/rc.d /etc/hotplug.d /lib/upgrade 2>/dev/null; true",
  )).replace(/counter packets \d+ bytes \d+/g, "counter");
}

function lineDiff(before: string, after: string): string {
  const a = before.split("\n");
  const b = after.split("\n");
  return [...a.filter((l) => !b.includes(l)).map((l) => `- ${l}`), ...b.filter((l) => !a.includes(l)).map((l) => `+ ${l}`)].join("\n");
}

function assertSameState(host: string, before: string, after: string): void {
  if (before !== after) assert.fail(`${host} differs from before create:\n${lineDiff(before, after)}`);
}

/** What a service on the LAN host (or router) answered: the client address it saw. */
async function askTcp(port: number, timeout = 5): Promise<string> {
  const r = await client.exec(`socat -t 2 -T 5 - TCP:${PUBLIC}:${port},connect-timeout=${timeout} </dev/null`);
  return r.stdout.trim() || `(no answer: ${r.stderr.trim()})`;
}

async function askUdp(port: number): Promise<string> {
  const r = await client.exec(`echo hello | socat -t 1 -T 3 - UDP:${PUBLIC}:${port}`);
  return r.stdout.trim() || `(no answer: ${r.stderr.trim()})`;
}

async function assertForwarding(ports = [5000, 5999, 6000]): Promise<void> {
  const answers = await Promise.all([...ports.map(askTcp), ...ports.map(askUdp)]);
  assert.deepEqual(answers, answers.map(() => CLIENT), `tcp ${ports} then udp ${ports}: the LAN service should see the client's address`);
}

const secondsSince = (t: number) => ((Date.now() - t) / 1000).toFixed(2);

describe("DnatRule + ConnmarkReturnPath + PolicyRouteTable (lab: the seed's forwarding over a pre-made tun0)", function () {
  this.timeout(120_000);

  const vpsConn = connectionOf(vps);
  const routerConn = connectionOf(router);
  const services: LabProcess[] = [];
  let vpsBefore = "";
  let routerBefore = "";

  const vpsFwd = { connection: vpsConn, name: "fwd", protocol: "both", ports: "5000-6000", destination: PUBLIC, toAddress: "10.10.10.2" };
  const vpsSsh = { connection: vpsConn, name: "ssh", ports: 2222, destination: PUBLIC, toAddress: "10.10.10.2", toPorts: 22 };
  const vpsWeb = { connection: vpsConn, name: "web", ports: 8080, destination: PUBLIC, toAddress: "10.10.10.2" };
  const routerFwd = { connection: routerConn, name: "fwd", protocol: "both", ports: "5000-6000", inInterface: "tun0", toAddress: "192.168.1.99" };
  const routerWeb = { connection: routerConn, name: "web", ports: 8080, inInterface: "tun0", toAddress: "192.168.1.99", toPorts: 80 };
  const returnPath = { connection: routerConn, name: "home", tunnelInterface: "tun0", localSource: "10.10.10.2" };
  const routes = {
    connection: routerConn,
    name: "home",
    routes: [
      { to: "default", via: "10.10.10.1", dev: "tun0" },
      { to: "192.168.1.0/24", dev: "br-lan" },
    ],
  };
  const res: Record<string, Res> = {};

  before(async () => {
    // The pre-made tunnel: what an existing OpenVPN/WireGuard link would look like to natgate.
    execFileSync("ip", ["link", "add", "tun0", "netns", vps.netns, "mtu", "1420", "type", "veth", "peer", "name", "tun0", "netns", router.netns]);
    // No IPv6 link-local address: it would appear asynchronously and make the snapshots differ.
    for (const [h, a] of [[vps, "10.10.10.1/24"], [router, "10.10.10.2/24"]] as const) {
      await h.run(`ip link set tun0 addrgenmode none && ip addr add ${a} dev tun0 && ip link set tun0 up`);
    }
    // The services answer with the peer address they saw. The echo must outlive socat's write of
    // the request into it (an early exit is a broken pipe that can lose the answer), hence sleep.
    const echo = "SYSTEM:'echo $SOCAT_PEERADDR; sleep 0.3'";
    for (const port of [5000, 5999, 6000]) {
      services.push(await lan.start(`socat TCP-LISTEN:${port},fork,reuseaddr ${echo}`, { waitForTcpPort: port }));
      services.push(await lan.start(`socat UDP-RECVFROM:${port},fork,reuseaddr ${echo}`, { waitForUdpPort: port }));
    }
    services.push(await lan.start(`socat TCP-LISTEN:80,fork,reuseaddr ${echo}`, { waitForTcpPort: 80 }));
    vpsBefore = await snapshot(vps);
    routerBefore = await snapshot(router);
  });

  after(async () => {
    for (const p of services) await p.stop();
    await closeAll();
    await vps.exec("ip link del tun0");
  });

  it("without natgate, the client cannot reach the LAN service", async () => {
    assert.notEqual(await askTcp(5000), CLIENT);
  });

  it("creates the whole setup; the LAN service sees the client's address on tcp and udp 5000, 5999, 6000", async () => {
    const t = Date.now();
    const s0 = { ...remoteStats };
    const d0 = poolStats().dials;
    res.routes = await create("PolicyRouteTable", routes);
    res.returnPath = await create("ConnmarkReturnPath", returnPath);
    res.routerFwd = await create("DnatRule", routerFwd);
    res.routerWeb = await create("DnatRule", routerWeb);
    res.vpsFwd = await create("DnatRule", vpsFwd);
    res.vpsSsh = await create("DnatRule", vpsSsh);
    res.vpsWeb = await create("DnatRule", vpsWeb);
    console.log(
      `      apply from nothing: 7 resources in ${secondsSince(t)} s, ${remoteStats.scripts - s0.scripts} remote scripts (${remoteStats.writes - s0.writes} writing), ${poolStats().dials - d0} SSH connections`,
    );
    assert.deepEqual(res.vpsFwd.outs.sysctlPrevious, { "net.ipv4.ip_forward": "0" });
    assert.deepEqual(res.returnPath.outs.sysctlPrevious, { "net.ipv4.conf.tun0.rp_filter": "0" });
    assert.equal(res.vpsFwd.id, `${PUBLIC}/DnatRule/fwd`);
    await assertForwarding();
  });

  it("VPS:2222 reaches the router's own sshd, which sees the client's address", async () => {
    const conn = await client.start(`sleep 4 | socat - TCP:${PUBLIC}:2222,connect-timeout=5 > /tmp/${lab.prefix}-banner 2>&1`);
    try {
      let peers = "";
      for (let k = 0; k < 20 && !peers.includes(CLIENT); k++) {
        await new Promise((r) => setTimeout(r, 150));
        peers = await router.run("ss -Htn state established '( sport = :22 )'");
      }
      assert.match(peers, new RegExp(`10\\.10\\.10\\.2:22\\s+${CLIENT.replace(/\./g, "\\.")}:`), `router sockets:\n${peers}`);
      const banner = await client.run(`sleep 0.3; cat /tmp/${lab.prefix}-banner`);
      assert.match(banner, /^SSH-2\.0-/);
    } finally {
      await conn.stop();
      await client.exec(`rm -f /tmp/${lab.prefix}-banner`);
    }
  });

  it("VPS:8080 is remapped to the LAN host's port 80", async () => {
    assert.equal(await askTcp(8080), CLIENT);
  });

  it("SSH to the router from the LAN still works with the rules and routes in place (fresh login)", async () => {
    const r = await runScript(routerConn, "ip rule; ip route show table 8764", [], { fresh: true });
    assert.equal(r.code, 0);
    assert.match(r.stdout, /fwmark 0x10000000\/0x10000000 lookup 8764/);
  });

  it("applying the same inputs again changes nothing and runs no writing script", async () => {
    const t = Date.now();
    const s0 = { ...remoteStats };
    const d0 = poolStats().dials;
    const inputs: [string, Props][] = [
      ["routes", routes], ["returnPath", returnPath], ["routerFwd", routerFwd], ["routerWeb", routerWeb],
      ["vpsFwd", vpsFwd], ["vpsSsh", vpsSsh], ["vpsWeb", vpsWeb],
    ];
    for (const [k, news] of inputs) assert.equal((await up(res[k]!, news)).changed, false, `${k} should have no diff`);
    // Even an update forced through the provider reads, compares, and writes nothing.
    for (const [k, news] of inputs) {
      const r = await providers[res[k]!.kind]!.update!(res[k]!.id, res[k]!.outs, await check(res[k]!.kind, news));
      assert.deepEqual(r.outs!.drift, []);
    }
    assert.equal(remoteStats.writes - s0.writes, 0, "no writing script");
    console.log(
      `      no-change re-apply (forced update of 7): ${secondsSince(t)} s, ${remoteStats.scripts - s0.scripts} remote scripts, 0 writing, ${poolStats().dials - d0} SSH connections`,
    );
  });

  it("a table flushed by hand shows as drift on refresh; re-apply repairs it and traffic works again", async () => {
    await router.run("nft flush table ip natgate_dnat_fwd");
    assert.notEqual(await askTcp(5000), CLIENT);
    const props = await refresh(res.routerFwd!);
    assert.ok(props.drift.some((d: string) => /missing nft: .*dnat to 192\.168\.1\.99/.test(d)), JSON.stringify(props.drift));
    assert.ok(!props.rendered.some((l: string) => l.includes("dnat to")), "rendered shows the live (flushed) table");
    const s0 = remoteStats.writes;
    assert.equal((await up(res.routerFwd!, routerFwd)).changed, true);
    assert.equal(remoteStats.writes - s0, 1, "one writing script repairs it");
    assert.deepEqual((await refresh(res.routerFwd!)).drift, []);
    await assertForwarding();
  });

  it("a route and an ip rule removed by hand, and rp_filter reset, show as drift and are repaired", async () => {
    await router.run("ip route del table 8764 default; ip rule del priority 950; sysctl -qw net.ipv4.conf.tun0.rp_filter=1");
    const r = await refresh(res.routes!);
    assert.deepEqual(r.drift, ["missing route: ip route replace table 8764 default via 10.10.10.1 dev tun0"]);
    const c = await refresh(res.returnPath!);
    assert.ok(c.drift.some((d: string) => d.startsWith("missing ip rule: ip rule add priority 950 fwmark 0x10000000/0x10000000 lookup 8764")), JSON.stringify(c.drift));
    assert.ok(c.drift.some((d: string) => d.includes("rp_filter is 1")), JSON.stringify(c.drift));
    assert.equal((await up(res.routes!, routes)).changed, true);
    assert.equal((await up(res.returnPath!, returnPath)).changed, true);
    assert.deepEqual((await refresh(res.returnPath!)).drift, []);
    assert.deepEqual((await refresh(res.routes!)).drift, []);
    // The previous value recorded at first create survives the repair.
    assert.deepEqual(res.returnPath!.outs.sysctlPrevious, { "net.ipv4.conf.tun0.rp_filter": "0" });
    await assertForwarding([5000]);
  });

  it("changing ports and protocol rewrites the table in one transaction; other rules on the host are untouched", async () => {
    // The web rule's counters move with traffic; its rules must not.
    const webTable = async () => (await vps.run("nft -j list table ip natgate_dnat_web")).replace(/"counter":\s*\{[^}]*\}/g, '"counter":{}');
    const webBefore = await webTable();
    const s0 = remoteStats.writes;
    await up(res.vpsFwd!, { ...vpsFwd, protocol: "tcp", ports: "5000-5999" });
    assert.equal(remoteStats.writes - s0, 1, "one writing exec: the boot entry with the new ports, then one nft transaction");
    const live = await vps.run("nft list table ip natgate_dnat_fwd");
    assert.match(live, /tcp dport 5000-5999 dnat to 10\.10\.10\.2/);
    assert.doesNotMatch(live, /6000|udp|l4proto \{/);
    assert.equal(await webTable(), webBefore);
    assert.equal(await askTcp(5999), CLIENT);
    assert.notEqual(await askTcp(6000), CLIENT);
    await up(res.vpsFwd!, vpsFwd);
    await assertForwarding();
  });

  it("two DnatRules on one host coexist: deleting one leaves the other working and ip_forward on", async () => {
    await destroy(res.vpsWeb!);
    assert.notEqual(await askTcp(8080), CLIENT);
    assert.equal((await vps.run("sysctl -n net.ipv4.ip_forward")).trim(), "1", "still needed by the other rules");
    await assertForwarding([5000]);
    res.vpsWeb = await create("DnatRule", vpsWeb);
    assert.equal(await askTcp(8080), CLIENT);
  });

  it("a second PolicyRouteTable on another's table, or on one holding someone else's routes, is refused, and the routes there stay", async () => {
    const table = await router.run("ip route show table 8764");
    const other = { ...routes, name: "other", routes: [{ to: "default", via: "10.10.10.1", dev: "tun0" }, { to: "10.77.0.0/16", dev: "br-lan" }] };
    await assert.rejects(create("PolicyRouteTable", other), (e: Error) => {
      assert.match(e.message, /^routing table 8764 on .* is already used by another natgate resource \(PolicyRouteTable home\b.*\): nothing was changed\. .*`slot: 1`/);
      return true;
    });
    assert.equal(await router.run("ip route show table 8764"), table, "nothing of the first table was touched");
    await assertForwarding([5000]);
    // Routes natgate did not put there (the user's own policy routing) are refused the same way.
    await router.run("ip route add 10.78.0.0/16 dev br-lan table 8766");
    try {
      await assert.rejects(create("PolicyRouteTable", { ...other, table: 8766 }), (e: Error) => {
        assert.match(e.message, /routing table 8766 on .* already holds routes natgate would not put there:\n {2}10\.78\.0\.0\/16 dev br-lan/);
        assert.match(e.message, /choose another table id \(PortForward: slot: 1, or returnPath\.table\)/);
        return true;
      });
      assert.equal(await router.run("ip route show table 8766"), "10.78.0.0/16 dev br-lan scope link \n");
    } finally {
      await router.run("ip route flush table 8766");
    }
    const elsewhere = await create("PolicyRouteTable", { ...other, table: 8765 });
    await destroy(elsewhere);
    assert.equal(await router.run("ip route show table 8765"), "");
  });

  it("a destination that is not the VPS's own (a cloud's 1:1 NAT) fails create and update before anything is written; an AnyIP address counts as its own", async () => {
    const before = await snapshot(vps);
    const w0 = remoteStats.writes;
    const notOwn = /^NatgateError: DnatRule (nat|web): destination 198\.51\.100\.77 is not an address of host 198\.51\.100\.1 \(its addresses: [0-9., ]*198\.51\.100\.1[0-9., ]*\): behind a cloud's 1:1 NAT packets arrive for the host's own address: match that \(PortForward: vps\.localAddress\)$/;
    const nat = { ...vpsWeb, name: "nat", destination: "198.51.100.77" };
    await assert.rejects(providers.DnatRule!.create(await check("DnatRule", nat)), notOwn);
    const web = { ...vpsWeb, destination: "198.51.100.77" };
    await assert.rejects(providers.DnatRule!.update!(res.vpsWeb!.id, res.vpsWeb!.outs, await check("DnatRule", web)), notOwn);
    assert.equal(remoteStats.writes, w0, "nothing written");
    assertSameState("VPS", before, await snapshot(vps));
    assert.equal(await askTcp(8080), CLIENT, "the existing rule still works");
    // Routed to the host without being on an interface (AnyIP): the kernel takes it as its own.
    await vps.run("ip route add local 198.51.100.78/32 dev lo table local");
    try {
      const anyip = await create("DnatRule", { ...vpsWeb, name: "anyip", destination: "198.51.100.78" });
      await destroy(anyip);
    } finally {
      await vps.run("ip route del local 198.51.100.78/32 dev lo table local");
    }
    assertSameState("VPS", before, await snapshot(vps));
  });

  it("with iptables FORWARD policy DROP on the VPS, the accept goes into that chain and is removed exactly", async () => {
    await vps.run("iptables -P FORWARD DROP");
    try {
      assert.notEqual(await askTcp(5000, 1), CLIENT, "the drop policy blocks forwarding");
      const props = await refresh(res.vpsFwd!);
      assert.ok(props.drift.some((d: string) => d.startsWith("missing iptables accept")), JSON.stringify(props.drift));
      for (const [k, news] of [["vpsFwd", vpsFwd], ["vpsSsh", vpsSsh], ["vpsWeb", vpsWeb]] as const) {
        await refresh(res[k]!); // like `pulumi up --refresh`: drift is found by reading
        assert.equal((await up(res[k]!, news)).changed, true);
      }
      assert.deepEqual(res.vpsFwd!.outs.forwardAccept, [
        "iptables -t filter -I FORWARD -p tcp -m conntrack --ctstate DNAT --ctreplsrc 10.10.10.2 --ctreplsrcport 5000:6000 -m comment --comment natgate:fwd -j ACCEPT",
        "iptables -t filter -I FORWARD -p udp -m conntrack --ctstate DNAT --ctreplsrc 10.10.10.2 --ctreplsrcport 5000:6000 -m comment --comment natgate:fwd -j ACCEPT",
      ]);
      await assertForwarding();
      assert.equal(await askTcp(8080), CLIENT);
      // Applying again: nothing to do.
      const s0 = remoteStats.writes;
      assert.equal((await up(res.vpsFwd!, vpsFwd)).changed, false);
      assert.equal(remoteStats.writes, s0);
      // Deleting one rule removes exactly its accepts.
      await destroy(res.vpsWeb!);
      const rules = await vps.run("iptables -S FORWARD");
      assert.doesNotMatch(rules, /natgate:web/);
      assert.match(rules, /natgate:fwd/);
      assert.equal(await askTcp(5000), CLIENT);
      await destroy(res.vpsSsh!);
      await destroy(res.vpsFwd!);
      assert.equal(await vps.run("iptables -S FORWARD"), "-P FORWARD DROP\n", "only the policy the test set is left");
    } finally {
      await vps.run("iptables -P FORWARD ACCEPT && nft delete table ip filter"); // the test made that table
    }
    res.vpsFwd = await create("DnatRule", vpsFwd);
    res.vpsSsh = await create("DnatRule", vpsSsh);
    res.vpsWeb = await create("DnatRule", vpsWeb);
    assert.deepEqual(res.vpsFwd.outs.forwardAccept, [], "no accept needed (and no filter table created) without a drop");
    await assertForwarding([5000]);
  });

  it("with an nftables firewall dropping forwarded packets on the router (like OpenWrt fw4), the accept goes into its chain", async () => {
    // fw4's shape: a forward chain with policy drop that only lets established flows and its zones through.
    await router.run(
      "nft -f - <<'EOF'\n" +
        "table inet fw4 {\n  chain forward {\n    type filter hook forward priority filter; policy drop;\n" +
        "    ct state established,related accept\n    iifname \"br-lan\" accept\n  }\n}\nEOF",
    );
    try {
      const fw4Before = await router.run("nft list table inet fw4");
      assert.notEqual(await askTcp(5000, 1), CLIENT, "fw4's policy drops the DNATed flow");
      for (const [k, news] of [["routerFwd", routerFwd], ["routerWeb", routerWeb]] as const) {
        const props = await refresh(res[k]!);
        assert.ok(props.drift.some((d: string) => d.startsWith("missing accept in inet fw4 forward")), JSON.stringify(props.drift));
        assert.equal((await up(res[k]!, news)).changed, true);
      }
      assert.deepEqual(res.routerFwd!.outs.forwardAccept, [
        'nft insert rule inet fw4 forward meta l4proto tcp ct status dnat ct reply ip saddr 192.168.1.99 ct reply proto-src 5000-6000 accept comment "natgate:fwd"',
        'nft insert rule inet fw4 forward meta l4proto udp ct status dnat ct reply ip saddr 192.168.1.99 ct reply proto-src 5000-6000 accept comment "natgate:fwd"',
      ]);
      await assertForwarding();
      assert.equal(await askTcp(8080), CLIENT);
      const s0 = remoteStats.writes;
      assert.equal((await up(res.routerFwd!, routerFwd)).changed, false);
      assert.equal(remoteStats.writes, s0, "in sync: nothing written");
      await destroy(res.routerWeb!);
      await destroy(res.routerFwd!);
      assert.equal(await router.run("nft list table inet fw4"), fw4Before, "fw4's chain is exactly as before");
    } finally {
      await router.run("nft delete table inet fw4"); // the test made it
    }
    res.routerFwd = await create("DnatRule", routerFwd);
    res.routerWeb = await create("DnatRule", routerWeb);
    assert.deepEqual(res.routerFwd.outs.forwardAccept, []);
    await assertForwarding([5000]);
  });

  it("a DnatRule to the router itself (tun0:2222 → its sshd) under INPUT policy DROP (ufw's default): the accept goes into INPUT, is repaired and removed exactly", async () => {
    const banner = async () => (await client.exec(`socat -T 2 -u TCP:${PUBLIC}:2222,connect-timeout=2 STDOUT`)).stdout;
    const hadFilter = (await router.exec("nft list table ip filter")).code === 0;
    const before = await snapshot(router);
    const local = { connection: routerConn, name: "local", ports: 2222, inInterface: "tun0", toAddress: "10.10.10.2", toPorts: 22 };
    const accept = "-p tcp -m conntrack --ctstate DNAT --ctreplsrc 10.10.10.2 --ctreplsrcport 22 -m comment --comment natgate:local -j ACCEPT";
    await up(res.vpsSsh!, { ...vpsSsh, toPorts: undefined }); // VPS:2222 → the router's tunnel address, port 2222
    // The router's own firewall: established flows and the LAN (the lab's SSH) only.
    await router.run("iptables -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT && iptables -A INPUT -i br-lan -j ACCEPT && iptables -P INPUT DROP");
    try {
      const inputBefore = await router.run("iptables -S INPUT");
      const r = await create("DnatRule", local);
      assert.deepEqual(r.outs.forwardAccept, [`iptables -t filter -I INPUT ${accept}`]);
      assert.doesNotMatch(await router.run("iptables -S FORWARD"), /natgate:local/, "FORWARD never sees these packets");
      assert.match(await banner(), /^SSH-2\.0-/);
      await router.run(`iptables -D INPUT ${accept}`);
      assert.equal(await banner(), "", "without the accept, INPUT drops the DNATed SYN");
      assert.ok((await refresh(r)).drift.some((d: string) => d.startsWith("missing iptables accept (filter INPUT")), JSON.stringify(r.outs.drift));
      assert.equal((await up(r, local)).changed, true);
      assert.match(await banner(), /^SSH-2\.0-/);
      await destroy(r);
      assert.equal(await router.run("iptables -S INPUT"), inputBefore, "INPUT exactly as the test made it");
    } finally {
      await router.run(`iptables -P INPUT ACCEPT && iptables -F INPUT${hadFilter ? "" : " && nft delete table ip filter"}`);
      await up(res.vpsSsh!, vpsSsh);
    }
    assertSameState("router", before, await snapshot(router));
  });

  it("changing the mark moves the ip rule and the nft marks; the old rule is gone", async () => {
    const moved = { ...returnPath, mark: 0x1234 }; // the seed's mark; mask defaults to its bits
    await up(res.returnPath!, moved);
    const rules = await router.run("ip rule");
    assert.match(rules, /950:\s+from all fwmark 0x1234\/0x1234 lookup 8764/);
    assert.doesNotMatch(rules, /0x10000000/);
    await assertForwarding([5000]);
    await up(res.returnPath!, returnPath);
  });

  it("delete removes everything; deleting again is no error; both hosts are exactly as before", async () => {
    const order = ["vpsWeb", "vpsSsh", "vpsFwd", "routerWeb", "routerFwd", "returnPath", "routes"];
    for (const k of order) await destroy(res[k]!);
    const s0 = remoteStats.writes;
    for (const k of order) await destroy(res[k]!);
    assert.equal(remoteStats.writes, s0, "a second delete writes nothing");
    assertSameState("VPS", vpsBefore, await snapshot(vps));
    assertSameState("router", routerBefore, await snapshot(router));
    assert.notEqual(await askTcp(5000), CLIENT);
  });

  it("rules created and deleted in parallel on one host (as Pulumi runs them) share ip_forward correctly; sudo works", async () => {
    const ops = { host: vpsConn.host, port: vpsConn.port, user: "ops", privateKey: lab.users.ops.privateKey, hostKey: vpsConn.hostKey, sudo: true };
    const rules = [0, 1, 2].map((k) => ({ ...vpsFwd, connection: k === 2 ? ops : vpsConn, name: `par${k}`, ports: 7000 + k }));
    const made = await Promise.all(rules.map((r) => create("DnatRule", r)));
    assert.equal((await vps.run("sysctl -n net.ipv4.ip_forward")).trim(), "1");
    assert.equal((await vps.run("ls /run/natgate/sysctl/net:ipv4:ip_forward")).split("\n").filter((l) => l.startsWith("holder.")).length, 3);
    for (const m of made) assert.deepEqual(m.outs.sysctlPrevious, { "net.ipv4.ip_forward": "0" });
    await Promise.all(made.map(destroy));
    assertSameState("VPS", vpsBefore, await snapshot(vps));
  });
});
