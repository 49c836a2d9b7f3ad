// The lab is what every host-touching test trusts, so its shape is tested like code:
// the internet reaches the VPS, never the home network (CGNAT), the home reaches out through two
// NATs, and each sshd host is a separate machine as far as files, users and sockets go.
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import { execFileSync } from "node:child_process";
import { Client } from "ssh2";
import { labDown, labUp, randomPrefix } from "./control";
import { firstLine, getLab, isAlive, loadLab, type Lab, type LabHost, type LabProcess } from "./index";

const ECHO_PORT = 7001;

interface SshLogin {
  host: string;
  user: string;
  privateKey?: string;
  password?: string;
  hostKey: string;
}

function sshExec(login: SshLogin, cmd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = new Client();
    const expected = login.hostKey.split(" ")[1];
    c.on("ready", () => {
      c.exec(cmd, (err, stream) => {
        if (err) return reject(err);
        let stdout = "";
        let stderr = "";
        stream.on("data", (d: Buffer) => (stdout += d.toString()));
        stream.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
        stream.on("close", (code: number | null) => {
          c.end();
          resolve({ code: code ?? -1, stdout, stderr });
        });
      });
    });
    c.on("error", reject);
    c.connect({
      host: login.host,
      port: 22,
      username: login.user,
      privateKey: login.privateKey,
      password: login.password,
      readyTimeout: 10_000,
      hostVerifier: (key: Buffer) => key.toString("base64") === expected,
    });
  });
}

const countAccepted = (host: LabHost) =>
  fs.readFileSync(host.sshdLog!, "utf8").split("\n").filter((l) => /^Accepted \S+ for /.test(l)).length;

describe("lab topology", function () {
  let lab: Lab;
  const started: LabProcess[] = [];

  before(async function () {
    lab = getLab();
    // Answers every connection with the address it came from.
    started.push(
      await lab.hosts.vps.start(`socat TCP-LISTEN:${ECHO_PORT},reuseaddr,fork SYSTEM:'echo "$SOCAT_PEERADDR"'`, {
        waitForTcpPort: ECHO_PORT,
      }),
    );
  });

  after(async function () {
    for (const p of started) await p.stop();
  });

  it("the internet client reaches the VPS (ping, TCP) and the VPS sees the client's own address", async function () {
    const { client, vps } = lab.hosts;
    await client.run(`ping -c1 -W2 ${vps.addr}`);
    const seen = await client.run(`socat -T3 - TCP:${vps.addr}:${ECHO_PORT},connect-timeout=3 </dev/null`);
    assert.equal(seen.trim(), client.addr);
  });

  it("the laptop reaches the VPS through two NATs: the VPS sees the ISP's public address", async function () {
    const seen = await firstLine(lab.hosts.vps.addr, ECHO_PORT);
    assert.equal(seen, lab.addresses.ispPublic);
    assert.notEqual(seen, lab.hosts.laptop.addr);
  });

  it("the router reaches the VPS from its WAN, masqueraded by the CGNAT", async function () {
    const { router, vps } = lab.hosts;
    await router.run(`ping -c1 -W2 ${vps.addr}`);
    const seen = await router.run(`socat -T3 - TCP:${vps.addr}:${ECHO_PORT},connect-timeout=3 </dev/null`);
    assert.equal(seen.trim(), lab.addresses.ispPublic);
  });

  it("the laptop gets SSH banners from the VPS, the router and the LAN host", async function () {
    for (const h of [lab.hosts.vps, lab.hosts.router, lab.hosts.lan]) {
      assert.match(await firstLine(h.addr, 22), /^SSH-2\.0-OpenSSH/, h.name);
    }
  });

  it("nothing on the internet reaches the router or the LAN host", async function () {
    const { client } = lab.hosts;
    for (const target of [lab.addresses.routerWan, lab.addresses.routerLan, lab.hosts.lan.addr, lab.addresses.ispPublic]) {
      const r = await client.exec(`socat -T2 - TCP:${target}:22,connect-timeout=2 </dev/null`);
      assert.notEqual(r.code, 0, `client reached ${target}:22`);
      assert.doesNotMatch(r.stdout, /SSH-/, `client got a banner from ${target}:22`);
    }
    const ping = await client.exec(`ping -c1 -W1 ${lab.addresses.routerWan}`);
    assert.notEqual(ping.code, 0);
  });

  it("the CGNAT drops new inbound connections even when the internet routes to it", async function () {
    const { client, core } = lab.hosts;
    // Give the core a route to the CGNAT range: now only the ISP's drop stands between the client
    // and the router's sshd (which listens on every address and routes replies back via the ISP).
    await core.run(`ip route add ${lab.addresses.cgnatSubnet} via ${lab.addresses.ispPublic}`);
    try {
      const r = await client.exec(`socat -T2 - TCP:${lab.addresses.routerWan}:22,connect-timeout=2 </dev/null`);
      assert.notEqual(r.code, 0);
      assert.doesNotMatch(r.stdout, /SSH-/);
      assert.match(r.stderr, /timed out/, "expected a silent drop, got: " + r.stderr);
    } finally {
      await core.run(`ip route del ${lab.addresses.cgnatSubnet}`);
    }
  });

  it("IPv6: the internet client reaches the VPS, which sees the client's own v6 address", async function () {
    const { client, vps } = lab.hosts;
    await client.run(`ping -6 -c1 -W2 ${vps.addr6}`);
    const echo = await vps.start(`socat TCP6-LISTEN:${ECHO_PORT + 1},reuseaddr,fork SYSTEM:'echo "$SOCAT_PEERADDR"'`, {
      waitForTcpPort: ECHO_PORT + 1,
    });
    try {
      const seen = await client.run(`socat -T3 - TCP6:[${vps.addr6}]:${ECHO_PORT + 1},connect-timeout=3 </dev/null`);
      // socat writes the address in full (2001:0db8:...): compare canonical forms
      const canonical = (a: string) => new URL(`http://[${a.trim().replace(/^\[|\]$/g, "")}]`).hostname;
      assert.equal(canonical(seen), canonical(client.addr6!));
    } finally {
      await echo.stop();
    }
  });

  it("IPv6: the LAN host and the laptop reach the router, default route via its link-local address", async function () {
    const { lan, laptop, router } = lab.hosts;
    assert.match(lab.addresses6.routerLinkLocal, /^fe80:/);
    const ll = (await router.run("ip -6 -o addr show dev br-lan scope link")).split(/\s+/)[3].split("/")[0];
    assert.equal(ll, lab.addresses6.routerLinkLocal);
    for (const h of [lan, laptop]) {
      await h.run(`ping -6 -c1 -W2 ${router.addr6}`);
      const routes = JSON.parse(await h.run("ip -6 -j route show default")) as Array<{ gateway?: string; dev?: string }>;
      assert.deepEqual(
        routes.map((r) => [r.gateway, r.dev]),
        [[lab.addresses6.routerLinkLocal, "eth0"]],
        h.name,
      );
    }
    await lan.run(`ping -6 -c1 -W2 ${laptop.addr6}`);
  });

  it("IPv6: the internet has no way to the LAN's ULA, and the LAN none out (the ISP is IPv4-only)", async function () {
    const { client, lan, isp, router, vps } = lab.hosts;
    for (const target of [lan.addr6!, router.addr6!]) {
      assert.notEqual((await client.exec(`ping -6 -c1 -W1 ${target}`)).code, 0, `client reached ${target}`);
    }
    assert.notEqual((await lan.exec(`ping -6 -c1 -W1 ${vps.addr6}`)).code, 0, "the LAN reached the VPS over v6");
    assert.equal(isp.addr6, undefined);
    assert.equal((await isp.run("ip -6 -o addr show scope global")).trim(), "");
    assert.equal((await router.run("ip -6 -o addr show dev wan scope global")).trim(), "");
  });

  it("IPv6: forwarding on core and router, off on the VPS at start (natgate turns it on)", async function () {
    const fwd = async (h: LabHost) => (await h.run("sysctl -n net.ipv6.conf.all.forwarding")).trim();
    assert.equal(await fwd(lab.hosts.vps), "0");
    assert.equal((await lab.hosts.vps.run("sysctl -n net.ipv6.conf.eth0.forwarding")).trim(), "0");
    assert.equal(await fwd(lab.hosts.core), "1");
    assert.equal(await fwd(lab.hosts.router), "1");
    for (const h of [lab.hosts.client, lab.hosts.lan, lab.hosts.laptop, lab.hosts.isp]) assert.equal(await fwd(h), "0", h.name);
  });

  it("sshd hosts are separate machines: own /etc, /run, users and hostname", async function () {
    const { vps, router, lan } = lab.hosts;
    const probe = `/etc/natgate-lab-probe-${lab.prefix}`;
    await vps.run(`echo vps > ${probe}`);
    assert.equal((await vps.run(`cat ${probe}`)).trim(), "vps");
    assert.notEqual((await router.exec(`cat ${probe}`)).code, 0, "router sees the VPS's /etc");
    assert.equal(fs.existsSync(probe), false, "the VPS wrote to the machine's /etc");
    assert.equal((await router.run("hostname")).trim(), "router");
    assert.equal((await lan.run("hostname")).trim(), "lan");
    assert.match(await vps.run("id ops"), /uid=\d+\(ops\)/);
    await vps.run("mkdir -p /run/natgate-lab-probe");
    assert.notEqual((await router.exec("test -e /run/natgate-lab-probe")).code, 0, "router sees the VPS's /run");
    assert.equal(fs.existsSync("/run/natgate-lab-probe"), false);
  });

  it("root and ops log in by key (ops has passwordless sudo), pwuser by password (sudo asks)", async function () {
    const { vps, router } = lab.hosts;
    const before = countAccepted(vps);
    for (const h of [vps, router]) {
      const hostKey = h.ssh!.hostKey;
      const root = await sshExec({ host: h.addr, user: "root", privateKey: h.ssh!.privateKey, hostKey }, "id -un");
      assert.equal(root.stdout.trim(), "root");
      const ops = await sshExec(
        { host: h.addr, user: "ops", privateKey: lab.users.ops.privateKey, hostKey },
        "id -un; sudo -n id -un",
      );
      assert.equal(ops.code, 0, ops.stderr);
      assert.deepEqual(ops.stdout.trim().split("\n"), ["ops", "root"]);
      const pw = await sshExec({ host: h.addr, user: "pwuser", password: lab.users.pw.password, hostKey }, "id -un; sudo -n true");
      assert.equal(pw.stdout.trim(), "pwuser");
      assert.notEqual(pw.code, 0, "pwuser's sudo must need a password");
      assert.match(pw.stderr, /password is required/);
    }
    assert.equal(countAccepted(vps), before + 3, "sshd log counts one Accepted line per login");
    // the SHA256 fingerprint recorded is the host key's
    const fp = execFileSync("ssh-keygen", ["-lf", "-"], { input: vps.ssh!.hostKey }).toString().split(" ")[1];
    assert.equal(vps.hostKeyFingerprint, fp);
  });

  it("wireguard-go runs inside a host with a control socket private to it", async function () {
    const { router, vps } = lab.hosts;
    await router.run("wireguard-go wgtest 2>/dev/null && ip link show wgtest && test -S /run/wireguard/wgtest.sock");
    try {
      assert.notEqual((await vps.exec("test -e /run/wireguard/wgtest.sock")).code, 0);
      assert.match(await router.run("wg show wgtest"), /interface: wgtest/);
    } finally {
      await router.run("ip link del wgtest");
    }
  });

  it("a second lab comes up and goes down while this one runs", async function () {
    let prefix = randomPrefix();
    while (prefix === lab.prefix) prefix = randomPrefix();
    const up = await labUp(prefix);
    let second: Lab | undefined;
    try {
      second = loadLab(up.file);
      assert.equal((await second.hosts.vps.run("hostname")).trim(), "vps");
      assert.notEqual(second.hosts.vps.sshdPid, lab.hosts.vps.sshdPid);
    } finally {
      await labDown(prefix);
    }
    const namespaces = execFileSync("ip", ["netns", "list"]).toString();
    assert.doesNotMatch(namespaces, new RegExp(`^${prefix}-`, "m"));
    assert.equal(fs.existsSync(up.description.dir), false);
    assert.equal(fs.existsSync(up.file), false);
    for (const h of ["vps", "router", "lan"] as const) assert.equal(isAlive(second.hosts[h].sshdPid!), false);
    // the first lab is untouched
    assert.match(await firstLine(lab.hosts.vps.addr, 22), /^SSH-2\.0-/);
    assert.match(execFileSync("ip", ["netns", "list"]).toString(), new RegExp(`^${lab.prefix}-vps`, "m"));
  });
});
