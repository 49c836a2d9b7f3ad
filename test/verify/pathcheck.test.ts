import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { getLab, spawnCollect, type LabHost, type LabProcess } from "../lab";
import { pathCheckProvider, PathCheckError, type PathCheckReport } from "../../provider/verify";
import { closeAll } from "../../provider/ssh";

// PathCheck against the seed's path built by hand with the seed's own commands (DESIGN.md §1),
// over a veth pair named tun0 standing in for the seed's VPN, checked from this process (the lab's
// laptop, behind the router's NAT and the ISP's CGNAT). Then each hop is broken in turn.

const lab = getLab();
const { vps, router, lan } = lab.hosts;
const PUBLIC = "198.51.100.1";
const MARK = 0x1234;

const connectionOf = (h: LabHost, user?: { user: string; privateKey: string }) => {
  const s = h.ssh!;
  return user
    ? { host: s.host, port: s.port, user: user.user, privateKey: user.privateKey, hostKey: s.hostKey, knownHosts: s.knownHosts, sudo: true }
    : { host: s.host, port: s.port, user: s.user, privateKey: s.privateKey, hostKey: s.hostKey, knownHosts: s.knownHosts };
};

type Run = { outs: Record<string, any> } | { error: string; name: string };

/**
 * provider.update in a process of its own, as each `pulumi up` starts a fresh provider: it knows no
 * host key but those the state (olds) kept and known_hosts lists.
 */
async function updateInFreshProcess(olds: Record<string, unknown>, news: Record<string, unknown>): Promise<Run> {
  const script = resolve(lab.dir, "pathcheck-fresh-update.ts");
  writeFileSync(
    script,
    `import { readFileSync } from "node:fs";
import { pathCheckProvider } from ${JSON.stringify(resolve(__dirname, "../../provider/verify"))};
import { closeAll } from ${JSON.stringify(resolve(__dirname, "../../provider/ssh"))};
const { olds, news } = JSON.parse(readFileSync(0, "utf8"));
pathCheckProvider.update!("id", olds, news)
  .then((r) => ({ outs: r.outs }), (e: Error) => ({ error: e.message, name: e.name }))
  .then(async (out) => { await closeAll(); process.stdout.write(JSON.stringify(out)); });
`,
  );
  const tsx = resolve(__dirname, "../../node_modules/.bin/tsx");
  const r = await spawnCollect([tsx, script], { input: JSON.stringify({ olds, news }), timeoutMs: 90_000 });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Run;
}

// The seed's commands, each with the command that undoes it (run in reverse order at the end).
const VPS_DNAT = "iptables -t nat -A PREROUTING -p tcp -d 198.51.100.1 --dport 5000:6000 -j DNAT --to-destination 10.10.10.2";
const VPS_DNAT_SSH = "iptables -t nat -A PREROUTING -p tcp --dport 2222 -j DNAT --to-destination 10.10.10.2:22";
const ROUTER_DNAT = "iptables -t nat -A PREROUTING -i tun0 -p tcp --dport 5000:6000 -j DNAT --to-destination 192.168.1.99";
const ROUTER_SETUP = [
  ROUTER_DNAT,
  "iptables -t mangle -A PREROUTING -i tun0 -j CONNMARK --set-mark 0x1234",
  "iptables -t mangle -A PREROUTING -m connmark --mark 0x1234 -j CONNMARK --restore-mark",
  "ip rule add fwmark 0x1234 lookup 1234",
  "ip rule add from 10.10.10.2 lookup 1234",
  "ip route add table 1234 default via 10.10.10.1 dev tun0",
  "ip route add table 1234 192.168.1.0/24 dev br-lan",
];
const undo = (cmd: string) => cmd.replace(/ -A /, " -D ").replace(/^ip (rule|route) add /, "ip $1 del ");

/** What the test must leave as it found it (counters stripped: traffic changes them). */
async function snapshot(h: LabHost): Promise<string> {
  return h.run(
    "nft list ruleset | sed -E 's/counter packets [0-9]+ bytes [0-9]+/counter/'; ip -4 rule; ip -4 route show table all; " +
      "ip -o link show | cut -d' ' -f2; sysctl net.ipv4.ip_forward",
  );
}

describe("PathCheck (lab: the seed's path by hand, checked from the laptop behind two NATs)", function () {
  this.timeout(120_000);
  let listener: LabProcess | undefined;
  const found = new Map<LabHost, string>();
  const applied: Array<[LabHost, string]> = [];
  let tunnelMade = false;

  const inputs = (over: Record<string, unknown> = {}) => ({
    vpsConnection: connectionOf(vps),
    routerConnection: connectionOf(router),
    publicAddress: PUBLIC,
    port: 5000,
    routerTunnelAddress: "10.10.10.2",
    tunnelInterface: "tun0",
    mark: MARK,
    timeoutSeconds: 3,
    ...over,
  });

  async function runCheck(over: Record<string, unknown> = {}): Promise<{ id: string; outs: Record<string, any> }> {
    const c = await pathCheckProvider.check!({}, inputs(over));
    assert.deepEqual(c.failures ?? [], []);
    const started = Date.now();
    try {
      return (await pathCheckProvider.create(c.inputs)) as { id: string; outs: Record<string, any> };
    } finally {
      console.log(`      (check took ${Date.now() - started} ms)`);
    }
  }

  async function brokenAt(hop: string): Promise<PathCheckError> {
    let err: unknown;
    try {
      await runCheck();
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof PathCheckError, `expected the check to fail at ${hop}, got ${err instanceof Error ? err.stack : "success"}`);
    assert.equal(err.hop, hop, err.message);
    assert.match(err.message, new RegExp(`^PathCheck 198\\.51\\.100\\.1:5000: the path is broken at the ${hop} hop: `));
    const hops = err.report.hops;
    const at = hops.findIndex((h) => h.hop === hop);
    assert.ok(hops.slice(0, at).every((h) => h.ok), err.message); // every hop before it passed
    return err;
  }

  async function apply(h: LabHost, cmd: string): Promise<void> {
    await h.run(cmd);
    applied.push([h, cmd]);
  }

  async function restoreAll(): Promise<void> {
    const problems: string[] = [];
    await listener?.stop();
    listener = undefined;
    for (const [h, cmd] of applied.splice(0).reverse()) {
      const r = await h.exec(undo(cmd));
      if (r.code !== 0) problems.push(`${h.name}: ${undo(cmd)}: ${r.stderr.trim()}`);
    }
    if (tunnelMade) {
      await vps.exec("ip link del tun0"); // takes the peer with it
      tunnelMade = false;
    }
    await vps.exec(`sysctl -qw net.ipv4.ip_forward=${/ip_forward = (\d)/.exec(found.get(vps) ?? "")?.[1] ?? 0}`);
    // tables iptables-nft created that were not there before
    for (const [h, before] of found) {
      const had = new Set(before.split("\n").filter((l) => l.startsWith("table ")));
      const now = (await h.run("nft list tables")).split("\n").filter((l) => l.startsWith("table "));
      for (const t of now) if (!had.has(`${t} {`)) await h.exec(`nft delete ${t}`);
    }
    if (problems.length) throw new Error("cleanup:\n" + problems.join("\n"));
  }

  before(async () => {
    for (const h of [vps, router, lan]) found.set(h, await snapshot(h));
    for (const h of [vps, router]) {
      assert.equal((await h.exec("ip link show tun0")).code, 1, `${h.name} already has a tun0: not ours to touch`);
    }
    execFileSync("ip", ["link", "add", "name", "tun0", "netns", vps.netns, "type", "veth", "peer", "name", "tun0", "netns", router.netns]);
    tunnelMade = true;
    await vps.run("ip link set tun0 addrgenmode none && ip addr add 10.10.10.1/24 dev tun0 && ip link set tun0 up");
    await router.run("ip link set tun0 addrgenmode none && ip addr add 10.10.10.2/24 dev tun0 && ip link set tun0 up");
    assert.match(found.get(vps)!, /ip_forward = 0/); // the lab's VPS starts like a fresh one
    await vps.run("sysctl -qw net.ipv4.ip_forward=1");
    await apply(vps, VPS_DNAT);
    await apply(vps, VPS_DNAT_SSH);
    for (const cmd of ROUTER_SETUP) await apply(router, cmd);
    listener = await lan.start("socat TCP-LISTEN:5000,reuseaddr,fork SYSTEM:'echo $SOCAT_PEERADDR'", { waitForTcpPort: 5000 });
  });

  after(async () => {
    try {
      await restoreAll();
    } finally {
      await closeAll();
    }
  });

  it("passes every hop and sees the ISP's public address as the caller", async () => {
    const { id, outs } = await runCheck();
    const report = outs as PathCheckReport & Record<string, any>;
    assert.equal(id, "pathcheck/198.51.100.1:5000");
    assert.deepEqual(
      report.hops.map((h) => [h.hop, h.ok]),
      [["VPS DNAT", true], ["tunnel", true], ["router DNAT", true], ["return path", true]],
    );
    assert.equal(report.callerAddress, lab.addresses.ispPublic);
    assert.equal(report.probe.outcome, "connected");
    assert.equal(report.vpsEntry?.reply.src, "10.10.10.2");
    assert.equal(report.routerEntry?.orig.src, lab.addresses.ispPublic);
    assert.equal(report.routerEntry?.reply.src, "192.168.1.99");
    assert.equal(report.routerEntry?.mark, MARK);
    assert.equal(outs.port, 5000); // inputs stay in state next to the report
  });

  it("works as a non-root user through sudo (conntrack needs root)", async () => {
    const { outs } = await runCheck({ vpsConnection: connectionOf(vps, lab.users.ops), routerConnection: connectionOf(router, lab.users.ops) });
    assert.equal(outs.callerAddress, lab.addresses.ispPublic);
  });

  it("passes a forward to the router itself (the seed's VPS 2222 → router 22) with routerLocal", async () => {
    const { outs } = await runCheck({ port: 2222, routerLocal: true });
    assert.deepEqual(outs.hops.map((h: { ok: boolean }) => h.ok), [true, true, true, true]);
    assert.match(outs.hops[2].detail, /targets the router itself/);
  });

  it("VPS DNAT: without the VPS's DNAT rule", async () => {
    await vps.run(undo(VPS_DNAT));
    try {
      const e = await brokenAt("VPS DNAT");
      // the seed's 2222 rule keeps the VPS tracking connections, so its own refusal is seen
      assert.match(e.message, /reached 198\.51\.100\.1:5000 on the VPS but was not DNATed: the VPS answered it itself/);
    } finally {
      await vps.run(`iptables -t nat -I PREROUTING 1 ${VPS_DNAT.replace(/^iptables -t nat -A PREROUTING /, "")}`);
    }
  });

  it("tunnel: with tun0 down on the router", async () => {
    await router.run("ip link set tun0 down");
    try {
      const e = await brokenAt("tunnel");
      assert.match(e.message, /tun0 is down on the router/);
      assert.equal(e.report.callerAddress, lab.addresses.ispPublic);
    } finally {
      // a link going down takes its routes along
      await router.run("ip link set tun0 up && ip route replace table 1234 default via 10.10.10.1 dev tun0");
    }
  });

  it("router DNAT: without the router's DNAT rule (the router answers itself)", async () => {
    await router.run(undo(ROUTER_DNAT));
    try {
      const e = await brokenAt("router DNAT");
      assert.match(e.message, /not DNATed to the LAN host: the router answered it itself/);
    } finally {
      await router.run(`iptables -t nat -I PREROUTING 1 ${ROUTER_DNAT.replace(/^iptables -t nat -A PREROUTING /, "")}`);
    }
  });

  it("return path: without `ip rule fwmark 0x1234 lookup 1234`", async () => {
    await router.run("ip rule del fwmark 0x1234 lookup 1234");
    try {
      const e = await brokenAt("return path");
      assert.match(e.message, /answered \(the router saw the reply\) but the reply never reached the VPS/);
      assert.equal(e.report.probe.outcome, "timeout");
    } finally {
      await router.run("ip rule add fwmark 0x1234 lookup 1234");
    }
  });

  it("keeps each login's host key (router by TOFU through a forwarder, VPS by known_hosts via that jump host); a fresh process refuses a swapped key naming both", async () => {
    const { laptop } = lab.hosts;
    const port = 20000 + Math.floor(Math.random() * 20000);
    const forward = (to: LabHost) => laptop.start(`exec socat TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork TCP:${to.addr}:22`, { waitForTcpPort: port });
    // No pins: the lab's known_hosts lists the VPS at 198.51.100.1, but not [127.0.0.1]:port.
    const tofu = (h: LabHost) => ({ ...connectionOf(h), hostKey: undefined });
    const viaForwarder = { ...tofu(router), host: "127.0.0.1", port };
    const vpsViaJump = { ...tofu(vps), proxy: { host: "127.0.0.1", port, privateKey: router.ssh!.privateKey } };
    const checked = async (over: Record<string, unknown>) => {
      const c = await pathCheckProvider.check!({}, inputs(over));
      assert.deepEqual(c.failures ?? [], []);
      return c.inputs;
    };
    const news = await checked({ vpsConnection: vpsViaJump, routerConnection: viaForwarder });
    let fwd = await forward(router);
    try {
      const { outs } = (await pathCheckProvider.create(news)) as { outs: Record<string, any> };
      assert.equal(outs.callerAddress, lab.addresses.ispPublic);
      assert.deepEqual(
        [outs.vpsFingerprint, outs.vpsProxyFingerprint, outs.routerFingerprint, outs.routerProxyFingerprint],
        [vps.hostKeyFingerprint, router.hostKeyFingerprint, router.hostKeyFingerprint, undefined],
      );

      // without the swap, a fresh provider passes with the kept keys, and keeps them again
      const same = await updateInFreshProcess(outs, news);
      assert.ok("outs" in same, JSON.stringify(same));
      assert.equal(same.outs.callerAddress, lab.addresses.ispPublic);
      assert.deepEqual([same.outs.vpsProxyFingerprint, same.outs.routerFingerprint], [router.hostKeyFingerprint, router.hostKeyFingerprint]);

      // the same address now answers with another host's key (the LAN host's sshd behind the forwarder)
      await fwd.stop();
      fwd = await forward(lan);
      const kept = "(seen on first use and kept in this resource's state)";
      const jump = await updateInFreshProcess(outs, news);
      assert.ok("error" in jump, "a swapped jump host key was accepted");
      assert.match(jump.error, new RegExp(`^host key of jump host root@127\\.0\\.0\\.1:${port} does not match: `), jump.error);
      assert.ok(jump.error.includes(`expected ${router.hostKeyFingerprint} ${kept}, received ${lan.hostKeyFingerprint}`), jump.error);
      assert.match(jump.error, /Nothing was run on the host/);

      const direct = await checked({ routerConnection: viaForwarder, vpsConnection: tofu(vps) });
      const target = await updateInFreshProcess({ ...outs, vpsConnection: direct.vpsConnection }, direct);
      assert.ok("error" in target, "a swapped router key was accepted");
      assert.match(target.error, new RegExp(`^host key of root@127\\.0\\.0\\.1:${port} does not match: `), target.error);
      assert.ok(target.error.includes(`expected ${router.hostKeyFingerprint} ${kept}, received ${lan.hostKeyFingerprint}`), target.error);

      // what the kept keys prevent: without them, a fresh process logs into whatever answers
      const { routerFingerprint: _r, vpsProxyFingerprint: _p, ...forgotten } = outs;
      const blind = await updateInFreshProcess({ ...forgotten, vpsConnection: direct.vpsConnection }, direct);
      assert.ok("error" in blind && blind.name === "PathCheckError", JSON.stringify(blind));
    } finally {
      await fwd.stop();
    }
  });

  it("passes again once every hop is restored, and leaves the hosts as it found them", async () => {
    const { outs } = await runCheck();
    assert.equal(outs.callerAddress, lab.addresses.ispPublic);
    await restoreAll();
    for (const [h, before] of found) assert.equal(await snapshot(h), before, `${h.name} differs from before the test`);
  });
});
