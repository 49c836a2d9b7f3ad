// OpenWrt's real firewall on the router (fw4 built from source, test/lab/fw4.ts): the seed-shaped
// PortForward through fw4's default zones (wan: input and forward REJECT), then what fw4 does by
// itself (reload, restart, stop + start, the init script's reload and restart, a reboot), each
// followed by traffic checks and nothing else: natgate is not called again.
// Run: node_modules/.bin/tsx test/lab/cli.ts run -- node_modules/.bin/mocha test/variants/fw4-router.test.ts
import { strict as assert } from "assert";
import { getLab, privateLib, type Lab, type LabProcess } from "../lab";
import { fw4, installFw4, removeFw4 } from "../lab/fw4";
import type { Stack } from "../engine/stack";
import { probeFromWan } from "./iptablesHosts";
import {
  askTcp,
  assertHostsAsBefore,
  cleanup,
  driftAfterRefresh,
  lanServices,
  portForwardProgram,
  refreshChanges,
  refreshDrift,
  secondsUntilBack,
  seedLikeArgs,
  seedTraffic,
  snapshotAll,
  stopAll,
  timedDestroy,
  timedUp,
  variantStack,
} from "./variantLab";

const INCLUDES = "/usr/share/nftables.d/chain-pre";

describe("variants: OpenWrt's real fw4 on the router (default zones, wan REJECT)", function () {
  this.timeout(240_000);
  let lab: Lab;
  let stack: Stack | undefined;
  let services: LabProcess[] = [];
  let undoLib: (() => Promise<void>) | undefined;
  let fw4Installed = false;
  let initial: Record<"vps" | "router", string>;
  const backIn: Array<[string, number]> = [];

  before(async () => {
    lab = getLab();
    undoLib = await privateLib(lab, lab.hosts.router, "fw4-router");
    await installFw4(lab);
    fw4Installed = true;
    services = await lanServices(lab, [["tcp", 5000], ["udp", 6000]]);
    initial = await snapshotAll(lab);
    stack = variantStack();
  });
  after(async () => {
    if (backIn.length) console.log(`      seconds until the path was back:\n${backIn.map(([a, s]) => `        ${a.padEnd(36)} ${s.toFixed(2)}`).join("\n")}`);
    await cleanup(stack);
    await stopAll(services);
    if (fw4Installed) await removeFw4(lab);
    await undoLib?.();
  });

  it("fw4 alone rejects the DNATed flows a PortForward needs (control)", async () => {
    assert.equal((await probeFromWan(lab, 5000)).answer, "", "a new connection from the wan to the LAN host is refused");
    assert.match(await lab.hosts.router.run("nft list chain inet fw4 forward"), /jump handle_reject/);
  });

  it("up: the path works through fw4; the accepts are in fw4's chains and in include files fw4 re-applies", async () => {
    await timedUp("fw4 router", stack!, portForwardProgram("home", seedLikeArgs(lab)));
    await seedTraffic({ lab });
    const r = lab.hosts.router;
    const forward = await r.run(`cat ${INCLUDES}/forward/natgate-*.nft`);
    assert.match(forward, /^meta l4proto tcp ct status dnat ct reply ip saddr 192\.168\.1\.99 ct reply proto-src 5000-6000 accept comment "natgate:/m);
    assert.match(forward, /^meta l4proto udp ct status dnat /m);
    assert.match(await r.run(`cat ${INCLUDES}/input/natgate-*.nft`), /^meta l4proto tcp ct status dnat ct reply ip saddr 10\.10\.10\.2 ct reply proto-src 22 accept comment "natgate:/m);
    assert.equal((await fw4(lab, "check")).code, 0, "fw4 check passes with natgate's include files");
    // natgate's own router tables, as files fw4 loads after its table: they survive its flush.
    const tables = await r.run("cat /usr/share/nftables.d/ruleset-post/natgate_dnat_*.nft /usr/share/nftables.d/ruleset-post/natgate_ret_*.nft");
    assert.match(tables, /^add table ip natgate_dnat_\w+$/m);
    assert.match(tables, /^delete table ip natgate_ret_\w+$/m);
    // Only the forwarded flows were opened: a new connection from the wan to the LAN is still refused.
    assert.equal((await probeFromWan(lab, 5000)).answer, "");
    assert.deepEqual(await refreshChanges(stack!), {});
  });

  const actions: Array<{ title: string; run: (lab: Lab) => Promise<unknown> }> = [
    { title: "fw4 reload", run: (l) => fw4(l, "reload") },
    { title: "fw4 restart", run: (l) => fw4(l, "restart") },
    {
      title: "fw4 stop, then fw4 start",
      run: async (l) => {
        await fw4(l, "stop");
        assert.notEqual((await l.hosts.router.exec("nft list table inet fw4")).code, 0, "fw4 stop deleted its table");
        await fw4(l, "start");
      },
    },
    { title: "/etc/init.d/firewall reload (LuCI)", run: (l) => fw4(l, "reload", { via: "init.d" }) },
    { title: "/etc/init.d/firewall restart", run: (l) => fw4(l, "restart", { via: "init.d" }) },
  ];
  for (const a of actions) {
    it(`${a.title}: fw4's table is rebuilt, and the path works with nothing else done`, async () => {
      const before = await lab.hosts.router.run("nft -a list table inet fw4");
      await a.run(lab);
      if (!a.title.includes("stop")) assert.notEqual(await lab.hosts.router.run("nft -a list table inet fw4"), before, "fw4 rebuilt its table (new handles)");
      const s = await secondsUntilBack(lab, 10_000);
      backIn.push([a.title, s]);
      assert.ok(s < 5, `the path was not back within 5 s after ${a.title}`);
      await seedTraffic({ lab });
      assert.deepEqual(await refreshChanges(stack!), {}, `refresh after ${a.title}`);
    });
  }

  it("control: without natgate's include files a reload drops the accept; refresh says what is missing; up puts both back", async () => {
    const r = lab.hosts.router;
    await r.run(`rm -f ${INCLUDES}/*/natgate-*.nft`);
    await fw4(lab, "reload");
    assert.equal((await askTcp(lab, 5000)).answer, "", "fw4's reload removed the live accept: the path is down");
    const drift = Object.values(await refreshDrift(stack!)).flat();
    assert.ok(drift.some((d) => d.startsWith(`missing fw4 include ${INCLUDES}/forward/natgate-`)), JSON.stringify(drift));
    assert.ok(drift.some((d) => d.startsWith("missing accept in inet fw4 forward")), JSON.stringify(drift));
    assert.ok(drift.some((d) => /^probably by: .*fw4 reloaded its table, \d+ s ago/.test(d)), `refresh says by what: ${JSON.stringify(drift)}`);
    await stack!.up(portForwardProgram("home", seedLikeArgs(lab)));
    await seedTraffic({ lab });
    await fw4(lab, "reload");
    await seedTraffic({ lab });
    assert.deepEqual(await refreshChanges(stack!), {});
  });

  it("/etc/init.d/firewall stop (fw4 flush deletes every nft table, natgate's too): refresh says what is missing and by what; start re-creates natgate's tables from their include files, the path works with nothing else done", async () => {
    const r = lab.hosts.router;
    const labNat = await r.run("nft list table ip lab_nat");
    await fw4(lab, "stop", { via: "init.d" });
    // The flush took the lab's own masquerade too, which the laptop (on the LAN) needs to reach the VPS.
    await r.run("nft -f -", { input: labNat });
    assert.doesNotMatch(await r.run("nft list tables"), /natgate_/, "fw4 flush deleted natgate's tables");
    assert.equal((await askTcp(lab, 5000)).answer, "", "the router's DNAT is gone with its table");
    const drift = Object.values(await refreshDrift(stack!)).flat();
    assert.ok(drift.some((d) => d.startsWith("missing nft")), JSON.stringify(drift));
    assert.ok(drift.some((d) => /^probably by: the OpenWrt firewall is stopped/.test(d)), `refresh says by what: ${JSON.stringify(drift)}`);
    await fw4(lab, "start", { via: "init.d" });
    const s = await secondsUntilBack(lab, 10_000);
    backIn.push(["/etc/init.d/firewall stop, then start", s]);
    assert.ok(s < 5, `the path was not back within 5 s after the firewall's start`);
    assert.match(await r.run("nft list tables"), /natgate_dnat_.*\n(.*\n)*.*natgate_ret_|natgate_ret_.*\n(.*\n)*.*natgate_dnat_/, "both of natgate's router tables are back");
    await seedTraffic({ lab });
    assert.deepEqual(await driftAfterRefresh(stack!), []);
  });

  it("a reboot of the router (runtime state gone, files kept; then fw4's boot and natgate's init script): the path is back, no drift", async () => {
    const r = lab.hosts.router;
    await r.run(
      // every table but the lab's own (its ISP-side NAT is not part of the router's image)
      "for t in $(nft list tables | awk '$3 !~ /^lab_/ { print $2 \":\" $3 }'); do nft delete table ${t%%:*} ${t#*:}; done; rm -f /var/run/fw4.state;" +
        "while ip rule del priority 950 2>/dev/null; do :; done; while ip rule del priority 951 2>/dev/null; do :; done;" +
        "ip route flush table 8764 2>/dev/null; ip link del wg0 2>/dev/null; conntrack -F 2>/dev/null; rm -rf /run/natgate /run/wireguard; true",
    );
    // What OpenWrt's init runs, in rc.d order: S19firewall (boot), S99natgate (start). rc.common
    // sources the script and calls the action.
    await r.run("printf '#!/bin/sh\\n. \"$1\"\\n\"$2\"\\n' > /etc/rc.common");
    try {
      assert.equal((await fw4(lab, "boot", { via: "init.d" })).code, 0);
      assert.equal((await askTcp(lab, 5000)).answer, "", "the path is down after the 'reboot' and fw4's start");
      const t = Date.now();
      await r.run("sh /etc/rc.common /etc/init.d/natgate start", { timeoutMs: 120_000 });
      const s = await secondsUntilBack(lab, 10_000);
      backIn.push(["reboot (S19firewall, S99natgate)", (Date.now() - t) / 1000]);
      assert.ok(s < 10, "the path is back after natgate's init script");
      await seedTraffic({ lab });
      assert.deepEqual(await refreshChanges(stack!), {});
    } finally {
      await r.run("rm -f /etc/rc.common");
    }
  });

  it("destroy removes natgate's include files (and the directories it made) and leaves both hosts as before", async () => {
    await timedDestroy("fw4 router", stack!);
    await stack!.close();
      stack = undefined;
    assert.equal((await lab.hosts.router.run(`ls -A ${INCLUDES}`)).trim(), "", "chain-pre/ is as fw4 ships it: empty");
    assert.equal((await lab.hosts.router.run("ls -A /usr/share/nftables.d/ruleset-post 2>/dev/null | grep -c natgate; true")).trim(), "0", "no table include left");
    assert.equal((await fw4(lab, "check")).code, 0);
    await fw4(lab, "reload");
    await assertHostsAsBefore(lab, initial);
  });
});
