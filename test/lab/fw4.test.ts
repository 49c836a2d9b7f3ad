// OpenWrt's real fw4 on the lab router (test/lab/fw4.ts) is infrastructure other tests trust, so
// it is tested like the topology: it really filters (wan rejected, lan allowed, masquerade), its
// reload/restart/stop really rebuild or delete tables, it re-applies include files, it stays inside
// the router's mount namespace, and removeFw4 gives the router back as it was.
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import { Client } from "ssh2";
import { fw4, fw4Dir, FW4_INCLUDE_DIR, installFw4, labFirewallConfig, removeFw4 } from "./fw4";
import { firstLine, getLab, type Lab, type LabProcess } from "./index";

const LAN_PORT = 7101; // listener on the LAN host: the target of wan → lan attempts
const NET_PORT = 7102; // listener on the internet client: the target of lan → wan
const ECHO_PEER = `SYSTEM:'echo "$SOCAT_PEERADDR"'`;

/** `cmd` over a real SSH login as root (the router's pinned host key). */
function sshExec(lab: Lab, cmd: string): Promise<{ code: number; stdout: string }> {
  const ssh = lab.hosts.router.ssh!;
  return new Promise((resolve, reject) => {
    const c = new Client();
    c.on("ready", () => {
      c.exec(cmd, (err, stream) => {
        if (err) return reject(err);
        let stdout = "";
        stream.on("data", (d: Buffer) => (stdout += d.toString()));
        stream.stderr.on("data", () => undefined);
        stream.on("close", (code: number | null) => {
          c.end();
          resolve({ code: code ?? -1, stdout });
        });
      });
    });
    c.on("error", reject);
    c.connect({
      host: ssh.host,
      username: "root",
      privateKey: ssh.privateKey,
      readyTimeout: 10_000,
      hostVerifier: (key: Buffer) => key.toString("base64") === ssh.hostKey.split(" ")[1],
    });
  });
}

/** nft listing without handles and counters: what must stay the same across a rebuild. */
const normalize = (s: string) =>
  s
    .replace(/ # handle \d+/g, "")
    .replace(/counter packets \d+ bytes \d+/g, "counter")
    .trim();

interface Fw4Table {
  text: string;
  tableHandle: number;
  ruleHandles: number[];
}

async function fw4Table(lab: Lab): Promise<Fw4Table> {
  const text = await lab.hosts.router.run("nft -a list table inet fw4");
  const tableHandle = Number(/^table inet fw4 \{ # handle (\d+)/m.exec(text)?.[1]);
  // rules are the lines inside a chain that end in a handle (chain, set, helper lines start with their keyword)
  const ruleHandles = text
    .split("\n")
    .filter((l) => /^\t\t\S/.test(l) && !/^\t\t(type|policy|elements|flags|l3proto|hook|devices)\b/.test(l))
    .map((l) => /# handle (\d+)$/.exec(l)?.[1])
    .filter((h): h is string => h !== undefined)
    .map(Number);
  assert.ok(Number.isInteger(tableHandle), `no table handle in:\n${text}`);
  assert.ok(ruleHandles.length > 20, `expected fw4's rules with handles, got ${ruleHandles.length}`);
  return { text, tableHandle, ruleHandles };
}

const mountinfo = (lab: Lab) => lab.hosts.router.run("cat /proc/self/mountinfo");
const ruleset = async (lab: Lab) => normalize(await lab.hosts.router.run("nft list ruleset"));

/** A TCP connection from the ISP (100.64.0.1, the router's wan side) to the LAN host's listener. */
const ispToLan = (lab: Lab) =>
  lab.hosts.isp.exec(`socat -T2 - TCP:${lab.hosts.lan.addr}:${LAN_PORT},connect-timeout=2 </dev/null`);

describe("OpenWrt fw4 on the lab router", function () {
  let lab: Lab;
  let baseRuleset: string;
  let baseMounts: string;
  const started: LabProcess[] = [];
  let ispRoute = false;

  before(async function () {
    lab = getLab();
    fw4Dir(); // throws with "run scripts/build-fw4.sh" when it is not built
    baseRuleset = await ruleset(lab);
    baseMounts = await mountinfo(lab);
    started.push(
      await lab.hosts.lan.start(`socat TCP-LISTEN:${LAN_PORT},reuseaddr,fork ${ECHO_PEER}`, { waitForTcpPort: LAN_PORT }),
      await lab.hosts.client.start(`socat TCP-LISTEN:${NET_PORT},reuseaddr,fork ${ECHO_PEER}`, { waitForTcpPort: NET_PORT }),
    );
    // The ISP has no route to the LAN; give it one, so only the router's firewall decides.
    await lab.hosts.isp.run(`ip route add ${lab.addresses.lanSubnet} via ${lab.addresses.routerWan}`);
    ispRoute = true;
    const control = await ispToLan(lab);
    assert.equal(control.code, 0, `without fw4 the ISP must reach the LAN host: ${control.stderr}`);
    assert.equal(control.stdout.trim(), lab.addresses.ispCgnat);
  });

  after(async function () {
    await removeFw4(lab).catch(() => undefined);
    if (ispRoute) await lab.hosts.isp.exec(`ip route del ${lab.addresses.lanSubnet}`);
    for (const p of started) await p.stop();
  });

  it("maps OpenWrt's default zones to the lab's devices", function () {
    const cfg = labFirewallConfig(fs.readFileSync(`${fw4Dir()}/root/etc/config/firewall`, "utf8"));
    assert.doesNotMatch(cfg, /list\s+network/);
    assert.match(cfg, /option name\s+lan\n\toption device\t'br-lan'\n/);
    assert.match(cfg, /option name\s+wan\n\toption device\t'wan'\n/);
    assert.equal(cfg.match(/option device/g)?.length, 2);
  });

  it("installs fw4 where OpenWrt has it and starts it: fw4's chains, inside the router only", async function () {
    await installFw4(lab);
    const { router } = lab.hosts;
    const t = await fw4Table(lab);
    for (const chain of ["input", "forward", "output"]) {
      assert.match(t.text, new RegExp(`chain ${chain} \\{ # handle \\d+\\n\\t\\ttype filter hook ${chain} priority filter; policy (drop|accept);`), chain);
    }
    const forward = await router.run("nft list chain inet fw4 forward");
    assert.match(forward, /policy drop;/);
    assert.match(forward, /iifname "br-lan" jump forward_lan/);
    assert.match(forward, /iifname "wan" jump forward_wan/);
    assert.match(forward, /jump handle_reject\n/);
    assert.match(await router.run("nft list chain inet fw4 srcnat_wan"), /masquerade/);
    assert.match(await router.run("nft list chain inet fw4 input_lan"), /jump accept_from_lan/);
    // OpenWrt's places, and what detects OpenWrt
    await router.run(
      "test -x /sbin/fw4 && test -f /usr/share/firewall4/main.uc && test -f /usr/share/ucode/fw4.uc && " +
        "test -f /etc/config/firewall && test -x /etc/init.d/firewall && test -f /etc/openwrt_release && " +
        `test -f ${FW4_INCLUDE_DIR}/README && test -d ${FW4_INCLUDE_DIR}/chain-pre && test -f /var/run/fw4.state`,
    );
    assert.match(await router.run("/etc/init.d/firewall enabled && echo enabled"), /enabled/);
    assert.match(await router.run("fw4 check"), /passes nftables check/);
    // not on the machine, not on another host
    for (const p of ["/usr/share/firewall4", "/usr/sbin/fw4", "/etc/config/firewall", "/etc/openwrt_release"]) {
      assert.equal(fs.existsSync(p), false, `${p} leaked into the machine's file system`);
      assert.notEqual((await lab.hosts.lan.exec(`test -e ${p}`)).code, 0, `${p} leaked into the LAN host`);
    }
    assert.notEqual(await mountinfo(lab), baseMounts);
  });

  it("keeps the laptop's SSH to the router (lan input ACCEPT), also on the router's wan address", async function () {
    const r = await sshExec(lab, "hostname; test -x /sbin/fw4 && echo fw4");
    assert.equal(r.code, 0);
    assert.deepEqual(r.stdout.trim().split("\n"), ["router", "fw4"]);
    assert.match(await firstLine(lab.addresses.routerWan, 22), /^SSH-2\.0-/);
  });

  it("rejects new connections from the wan side: to the LAN host (forward) and to the router (input)", async function () {
    const toLan = await ispToLan(lab);
    assert.notEqual(toLan.code, 0, "the ISP reached the LAN host through fw4");
    assert.match(toLan.stderr, /Connection refused/, "fw4's handle_reject answers with a TCP reset: " + toLan.stderr);
    const toRouter = await lab.hosts.isp.exec(`socat -T2 - TCP:${lab.addresses.routerWan}:22,connect-timeout=2 </dev/null`);
    assert.notEqual(toRouter.code, 0);
    assert.doesNotMatch(toRouter.stdout, /SSH-/);
    // but its Allow-Ping rule lets the ISP ping the router
    await lab.hosts.isp.run(`ping -c1 -W2 ${lab.addresses.routerWan}`);
  });

  it("lets the LAN out: the LAN host and the laptop reach the internet client through the masquerade", async function () {
    const seen = await lab.hosts.lan.run(`socat -T3 - TCP:${lab.hosts.client.addr}:${NET_PORT},connect-timeout=3 </dev/null`);
    assert.equal(seen.trim(), lab.addresses.ispPublic);
    assert.equal(await firstLine(lab.hosts.client.addr, NET_PORT), lab.addresses.ispPublic);
    // fw4's own lan → wan path carried it (its forward chain jumps to forward_lan)
    assert.match(await lab.hosts.router.run("nft list chain inet fw4 forward_lan"), /jump accept_to_wan/);
  });

  it("fw4 reload rebuilds every rule of table inet fw4 (same rules, new handles); restart the table too", async function () {
    const before = await fw4Table(lab);
    await fw4(lab, "reload");
    const reloaded = await fw4Table(lab);
    assert.equal(normalize(reloaded.text), normalize(before.text));
    assert.equal(reloaded.tableHandle, before.tableHandle, "reload flushes the table, it does not delete it");
    assert.deepEqual(reloaded.ruleHandles.filter((h) => before.ruleHandles.includes(h)), [], "reload kept old rules");

    await fw4(lab, "restart");
    const restarted = await fw4Table(lab);
    assert.equal(normalize(restarted.text), normalize(before.text));
    assert.notEqual(restarted.tableHandle, reloaded.tableHandle, "restart deletes and recreates the table");

    // the init script's reload and restart are the same calls
    await fw4(lab, "reload", { via: "init.d" });
    const initReloaded = await fw4Table(lab);
    assert.deepEqual(initReloaded.ruleHandles.filter((h) => restarted.ruleHandles.includes(h)), []);
    await fw4(lab, "restart", { via: "init.d" });
    assert.notEqual((await fw4Table(lab)).tableHandle, initReloaded.tableHandle);
  });

  it("fw4 stop deletes only table inet fw4, start brings it back; /etc/init.d/firewall stop deletes every table", async function () {
    const { router } = lab.hosts;
    const labNat = await router.run("nft list table ip lab_nat");
    // every other table, so the flush below costs the lab nothing (lab_nat, anything else there)
    const others = await router.run(
      `nft list tables | while read -r _ f t; do [ "$f $t" = "inet fw4" ] || nft list table "$f" "$t"; done`,
    );
    const running = await fw4Table(lab);

    const again = await fw4(lab, "start", { allowFailure: true });
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /already loaded/);

    await fw4(lab, "stop");
    assert.notEqual((await router.exec("nft list table inet fw4")).code, 0, "fw4 stop left table inet fw4");
    assert.equal(normalize(await router.run("nft list table ip lab_nat")), normalize(labNat));
    await router.run("test ! -e /var/run/fw4.state");
    await fw4(lab, "start");
    const started = await fw4Table(lab);
    assert.equal(normalize(started.text), normalize(running.text));

    try {
      await fw4(lab, "stop", { via: "init.d" }); // stop_service is `fw4 flush`
      assert.equal((await router.run("nft list tables")).trim(), "", "/etc/init.d/firewall stop left tables");
    } finally {
      if ((await router.exec("nft list table ip lab_nat")).code !== 0) await router.run("nft -f -", { input: others });
    }
    await fw4(lab, "start", { via: "init.d" });
    assert.equal(normalize((await fw4Table(lab)).text), normalize(running.text));
    assert.equal(await firstLine(lab.hosts.client.addr, NET_PORT), lab.addresses.ispPublic);
  });

  it("re-applies include files from /usr/share/nftables.d on reload (writable, inside the router only)", async function () {
    const { router } = lab.hosts;
    const file = `${FW4_INCLUDE_DIR}/chain-pre/forward/x.nft`;
    const rule = 'meta l4proto tcp accept comment "test"';
    try {
      await router.run(`mkdir -p ${FW4_INCLUDE_DIR}/chain-pre/forward && printf '%s\\n' '${rule}' >${file}`);
      assert.equal(fs.existsSync(file), false, "the include file landed in the machine's /usr");
      assert.doesNotMatch(await router.run("nft list chain inet fw4 forward"), /comment "test"/, "applied before any reload");

      await fw4(lab, "reload");
      const forward = await router.run("nft list chain inet fw4 forward");
      const lines = forward.split("\n").map((l) => l.trim());
      const at = lines.indexOf(rule);
      assert.ok(at >= 0, `the include's rule is not in chain forward:\n${forward}`);
      assert.ok(at < lines.findIndex((l) => l.startsWith("ct state vmap")), "chain-pre must come before fw4's first rule");
      // and it is live: the wan side's TCP now gets through to the LAN host
      const open = await ispToLan(lab);
      assert.equal(open.code, 0, open.stderr);
      assert.equal(open.stdout.trim(), lab.addresses.ispCgnat);

      await router.run(`rm ${file}`);
      await fw4(lab, "reload");
      assert.doesNotMatch(await router.run("nft list chain inet fw4 forward"), /comment "test"/);
      assert.notEqual((await ispToLan(lab)).code, 0);
    } finally {
      await router.exec(`rm -f ${file}`);
    }
  });

  it("removeFw4 leaves the router's ruleset and mounts as before installFw4, and fw4 installs again", async function () {
    const { router } = lab.hosts;
    for (let round = 0; round < 2; round++) {
      await removeFw4(lab);
      assert.equal(await ruleset(lab), baseRuleset, `round ${round}: ruleset differs from before installFw4`);
      assert.deepEqual((await mountinfo(lab)).split("\n"), baseMounts.split("\n"), `round ${round}: mounts differ from before installFw4`);
      for (const p of ["/sbin/fw4", "/usr/share/firewall4", "/etc/config", "/etc/init.d/firewall", "/etc/rc.d", "/etc/openwrt_release", "/var/run/fw4.state", "/var/run/fw4.lock"]) {
        assert.notEqual((await router.exec(`test -e ${p}`)).code, 0, `round ${round}: ${p} is still there`);
      }
      const control = await ispToLan(lab);
      assert.equal(control.code, 0, `without fw4 the ISP reaches the LAN host again: ${control.stderr}`);
      if (round === 0) {
        await installFw4(lab);
        assert.notEqual((await ispToLan(lab)).code, 0, "fw4 installed a second time does not filter");
      }
    }
    await removeFw4(lab); // idempotent
  });
});
