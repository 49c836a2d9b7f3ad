import * as assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { getLab, spawnCollect, type LabHost, type LabProcess } from "../lab";
import { providers } from "../../provider";
import { closeAll } from "../../provider/ssh";

// Issue 11: a resource reached through a jump host (connection.proxy) keeps the jump host's key
// across runs, as it keeps its host's. The jump host is a socat forwarder on the laptop
// (127.0.0.1:<port>, which no known_hosts lists, so its key is trusted on first use) in front of
// the LAN host's sshd; "swapping its key" points the forwarder at the router's sshd instead. Every
// provider operation runs in a process of its own, as each `pulumi up` starts a fresh provider:
// the only keys it knows are those the state kept (and known_hosts, which pins the router itself).

const lab = getLab();
const { router, lan, vps, laptop } = lab.hosts;
const KEPT = "(seen on first use and kept in this resource's state)";

type Props = Record<string, any>;
type Run = { outs: Props; id?: string } | { error: string; name: string };

const direct = (h: LabHost) => {
  const s = h.ssh!;
  return { host: s.host, port: s.port, user: s.user, privateKey: s.privateKey, hostKey: s.hostKey, knownHosts: s.knownHosts };
};

/** One provider operation in a fresh process (check is pure and stays here). */
async function inFreshProcess(kind: string, op: "create" | "update" | "delete", olds: Props | undefined, news: Props | undefined): Promise<Run> {
  const script = resolve(lab.dir, "jump-pin-op.ts");
  writeFileSync(
    script,
    `import { readFileSync } from "node:fs";
import { providers } from ${JSON.stringify(resolve(__dirname, "../../provider"))};
import { closeAll } from ${JSON.stringify(resolve(__dirname, "../../provider/ssh"))};
const { kind, op, olds, news } = JSON.parse(readFileSync(0, "utf8"));
const p = providers[kind]!;
const run = op === "create" ? p.create(news).then((r) => ({ outs: r.outs, id: r.id }))
  : op === "update" ? p.update!("id", olds, news).then((r) => ({ outs: r.outs }))
  : p.delete!("id", olds).then(() => ({ outs: {} }));
run.then((r) => r, (e: Error) => ({ error: e.message, name: e.name }))
  .then(async (out) => { await closeAll(); process.stdout.write(JSON.stringify(out)); });
`,
  );
  const tsx = resolve(__dirname, "../../node_modules/.bin/tsx");
  const r = await spawnCollect([tsx, script], { input: JSON.stringify({ kind, op, olds, news }), timeoutMs: 120_000 });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Run;
}

function outsOf(r: Run, what: string): Props {
  assert.ok("outs" in r, `${what}: ${"error" in r ? r.error : ""}`);
  return r.outs;
}

async function checked(kind: string, news: Props): Promise<Props> {
  const r = await providers[kind]!.check!({}, news);
  assert.deepEqual(r.failures ?? [], [], `${kind} check failures`);
  return r.inputs;
}

/** The refusal of a swapped jump host key: it names the kept key and the one presented, and says nothing ran. */
function assertRefused(r: Run, port: number): void {
  assert.ok("error" in r, "a swapped jump host key was accepted");
  assert.match(r.error, new RegExp(`host key of jump host root@127\\.0\\.0\\.1:${port} does not match: `), r.error);
  assert.ok(r.error.includes(`expected ${lan.hostKeyFingerprint} ${KEPT}, received ${router.hostKeyFingerprint}`), r.error);
  assert.match(r.error, /Nothing was run on the host/);
}

describe("jump host key kept across runs (lab, issue 11: a forwarder on the laptop as the router's jump host)", function () {
  this.timeout(240_000);
  const port = 20000 + Math.floor(Math.random() * 20000);
  let fwd: LabProcess | undefined;
  const forwardTo = async (to: LabHost) => {
    await fwd?.stop();
    fwd = undefined;
    fwd = await laptop.start(`exec socat TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork TCP:${to.addr}:22`, { waitForTcpPort: port });
  };
  // The router itself is pinned (its hostKey), so only the jump host is trusted on first use.
  const viaJump = { ...direct(router), proxy: { host: "127.0.0.1", port, privateKey: lan.ssh!.privateKey } };
  /** What is left to delete if a test stops halfway: kind → state (deleted over a direct connection). */
  const live = new Map<string, Props>();
  const state = (h: LabHost) =>
    h.run("nft list ruleset | sed -E 's/counter packets [0-9]+ bytes [0-9]+/counter/'; ip -o link | cut -d' ' -f2; ls /etc/natgate 2>/dev/null; true");
  const found = new Map<LabHost, string>();

  before(async () => {
    for (const h of [router, vps, lan]) found.set(h, await state(h));
    assert.ok(lan.hostKeyFingerprint && router.hostKeyFingerprint && lan.hostKeyFingerprint !== router.hostKeyFingerprint);
  });

  after(async () => {
    const problems: string[] = [];
    try {
      for (const [kind, props] of live) {
        // Without the forwarder's jump host: straight to the hosts, whose keys known_hosts pins.
        const unproxied: Props = kind === "Tunnel" ? { ...props, dialer: { ...props.dialer, connection: direct(router) } } : { ...props, connection: direct(router) };
        const { proxyHostKeyFingerprint: _p, dialerProxyFingerprint: _d, ...rest } = unproxied;
        await providers[kind]!.delete!("id", rest).catch((e: Error) => problems.push(`${kind}: ${e.message}`));
      }
    } finally {
      await fwd?.stop();
      await closeAll();
    }
    if (problems.length) throw new Error("cleanup:\n" + problems.join("\n"));
  });

  it("DnatRule on the router: create keeps the jump host's key; a fresh process passes with it, refuses a swapped one naming both (nothing runs), and accepts it only without the kept key", async () => {
    const rule = (ports: number) => checked("DnatRule", { connection: viaJump, name: "jumppin", ports, destination: lab.addresses.routerWan, toAddress: lan.addr, persist: false });
    const dport = (n: number) => new RegExp(`dport ${n} `);
    await forwardTo(lan);
    const created = await inFreshProcess("DnatRule", "create", undefined, await rule(7000));
    let outs = outsOf(created, "create");
    live.set("DnatRule", outs);
    assert.deepEqual([outs.hostKeyFingerprint, outs.proxyHostKeyFingerprint], [router.hostKeyFingerprint, lan.hostKeyFingerprint]);

    // the same jump host: a fresh provider passes with the kept key, and keeps it again
    outs = outsOf(await inFreshProcess("DnatRule", "update", outs, await rule(7001)), "update through the same jump host");
    live.set("DnatRule", outs);
    assert.equal(outs.proxyHostKeyFingerprint, lan.hostKeyFingerprint);
    assert.match(await router.run("nft list ruleset"), dport(7001));

    // the jump host's address now answers with another machine's key
    await forwardTo(router);
    const ruleset = await router.run("nft list ruleset");
    assertRefused(await inFreshProcess("DnatRule", "update", outs, await rule(7002)), port);
    assert.equal(await router.run("nft list ruleset"), ruleset, "the refused update changed the router");

    // what the kept key prevents: a state without it logs in through whatever answers there
    const { proxyHostKeyFingerprint: _kept, ...forgotten } = outs;
    outs = outsOf(await inFreshProcess("DnatRule", "update", forgotten, await rule(7002)), "update without the kept key");
    live.set("DnatRule", outs);
    assert.equal(outs.proxyHostKeyFingerprint, router.hostKeyFingerprint);
    assert.match(await router.run("nft list ruleset"), dport(7002));

    outsOf(await inFreshProcess("DnatRule", "delete", outs, undefined), "delete");
    live.delete("DnatRule");
    assert.equal(await state(router), found.get(router), "the router differs from before the test");
  });

  it("Tunnel with its dialer (the router) through the jump host: keeps dialerProxyFingerprint only; a fresh process refuses the swapped key and changes neither side", async () => {
    const tunnel = (mtu: number) =>
      checked("Tunnel", {
        name: "jumppin",
        interfaceName: "wgjp0",
        listenPort: 51901,
        mtu,
        persist: false,
        listener: { connection: direct(vps), address: "10.10.91.1/24" },
        dialer: { connection: viaJump, address: "10.10.91.2/24" },
      });
    const mtuOn = async (h: LabHost) => /mtu (\d+)/.exec(await h.run("ip -o link show wgjp0"))?.[1];
    await forwardTo(lan);
    let outs = outsOf(await inFreshProcess("Tunnel", "create", undefined, await tunnel(1420)), "create");
    live.set("Tunnel", outs);
    assert.deepEqual(
      [outs.listenerFingerprint, outs.dialerFingerprint, outs.dialerProxyFingerprint, "listenerProxyFingerprint" in outs],
      [vps.hostKeyFingerprint, router.hostKeyFingerprint, lan.hostKeyFingerprint, false],
    );

    outs = outsOf(await inFreshProcess("Tunnel", "update", outs, await tunnel(1400)), "update through the same jump host");
    live.set("Tunnel", outs);
    assert.equal(outs.dialerProxyFingerprint, lan.hostKeyFingerprint);
    assert.deepEqual([await mtuOn(vps), await mtuOn(router)], ["1400", "1400"]);

    await forwardTo(router);
    assertRefused(await inFreshProcess("Tunnel", "update", outs, await tunnel(1380)), port);
    assert.deepEqual([await mtuOn(vps), await mtuOn(router)], ["1400", "1400"], "the refused update changed a side");

    const { dialerProxyFingerprint: _kept, ...forgotten } = outs;
    outs = outsOf(await inFreshProcess("Tunnel", "update", forgotten, await tunnel(1380)), "update without the kept key");
    live.set("Tunnel", outs);
    assert.equal(outs.dialerProxyFingerprint, router.hostKeyFingerprint);
    assert.deepEqual([await mtuOn(vps), await mtuOn(router)], ["1380", "1380"]);

    outsOf(await inFreshProcess("Tunnel", "delete", outs, undefined), "delete");
    live.delete("Tunnel");
    for (const h of [vps, router]) assert.equal(await state(h), found.get(h), `${h.name} differs from before the test`);
  });
});
