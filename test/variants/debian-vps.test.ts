// A real Debian 12 VPS booted with systemd (test/lab/debianVps.ts): the seed-shaped PortForward,
// then what the VPS's own software does by itself (nftables.service and systemd-networkd
// restarts, ufw reload / disable + enable / restart, a real `systemctl reboot`), each followed by
// traffic checks and nothing else: natgate is not called again.
// Run: node_modules/.bin/tsx test/lab/cli.ts run -- node_modules/.bin/mocha test/variants/debian-vps.test.ts
import { strict as assert } from "assert";
import { execFileSync } from "node:child_process";
import { providers } from "../../provider";
import { DEADMAN_SECONDS } from "../../provider/backends/iproute";
import { closeAll, runScript } from "../../provider/ssh";
import { getLab, type Lab, type LabProcess } from "../lab";
import { bootDebianVps, restoreLabVps, type DebianVps } from "../lab/debianVps";
import type { Stack } from "../engine/stack";
import {
  askTcp,
  cleanup,
  connectionTo,
  driftAfterRefresh,
  lanServices,
  portForwardProgram,
  refreshChanges,
  refreshDrift,
  secondsUntilBack,
  seedLikeArgs,
  seedTraffic,
  stopAll,
  timedDestroy,
  timedUp,
  variantStack,
} from "./variantLab";

describe("variants: a real Debian 12 VPS with systemd", function () {
  this.timeout(400_000);
  let lab: Lab;
  let vps: DebianVps | undefined;
  let stack: Stack | undefined;
  let services: LabProcess[] = [];
  const backIn: Array<[string, number]> = [];

  before(async () => {
    lab = getLab();
    vps = await bootDebianVps(lab);
    services = await lanServices(lab, [["tcp", 5000], ["udp", 6000]]);
  });
  after(async () => {
    if (backIn.length) console.log(`      seconds until the path was back:\n${backIn.map(([a, s]) => `        ${a.padEnd(44)} ${s.toFixed(2)}`).join("\n")}`);
    await cleanup(stack);
    await stopAll(services);
    if (vps) await restoreLabVps(lab);
  });

  /**
   * `systemctl reboot` of the VPS, then the path must be back within 10 s. The VPS's WireGuard
   * comes back without the session. Left alone, the router (behind NAT) would start a new
   * handshake only once its session is older than WireGuard's REKEY_AFTER_TIME (120 s);
   * natgate.service kept the router's endpoint at shutdown and the listener dials it at boot.
   */
  async function rebootsBackWithin10s(title: string): Promise<void> {
    const t = Date.now();
    await vps!.reboot();
    const s = await secondsUntilBack(lab, 200_000);
    backIn.push([`${title} (from the reboot command)`, (Date.now() - t) / 1000]);
    if (!Number.isFinite(s)) {
      const why = await vps!.exec(
        "systemctl status --no-pager natgate.service; journalctl --no-pager -b -t natgate; nft list tables; wg show; ip -br addr; ip rule",
      );
      assert.fail(`the path did not come back within 200 s of the reboot; on the VPS:\n${why.stdout}${why.stderr}`);
    }
    assert.ok(s < 10, `the path was back ${s} s after the reboot, not within 10 s (the listener did not dial the endpoint kept at shutdown)`);
  }

  /** Runs a manager's own command on the VPS, then measures how long until the path is back, and checks it fully. */
  async function survives(title: string, cmd: string): Promise<void> {
    await vps!.run(cmd, { timeoutMs: 60_000 });
    const s = await secondsUntilBack(lab);
    backIn.push([title, s]);
    assert.ok(s <= 5, `the path was not back within 5 s after ${title} (${s} s)`);
    await seedTraffic({ lab });
  }

  describe("ufw off at up", () => {
    it("up: the path works; natgate.service is enabled, ordered after network-online, hooked to the services that wipe its state", async () => {
      stack = variantStack();
      await timedUp("debian vps", stack, portForwardProgram("home", seedLikeArgs(lab)));
      await seedTraffic({ lab });
      assert.equal((await vps!.run("systemctl is-enabled natgate.service")).trim(), "enabled");
      assert.match(await vps!.run("systemctl show -p After natgate.service"), /network-online\.target/);
      for (const svc of ["nftables.service", "systemd-networkd.service", "ufw.service"]) {
        assert.match(await vps!.run(`systemctl show -p DropInPaths ${svc}`), new RegExp(`/etc/systemd/system/${svc}\\.d/natgate\\.conf`), svc);
      }
      assert.deepEqual(await refreshChanges(stack), {});
    });

    it("systemctl restart nftables (its /etc/nftables.conf flushes the ruleset): back within 5 s; the tunnel's wireguard-go is not restarted", async () => {
      const wgPid = async () => (await vps!.run("pidof wireguard-go || true")).trim();
      const before = await wgPid();
      await survives("systemctl restart nftables", "systemctl restart nftables");
      assert.equal(await wgPid(), before, "natgate.service's restart left wireguard-go running");
      assert.deepEqual(await refreshChanges(stack!), {});
    });

    it("systemctl stop nftables (its ExecStop flushes the ruleset), then start: back within 5 s after each", async () => {
      assert.match(await vps!.run("systemctl show -p ExecStop nftables.service"), /flush ruleset/, "Debian's unit flushes on stop");
      await survives("systemctl stop nftables", "systemctl stop nftables");
      await survives("systemctl start nftables", "systemctl start nftables");
      assert.deepEqual(await refreshChanges(stack!), {});
    });

    it("systemctl restart systemd-networkd (default ManageForeign*): back within 5 s", async () => {
      await survives("systemctl restart systemd-networkd", "systemctl restart systemd-networkd");
      assert.deepEqual(await refreshChanges(stack!), {});
    });

    it("ufw enabled after up (its CLI, which starts no systemd unit): natgate-ufw.path sees ufw.conf change and re-runs natgate, which puts the accept where ufw's drop now is: back within 5 s", async () => {
      assert.equal((await vps!.run("systemctl is-active natgate-ufw.path")).trim(), "active");
      await survives("ufw enable after up", "ufw allow 22/tcp && ufw allow 51820/udp && ufw --force enable");
      const forward = await vps!.run("iptables -S FORWARD");
      assert.match(forward, /^-P FORWARD DROP$/m, "ufw's FORWARD DROP is in place");
      assert.match(forward, /natgate:/, "natgate's accept was put where the drop is");
      // The accept is what the rule wants on this host now: refresh lists it (forwardAccept), no drift.
      assert.deepEqual(await driftAfterRefresh(stack!), []);
      await survives("systemctl restart ufw (enabled after up)", "systemctl restart ufw");
      assert.deepEqual(await driftAfterRefresh(stack!), []);
    });

    it("refresh says by what when nothing put the path back: ufw enabled with natgate's path unit stopped", async () => {
      // ufw off, natgate's accept taken out by hand (nothing needs it while ufw is off), then ufw on.
      await vps!.run("systemctl stop natgate-ufw.path && ufw --force disable");
      await vps!.run("iptables -L FORWARD -n --line-numbers | awk '/natgate:/ { print $1 }' | sort -rn | while read -r n; do iptables -D FORWARD \"$n\"; done");
      assert.doesNotMatch(await vps!.run("iptables -S FORWARD"), /natgate:/);
      await seedTraffic({ lab });
      await vps!.run("ufw --force enable");
      assert.equal((await askTcp(lab, 5000)).answer, "", "ufw's FORWARD DROP cuts the path");
      const drift = Object.values(await refreshDrift(stack!)).flat();
      assert.ok(drift.some((d) => d.startsWith("missing iptables accept")), JSON.stringify(drift));
      assert.ok(drift.some((d) => /^probably by: .*ufw was enabled/.test(d)), `refresh says by what: ${JSON.stringify(drift)}`);
      await vps!.run("systemctl start natgate-ufw.path");
      await survives("systemctl restart ufw (path unit stopped before)", "systemctl restart ufw");
      assert.deepEqual(await driftAfterRefresh(stack!), []);
    });

    it("systemctl reboot (nspawn exits 133 and starts again, ufw on): natgate.service restores the path, refresh shows no drift", async () => {
      await rebootsBackWithin10s("systemctl reboot");
      await seedTraffic({ lab });
      assert.equal((await vps!.run("systemctl is-active natgate.service")).trim(), "active");
      assert.deepEqual(await refreshChanges(stack!), {});
    });

    it("destroy leaves no natgate unit, drop-in or entry on the VPS", async () => {
      await timedDestroy("debian vps", stack!);
      await stack!.close();
      stack = undefined;
      assert.equal((await vps!.run("ls /etc/natgate /etc/systemd/system/natgate.service /etc/systemd/system/nftables.service.d 2>&1; true")).includes("No such file"), true);
      assert.equal((await vps!.run("ls /etc/systemd/system/ | grep -c natgate; true")).trim(), "0", "no natgate unit file left");
      assert.notEqual((await vps!.run("systemctl is-active natgate-ufw.path; true")).trim(), "active");
      assert.doesNotMatch(await vps!.run("systemctl show -p DropInPaths nftables.service"), /natgate/);
      assert.doesNotMatch(await vps!.run("nft list tables"), /natgate_/);
      assert.doesNotMatch(await vps!.run("iptables -S"), /natgate/);
      await vps!.run("ufw --force disable");
    });
  });

  describe("with ufw enabled before up (FORWARD policy DROP, rp_filter=1 from its sysctl.conf)", () => {
    before(async () => {
      // As a user of ufw would: SSH and the tunnel's port allowed first.
      await vps!.run("ufw allow 22/tcp && ufw allow 51820/udp && ufw --force enable", { timeoutMs: 60_000 });
      assert.match(await vps!.run("iptables -S FORWARD"), /^-P FORWARD DROP$/m);
    });
    after(async () => void (await vps?.exec("ufw --force disable")));

    it("up: the accept goes into FORWARD; the path works", async () => {
      stack = variantStack();
      await timedUp("debian vps + ufw", stack, portForwardProgram("home", seedLikeArgs(lab)));
      assert.match(await vps!.run("iptables -S FORWARD"), /natgate:/);
      await seedTraffic({ lab });
    });

    for (const [title, cmd] of [
      ["ufw reload", "ufw reload"],
      ["ufw disable, then ufw enable", "ufw --force disable && ufw --force enable"],
      ["systemctl restart ufw", "systemctl restart ufw"],
    ] as const) {
      it(`${title}: the path works within 5 s, refresh shows no drift`, async () => {
        await survives(title, cmd);
        assert.match(await vps!.run("iptables -S FORWARD"), /^-P FORWARD DROP$/m, "ufw's policy is back");
        assert.deepEqual(await refreshChanges(stack!), {});
      });
    }

    it("destroy leaves ufw's rules as they were", async () => {
      await timedDestroy("debian vps + ufw", stack!);
      await stack!.close();
      stack = undefined;
      assert.doesNotMatch(await vps!.run("iptables -S"), /natgate/);
      assert.match(await vps!.run("ufw status"), /Status: active/);
    });
  });
  describe("Docker (Debian's docker.io: the real dockerd, its FORWARD DROP and DOCKER-USER)", () => {
    const iptables = async () => (await vps!.run("iptables -S; iptables -t nat -S")).split("\n").filter((l) => !/natgate/.test(l)).join("\n");
    let dockerRules = "";
    after(async () => void (await vps?.exec("systemctl disable --now docker.service docker.socket containerd.service")));

    it("up with Docker off, then Docker started (as when it is installed after natgate): dockerd's chains, the path keeps working", async () => {
      stack = variantStack();
      await timedUp("debian vps, docker later", stack, portForwardProgram("home", seedLikeArgs(lab)));
      await seedTraffic({ lab });
      assert.match(await vps!.run("systemctl show -p DropInPaths docker.service"), /\/etc\/systemd\/system\/docker\.service\.d\/natgate\.conf/);
      await survives("systemctl enable --now docker (after up)", "systemctl enable --now docker.service");
      // dockerd 20.10 sets FORWARD's policy to DROP only when it had to turn forwarding on itself;
      // natgate had, so the policy stays and no accept is needed.
      assert.match(await vps!.run("iptables -S FORWARD"), /^-A FORWARD -j DOCKER-USER$/m, "dockerd's own chains are there");
      assert.deepEqual(await driftAfterRefresh(stack), []);
    });

    it("dockerd turning forwarding on itself (ip_forward off when it starts, as at a boot where it is first) sets FORWARD DROP: natgate's accept is there within 5 s", async () => {
      await vps!.run("systemctl stop docker.service docker.socket && sysctl -qw net.ipv4.ip_forward=0");
      await survives("ip_forward off, then systemctl start docker", "systemctl start docker.service");
      const forward = await vps!.run("iptables -S FORWARD");
      assert.match(forward, /^-P FORWARD DROP$/m, "dockerd set FORWARD's policy to DROP");
      assert.match(forward, /natgate:/, "natgate put its accept where Docker's drop now is");
      assert.equal((await vps!.run("sysctl -n net.ipv4.ip_forward")).trim(), "1");
      assert.deepEqual(await driftAfterRefresh(stack!), []);
    });

    it("systemctl restart docker (dockerd re-inserts its jumps at the top of FORWARD): the path works within 5 s, refresh shows no drift", async () => {
      await survives("systemctl restart docker", "systemctl restart docker.service");
      assert.match(await vps!.run("iptables -S FORWARD"), /^-A FORWARD -j DOCKER-USER$/m);
      assert.deepEqual(await driftAfterRefresh(stack!), []);
    });

    it("systemctl reboot with Docker enabled: the path is back, refresh shows no drift", async () => {
      await rebootsBackWithin10s("systemctl reboot, docker enabled");
      assert.equal((await vps!.run("systemctl is-active docker.service")).trim(), "active");
      await seedTraffic({ lab });
      assert.deepEqual(await driftAfterRefresh(stack!), []);
    });

    it("destroy leaves Docker's rules as they were; up again with Docker running puts the accept in FORWARD at once", async () => {
      await timedDestroy("debian vps + docker", stack!);
      assert.doesNotMatch(await vps!.run("iptables -S; nft list tables"), /natgate/);
      // Docker first, as it leaves a host where it turned forwarding on itself: FORWARD DROP.
      await vps!.run("systemctl stop docker.service docker.socket && sysctl -qw net.ipv4.ip_forward=0 && systemctl start docker.service");
      assert.match(await vps!.run("iptables -S FORWARD"), /^-P FORWARD DROP$/m);
      dockerRules = await iptables();
      await timedUp("debian vps, docker first", stack!, portForwardProgram("home", seedLikeArgs(lab)));
      assert.match(await vps!.run("iptables -S FORWARD"), /natgate:/);
      await seedTraffic({ lab });
      await survives("systemctl restart docker (docker first)", "systemctl restart docker.service");
      await timedDestroy("debian vps + docker", stack!);
      await stack!.close();
      stack = undefined;
      assert.equal(await iptables(), dockerRules, "Docker's rules are untouched by natgate's up and destroy");
      assert.doesNotMatch(await vps!.run("iptables -S"), /natgate/);
    });
  });
  describe("the lockout guard on the real host", () => {
    // The services whose restart would change what reaches the VPS's sshd: natgate must never
    // start, reload or enable them (only their own start runs natgate again, never the reverse).
    const managers = "ufw.service nftables.service systemd-networkd.service docker.service firewalld.service";
    const started = async () => vps!.run(`systemctl show -p Id -p ActiveEnterTimestampMonotonic -p InvocationID ${managers}`);

    it("up, natgate.service's restart and destroy never start or reload the host's firewall; ufw (deny incoming, SSH allowed) keeps its rules", async () => {
      await vps!.run("ufw allow 22/tcp && ufw allow 51820/udp && ufw --force enable", { timeoutMs: 60_000 });
      const ufwBefore = await vps!.run("ufw status verbose");
      const before = await started();
      stack = variantStack();
      await timedUp("debian vps, lockout", stack, portForwardProgram("home", seedLikeArgs(lab)));
      await vps!.run("systemctl restart natgate.service");
      await seedTraffic({ lab });
      await timedDestroy("debian vps, lockout", stack);
      await stack.close();
      stack = undefined;
      assert.equal(await started(), before, "no manager service was started again by natgate");
      assert.equal(await vps!.run("ufw status verbose"), ufwBefore);
      await vps!.run("ufw --force disable");
    });

    it("a return path that sends the VPS's own SSH replies into the tunnel is undone by the dead-man switch within its bound, and SSH works", async () => {
      const connection = connectionTo(lab, "vps");
      execFileSync("ip", ["link", "add", "ngtun0", "netns", lab.hosts.vps.netns, "type", "veth", "peer", "name", "ngtun0", "netns", lab.hosts.router.netns]);
      try {
        await vps!.run("ip link set ngtun0 addrgenmode none && ip addr add 10.10.9.1/24 dev ngtun0 && ip link set ngtun0 up");
        // The other end is up with no address: nothing answers for 10.10.9.2, what goes there is lost.
        await lab.hosts.router.run("ip link set ngtun0 addrgenmode none && ip link set ngtun0 up");
        const snapshot = () => vps!.run("ip rule; ip -4 route show table all; nft -s list ruleset; ls -A /run/natgate 2>/dev/null; true");
        const initial = await snapshot();
        const routes = providers.PolicyRouteTable!;
        const ret = providers.ConnmarkReturnPath!;
        const t = (await routes.check!({}, { connection, name: "lock", table: 8765, routes: [{ to: "default", via: "10.10.9.2", dev: "ngtun0" }] })).inputs;
        const r = await routes.create(t);
        // localSource = the address the laptop logs in to: every reply of the VPS's sshd now goes into the tunnel.
        const c = (await ret.check!({}, { connection, name: "lock", tunnelInterface: "ngtun0", table: 8765, priority: 940, localSource: lab.hosts.vps.addr })).inputs;
        const t0 = Date.now();
        await assert.rejects(ret.create(c), (e: Error) => /dead-man switch/.test(e.message));
        const s = (Date.now() - t0) / 1000;
        backIn.push(["dead-man rollback reported (bound 30 s + login)", s]);
        assert.ok(s <= DEADMAN_SECONDS + 20, `rolled back and reported after ${s} s`);
        assert.doesNotMatch((await runScript(connection as never, "ip rule", [], { fresh: true })).stdout, /^94[01]:/m, "the rules that cut SSH are gone");
        await ret.delete!("x/ConnmarkReturnPath/lock", c);
        await routes.delete!(r.id, r.outs);
        assert.equal(await snapshot(), initial);
      } finally {
        await closeAll();
        await vps!.exec("ip link del ngtun0");
      }
    });
  });
});
