// The lab's VPS as a real Debian 12 with systemd (test/lab/debianVps.ts): booted with
// systemd-nspawn in the VPS namespace, reached over SSH from the test process (the laptop, through
// the router and the ISP's CGNAT), rebooted, powered off, and the lab's own VPS sshd restored.
import { strict as assert } from "assert";
import { randomBytes } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { getLab, isAlive, type Lab } from "./index";
import { activeDebianVps, bootDebianVps, debianVpsDir, restoreLabVps, type DebianVps } from "./debianVps";
import { closeAll, runScript, type ConnectionInput } from "../../provider/ssh";

const note = (msg: string) => console.log(`      [debian-vps] ${msg}`);

function rootConn(lab: Lab): ConnectionInput {
  const s = lab.hosts.vps.ssh!;
  return { host: s.host, port: s.port, user: s.user, privateKey: s.privateKey, hostKey: s.hostKey };
}

async function sshRun(conn: ConnectionInput, script: string): Promise<string> {
  const r = await runScript(conn, script);
  assert.equal(r.code, 0, `over SSH: ${script}\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** PID 1's start time in clock ticks since boot (field 22 of /proc/1/stat) and the boot id nspawn gives each start. */
const BOOT_MARKS = `cut -d' ' -f22 /proc/1/stat; cat /proc/sys/kernel/random/boot_id; journalctl --list-boots --no-pager -q | wc -l`;

describe("lab: a real Debian 12 VPS (systemd-nspawn in the VPS namespace)", function () {
  this.timeout(180_000);
  let lab: Lab;
  let vps: DebianVps;

  before(async () => {
    lab = getLab();
    const image = debianVpsDir();
    const built = /^seconds=(\d+)$/m.exec(fs.readFileSync(path.join(image, ".natgate-debian-vps"), "utf8"))?.[1];
    note(`image ${image} (built in ${built ?? "?"} s by scripts/build-debian-vps.sh)`);
    vps = await bootDebianVps(lab);
    note(`booted in ${vps.bootSeconds.toFixed(2)} s (nspawn PID ${vps.nspawnPid}, container PID 1 = ${vps.leaderPid})`);
  });
  afterEach(() => closeAll());
  after(async () => {
    closeAll();
    if (lab) await restoreLabVps(lab);
  });

  it("answers SSH with the lab's root key and host key on 198.51.100.1, and it is the container", async () => {
    assert.equal(vps.ssh.host, "198.51.100.1");
    const out = await sshRun(rootConn(lab), ". /etc/os-release; echo \"$ID $VERSION_ID\"; cat /proc/1/comm; id -u; hostname");
    assert.deepEqual(out.trim().split("\n"), ["debian 12", "systemd", "0", "vps"]);
  });

  it("runs systemd as PID 1 and reaches running (or degraded, failed units named)", async () => {
    assert.equal((await vps.run("readlink /proc/1/exe")).trim(), "/usr/lib/systemd/systemd");
    const state = (await vps.exec("systemctl is-system-running")).stdout.trim();
    const failed = (await vps.run("systemctl --failed --no-legend --plain")).trim();
    if (state === "degraded") note(`degraded; failed units:\n${failed}`);
    assert.ok(state === "running" || state === "degraded", `is-system-running: ${state}\n${failed}`);
    assert.equal((await vps.exec("systemctl is-active ssh.service systemd-networkd.service")).stdout.trim(), "active\nactive");
    // reachable: a unit with Wants=/After=network-online.target starts (wait-online sees eth0 configured)
    await vps.run("systemctl start network-online.target && systemctl is-active network-online.target systemd-networkd-wait-online.service", { timeoutMs: 30_000 });
    // lab.hosts.vps is the container while it runs
    assert.equal((await lab.hosts.vps.run("cat /proc/1/comm")).trim(), "systemd");
    assert.equal(lab.hosts.vps.sshdPid, vps.leaderPid);
  });

  it("has real nftables, ufw, conntrack and WireGuard (wireguard-go on /dev/net/tun)", async () => {
    const conn = rootConn(lab);
    await sshRun(conn, "nft list ruleset >/dev/null && nft add table inet natgate_probe && nft list tables | grep -qx 'table inet natgate_probe'");
    await sshRun(conn, "systemctl restart nftables && systemctl is-active nftables");
    // nftables.service loads /etc/nftables.conf, which flushes the ruleset: the probe table is gone
    assert.doesNotMatch(await sshRun(conn, "nft list tables"), /natgate_probe/);
    assert.match(await sshRun(conn, "ufw status"), /^Status: inactive/m);
    await sshRun(conn, "conntrack -L >/dev/null 2>&1 || conntrack -C");
    await sshRun(conn, "command -v wg && command -v wireguard-go");
    const wg = await sshRun(
      conn,
      "set -e; wireguard-go wg0 >/dev/null 2>&1; (umask 077; wg genkey >/tmp/wg0.key); wg set wg0 listen-port 51820 private-key /tmp/wg0.key; " +
        "ip link set wg0 up; wg show wg0 listen-port; ls /var/run/wireguard/; ip link del wg0; rm /tmp/wg0.key",
    );
    assert.deepEqual(wg.trim().split("\n"), ["51820", "wg0.sock"]);
  });

  it("has the lab's ops user (key login, passwordless sudo)", async () => {
    const s = lab.hosts.vps.ssh!;
    const conn: ConnectionInput = { host: s.host, port: s.port, user: "ops", privateKey: lab.users.ops.privateKey, hostKey: s.hostKey, sudo: true };
    const r = await runScript(conn, "id -u; cat /proc/1/comm");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "0\nsystemd\n");
  });

  it("manages eth0 with systemd-networkd, and a networkd restart keeps the VPS reachable", async () => {
    const configured = "for i in $(seq 100); do networkctl status eth0 --no-pager | grep -q 'State: routable (configured)' && exit 0; sleep 0.1; done; networkctl status eth0 --no-pager; exit 1";
    await vps.run(configured);
    assert.match(await vps.run("networkctl status eth0 --no-pager"), /Network File: \/etc\/systemd\/network\/10-natgate-lab-eth0\.network/);
    await vps.run("systemctl restart systemd-networkd");
    await vps.run(configured);
    assert.match(await vps.run("ip -4 route show default"), /^default via 198\.51\.100\.254 dev eth0/m);
    assert.equal((await sshRun(rootConn(lab), "cat /proc/1/comm")).trim(), "systemd");
  });

  it("keeps what was written to /etc across reboot(), and the boot changes", async () => {
    const token = randomBytes(8).toString("hex");
    await sshRun(rootConn(lab), `echo ${token} >/etc/natgate-reboot-marker; sync`);
    // kernel state a reboot forgets (the namespace outlives the container: debianVps.ts resets it)
    await vps.run("nft add table inet natgate_reboot_probe; sysctl -qw net.ipv4.ip_forward=1; ip rule add priority 1234 lookup 1234");
    const [start1, boot1, boots1] = (await vps.run(BOOT_MARKS)).trim().split("\n");
    const seconds = await vps.reboot();
    note(`rebooted in ${seconds.toFixed(2)} s`);
    assert.equal(vps.boots, 2);
    const [start2, boot2, boots2] = (await vps.run(BOOT_MARKS)).trim().split("\n");
    assert.notEqual(boot2, boot1, "boot id unchanged: it did not reboot");
    assert.notEqual(start2, start1, "PID 1 start time unchanged");
    assert.equal(Number(boots2), Number(boots1) + 1, "journalctl --list-boots has one boot more");
    assert.equal((await sshRun(rootConn(lab), "cat /etc/natgate-reboot-marker")).trim(), token);
    assert.doesNotMatch(await vps.run("nft list tables"), /natgate_reboot_probe/);
    assert.equal((await vps.run("sysctl -n net.ipv4.ip_forward")).trim(), "0");
    assert.doesNotMatch(await vps.run("ip rule show"), /^1234:/m);
    // the disk is the lab's overlay upper dir; the cached image stays clean
    assert.equal(fs.readFileSync(path.join(vps.upper, "etc", "natgate-reboot-marker"), "utf8").trim(), token);
    assert.ok(!fs.existsSync(path.join(vps.image, "etc", "natgate-reboot-marker")), "the image was written to");
  });

  it("stop() ends the container; restoreLabVps() brings back the lab's own VPS sshd", async () => {
    const { nspawnPid, leaderPid } = vps;
    const sshdLog = path.join(lab.dir, "hosts", "vps", "sshd.log");
    const logins = () => (fs.readFileSync(sshdLog, "utf8").match(/^.*Accepted publickey for root from /gm) ?? []).length;
    const loginsBefore = logins();
    await vps.run("nft add table inet natgate_debian_leftover; sysctl -qw net.ipv4.ip_forward=1");
    await vps.stop();
    assert.ok(!isAlive(nspawnPid) && !isAlive(leaderPid), "nspawn or the container's PID 1 still runs");
    assert.equal(activeDebianVps(lab), undefined);
    assert.match((await vps.exec("true")).stderr, /not running/);
    await restoreLabVps(lab);
    const pid = lab.hosts.vps.sshdPid!;
    assert.ok(isAlive(pid) && fs.readlinkSync(`/proc/${pid}/exe`) === "/usr/sbin/sshd", `lab sshd PID ${pid}`);
    const out = await sshRun(rootConn(lab), "cat /proc/1/comm; hostname; test -e /etc/natgate-reboot-marker && echo marker || echo clean");
    const [comm, host, marker] = out.trim().split("\n");
    assert.notEqual(comm, "systemd", "SSH still reaches the Debian container");
    assert.equal(host, "vps");
    assert.equal(marker, "clean");
    assert.equal((await lab.hosts.vps.run("hostname")).trim(), "vps");
    // the namespace as after bring-up: what the Debian VPS configured is gone, eth0 as lab.sh set it
    assert.doesNotMatch(await lab.hosts.vps.run("nft list tables"), /natgate_debian_leftover/);
    assert.equal((await lab.hosts.vps.run("sysctl -n net.ipv4.ip_forward")).trim(), "0");
    assert.match(await lab.hosts.vps.run("ip -4 route show default"), /^default via 198\.51\.100\.254 dev eth0/m);
    assert.equal(lab.hosts.vps.sshdLog, sshdLog);
    assert.equal(logins(), loginsBefore + 1, "the lab's sshd logged no new root login");
  });

  it("boots again from the clean image, with eth0 left to the lab (network: none)", async () => {
    const again = await bootDebianVps(lab, { network: "none" });
    note(`booted again in ${again.bootSeconds.toFixed(2)} s`);
    assert.notEqual(again.dir, vps.dir);
    const out = await sshRun(rootConn(lab), "cat /proc/1/comm; test -e /etc/natgate-reboot-marker && echo marker || echo clean; networkctl list --no-legend | grep eth0");
    const [comm, marker, eth0] = out.trim().split("\n");
    assert.equal(comm, "systemd");
    assert.equal(marker, "clean", "a new boot must start from the image, not the last boot's disk");
    assert.match(eth0, /eth0\s+ether\s+routable\s+unmanaged/);
    const state = (await again.exec("systemctl is-system-running")).stdout.trim();
    assert.ok(state === "running" || state === "degraded", state);
    await restoreLabVps(lab);
    assert.ok(!again.running);
    assert.notEqual((await sshRun(rootConn(lab), "cat /proc/1/comm")).trim(), "systemd");
  });
});
