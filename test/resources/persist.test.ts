import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import { getLab, privateLib, type LabHost, type LabProcess } from "../lab";
import { providers } from "../../provider";
import { BOOT_SH, WRITE_FUNCTIONS } from "../../provider/backends/persist";
import { closeAll } from "../../provider/ssh";
import { askTcp, askUdp, snapshotDiff, snapshotHost, startLanServices, stopAll } from "../engine/seedLab";

// Boot persistence on the lab: the seed over WireGuard (wireguard-go), built by the providers, then
// a reboot of the router and the VPS simulated by removing everything a reboot loses (nft tables,
// ip rules and routes, the WireGuard interface and its wireguard-go, sysctls, /run) while /etc
// stays; what the init system would run (/etc/natgate/boot.sh) must bring the path back, with the
// client's real address at the LAN service and no drift for the providers. Then the init hooks on
// a fake systemd host and a fake OpenWrt host, persist: false, and a delete that leaves both hosts
// as they were.

const lab = getLab();
const { vps, router } = lab.hosts;
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
  news: Props;
}

async function check(kind: string, news: Props): Promise<Props> {
  const r = await providers[kind]!.check!({}, news);
  assert.deepEqual(r.failures ?? [], [], `${kind} check failures`);
  return r.inputs;
}

async function create(kind: string, news: Props): Promise<Res> {
  const r = await providers[kind]!.create(await check(kind, news));
  if (kind !== "Tunnel") assert.deepEqual(r.outs.drift, [], `${kind} drift right after create`);
  return { kind, id: r.id, outs: r.outs, news };
}

/** `pulumi refresh` of one resource: its live outputs; for a Tunnel, whether diff then sees a change. */
async function refresh(res: Res): Promise<{ props: Props; changes: boolean }> {
  const p = providers[res.kind]!;
  const r = await p.read!(res.id, res.outs);
  res.outs = r.props!;
  const d = await p.diff!(res.id, res.outs, await check(res.kind, res.news));
  return { props: r.props!, changes: d.changes === true };
}

/** `pulumi up` of one resource with (possibly new) inputs: update when diff says so. */
async function up(res: Res, news: Props = res.news): Promise<boolean> {
  const p = providers[res.kind]!;
  const inputs = await check(res.kind, news);
  res.news = news;
  const d = await p.diff!(res.id, res.outs, inputs);
  assert.equal((d.replaces ?? []).length, 0, `unexpected replacement of ${res.id}`);
  if (!d.changes) return false;
  res.outs = (await p.update!(res.id, res.outs, inputs)).outs!;
  return true;
}

async function destroy(res: Res): Promise<void> {
  await providers[res.kind]!.delete!(res.id, res.outs);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Processes in the host's network namespace (wireguard-go runs there). */
function processes(h: LabHost): string[] {
  const pids = execFileSync("ip", ["netns", "pids", h.netns], { encoding: "utf8" }).split("\n").filter(Boolean);
  const out: string[] = [];
  for (const pid of pids) {
    try {
      out.push(fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean).join(" "));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** The LAN service's answer to the client on tcp 5000 and udp 6000, retried while the tunnel's handshake completes. */
async function traffic(seconds = 15): Promise<string[]> {
  let answers: string[] = [];
  for (const deadline = Date.now() + seconds * 1000; ; ) {
    answers = [(await askTcp(lab, 5000)).answer, (await askUdp(lab, 6000)).answer];
    if (answers.every((a) => a.endsWith(`saw ${CLIENT}`)) || Date.now() > deadline) return answers;
    await sleep(500);
  }
}

const WORKS = [`tcp/5000 saw ${CLIENT}`, `udp/6000 saw ${CLIENT}`];

/**
 * What a reboot loses on a host: natgate's nft tables, ip rules and routing table, the WireGuard
 * interface (wireguard-go exits with it), sysctls back to their values before natgate, conntrack,
 * and /run. /etc (keys, boot entries) stays.
 */
async function simulateReboot(h: LabHost, ipForward: string): Promise<void> {
  await h.run(
    "for t in $(nft list tables | awk '$3 ~ /^natgate_/ { print $2 \":\" $3 }'); do nft delete table ${t%%:*} ${t#*:}; done;" +
      "while ip rule del priority 950 2>/dev/null; do :; done; while ip rule del priority 951 2>/dev/null; do :; done;" +
      "ip route flush table 8764 2>/dev/null;" +
      "ip link del wg0 2>/dev/null;" +
      `sysctl -qw net.ipv4.ip_forward=${ipForward};` +
      "conntrack -F 2>/dev/null; rm -rf /run/natgate /run/wireguard; true",
  );
  for (let k = 0; k < 50 && processes(h).includes("wireguard-go wg0"); k++) await sleep(100);
  assert.ok(!processes(h).includes("wireguard-go wg0"), `${h.name}: wireguard-go did not exit with its interface`);
  assert.doesNotMatch(await h.run("nft list tables; ip rule; ip -br link"), /natgate_|lookup 8764|wg0/, `${h.name} still has natgate's state`);
}

/** A `logger` for the host's PATH that keeps the messages (the lab has no syslog), and what it kept. */
async function fakeLogger(h: LabHost): Promise<{ path: string; lines(): Promise<string[]>; remove(): Promise<void> }> {
  const bin = `/tmp/${lab.prefix}-fakebin-${h.name}`;
  // logger's last argument is the message; the fake keeps it next to itself
  await h.run(`rm -rf ${bin} && mkdir -p ${bin} && cat > ${bin}/logger <<'EOF'\n#!/bin/sh\nfor a in "$@"; do m=$a; done\nprintf '%s\\n' "$m" >> "\${0%/*}/syslog"\nEOF\nchmod +x ${bin}/logger`);
  return {
    path: `${bin}:$PATH`,
    lines: async () => (await h.exec(`cat ${bin}/syslog`)).stdout.split("\n").filter(Boolean),
    remove: async () => void (await h.run(`rm -rf ${bin}`)),
  };
}

/** Runs the boot runner as the init system would, as root on the host. */
async function boot(h: LabHost): Promise<{ code: number; ms: number; log: string[] }> {
  const logger = await fakeLogger(h);
  const t = Date.now();
  const r = await h.exec(`PATH=${logger.path} sh /etc/natgate/boot.sh`, { timeoutMs: 120_000 });
  const ms = Date.now() - t;
  const log = await logger.lines();
  await logger.remove();
  assert.equal(r.stderr, "", `${h.name}: boot.sh logs through logger, not stderr`);
  return { code: r.code, ms, log };
}

const ls = async (h: LabHost, dir: string) => (await h.run(`ls ${dir} 2>/dev/null; true`)).split("\n").filter(Boolean);

describe("boot persistence (lab: the seed over WireGuard survives a simulated reboot of both hosts)", function () {
  this.timeout(180_000);

  const vpsConn = connectionOf(vps);
  const routerConn = connectionOf(router);
  const initial: Record<string, string> = {};
  const ipForward: Record<string, string> = {};
  let services: LabProcess[] = [];
  const res: Record<string, Res> = {};
  let releaseLib: (() => Promise<void>) | undefined;

  const inputs: [string, string, Props][] = [
    ["tunnel", "Tunnel", { name: "home", listener: { connection: vpsConn, address: "10.10.10.1/24" }, dialer: { connection: routerConn, address: "10.10.10.2/24" } }],
    ["routes", "PolicyRouteTable", { connection: routerConn, name: "home", routes: [{ to: "default", via: "10.10.10.1", dev: "wg0" }, { to: "192.168.1.0/24", dev: "br-lan" }] }],
    ["ret", "ConnmarkReturnPath", { connection: routerConn, name: "home", tunnelInterface: "wg0", localSource: "10.10.10.2" }],
    ["routerFwd", "DnatRule", { connection: routerConn, name: "fwd", protocol: "both", ports: "5000-6000", inInterface: "wg0", toAddress: "192.168.1.99" }],
    ["vpsFwd", "DnatRule", { connection: vpsConn, name: "fwd", protocol: "both", ports: "5000-6000", destination: PUBLIC, toAddress: "10.10.10.2" }],
    ["vpsSsh", "DnatRule", { connection: vpsConn, name: "ssh", ports: 2222, destination: PUBLIC, toAddress: "10.10.10.2", toPorts: 22 }],
  ];

  /** Every resource reads back in sync: no drift, and (Tunnel) no change for diff. */
  async function assertNoDrift(): Promise<void> {
    for (const [k] of inputs) {
      const r = await refresh(res[k]!);
      if (k === "tunnel") assert.equal(r.changes, false, `tunnel: diff sees a change after refresh:\n${[...r.props.renderedListener, ...r.props.renderedDialer].join("\n")}`);
      else assert.deepEqual(r.props.drift, [], `${k} drift`);
    }
  }

  before(async () => {
    for (const h of [vps, router]) {
      initial[h.name] = await snapshotHost(h);
      ipForward[h.name] = (await h.run("sysctl -n net.ipv4.ip_forward")).trim();
    }
    services = await startLanServices(lab);
  });

  after(async () => {
    await stopAll(services);
    // Leave no natgate state (nor the fakes) behind for the next test file, whatever failed above.
    await vps.exec("rmdir /run/systemd/system /run/systemd 2>/dev/null; rm -f /etc/openwrt_release /etc/rc.common");
    await router.exec("rm -f /etc/openwrt_release /etc/rc.common; nft delete table inet fw4 2>/dev/null");
    await router.exec("sed -i '/ vps\\.lab\\.test$/d' /etc/hosts; [ ! -f /etc/resolv.conf.natgate-test ] || mv /etc/resolv.conf.natgate-test /etc/resolv.conf");
    for (const [k, kind, news] of [...inputs].reverse()) {
      await providers[kind]!.delete!(res[k]?.id ?? "", res[k]?.outs ?? (await check(kind, news))).catch((e) => console.error(`cleanup of ${k}: ${(e as Error).message}`));
    }
    await releaseLib?.();
    await closeAll();
    // The dead-man switches armed by the route and rule changes sleep out their 30 s after being
    // cancelled: let them end here, so the next file's process snapshots do not see them go.
    for (let k = 0; k < 350 && [vps, router].some((h) => processes(h).includes("sleep 30")); k++) await sleep(100);
  });

  it("creates the seed over WireGuard; each resource leaves a boot entry, the first one the runner (the lab has no init system)", async () => {
    for (const [k, kind, news] of inputs) res[k] = await create(kind, news);
    assert.deepEqual(await ls(router, "/etc/natgate/boot.d"), ["dnat-fwd.sh", "ret-home.sh", "routes-8764.sh", "tunnel-wg0.sh"]);
    assert.deepEqual(await ls(vps, "/etc/natgate/boot.d"), ["dnat-fwd.sh", "dnat-ssh.sh", "tunnel-wg0.sh"]);
    for (const h of [vps, router]) {
      assert.deepEqual(await ls(h, "/etc/natgate"), ["boot.d", "boot.sh", "claims", "wg"], h.name);
      assert.equal(await h.run("stat -c '%n %a' /etc/natgate /etc/natgate/boot.d /etc/natgate/boot.sh /etc/natgate/boot.d/dnat-fwd.sh /etc/natgate/claims"),
        "/etc/natgate 700\n/etc/natgate/boot.d 700\n/etc/natgate/boot.sh 700\n/etc/natgate/boot.d/dnat-fwd.sh 600\n/etc/natgate/claims 700\n", h.name);
      assert.equal((await h.run(`find /etc/systemd/system/natgate.service /etc/init.d/natgate /etc/rc.d /etc/hotplug.d /lib/upgrade 2>/dev/null; true`)).trim(), "", `${h.name}: no init hooks without an init system`);
    }
    for (const k of ["routes", "ret", "routerFwd", "vpsFwd", "vpsSsh"]) {
      assert.equal(res[k]!.outs.boot, "none", k);
      assert.equal(res[k]!.outs.bootNote, "no init system detected: run /etc/natgate/boot.sh at boot", k);
    }
    assert.equal(res.tunnel!.outs.listenerBoot, "none");
    assert.equal(res.tunnel!.outs.dialerBoot, "none");
    assert.equal(res.tunnel!.outs.renderedDialer.at(-1), "# at boot: /etc/natgate/boot.sh runs /etc/natgate/boot.d/tunnel-wg0.sh");

    // An entry is `set -- <key=value record>` and the apply script itself.
    const dnat = await router.run("cat /etc/natgate/boot.d/dnat-fwd.sh");
    assert.match(dnat, /^#!\/bin\/sh\n# natgate boot entry: DnatRule fwd\.\n#[^\n]*\nset -- 'boot_accepts=' 'comment=natgate:fwd' 'entry=dnat-fwd\.sh' /);
    assert.match(dnat, / 'nft=add table ip natgate_dnat_fwd\ndelete table ip natgate_dnat_fwd\n/);
    assert.match(dnat, / 'owner=dnat_fwd' 'table=natgate_dnat_fwd'\n/);
    assert.match(dnat, /\nng_lock\nfw_facts >\/dev\/null\nipt_sync "\$A_fwd_del" "\$A_fwd_add" \|\| exit 1\n/);
    // The tunnel's: the peer's public key, never a private key.
    const dialer = await router.run("cat /etc/natgate/boot.d/tunnel-wg0.sh");
    assert.ok(dialer.includes(`wg set wg0 peer ${res.tunnel!.outs.listenerPublicKey} endpoint 198.51.100.1:51820 persistent-keepalive 25 allowed-ips 0.0.0.0/0`));
    for (const h of [vps, router]) {
      const key = (await h.run("cat /etc/natgate/wg/wg0.key")).trim();
      assert.equal((await h.exec(`grep -rqF '${key}' /etc/natgate/boot.d /etc/natgate/boot.sh`)).code, 1, `${h.name}: a private key is in a boot entry`);
    }
    assert.deepEqual(await traffic(), WORKS);
  });

  it("a simulated reboot of both hosts breaks the path; the providers see it", async () => {
    await simulateReboot(vps, ipForward.vps!);
    await simulateReboot(router, ipForward.router!);
    assert.deepEqual(await traffic(1), ["", ""]);
    assert.ok((await refresh(res.routerFwd!)).props.drift.some((d: string) => d.startsWith("missing nft")));
    assert.equal((await refresh(res.tunnel!)).changes, true);
  });

  it("what the init system runs (/etc/natgate/boot.sh) brings it all back: the LAN service sees the client's address, no drift", async () => {
    const v = await boot(vps);
    const r = await boot(router);
    console.log(`      boot.sh: VPS ${v.ms} ms, router ${r.ms} ms (${r.log.length} log lines)`);
    assert.equal(v.code, 0, v.log.join("\n"));
    assert.equal(r.code, 0, r.log.join("\n"));
    // In the runner's order: tunnels, route tables, return paths, DNAT.
    assert.deepEqual(r.log.filter((l) => / applied$/.test(l)), [
      "tunnel-wg0.sh: applied",
      "routes-8764.sh: applied",
      "ret-home.sh: applied",
      "dnat-fwd.sh: applied",
    ]);
    assert.equal(r.log.at(-1), "boot entries: 4 run, 0 failed");
    assert.ok(r.log.includes("tunnel-wg0.sh: [#] ip link show dev wg0 >/dev/null 2>&1 || natgate_wg_link_add wg0"), r.log.join("\n"));
    assert.deepEqual(await traffic(), WORKS);
    await assertNoDrift();
    // The previous values were recorded again at boot: a later delete restores them.
    assert.deepEqual(res.vpsFwd!.outs.sysctlPrevious, { "net.ipv4.ip_forward": ipForward.vps });
    for (const h of [vps, router]) assert.equal(await h.exec("test -e /run/natgate/lock").then((x) => x.code), 1, "the runner's lock is gone");
  });

  it("running boot.sh again (an interface coming up) changes nothing", async () => {
    const before = [await snapshotHost(vps), await snapshotHost(router)];
    const ids = await router.run("cat /sys/class/net/wg0/ifindex");
    assert.equal((await boot(vps)).code, 0);
    assert.equal((await boot(router)).code, 0);
    assert.deepEqual(snapshotDiff(before[0]!, await snapshotHost(vps)), []);
    assert.deepEqual(snapshotDiff(before[1]!, await snapshotHost(router)), []);
    assert.equal(await router.run("cat /sys/class/net/wg0/ifindex"), ids, "the interface was kept, not recreated");
    assert.deepEqual(await traffic(), WORKS);
  });

  // What spares each entry written the runner's ~40 processes: boot_runner_current finds the
  // runner as natgate writes it, and only then.
  const runnerCurrent = async (h: LabHost) =>
    (await h.run("sh", { input: `${BOOT_SH}${WRITE_FUNCTIONS}\nboot_runner_current "$(boot_init)" && echo current || echo stale\n` })).trim();

  it("the runner as natgate wrote it is current (the next entry written skips its install); a file changed by hand is not", async () => {
    assert.equal(await runnerCurrent(router), "current");
    await router.run("cp -p /etc/natgate/boot.sh /root/boot.sh.keep && echo '# by hand' >> /etc/natgate/boot.sh");
    try {
      assert.equal(await runnerCurrent(router), "stale");
    } finally {
      await router.run("cp -p /root/boot.sh.keep /etc/natgate/boot.sh && rm /root/boot.sh.keep");
    }
    assert.equal(await runnerCurrent(router), "current");
  });

  it("boot.sh runs one at a time under the host lock: three started together, and one finding a dead holder's lock", async () => {
    const logger = await fakeLogger(router);
    try {
      // a holder killed while it held the lock (its token names a process that has ended)
      const dead = (await router.run("sh -c 'echo $$'")).trim();
      await router.run(`mkdir -p /run/natgate && echo ${dead}.1.x > /run/natgate/lock.${dead}.1.x && ln /run/natgate/lock.${dead}.1.x /run/natgate/lock`);
      const runs = await Promise.all([1, 2, 3].map(() => router.exec(`PATH=${logger.path} sh /etc/natgate/boot.sh`, { timeoutMs: 60_000 })));
      for (const r of runs) assert.equal(r.code, 0, r.stderr);
      const log = await logger.lines();
      // each run's lines stand together: its entries, then its summary, before the next run's first
      const summaries = log.map((l, k) => (l.startsWith("boot entries:") ? k : -1)).filter((k) => k >= 0);
      assert.equal(summaries.length, 3, log.join("\n"));
      for (const [n, end] of summaries.entries()) {
        const start = n === 0 ? 0 : summaries[n - 1]! + 1;
        assert.deepEqual(log.slice(start, end + 1).filter((l) => / applied$/.test(l)), ["tunnel-wg0.sh: applied", "routes-8764.sh: applied", "ret-home.sh: applied", "dnat-fwd.sh: applied"], log.join("\n"));
      }
      assert.equal((await router.exec("test -e /run/natgate/lock")).code, 1, "the lock is gone after the runs");
      assert.deepEqual(await traffic(), WORKS);
    } finally {
      await router.run("rm -f /run/natgate/lock /run/natgate/lock.* /run/natgate/stale.*");
      await logger.remove();
    }
  });

  it("a failing entry is logged and the others still run; the exit status says so", async () => {
    await router.run("printf 'echo cannot do this >&2\\nexit 3\\n' > /etc/natgate/boot.d/routes-9999.sh");
    try {
      const r = await boot(router);
      assert.equal(r.code, 1);
      assert.ok(r.log.includes("routes-9999.sh: cannot do this"), r.log.join("\n"));
      assert.ok(r.log.includes("routes-9999.sh: FAILED (exit 3); the other entries still run"), r.log.join("\n"));
      assert.ok(r.log.includes("dnat-fwd.sh: applied"), r.log.join("\n"));
      assert.equal(r.log.at(-1), "boot entries: 5 run, 1 failed");
    } finally {
      await router.run("rm -f /etc/natgate/boot.d/routes-9999.sh");
    }
  });

  it("an accept in another firewall's forward chain (fw4) is put back at boot, once, even when run again", async () => {
    const fw4 =
      "nft -f - <<'EOF'\ntable inet fw4 {\n  chain forward {\n    type filter hook forward priority filter; policy drop;\n" +
      "    ct state established,related accept\n    iifname \"br-lan\" accept\n  }\n}\nEOF";
    await router.run(fw4);
    assert.equal((await refresh(res.routerFwd!)).props.drift.some((d: string) => d.includes("is out of date")), true, "the entry now needs the accept");
    assert.equal(await up(res.routerFwd!), true);
    assert.match(await router.run("grep -c 'insert rule inet fw4 forward' /etc/natgate/boot.d/dnat-fwd.sh"), /^2$/m);
    assert.deepEqual(await traffic(), WORKS);
    // fw4 rebuilds its table (a reload or a reboot): natgate's accept is gone, the path with it.
    await router.run("nft delete table inet fw4; " + fw4);
    assert.deepEqual(await traffic(1), ["", ""]);
    const accepts = async () => (await router.run("nft list chain inet fw4 forward")).split("\n").filter((l) => l.includes('comment "natgate:fwd"')).length;
    for (let k = 0; k < 2; k++) {
      assert.equal((await boot(router)).code, 0);
      assert.equal(await accepts(), 2, `run ${k + 1}: one accept per protocol`);
    }
    assert.deepEqual(await traffic(), WORKS);
    assert.deepEqual((await refresh(res.routerFwd!)).props.drift, []);
    await router.run("nft delete table inet fw4");
    assert.deepEqual((await refresh(res.routerFwd!)).props.drift, ["boot entry /etc/natgate/boot.d/dnat-fwd.sh is out of date"]);
    assert.equal(await up(res.routerFwd!), true, "no drop any more: the entry loses the accept");
    assert.equal((await router.exec("grep -q 'insert rule inet fw4' /etc/natgate/boot.d/dnat-fwd.sh")).code, 1);
  });

  it("on a systemd host: natgate.service, enabled by its multi-user.target.wants link", async () => {
    assert.equal((await vps.exec("test -e /run/systemd")).code, 1, "the lab's private /run has no /run/systemd");
    await vps.run("mkdir -p /run/systemd/system");
    const r = await refresh(res.vpsFwd!);
    assert.ok(r.props.drift.includes("boot runner: /etc/systemd/system/natgate.service is missing"), JSON.stringify(r.props.drift));
    assert.equal(await up(res.vpsFwd!), true);
    assert.equal(res.vpsFwd!.outs.boot, "systemd");
    assert.equal(res.vpsFwd!.outs.bootNote, "natgate.service (systemd) runs /etc/natgate/boot.sh at boot");
    const unit = await vps.run("cat /etc/systemd/system/natgate.service");
    for (const line of ["Type=oneshot", "RemainAfterExit=yes", "Wants=network-online.target", "ExecStart=/bin/sh /etc/natgate/boot.sh", "WantedBy=multi-user.target"]) {
      assert.ok(unit.split("\n").includes(line), `${line} in:\n${unit}`);
    }
    assert.match(unit, /^After=network-online\.target/m);
    assert.equal((await vps.run("readlink /etc/systemd/system/multi-user.target.wants/natgate.service")).trim(), "/etc/systemd/system/natgate.service");
    assert.equal(await runnerCurrent(vps), "current", "systemd's runner as written is current");
    // One runner per host: the other VPS resources read it as theirs too.
    assert.deepEqual((await refresh(res.vpsSsh!)).props.drift, []);
    assert.equal(res.vpsSsh!.outs.boot, "systemd");
    assert.equal((await refresh(res.tunnel!)).props.listenerBoot, "systemd");
  });

  it("on an OpenWrt host: /etc/init.d/natgate (START=99) enabled in rc.d, a hotplug script, kept by sysupgrade", async () => {
    releaseLib = await privateLib(lab, router, "persist");
    await router.run("touch /etc/openwrt_release");
    assert.equal(await up(res.routes!), false, "up without refresh sees nothing");
    assert.equal((await refresh(res.routes!)).props.drift.length > 0, true);
    assert.equal(await up(res.routes!), true);
    assert.equal(res.routes!.outs.boot, "procd");
    const init = await router.run("cat /etc/init.d/natgate");
    assert.match(init, /^#!\/bin\/sh \/etc\/rc\.common\n/);
    assert.match(init, /^START=99$/m);
    assert.match(init, /^start\(\) \{\n\t\/bin\/sh \/etc\/natgate\/boot\.sh\n\}$/m);
    assert.equal((await router.run("stat -c %a /etc/init.d/natgate")).trim(), "755");
    assert.equal((await router.run("readlink /etc/rc.d/S99natgate")).trim(), "../init.d/natgate");
    assert.match(await router.run("cat /etc/hotplug.d/iface/99-natgate"), /\ncase \$ACTION in ifup\|ifupdate\) ;; \*\) exit 0 ;; esac\n\/bin\/sh \/etc\/natgate\/boot\.sh /);
    assert.equal(
      await router.run("cat /lib/upgrade/keep.d/natgate"),
      "/etc/natgate/\n/usr/share/nftables.d/chain-pre/*/natgate-*.nft\n/usr/share/nftables.d/ruleset-post/natgate_*.nft\n",
    );

    // A reboot of the router, then procd: rc.common sources the init script and calls start.
    await simulateReboot(router, ipForward.router!);
    assert.deepEqual(await traffic(1), ["", ""]);
    await router.run("printf '#!/bin/sh\\n. \"$1\"\\n\"$2\"\\n' > /etc/rc.common");
    const t = Date.now();
    await router.run("sh /etc/rc.common /etc/init.d/natgate start");
    console.log(`      /etc/init.d/natgate start on the router: ${Date.now() - t} ms`);
    assert.deepEqual(await traffic(), WORKS);
    // The WAN comes up again: hotplug-call sources the script in a subshell; boot.sh runs in the background.
    const before = await snapshotHost(router);
    const logger = await fakeLogger(router);
    await router.run(`ACTION=ifup INTERFACE=wan PATH=${logger.path} sh -c '. /etc/hotplug.d/iface/99-natgate'`);
    let log: string[] = [];
    for (let k = 0; k < 100 && !log.includes("boot entries: 4 run, 0 failed"); k++) {
      await sleep(100);
      log = await logger.lines();
    }
    await logger.remove();
    assert.ok(log.includes("boot entries: 4 run, 0 failed"), `boot.sh did not run from the hotplug script:\n${log.join("\n")}`);
    assert.deepEqual(snapshotDiff(before, await snapshotHost(router)), []);
    // An interface going down runs nothing.
    const quiet = await fakeLogger(router);
    await router.run(`ACTION=ifdown INTERFACE=wan PATH=${quiet.path} sh -c '. /etc/hotplug.d/iface/99-natgate'`);
    await sleep(1000);
    assert.deepEqual(await quiet.lines(), []);
    await quiet.remove();
    await router.run("rm -f /etc/rc.common");
    await assertNoDrift();
  });

  it("an endpoint name that does not resolve at boot fails only the tunnel's peer; the next run (the WAN is up) adds it", async () => {
    const news = {
      interfaceName: "ng1",
      listenPort: 51821,
      listener: { connection: vpsConn, address: "10.20.20.1/24", endpoint: "vps.lab.test" },
      dialer: { connection: routerConn, address: "10.20.20.2/24" },
    };
    await router.run("echo '198.51.100.1 vps.lab.test' >> /etc/hosts && cp /etc/resolv.conf /etc/resolv.conf.natgate-test");
    const named = await create("Tunnel", news);
    try {
      // The router reboots, and the name does not resolve yet: its resolver (dnsmasq on OpenWrt)
      // answers at once but has no upstream, a temporary failure that wg retries.
      await router.run("ip link del ng1 && sed -i '/ vps\\.lab\\.test$/d' /etc/hosts && echo 'nameserver 127.0.0.1' > /etc/resolv.conf");
      for (let k = 0; k < 50 && processes(router).includes("wireguard-go ng1"); k++) await sleep(100);
      const first = await boot(router);
      assert.equal(first.code, 1);
      assert.ok(first.log.some((l) => /^tunnel-ng1\.sh: FAILED/.test(l)), first.log.join("\n"));
      assert.deepEqual(first.log.filter((l) => / applied$/.test(l)), ["tunnel-wg0.sh: applied", "routes-8764.sh: applied", "ret-home.sh: applied", "dnat-fwd.sh: applied"]);
      const link = JSON.parse(await router.run("ip -j addr show dev ng1"))[0];
      assert.ok(link.flags.includes("UP") && link.addr_info.some((a: { local: string }) => a.local === "10.20.20.2"), JSON.stringify(link));
      assert.equal((await router.run("wg show ng1 peers")).trim(), "", "no peer without its endpoint");
      console.log(`      boot.sh with the endpoint name not resolving: ${first.ms} ms`);
      await router.run("echo '198.51.100.1 vps.lab.test' >> /etc/hosts");
      assert.equal((await boot(router)).code, 0);
      let up = false;
      for (let k = 0; k < 20 && !up; k++) up = (await router.exec("ping -c 1 -W 1 10.20.20.1")).code === 0;
      assert.ok(up, "router -> 10.20.20.1 through ng1 after the second run");
      assert.equal((await refresh(named)).changes, false);
    } finally {
      await destroy(named);
      await router.run("sed -i '/ vps\\.lab\\.test$/d' /etc/hosts && mv /etc/resolv.conf.natgate-test /etc/resolv.conf");
    }
  });

  it("persist: false writes no boot entry; switching it off removes the entry, on puts it back", async () => {
    const off = await create("DnatRule", { ...inputs[5]![2], name: "nopersist", ports: 2223, persist: false });
    try {
      assert.equal(off.outs.boot, "off");
      assert.ok(!off.outs.rendered.some((l: string) => l.includes("at boot")));
      assert.ok(!(await ls(vps, "/etc/natgate/boot.d")).includes("dnat-nopersist.sh"));
    } finally {
      await destroy(off);
    }
    assert.equal(await up(res.vpsSsh!, { ...res.vpsSsh!.news, persist: false }), true);
    assert.deepEqual(await ls(vps, "/etc/natgate/boot.d"), ["dnat-fwd.sh", "tunnel-wg0.sh"]);
    assert.equal(res.vpsSsh!.outs.boot, "off");
    assert.deepEqual((await refresh(res.vpsSsh!)).props.drift, []);
    assert.equal(await up(res.vpsSsh!, { ...res.vpsSsh!.news, persist: true }), true);
    assert.deepEqual(await ls(vps, "/etc/natgate/boot.d"), ["dnat-fwd.sh", "dnat-ssh.sh", "tunnel-wg0.sh"]);
  });

  it("delete removes the entries, and with the last one the runner and every hook; both hosts are as before", async () => {
    for (const [k] of [...inputs].reverse()) {
      await destroy(res[k]!);
      if (k === "routerFwd") assert.ok((await ls(router, "/etc/natgate")).includes("boot.sh"), "the runner stays while entries remain");
    }
    await vps.run("rmdir /run/systemd/system /run/systemd; rm -f /etc/openwrt_release");
    await router.run("rm -f /etc/openwrt_release");
    for (const h of [vps, router]) {
      const diff = snapshotDiff(initial[h.name]!, await snapshotHost(h));
      assert.deepEqual(diff, [], `${h.name} differs from before:\n${diff.join("\n")}`);
    }
    assert.equal((await router.exec("test -e /lib/upgrade")).code, 1, "the directories made for keep.d are gone");
    await releaseLib?.();
    releaseLib = undefined;
    assert.deepEqual(await traffic(1), ["", ""]);
  });
});
