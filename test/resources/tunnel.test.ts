import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import { getLab, type LabHost } from "../lab";
import { closeAll } from "../../provider/ssh";
import { tunnelProvider, converge, type TunnelOutputs } from "../../provider/resources/tunnel";
import { inputsFromProps } from "../../provider/resources/tunnel/lifecycle";
import { NATGATE_VERSION } from "../../provider/engine/version";

// Tunnel against the lab: VPS (listener, 198.51.100.1) <-> router (dialer, behind the CGNAT).
// The test process is the laptop on the router's LAN, so SSH to the VPS crosses the CGNAT too.

const lab = getLab();
const { vps, router, isp } = lab.hosts;

function connectionOf(h: LabHost) {
  const s = h.ssh!;
  return { host: s.host, port: s.port, user: s.user, privateKey: s.privateKey, hostKey: s.hostKey };
}

const args = {
  listener: { connection: connectionOf(vps), address: "10.10.10.1/24" },
  dialer: { connection: connectionOf(router), address: "10.10.10.2/24" },
};

const secondsSince = (t: number) => (Date.now() - t) / 1000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Processes in the host's network namespace, SSH sessions left out (the connection pool's come and go). */
function processes(h: LabHost): string[] {
  const pids = execFileSync("ip", ["netns", "pids", h.netns], { encoding: "utf8" }).split("\n").filter(Boolean);
  const out: string[] = [];
  for (const pid of pids) {
    let cmdline = "";
    try {
      cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean).join(" ");
    } catch {
      continue; // gone meanwhile
    }
    if (cmdline === "" || /^sshd: /.test(cmdline)) continue; // zombie, or a session
    out.push(cmdline);
  }
  return out.sort();
}

async function snapshot(h: LabHost): Promise<string> {
  const state = await h.run(
    "echo '# ip link'; ip -o link | sed 's/^[0-9]*: //';" +
      "echo '# ip addr'; ip addr;" +
      "echo '# ip route'; ip route show table all; ip -6 route show table all;" +
      "echo '# ip rule'; ip rule; ip -6 rule;" +
      "echo '# files'; ls -la /etc/natgate /var/run/wireguard 2>&1; find /etc/natgate /etc/systemd/system/natgate.service /etc/systemd/system/multi-user.target.wants/natgate.service /etc/init.d/natgate /etc/rc.d /etc/hotplug.d /lib/upgrade 2>/dev/null; true",
  );
  return `${state}# processes\n${processes(h).join("\n")}\n`;
}

function lineDiff(before: string, after: string): string {
  const a = before.split("\n"), b = after.split("\n");
  const gone = a.filter((l) => !b.includes(l)).map((l) => `- ${l}`);
  const added = b.filter((l) => !a.includes(l)).map((l) => `+ ${l}`);
  return [...gone, ...added].join("\n");
}

async function pingOnce(from: LabHost, to: string): Promise<boolean> {
  return (await from.exec(`ping -c 1 -W 1 ${to}`)).code === 0;
}

/** Seconds until `to` answers from `from`, probing once a second; undefined after `limit` s. */
async function secondsUntilPing(from: LabHost, to: string, limit: number): Promise<number | undefined> {
  const t0 = Date.now();
  while (secondsSince(t0) < limit) {
    const t = Date.now();
    if (await pingOnce(from, to)) return secondsSince(t0);
    const left = 1000 - (Date.now() - t);
    if (left > 0) await sleep(left);
  }
  return undefined;
}

/** Dual stack (issue 10): the same tunnel with an IPv6 address on each end besides the IPv4 one. */
const args6 = {
  listener: { ...args.listener, address6: "fd00:4e47::1/64" },
  dialer: { ...args.dialer, address6: "fd00:4e47::2/64" },
};

async function ping6Until(from: LabHost, to: string, limit: number): Promise<boolean> {
  const t0 = Date.now();
  while (secondsSince(t0) < limit) {
    if ((await from.exec(`ping -6 -c 1 -W 1 ${to}`)).code === 0) return true;
    await sleep(300);
  }
  return false;
}

/** The global (not link-local) addresses on an interface, as `ip -6 addr` lists them. */
async function globalAddrs6(h: LabHost, ifname: string): Promise<string[]> {
  const out = await h.run(`ip -6 -o addr show dev ${ifname} scope global`);
  return out.split("\n").filter(Boolean).map((l) => l.trim().split(/\s+/)[3]!).sort();
}

/** A ping every 200 ms from `from` to `to` until stop(), which says how many were sent and answered. */
async function continuousPing(from: LabHost, to: string): Promise<{ stop(): Promise<{ sent: number; received: number; summary: string }> }> {
  const p = await from.start(`exec ping -n -i 0.2 -W 1 ${to}`);
  return {
    async stop() {
      process.kill(p.pid, "SIGINT"); // ping prints its statistics on SIGINT
      for (let i = 0; i < 40; i++) {
        try {
          process.kill(p.pid, 0);
        } catch {
          break;
        }
        await sleep(50);
      }
      await p.stop();
      const log = fs.readFileSync(p.log, "utf8");
      const m = /(\d+) packets transmitted, (\d+) received/.exec(log);
      assert.ok(m, `no statistics from ping:\n${log}`);
      return { sent: Number(m[1]), received: Number(m[2]), summary: log.split("\n").filter((l) => /packets transmitted|rtt/.test(l)).join("; ") };
    },
  };
}

describe("Tunnel (lab: VPS listener <-> router dialer behind CGNAT)", function () {
  this.timeout(180_000);
  const snap: Record<string, string> = {};
  let routerMainBefore = "";
  let outs: TunnelOutputs;
  let checked: Record<string, unknown>;

  before(async () => {
    // a freshly made lab may still be doing IPv6 duplicate address detection; let it settle
    for (const h of [vps, router]) {
      for (let i = 0; i < 50 && (await h.run("ip -6 addr show tentative")).trim() !== ""; i++) await sleep(200);
    }
    snap.vps = await snapshot(vps);
    snap.router = await snapshot(router);
    routerMainBefore = await router.run("ip route show table main");
    const c = await tunnelProvider.check!({}, args);
    assert.equal(c.failures, undefined, JSON.stringify(c.failures));
    checked = c.inputs;
  });

  after(async () => {
    // leave the lab clean even when a test failed half-way (delete is idempotent)
    await tunnelProvider.delete!("", checked).catch(() => undefined);
    await closeAll();
  });

  it("creates the tunnel on both hosts from nothing", async () => {
    const t0 = Date.now();
    const r = await tunnelProvider.create(checked);
    console.log(`      create from nothing: ${secondsSince(t0).toFixed(2)} s`);
    outs = r.outs;
    assert.equal(r.id, "198.51.100.1/wg0~192.168.1.1/wg0");
    assert.match(outs.listenerPublicKey!, /^[A-Za-z0-9+/]{43}=$/);
    assert.match(outs.dialerPublicKey!, /^[A-Za-z0-9+/]{43}=$/);
    assert.notEqual(outs.listenerPublicKey, outs.dialerPublicKey);
    assert.equal(outs.listenerFingerprint, vps.hostKeyFingerprint);
    assert.equal(outs.dialerFingerprint, router.hostKeyFingerprint);
    assert.equal(outs.listenerBackend, "wireguard-go"); // no kernel module on these machines
    assert.equal(outs.dialerBackend, "wireguard-go");
    assert.ok(outs.renderedListener.includes(`wg set wg0 peer ${outs.dialerPublicKey} allowed-ips 10.10.10.2/32`), outs.renderedListener.join("\n"));
    assert.ok(
      outs.renderedDialer.includes(`wg set wg0 peer ${outs.listenerPublicKey} endpoint 198.51.100.1:51820 persistent-keepalive 25 allowed-ips 0.0.0.0/0`),
      outs.renderedDialer.join("\n"),
    );
    for (const h of [vps, router]) assert.ok(processes(h).includes("wireguard-go wg0"), `${h.name}: ${processes(h).join(", ")}`);
    assert.equal((await vps.run("wg show wg0 public-key")).trim(), outs.listenerPublicKey);
    assert.equal((await router.run("wg show wg0 public-key")).trim(), outs.dialerPublicKey);
  });

  it("carries traffic both ways", async () => {
    const up = await secondsUntilPing(router, "10.10.10.1", 15);
    assert.ok(up !== undefined, "router could not ping the VPS's tunnel address 10.10.10.1");
    console.log(`      router -> 10.10.10.1 answered after ${up.toFixed(2)} s`);
    // the listener is configured before the dialer, so the dialer's first handshake is answered
    // (otherwise WireGuard retries after 5 s)
    assert.ok(up < 3, `the first handshake took ${up.toFixed(2)} s`);
    assert.ok(await pingOnce(vps, "10.10.10.2"), "VPS could not ping the router's tunnel address 10.10.10.2");
  });

  it("adds no default route to the router's main table, only the tunnel subnet", async () => {
    const now = await router.run("ip route show table main");
    const added = now.split("\n").filter((l) => l && !routerMainBefore.split("\n").includes(l));
    assert.deepEqual(added.map((l) => l.trim()), ["10.10.10.0/24 dev wg0 proto kernel scope link src 10.10.10.2"]);
    assert.equal((await router.run("ip route show table main default")).trim(), routerMainBefore.split("\n").find((l) => l.startsWith("default"))?.trim());
  });

  it("keeps each private key in a root-only file on its own host, and out of the outputs", async () => {
    const keys: string[] = [];
    for (const h of [vps, router]) {
      assert.equal((await h.run("stat -c '%a %U' /etc/natgate/wg/wg0.key")).trim(), "600 root", h.name);
      assert.equal((await h.run("stat -c '%a' /etc/natgate/wg /etc/natgate")).trim(), "700\n700", h.name);
      keys.push((await h.run("cat /etc/natgate/wg/wg0.key")).trim());
    }
    assert.notEqual(keys[0], keys[1]);
    const state = JSON.stringify(outs);
    for (const [i, k] of keys.entries()) {
      assert.match(k, /^[A-Za-z0-9+/]{43}=$/);
      assert.ok(!state.includes(k), `the ${i === 0 ? "VPS" : "router"} private key is in the outputs`);
      // and not on the other host anywhere natgate writes
      const other = i === 0 ? router : vps;
      assert.notEqual((await other.exec(`grep -rqF '${k}' /etc/natgate /var/run 2>/dev/null`)).code, 0, `${other.name} holds the other host's key`);
    }
  });

  it("changes nothing when applied again (no writing command, same interface and daemon)", async () => {
    const ids = async () => [
      await vps.run("cat /sys/class/net/wg0/ifindex; stat -c %Y /etc/natgate/wg/wg0.key"),
      await router.run("cat /sys/class/net/wg0/ifindex; stat -c %Y /etc/natgate/wg/wg0.key"),
    ].join("|");
    const daemons = () => [processes(vps), processes(router)].join("|");
    const idsBefore = await ids(), daemonsBefore = daemons();
    const t0 = Date.now();
    const again = await converge(inputsFromProps(checked), "create");
    console.log(`      no-change re-apply: ${secondsSince(t0).toFixed(2)} s`);
    assert.deepEqual(again.plans, { listener: [], dialer: [] });
    assert.deepEqual({ ...again.outputs, natgateVersion: NATGATE_VERSION }, outs, "the engine adds the release");
    const r = await tunnelProvider.create(checked);
    assert.deepEqual(r.outs, outs);
    assert.equal(await ids(), idsBefore);
    assert.equal(daemons(), daemonsBefore);
    const d = await tunnelProvider.diff!(r.id, outs, checked);
    assert.equal(d.changes, false);
  });

  it("refresh reports drift and update repairs it, keeping both keys", async () => {
    const fresh = await tunnelProvider.read!("id", outs);
    assert.deepEqual(fresh.props, outs);
    await router.run(`wg set wg0 peer ${outs.listenerPublicKey} remove && ip link set dev wg0 mtu 1300`);
    const drifted = (await tunnelProvider.read!("id", outs)).props as TunnelOutputs;
    assert.ok(!drifted.renderedDialer.some((l) => l.includes("peer")), drifted.renderedDialer.join("\n"));
    assert.ok(drifted.renderedDialer.includes("ip link set dev wg0 mtu 1300 up"));
    const d = await tunnelProvider.diff!("id", drifted, checked);
    assert.deepEqual(d, { changes: true });
    const u = await converge(inputsFromProps(checked), "update", drifted);
    assert.deepEqual(u.plans.listener, []);
    assert.deepEqual(u.plans.dialer, [
      `wg set wg0 peer ${outs.listenerPublicKey} endpoint 198.51.100.1:51820 persistent-keepalive 25 allowed-ips 0.0.0.0/0`,
      "ip link set dev wg0 mtu 1420 up",
    ]);
    assert.deepEqual({ ...u.outputs, natgateVersion: NATGATE_VERSION }, outs);
    assert.ok((await secondsUntilPing(router, "10.10.10.1", 15)) !== undefined);
  });

  it("survives the CGNAT forgetting the mapping: keepalive re-establishes it within 30 s", async () => {
    assert.ok((await secondsUntilPing(vps, "10.10.10.2", 10)) !== undefined, "path VPS -> router did not work before the flush");
    const mapped = await isp.run("conntrack -L -p udp --dport 51820 2>/dev/null");
    assert.match(mapped, /dport=51820/, "no CGNAT mapping for the tunnel before the flush");
    await isp.run("conntrack -F 2>/dev/null");
    const t0 = Date.now();
    const brokenRightAfter = !(await pingOnce(vps, "10.10.10.2"));
    const back = await secondsUntilPing(vps, "10.10.10.2", 35);
    assert.ok(back !== undefined, "VPS -> router did not work again within 35 s of flushing the CGNAT's conntrack");
    const total = secondsSince(t0);
    console.log(`      CGNAT conntrack flushed: path ${brokenRightAfter ? "broken" : "still up (a keepalive was just due)"}, VPS -> router again after ${total.toFixed(1)} s`);
    assert.ok(total <= 30, `recovery took ${total.toFixed(1)} s (keepalive is 25 s)`);
  });

  it("updates in place (port, MTU, keepalive, extra allowed IPs) keeping both key pairs", async () => {
    const c = await tunnelProvider.check!({}, {
      ...args,
      listenPort: 51821,
      mtu: 1380,
      persistentKeepalive: 15,
      listener: { ...args.listener, allowedIps: ["192.168.50.0/24"] },
    });
    assert.equal(c.failures, undefined);
    const d = await tunnelProvider.diff!("id", outs, c.inputs);
    assert.deepEqual(d, { changes: true });
    const t0 = Date.now();
    const u = await converge(inputsFromProps(c.inputs), "update", outs);
    console.log(`      update in place: ${secondsSince(t0).toFixed(2)} s`);
    assert.deepEqual(u.plans.listener, [
      "wg set wg0 listen-port 51821 private-key /etc/natgate/wg/wg0.key",
      `wg set wg0 peer ${outs.dialerPublicKey} allowed-ips 10.10.10.2/32,192.168.50.0/24`,
      "ip link set dev wg0 mtu 1380 up",
    ]);
    assert.deepEqual(u.plans.dialer, [
      `wg set wg0 peer ${outs.listenerPublicKey} endpoint 198.51.100.1:51821 persistent-keepalive 15 allowed-ips 0.0.0.0/0`,
      "ip link set dev wg0 mtu 1380 up",
    ]);
    assert.equal(u.outputs.listenerPublicKey, outs.listenerPublicKey);
    assert.equal(u.outputs.dialerPublicKey, outs.dialerPublicKey);
    assert.ok((await secondsUntilPing(router, "10.10.10.1", 15)) !== undefined, "no traffic after the update");
    assert.ok(await pingOnce(vps, "10.10.10.2"));
    outs = { ...u.outputs, natgateVersion: NATGATE_VERSION };
    checked = c.inputs;
  });

  it("delete restores both hosts exactly, and a second delete is fine", async () => {
    const t0 = Date.now();
    await tunnelProvider.delete!("id", outs);
    console.log(`      delete: ${secondsSince(t0).toFixed(2)} s`);
    for (const h of [vps, router]) {
      const after = await snapshot(h);
      assert.equal(after, snap[h.name], `${h.name} differs after delete:\n${lineDiff(snap[h.name]!, after)}`);
    }
    await tunnelProvider.delete!("id", outs);
    const gone = await tunnelProvider.read!("id", outs);
    assert.equal(gone.id, "");
  });

  it("refuses an interface it did not create and leaves the other host as it was", async () => {
    await router.run("ip link add ng-foreign type bridge");
    try {
      const c = await tunnelProvider.check!({}, { ...args, interfaceName: "ng-foreign" });
      await assert.rejects(tunnelProvider.create(c.inputs), (e: Error) => {
        assert.match(e.message, /interface ng-foreign already exists on the dialer \(root@192\.168\.1\.1\) and natgate did not create it/);
        return true;
      });
      assert.equal((await router.run("ip -o link show dev ng-foreign")).includes("ng-foreign"), true);
      assert.equal(await snapshot(vps), snap.vps, "the VPS's key was not rolled back");
    } finally {
      await router.run("ip link del ng-foreign");
    }
  });

  it("dual stack: carries IPv4 and IPv6 at once (address6), reads back in sync, a boot entry restores both, delete leaves both hosts as before", async () => {
    const c = await tunnelProvider.check!({}, args6);
    assert.equal(c.failures, undefined, JSON.stringify(c.failures));
    try {
      const t0 = Date.now();
      const r = await tunnelProvider.create(c.inputs);
      console.log(`      dual-stack create: ${secondsSince(t0).toFixed(2)} s`);
      const o = r.outs as TunnelOutputs;
      assert.ok(o.renderedListener.includes(`wg set wg0 peer ${o.dialerPublicKey} allowed-ips 10.10.10.2/32,fd00:4e47::2/128`), o.renderedListener.join("\n"));
      assert.ok(o.renderedDialer.includes(`wg set wg0 peer ${o.listenerPublicKey} endpoint 198.51.100.1:51820 persistent-keepalive 25 allowed-ips 0.0.0.0/0,::/0`), o.renderedDialer.join("\n"));
      assert.deepEqual(await globalAddrs6(vps, "wg0"), ["fd00:4e47::1/64"]);
      assert.deepEqual(await globalAddrs6(router, "wg0"), ["fd00:4e47::2/64"]);
      assert.match(await vps.run("ip -4 -o addr show dev wg0"), /inet 10\.10\.10\.1\/24 /);
      assert.equal((await router.run(`wg show wg0 allowed-ips`)).trim(), `${o.listenerPublicKey}\t0.0.0.0/0 ::/0`);
      assert.equal((await vps.run(`wg show wg0 allowed-ips`)).trim(), `${o.dialerPublicKey}\t10.10.10.2/32 fd00:4e47::2/128`);

      assert.ok(await ping6Until(router, "fd00:4e47::1", 15), "router could not ping -6 the VPS's tunnel address fd00:4e47::1");
      assert.ok(await ping6Until(vps, "fd00:4e47::2", 5), "VPS could not ping -6 the router's tunnel address fd00:4e47::2");
      assert.ok(await pingOnce(router, "10.10.10.1"), "IPv4 does not cross the dual-stack tunnel");
      // still no default route of either family in the router's main table
      assert.equal((await router.run("ip -6 route show table main default")).trim(), "");
      assert.equal((await router.run("ip route show table main default")).trim(), routerMainBefore.split("\n").find((l) => l.startsWith("default"))?.trim());

      // refresh: no drift, no change
      const fresh = await tunnelProvider.read!(r.id, o);
      assert.deepEqual(fresh.props, o);
      assert.equal((await tunnelProvider.diff!(r.id, o, c.inputs)).changes, false);

      // one address gone is drift, and the update puts exactly it back
      await router.run("ip address del fd00:4e47::2/64 dev wg0");
      const drifted = (await tunnelProvider.read!(r.id, o)).props as TunnelOutputs;
      assert.ok(!drifted.renderedDialer.includes("ip address add fd00:4e47::2/64 dev wg0"), drifted.renderedDialer.join("\n"));
      assert.ok(drifted.renderedDialer.includes("ip address add 10.10.10.2/24 dev wg0"));
      assert.deepEqual(await tunnelProvider.diff!(r.id, drifted, c.inputs), { changes: true });
      const u = await converge(inputsFromProps(c.inputs), "update", drifted);
      assert.deepEqual(u.plans, { listener: [], dialer: ["ip address add fd00:4e47::2/64 dev wg0"] });
      assert.ok(await ping6Until(router, "fd00:4e47::1", 10), "no IPv6 after the repair");

      // the boot entries restore both addresses (a reboot loses the interface; boot.sh runs them)
      for (const h of [vps, router]) {
        const entry = await h.run("cat /etc/natgate/boot.d/tunnel-wg0.sh");
        assert.match(entry, /\nip address replace fd00:4e47::[12]\/64 dev wg0\n/, h.name);
        await h.run("ip link del wg0");
        for (let k = 0; k < 50 && processes(h).includes("wireguard-go wg0"); k++) await sleep(100);
      }
      for (const h of [vps, router]) {
        const b = await h.exec("sh /etc/natgate/boot.sh", { timeoutMs: 60_000 });
        assert.equal(b.code, 0, `${h.name}: boot.sh failed:\n${b.stderr}`);
      }
      assert.deepEqual(await globalAddrs6(vps, "wg0"), ["fd00:4e47::1/64"]);
      assert.deepEqual(await globalAddrs6(router, "wg0"), ["fd00:4e47::2/64"]);
      assert.ok(await ping6Until(router, "fd00:4e47::1", 15), "no IPv6 across the tunnel after the boot entries ran");
      assert.ok(await pingOnce(router, "10.10.10.1"), "no IPv4 across the tunnel after the boot entries ran");
      assert.deepEqual((await tunnelProvider.read!(r.id, o)).props, o, "drift after the boot entries ran");

      await tunnelProvider.delete!(r.id, o);
    } finally {
      await tunnelProvider.delete!("", c.inputs);
    }
    for (const h of [vps, router]) {
      const after = await snapshot(h);
      assert.equal(after, snap[h.name], `${h.name} differs after delete:\n${lineDiff(snap[h.name]!, after)}`);
      assert.doesNotMatch(await h.run("ip -6 addr; ip -6 route show table all"), /fd00:4e47|wg0/, h.name);
    }
  });

  it("dual stack: address6 is added to a running IPv4 tunnel and removed again without a lost ping (same interface, same daemon)", async () => {
    const c4 = await tunnelProvider.check!({}, args);
    const c6 = await tunnelProvider.check!({}, args6);
    assert.equal(c6.failures, undefined, JSON.stringify(c6.failures));
    try {
      const r = await tunnelProvider.create(c4.inputs);
      let o = r.outs as TunnelOutputs;
      assert.ok((await secondsUntilPing(router, "10.10.10.1", 15)) !== undefined, "the IPv4 tunnel does not carry traffic");
      assert.deepEqual(await globalAddrs6(router, "wg0"), []);
      const ids = async () => [
        await vps.run("cat /sys/class/net/wg0/ifindex"),
        await router.run("cat /sys/class/net/wg0/ifindex"),
        processes(vps).join(","),
        processes(router).join(","),
      ].join("|");
      const idsBefore = await ids();

      const ping = await continuousPing(router, "10.10.10.1");
      await sleep(1000);
      // add address6
      assert.deepEqual(await tunnelProvider.diff!(r.id, o, c6.inputs), { changes: true });
      let t0 = Date.now();
      const up = await converge(inputsFromProps(c6.inputs), "update", o);
      console.log(`      add address6: ${secondsSince(t0).toFixed(2)} s`);
      assert.deepEqual(up.plans, {
        listener: [`wg set wg0 peer ${o.dialerPublicKey} allowed-ips 10.10.10.2/32,fd00:4e47::2/128`, "ip address add fd00:4e47::1/64 dev wg0"],
        dialer: [`wg set wg0 peer ${o.listenerPublicKey} endpoint 198.51.100.1:51820 persistent-keepalive 25 allowed-ips 0.0.0.0/0,::/0`, "ip address add fd00:4e47::2/64 dev wg0"],
      });
      o = { ...up.outputs, natgateVersion: NATGATE_VERSION };
      assert.ok(await ping6Until(router, "fd00:4e47::1", 10), "no IPv6 across the tunnel after address6 was added");
      assert.deepEqual((await tunnelProvider.read!(r.id, o)).props, o, "drift after adding address6");
      await sleep(1000);
      // and remove it
      t0 = Date.now();
      const down = await converge(inputsFromProps(c4.inputs), "update", o);
      console.log(`      remove address6: ${secondsSince(t0).toFixed(2)} s`);
      assert.deepEqual(down.plans, {
        listener: [`wg set wg0 peer ${o.dialerPublicKey} allowed-ips 10.10.10.2/32`, "ip address del fd00:4e47::1/64 dev wg0"],
        dialer: [`wg set wg0 peer ${o.listenerPublicKey} endpoint 198.51.100.1:51820 persistent-keepalive 25 allowed-ips 0.0.0.0/0`, "ip address del fd00:4e47::2/64 dev wg0"],
      });
      o = { ...down.outputs, natgateVersion: NATGATE_VERSION };
      await sleep(1000);
      const stats = await ping.stop();
      console.log(`      IPv4 ping across both updates: ${stats.summary}`);
      assert.ok(stats.sent >= 10, `too few pings to judge (${stats.sent})`);
      assert.equal(stats.sent - stats.received, 0, `pings lost while address6 was added and removed: ${stats.summary}`);
      assert.equal(await ids(), idsBefore, "the interface or its wireguard-go was recreated");
      assert.deepEqual(await globalAddrs6(vps, "wg0"), []);
      assert.deepEqual(await globalAddrs6(router, "wg0"), []);
      assert.deepEqual((await tunnelProvider.read!(r.id, o)).props, o, "drift after removing address6");
      assert.deepEqual(o.renderedDialer, (r.outs as TunnelOutputs).renderedDialer, "removing address6 gives back the IPv4 tunnel's state");
      assert.deepEqual(o.renderedListener, (r.outs as TunnelOutputs).renderedListener);
      await tunnelProvider.delete!(r.id, o);
    } finally {
      await tunnelProvider.delete!("", c6.inputs);
    }
    for (const h of [vps, router]) {
      const after = await snapshot(h);
      assert.equal(after, snap[h.name], `${h.name} differs after delete:\n${lineDiff(snap[h.name]!, after)}`);
    }
  });

  it("works as a non-root user through sudo, and over IPv6 tunnel addresses", async () => {
    const ops = (h: LabHost) => ({ ...connectionOf(h), user: lab.users.ops.user, privateKey: lab.users.ops.privateKey, sudo: true });
    const c = await tunnelProvider.check!({}, {
      interfaceName: "ng6",
      listener: { connection: ops(vps), address: "fd00:10::1/64" },
      dialer: { connection: ops(router), address: "fd00:10::2/64" },
    });
    assert.equal(c.failures, undefined, JSON.stringify(c.failures));
    try {
      const r = await tunnelProvider.create(c.inputs);
      assert.ok(r.outs.renderedDialer.some((l: string) => l.endsWith("allowed-ips ::/0")), r.outs.renderedDialer.join("\n"));
      let ok = false;
      for (let i = 0; i < 15 && !ok; i++) {
        ok = (await router.exec("ping -6 -c 1 -W 1 fd00:10::1")).code === 0;
        if (!ok) await sleep(500);
      }
      assert.ok(ok, "router could not ping fd00:10::1 through the tunnel");
      assert.equal((await vps.run("stat -c '%a %U' /etc/natgate/wg/ng6.key")).trim(), "600 root");
      await tunnelProvider.delete!(r.id, r.outs);
    } finally {
      await tunnelProvider.delete!("", c.inputs);
    }
    for (const h of [vps, router]) {
      const after = await snapshot(h);
      assert.equal(after, snap[h.name], `${h.name} differs after delete:\n${lineDiff(snap[h.name]!, after)}`);
    }
  });
});
