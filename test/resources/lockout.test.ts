import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { getLab, type LabHost } from "../lab";
import { providers } from "../../provider";
import { closeAll, runScript } from "../../provider/ssh";

// A return path whose rules would send the router's own SSH replies into the tunnel (localSource
// set to the LAN address the laptop logs in to, and a table without the LAN route): the apply cuts
// the session it runs through. natgate's dead-man switch must undo the ip rules, and the error must
// say so; afterwards SSH works and the host holds no trace of the rules.

const lab = getLab();
const { vps, router } = lab.hosts;

function connectionOf(h: LabHost) {
  const s = h.ssh!;
  return { host: s.host, port: s.port, user: s.user, privateKey: s.privateKey, hostKey: s.hostKey };
}

async function snapshot(h: LabHost): Promise<string> {
  return h.run("ip rule; ip -4 route show table all; nft list ruleset; find /run/natgate 2>/dev/null; true");
}

describe("lockout guard (lab: rules that cut the router's SSH are rolled back)", function () {
  this.timeout(120_000);
  const connection = connectionOf(router);
  const table = { connection, name: "lock", table: 8765, routes: [{ to: "default", via: "10.10.10.1", dev: "tun0" }] };
  const bad = { connection, name: "lock", tunnelInterface: "tun0", table: 8765, priority: 940, localSource: lab.hosts.router.addr };
  let initial = "";

  before(async () => {
    execFileSync("ip", ["link", "add", "tun0", "netns", vps.netns, "type", "veth", "peer", "name", "tun0", "netns", router.netns]);
    await vps.run("ip link set tun0 addrgenmode none && ip addr add 10.10.10.1/24 dev tun0 && ip link set tun0 up");
    await router.run("ip link set tun0 addrgenmode none && ip addr add 10.10.10.2/24 dev tun0 && ip link set tun0 up");
    initial = await snapshot(router);
  });

  after(async () => {
    await closeAll();
    await vps.exec("ip link del tun0");
  });

  it("the apply fails with the dead-man note, the rules are undone, and SSH works again", async () => {
    assert.equal(lab.hosts.router.addr, "192.168.1.1", "the laptop reaches the router on its LAN address");
    const routes = providers.PolicyRouteTable!;
    const ret = providers.ConnmarkReturnPath!;
    const t = (await routes.check!({}, table)).inputs;
    const r = await routes.create(t);
    const c = (await ret.check!({}, bad)).inputs;
    const started = Date.now();
    await assert.rejects(ret.create(c), (e: Error) => {
      console.log(`      error: ${e.message.replace(/\n/g, "\n      ")}`);
      assert.match(e.message, /cut SSH and was rolled back by natgate's dead-man switch|dead-man switch puts the previous ip rules and routes back/);
      return true;
    });
    console.log(`      rolled back and reported after ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const fresh = await runScript(connection, "ip rule", [], { fresh: true });
    assert.doesNotMatch(fresh.stdout, /^94[01]:/m, "the rules that cut SSH are gone");
    // Cleanup through the providers, from the checked inputs (the failed create left no outputs).
    await ret.delete!(`x/ConnmarkReturnPath/lock`, c);
    await routes.delete!(r.id, r.outs);
    assert.equal(await snapshot(router), initial);
  });
});
