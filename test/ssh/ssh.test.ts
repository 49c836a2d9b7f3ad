// The SSH layer against the lab's real sshd hosts. The test process is the laptop on the LAN:
// the router is at its LAN address, the VPS is reached through the router and the ISP's CGNAT.
import { strict as assert } from "assert";
import { execFileSync } from "child_process";
import { randomBytes } from "crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "fs";
import { tmpdir } from "os";
import { join } from "path";
import { inspect } from "util";
import { getLab, type Lab, type LabHost, type LabProcess } from "../lab";
import {
  closeAll,
  isNatgateError,
  NatgateError,
  poolStats,
  runScript,
  SH_PRELUDE,
  type ConnectionInput,
  type NatgateErrorCode,
} from "../../provider/ssh";

const HOSTILE_ARGS = ["", "it's", "$(touch /tmp/natgate-pwned)", "`id`", "a\nb", " two  spaces ", "*", "ünï 🚀", "--", "-n", '"\\'];

function rootConn(h: LabHost, extra: Partial<ConnectionInput> = {}): ConnectionInput {
  const s = h.ssh!;
  return { host: s.host, port: s.port, user: s.user, privateKey: s.privateKey, ...extra };
}

/** Logins so far: sshd logs "Accepted publickey for root from ..." once per authenticated connection. */
function acceptedCount(h: LabHost): number {
  return (readFileSync(h.sshdLog!, "utf8").match(/^.*Accepted [\w-]+ for \S+ from /gm) ?? []).length;
}

async function establishedSsh(h: LabHost): Promise<number> {
  const out = await h.run(`ss -Htn state established '( sport = :22 )'`);
  return out.split("\n").filter((l) => l.trim()).length;
}

/** Every rendering of an error a user or a log could see. */
function renderings(e: unknown): string {
  const err = e as Error;
  return [String(err), err.message, err.stack ?? "", inspect(err, { depth: 5 }), JSON.stringify(err)].join("\n");
}

async function rejectsWith(p: Promise<unknown>, code: NatgateErrorCode | NatgateErrorCode[], re?: RegExp): Promise<NatgateError> {
  try {
    await p;
  } catch (e) {
    assert.ok(isNatgateError(e), `expected a NatgateError ${code}, got ${inspect(e)}`);
    assert.ok(([] as NatgateErrorCode[]).concat(code).includes(e.code), `code ${e.code}: ${e.message}`);
    if (re) assert.match(e.message, re);
    return e;
  }
  assert.fail(`expected NatgateError ${code}, but it succeeded`);
}

const marker = () => `/tmp/natgate-must-not-exist-${randomBytes(4).toString("hex")}`;

async function assertAbsent(h: LabHost, path: string): Promise<void> {
  const r = await h.exec(`test -e ${path}`);
  assert.equal(r.code, 1, `${path} exists on ${h.name}: a command ran although it must not`);
}

/**
 * A HOME of the tests' own for the duration of a describe: natgate reads ~/.ssh/known_hosts by
 * default, and the machine's may hold keys of earlier labs (new each run) for the same addresses.
 */
function ownHome(): { readonly dir: string } {
  const state = { dir: "" };
  let saved: string | undefined;
  before(() => {
    saved = process.env.HOME;
    state.dir = mkdtempSync(join(tmpdir(), "natgate-home-"));
    process.env.HOME = state.dir;
  });
  after(() => {
    if (saved === undefined) delete process.env.HOME;
    else process.env.HOME = saved;
    rmSync(state.dir, { recursive: true, force: true });
  });
  return state;
}

describe("ssh: runScript against lab hosts", function () {
  let lab: Lab;
  let vps: LabHost;
  let router: LabHost;
  let lan: LabHost;

  ownHome();
  before(() => {
    lab = getLab();
    vps = lab.hosts.vps;
    router = lab.hosts.router;
    lan = lab.hosts.lan;
  });
  afterEach(() => closeAll());

  it("runs a script as root on the router (LAN) and the VPS (through both NATs), args intact", async () => {
    for (const h of [router, vps]) {
      const script = `printf '%s\\n' "$(id -u)" "$(hostname)"; printf '%s\\0' "$@"`;
      const r = await runScript(rootConn(h), script, HOSTILE_ARGS);
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.split("\n");
      assert.equal(lines[0], "0");
      assert.equal(lines[1], h.name);
      assert.deepEqual(lines.slice(2).join("\n").split("\0").slice(0, -1), HOSTILE_ARGS);
      assert.equal(r.fingerprint, h.hostKeyFingerprint);
    }
    assert.equal((await vps.exec("test -e /tmp/natgate-pwned")).code, 1);
  });

  it("returns a failing script's exit code and output instead of throwing", async () => {
    const r = await runScript(rootConn(vps), "echo out; echo err >&2; exit 3");
    assert.deepEqual([r.code, r.stdout, r.stderr], [3, "out\n", "err\n"]);
  });

  it("runs as root through sudo -n for the non-root ops user with sudo: true", async () => {
    for (const h of [vps, router]) {
      const ops = { host: h.addr, user: "ops", privateKey: lab.users.ops.privateKey };
      const withSudo = await runScript({ ...ops, sudo: true }, "id -un; id -u; echo \"$1\"", ["it's $HOME"]);
      assert.deepEqual([withSudo.code, withSudo.stdout], [0, "root\n0\nit's $HOME\n"], withSudo.stderr);
      const without = await runScript(ops, "id -un");
      assert.equal(without.stdout, "ops\n");
    }
  });

  it("says how to fix sudo when it wants a password (pwuser), without the password", async () => {
    const pw = { host: vps.addr, user: "pwuser", password: lab.users.pw.password };
    const plain = await runScript(pw, "id -un");
    assert.equal(plain.stdout, "pwuser\n");
    const where = marker();
    const e = await rejectsWith(runScript({ ...pw, sudo: true }, `touch ${where}`), "sudo-password", /NOPASSWD.*or connect as root/);
    assert.match(e.message, /pwuser/);
    assert.ok(!renderings(e).includes(lab.users.pw.password));
    await assertAbsent(vps, where);
  });

  it("accepts a pinned host key as a key line and as a SHA256 fingerprint", async () => {
    for (const hostKey of [vps.ssh!.hostKey, vps.hostKeyFingerprint!]) {
      await closeAll(); // verify on a fresh handshake, not a pooled connection
      const r = await runScript(rootConn(vps, { hostKey }), "echo ok");
      assert.equal(r.stdout, "ok\n");
      assert.equal(r.fingerprint, vps.hostKeyFingerprint);
    }
  });

  it("refuses a wrong pinned key before running anything, showing expected and received", async () => {
    assert.notEqual(router.hostKeyFingerprint, vps.hostKeyFingerprint);
    const where = marker();
    for (const hostKey of [router.ssh!.hostKey, router.hostKeyFingerprint!]) {
      // once on a new handshake, once with a pooled connection open to the VPS
      for (const pooled of [false, true]) {
        await closeAll();
        if (pooled) await runScript(rootConn(vps), "true");
        const e = await rejectsWith(runScript(rootConn(vps, { hostKey }), `touch ${where}`), "hostkey-mismatch");
        assert.ok(e.message.includes(`expected ${router.hostKeyFingerprint}`), e.message);
        assert.ok(e.message.includes(`received ${vps.hostKeyFingerprint}`), e.message);
        assert.match(e.message, /Nothing was run.*set connection\.hostKey to the new fingerprint shown/);
      }
    }
    await assertAbsent(vps, where);
  });

  it("trusts on first use: returns the fingerprint, refuses a different known one", async () => {
    const first = await runScript(rootConn(router), "true");
    assert.equal(first.fingerprint, router.hostKeyFingerprint);
    const again = await runScript(rootConn(router), "echo ok", [], { knownFingerprint: first.fingerprint });
    assert.equal(again.stdout, "ok\n");

    const where = marker();
    for (const pooled of [true, false]) {
      if (!pooled) await closeAll();
      const e = await rejectsWith(
        runScript(rootConn(router), `touch ${where}`, [], { knownFingerprint: lan.hostKeyFingerprint }),
        "hostkey-mismatch",
      );
      assert.ok(e.message.includes(`expected ${lan.hostKeyFingerprint} (seen on first use and kept in this resource's state)`), e.message);
      assert.ok(e.message.includes(`received ${router.hostKeyFingerprint}`), e.message);
    }
    await assertAbsent(router, where);
    // a pin wins over state, which is how a user accepts a legitimately new key
    const pinned = await runScript(rootConn(router, { hostKey: router.hostKeyFingerprint! }), "echo ok", [], {
      knownFingerprint: lan.hostKeyFingerprint,
    });
    assert.equal(pinned.stdout, "ok\n");
  });

  it("remembers the first key seen per host:port in the process and refuses a change", async () => {
    // Same address, different host behind it: a forwarder on the laptop first to the router, then to the LAN host.
    const laptop = lab.hosts.laptop;
    const port = 20000 + Math.floor(Math.random() * 20000);
    const forward = (to: string) =>
      laptop.start(`exec socat TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork TCP:${to}:22`, { waitForTcpPort: port });
    let fwd: LabProcess = await forward(router.addr);
    try {
      const conn = rootConn(router, { host: "127.0.0.1", port });
      const r = await runScript(conn, "hostname");
      assert.deepEqual([r.stdout, r.fingerprint], ["router\n", router.hostKeyFingerprint]);
      await closeAll();
      await fwd.stop();
      fwd = await forward(lan.addr);
      const where = marker();
      const e = await rejectsWith(runScript(conn, `touch ${where}`), "hostkey-mismatch");
      assert.ok(e.message.includes(`expected ${router.hostKeyFingerprint} (seen earlier by this process)`), e.message);
      assert.ok(e.message.includes(`received ${lan.hostKeyFingerprint}`), e.message);
      await assertAbsent(lan, where);
    } finally {
      await fwd.stop();
    }
  });

  it("fails on an unreachable host within dialErrorLimit x perDialTimeout, saying what to check", async () => {
    const start = Date.now();
    const e = await rejectsWith(
      runScript(rootConn(vps, { host: "198.51.100.200", dialErrorLimit: 2, perDialTimeout: 1 }), "true"),
      ["timeout", "unreachable"],
    );
    const seconds = (Date.now() - start) / 1000;
    assert.ok(seconds < 2 * 1 + 1.5, `took ${seconds} s`);
    assert.match(e.message, /cannot reach root@198\.51\.100\.200:22 over SSH after 2 tries of up to 1 s each/);
    assert.match(e.message, /Check that the host is up/);
  });

  it("fails fast with 'unreachable' on a closed port, after the configured tries", async () => {
    const start = Date.now();
    const e = await rejectsWith(runScript(rootConn(vps, { port: 2, dialErrorLimit: 3, perDialTimeout: 5 }), "true"), "unreachable");
    assert.match(e.message, /root@198\.51\.100\.1:2 over SSH after 3 tries.*ECONNREFUSED/);
    assert.ok(Date.now() - start < 3000);
  });

  it("does not retry a failed login and names the methods tried, never the secrets", async () => {
    const wrongPassword = "wrong-" + randomBytes(6).toString("hex");
    const before = readFileSync(vps.sshdLog!, "utf8").length;
    const start = Date.now();
    const e1 = await rejectsWith(
      runScript({ host: vps.addr, user: "pwuser", password: wrongPassword, dialErrorLimit: 10 }, "true"),
      "auth",
      /authentication as pwuser@198\.51\.100\.1:22 failed \(tried: password; the server accepts: publickey, password\)/,
    );
    assert.ok(Date.now() - start < 5000, "a failed login must not be retried");
    const newLog = readFileSync(vps.sshdLog!, "utf8").slice(before);
    assert.equal((newLog.match(/Connection from /g) ?? []).length, 1, newLog);
    assert.ok(!renderings(e1).includes(wrongPassword));

    // ops's key is not authorized for root
    const e2 = await rejectsWith(runScript({ host: vps.addr, privateKey: lab.users.ops.privateKey }, "true"), "auth", /tried: private key/);
    const keyBody = lab.users.ops.privateKey.split("\n").slice(1, -2).join("");
    for (const chunk of [keyBody.slice(0, 40), keyBody.slice(40, 80), lab.users.ops.privateKey.split("\n")[1]!]) {
      assert.ok(!renderings(e2).includes(chunk));
    }
  });

  it("reuses one pooled connection for sequential and concurrent scripts, then closes it when idle", async () => {
    await closeAll();
    const before = acceptedCount(vps);
    for (let i = 0; i < 5; i++) assert.equal((await runScript(rootConn(vps), `echo ${i}`)).stdout, `${i}\n`);
    const concurrent = await Promise.all([...Array(5)].map((_, i) => runScript(rootConn(vps), "echo $1", [String(i)])));
    assert.deepEqual(concurrent.map((r) => r.stdout), ["0\n", "1\n", "2\n", "3\n", "4\n"]);
    assert.equal(acceptedCount(vps) - before, 1, "one login for ten scripts");
    assert.equal(await establishedSsh(vps), 1);

    await new Promise((r) => setTimeout(r, 2600));
    assert.equal(poolStats().open, 0, "idle connection closed after ~2 s");
    assert.equal(await establishedSsh(vps), 0);
  });

  it("keeps at most 8 channels open on one connection and queues the rest", async () => {
    await closeAll();
    const dir = `/tmp/natgate-q-${randomBytes(4).toString("hex")}`;
    await vps.run(`mkdir ${dir}`);
    try {
      const before = acceptedCount(vps);
      // each script counts the scripts running at its start; sessions start ~20/s, so each lasts long enough to overlap many
      const script = `touch "$1/$$"; ls "$1" | wc -l; sleep 1.2; rm "$1/$$"`;
      const runs = await Promise.all([...Array(20)].map(() => runScript(rootConn(vps), script, [dir])));
      const peaks = runs.map((r) => Number(r.stdout.trim()));
      assert.ok(Math.max(...peaks) <= 8, `peak concurrency ${Math.max(...peaks)}`);
      assert.ok(Math.max(...peaks) >= 4, `scripts did not run concurrently (peak ${Math.max(...peaks)})`);
      assert.equal(acceptedCount(vps) - before, 1);
    } finally {
      await vps.run(`rm -rf ${dir}`);
    }
  });

  it("redials when the pooled connection died", async () => {
    await closeAll();
    const before = acceptedCount(router);
    await runScript(rootConn(router), "true");
    // end the server side of our session (the sshd processes serving our established connection)
    const pids = (await router.run(`ss -Htnp state established '( sport = :22 )'`)).match(/pid=(\d+)/g)!.map((p) => p.slice(4));
    assert.ok(pids.length > 0);
    await router.run(`kill ${[...new Set(pids)].join(" ")}`);
    const r = await runScript(rootConn(router), "echo back");
    assert.equal(r.stdout, "back\n");
    assert.equal(acceptedCount(router) - before, 2);
  });

  it("with fresh: true logs in anew and does not keep the connection", async () => {
    await closeAll();
    const before = acceptedCount(router);
    await runScript(rootConn(router), "true", [], { fresh: true });
    await runScript(rootConn(router), "true", [], { fresh: true });
    assert.equal(acceptedCount(router) - before, 2);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(poolStats().open, 0);
  });

  it("turns `need` of a missing command into an error naming the package", async () => {
    const ok = await runScript(rootConn(router), SH_PRELUDE + "need sh dash\necho fine");
    assert.equal(ok.stdout, "fine\n");
    await rejectsWith(
      runScript(rootConn(vps), SH_PRELUDE + "need natgate-no-such-tool natgate-pkg\necho not reached"),
      "missing-tool",
      /^natgate-no-such-tool not found on host 198\.51\.100\.1: install package natgate-pkg$/,
    );
    await rejectsWith(
      runScript(rootConn(router, { user: "ops", privateKey: lab.users.ops.privateKey, sudo: true }), SH_PRELUDE + "need natgate-ip iproute2 ip-full"),
      "missing-tool",
      /^natgate-ip not found on host 192\.168\.1\.1: install package iproute2 \(on OpenWrt: ip-full\)$/,
    );
  });

  it("refuses to run a natgate script as a non-root user without sudo, saying to set sudo or connect as root; nothing after the prelude runs", async () => {
    const path = marker();
    const ops = rootConn(router, { user: "ops", privateKey: lab.users.ops.privateKey });
    const e = await rejectsWith(
      runScript(ops, SH_PRELUDE + `touch ${path}; mkdir /etc/natgate-x`),
      "not-root",
      /^connected to 192\.168\.1\.1 as ops \(uid \d+\), but natgate needs root there: set connection\.sudo = true \(the user needs passwordless sudo\) or connect as root$/,
    );
    assert.doesNotMatch(e.message, /Permission denied/);
    await assertAbsent(router, path);
    const viaSudo = await runScript({ ...ops, sudo: true }, SH_PRELUDE + "id -u");
    assert.equal(viaSudo.stdout, "0\n");
    // A script without the prelude is not checked: the check is the prelude's, not the SSH layer's.
    assert.notEqual((await runScript(ops, "id -u")).stdout, "0\n");
  });

  it("gives up on a script after timeoutSeconds", async () => {
    const start = Date.now();
    await rejectsWith(runScript(rootConn(vps), "sleep 10", [], { timeoutSeconds: 1 }), "timeout", /did not finish within 1 s/);
    assert.ok(Date.now() - start < 3000);
  });

  it("reaches a host through a jump host (proxy): router -> LAN host, VPS -> its own loopback", async () => {
    const viaRouter = await runScript(
      { ...rootConn(lan), proxy: { host: router.addr, privateKey: router.ssh!.privateKey } },
      "hostname",
    );
    assert.equal(viaRouter.stdout, "lan\n");
    assert.equal(viaRouter.fingerprint, lan.hostKeyFingerprint);
    assert.equal(viaRouter.proxyFingerprint, router.hostKeyFingerprint);

    const viaVps = await runScript(
      { ...rootConn(vps), host: "127.0.0.1", hostKey: vps.ssh!.hostKey, proxy: { host: vps.addr, privateKey: vps.ssh!.privateKey, hostKey: vps.hostKeyFingerprint! } },
      "hostname",
    );
    assert.equal(viaVps.stdout, "vps\n");

    const where = marker();
    const e = await rejectsWith(
      runScript({ ...rootConn(lan), proxy: { host: router.addr, privateKey: router.ssh!.privateKey, hostKey: lan.hostKeyFingerprint! } }, `touch ${where}`),
      "hostkey-mismatch",
      /jump host root@192\.168\.1\.1:22.*set connection\.proxy\.hostKey/,
    );
    assert.ok(e.message.includes(`received ${router.hostKeyFingerprint}`));
    await assertAbsent(lan, where);

    await rejectsWith(
      runScript({ ...rootConn(lan), port: 2, dialErrorLimit: 2, proxy: { host: router.addr, privateKey: router.ssh!.privateKey } }, "true"),
      "unreachable",
      /root@192\.168\.1\.99:2 \(via jump host root@192\.168\.1\.1:22\) over SSH after 2 tries.*could not open a tunnel/,
    );
  });
});

describe("ssh: known_hosts against lab hosts (issue 11)", function () {
  let lab: Lab;
  let vps: LabHost;
  let router: LabHost;
  let lan: LabHost;
  let dir: string;
  let files = 0;

  const home = ownHome();
  before(() => {
    lab = getLab();
    vps = lab.hosts.vps;
    router = lab.hosts.router;
    lan = lab.hosts.lan;
    dir = mkdtempSync(join(tmpdir(), "natgate-kh-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  afterEach(() => closeAll());

  /** "ssh-ed25519 AAAA..." of a lab host, without its comment. */
  const keyLine = (h: LabHost) => h.ssh!.hostKey.trim().split(/\s+/).slice(0, 2).join(" ");
  const knownHostsFile = (...lines: string[]) => {
    const file = join(dir, `known_hosts_${++files}`);
    writeFileSync(file, lines.join("\n") + "\n");
    return file;
  };
  const newKeyLine = (type: "ed25519" | "ecdsa") => {
    const file = join(dir, `key_${++files}`);
    execFileSync("ssh-keygen", ["-q", "-t", type, "-N", "", "-C", "other", "-f", file]);
    return readFileSync(file + ".pub", "utf8").trim().split(/\s+/).slice(0, 2).join(" ");
  };

  it("trusts the key ssh-keyscan finds, from connection.knownHosts or ~/.ssh/known_hosts, without hostKey", async () => {
    const scanned = execFileSync("ssh-keyscan", ["-T", "5", "-t", "ed25519", vps.addr], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    assert.match(scanned, /^198\.51\.100\.1 ssh-ed25519 /m);
    const file = knownHostsFile("# from ssh-keyscan", scanned.trim());
    const r = await runScript(rootConn(vps, { knownHosts: file }), "echo ok");
    assert.deepEqual([r.stdout, r.fingerprint], ["ok\n", vps.hostKeyFingerprint]);
    // known_hosts decides over a fingerprint in state, as a new `ssh` login after `ssh-keygen -R` would
    await closeAll();
    const again = await runScript(rootConn(vps, { knownHosts: file }), "echo ok", [], { knownFingerprint: lan.hostKeyFingerprint });
    assert.equal(again.stdout, "ok\n");

    // unset knownHosts reads ~/.ssh/known_hosts: a wrong key there refuses, the right one is trusted
    const userFile = join(home.dir, ".ssh", "known_hosts");
    mkdirSync(join(home.dir, ".ssh"), { recursive: true });
    writeFileSync(userFile, `${vps.addr} ${keyLine(router)}\n`);
    await closeAll();
    const e = await rejectsWith(runScript(rootConn(vps), "true"), "hostkey-mismatch", /does not match known_hosts/);
    assert.ok(e.message.includes(`${userFile}:1`), e.message);
    // knownHosts: false reads no file: first use (this process saw the VPS's key before) decides
    assert.equal((await runScript(rootConn(vps, { knownHosts: false }), "echo ok")).stdout, "ok\n");
    writeFileSync(userFile, `# the VPS\n${vps.addr} ${keyLine(vps)}\n`);
    await closeAll();
    assert.equal((await runScript(rootConn(vps), "echo ok")).stdout, "ok\n");
    rmSync(userFile);
  });

  it("refuses a key other than known_hosts lists before anything runs: both fingerprints, file:line, the fix; a pin still wins", async () => {
    const file = knownHostsFile("# stale", "", `vps.example,${vps.addr} ${keyLine(router)} old key`);
    const where = marker();
    const logins = acceptedCount(vps);
    const e = await rejectsWith(runScript(rootConn(vps, { knownHosts: file }), `touch ${where}`), "hostkey-mismatch");
    assert.ok(e.message.startsWith("host key of root@198.51.100.1:22 does not match known_hosts: "), e.message);
    assert.ok(e.message.includes(`${router.hostKeyFingerprint} (ssh-ed25519, ${file}:3)`), e.message);
    assert.ok(e.message.includes(`received ${vps.hostKeyFingerprint} (ssh-ed25519)`), e.message);
    assert.ok(e.message.includes(`ssh-keygen -f ${file} -R 198.51.100.1`), e.message);
    assert.match(e.message, /Nothing was run on the host.*set connection\.hostKey to the new fingerprint shown/);
    assert.equal(acceptedCount(vps), logins, "refused before logging in");
    await assertAbsent(vps, where);
    const pinned = await runScript(rootConn(vps, { knownHosts: file, hostKey: vps.hostKeyFingerprint! }), "echo ok");
    assert.equal(pinned.stdout, "ok\n");
  });

  it("refuses a @revoked key naming the file and line, even with no other line for the host", async () => {
    const file = knownHostsFile(`# revoked everywhere`, `@revoked * ${keyLine(vps)}`);
    const where = marker();
    const e = await rejectsWith(runScript(rootConn(vps, { knownHosts: file }), `touch ${where}`), "hostkey-mismatch", /^host key of root@198\.51\.100\.1:22 is revoked/);
    assert.ok(e.message.includes(`presented ${vps.hostKeyFingerprint} (ssh-ed25519), which ${file}:2 marks @revoked`), e.message);
    await assertAbsent(vps, where);
    // other hosts' keys are not revoked: first use decides for them
    assert.equal((await runScript(rootConn(router, { knownHosts: file }), "echo ok")).stdout, "ok\n");
  });

  it("refuses, without retrying, a host that has no key of the types known_hosts lists for it", async () => {
    const file = knownHostsFile(`${vps.addr} ${newKeyLine("ecdsa")}`);
    const start = Date.now();
    const e = await rejectsWith(runScript(rootConn(vps, { knownHosts: file, dialErrorLimit: 10 }), "true"), "hostkey-mismatch");
    assert.match(e.message, /known_hosts has ecdsa-sha2-nistp256 SHA256:\S+ \(.*:1\) for 198\.51\.100\.1, and the server offers no key of that type/);
    assert.ok(Date.now() - start < 5000, "not retried");
  });

  it("refuses, without retrying, a pinned hostKey of a type the host has no key of", async () => {
    const start = Date.now();
    const e = await rejectsWith(runScript(rootConn(vps, { hostKey: newKeyLine("ecdsa"), dialErrorLimit: 10 }), "true"), "hostkey-mismatch");
    assert.match(e.message, /^host key of root@198\.51\.100\.1:22 cannot be checked: connection\.hostKey is an ecdsa-sha2-nistp256 key, and the server has no key of that type/);
    assert.ok(Date.now() - start < 5000, "not retried");
  });

  it("checks the jump host by its own host:port and the target behind it by its own", async () => {
    const conn = (knownHosts: string): ConnectionInput => ({ ...rootConn(lan), knownHosts, proxy: { host: router.addr, privateKey: router.ssh!.privateKey } });
    const good = knownHostsFile(`${router.addr} ${keyLine(router)}`, `${lan.addr} ${keyLine(lan)}`);
    const r = await runScript(conn(good), "hostname");
    assert.deepEqual([r.stdout, r.fingerprint, r.proxyFingerprint], ["lan\n", lan.hostKeyFingerprint, router.hostKeyFingerprint]);

    const where = marker();
    const badJump = knownHostsFile(`${router.addr} ${keyLine(lan)}`);
    const e = await rejectsWith(runScript(conn(badJump), `touch ${where}`), "hostkey-mismatch", /^host key of jump host root@192\.168\.1\.1:22 does not match known_hosts/);
    assert.ok(e.message.includes(`${lan.hostKeyFingerprint} (ssh-ed25519, ${badJump}:1)`), e.message);
    assert.ok(e.message.includes(`received ${router.hostKeyFingerprint}`), e.message);
    assert.match(e.message, /-R 192\.168\.1\.1\) or set connection\.proxy\.hostKey/);

    const badTarget = knownHostsFile(`${router.addr} ${keyLine(router)}`, `${lan.addr} ${keyLine(vps)}`);
    const e2 = await rejectsWith(
      runScript(conn(badTarget), `touch ${where}`),
      "hostkey-mismatch",
      /^host key of root@192\.168\.1\.99:22 \(via jump host root@192\.168\.1\.1:22\) does not match known_hosts/,
    );
    assert.ok(e2.message.includes(`${badTarget}:2`) && e2.message.includes(`received ${lan.hostKeyFingerprint}`), e2.message);
    await assertAbsent(lan, where);
    await assertAbsent(router, where);
  });

  it("honours hashed entries (ssh-keygen -H) and the [host]:port form", async () => {
    const file = knownHostsFile(`${vps.addr} ${keyLine(vps)}`, `${router.addr} ${keyLine(lan)}`);
    execFileSync("ssh-keygen", ["-q", "-H", "-f", file], { stdio: "ignore" });
    assert.ok(!readFileSync(file, "utf8").includes(vps.addr));
    assert.equal((await runScript(rootConn(vps, { knownHosts: file }), "echo ok")).stdout, "ok\n");
    const e = await rejectsWith(runScript(rootConn(router, { knownHosts: file }), "true"), "hostkey-mismatch");
    assert.ok(e.message.includes(`${file}:2`) && e.message.includes(`received ${router.hostKeyFingerprint}`), e.message);

    // the router's sshd on another port of the laptop: known as [127.0.0.1]:port, not as 127.0.0.1
    const port = 20000 + Math.floor(Math.random() * 20000);
    const fwd = await lab.hosts.laptop.start(`exec socat TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork TCP:${router.addr}:22`, { waitForTcpPort: port });
    try {
      const local = (knownHosts: string) => rootConn(router, { host: "127.0.0.1", port, knownHosts });
      const bracketed = knownHostsFile(`127.0.0.1 ${keyLine(lan)}`, `[127.0.0.1]:${port} ${keyLine(router)}`);
      assert.equal((await runScript(local(bracketed), "hostname")).stdout, "router\n");
      const wrong = knownHostsFile(`[127.0.0.1]:${port} ${keyLine(lan)}`);
      await closeAll();
      const e2 = await rejectsWith(runScript(local(wrong), "true"), "hostkey-mismatch");
      assert.ok(e2.message.includes(`-R '[127.0.0.1]:${port}'`) && e2.message.includes(`${wrong}:1`), e2.message);
    } finally {
      await fwd.stop();
    }
  });

  it("does not take a @cert-authority line for a host key: first use decides, and its refusal says why", async () => {
    const file = knownHostsFile(`@cert-authority ${vps.addr} ${newKeyLine("ed25519")}`);
    const r = await runScript(rootConn(vps, { knownHosts: file }), "echo ok");
    assert.deepEqual([r.stdout, r.fingerprint], ["ok\n", vps.hostKeyFingerprint]);
    await closeAll();
    const e = await rejectsWith(runScript(rootConn(vps, { knownHosts: file }), "true", [], { knownFingerprint: lan.hostKeyFingerprint }), "hostkey-mismatch");
    assert.ok(e.message.includes(`expected ${lan.hostKeyFingerprint} (seen on first use and kept in this resource's state)`), e.message);
    assert.ok(e.message.includes(`only @cert-authority lines for 198.51.100.1 (${file}:1): natgate does not check host certificates`), e.message);
  });
});
