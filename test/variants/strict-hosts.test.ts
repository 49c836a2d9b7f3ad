// Hosts stricter than the lab's defaults, as real ones are: ufw's strict rp_filter, a FORWARD
// policy of DROP (ufw, Docker) on both hosts, OpenWrt's BusyBox shell and applets on the router,
// and hosts missing a tool natgate needs. Each through the PortForward component (or the seed
// example itself) driven by the stack driver against the lab.
// Run: node_modules/.bin/tsx test/lab/cli.ts run -- node_modules/.bin/mocha test/variants/strict-hosts.test.ts
import { strict as assert } from "assert";
import * as fs from "fs";
import { DnatRule } from "natgate";
import { closeAll, runScript } from "../../provider/ssh";
import { getLab, type Lab, type LabHost, type LabProcess } from "../lab";
import type { Stack } from "../engine/stack";
import { seedProgram, seedStack, startLanServices } from "../engine/seedLab";
import { describeVariant } from "./describeVariant";
import { assertAsBeforeWithLegacy, snapshotWithLegacy } from "./iptablesHosts";
import { busyboxUserland, clearRouterRootPath, pathWithout, pathWithoutMatching, setRouterRootPath, STANDARD_PATH } from "./rootPath";
import {
  answered,
  askTcp,
  assertHostsAsBefore,
  baseArgs,
  cleanup,
  connectionTo,
  lanServices,
  opsOf,
  portForwardProgram,
  printTimings,
  refreshDrift,
  saw,
  seedLikeArgs,
  seedTraffic,
  snapshotAll,
  stopAll,
  timedDestroy,
  timedUp,
  timings,
  variantStack,
} from "./variantLab";

/** Processes named `comm` in the host's network namespace. */
async function processesIn(h: LabHost, comm: string): Promise<string> {
  return h.run(
    `me=$(readlink /proc/self/ns/net); for d in /proc/[0-9]*; do [ "$(cat $d/comm 2>/dev/null)" = ${comm} ] || continue; ` +
      `[ "$(readlink $d/ns/net 2>/dev/null)" = "$me" ] && echo "\${d#/proc/}"; done; true`,
  );
}

describe("variants: stricter hosts", function () {
  after(() => printTimings("strict hosts: up and destroy"));

  const rpFilter = (h: LabHost, v: number) => h.run(`sysctl -qw net.ipv4.conf.all.rp_filter=${v} net.ipv4.conf.default.rp_filter=${v}`);
  describeVariant({
    title: "strict rp_filter on both hosts (all=1, default=1, as ufw's sysctl.conf sets)",
    label: "rp_filter strict",
    args: seedLikeArgs,
    services: [["tcp", 5000], ["udp", 6000]],
    async prepareHosts(lab) {
      for (const h of [lab.hosts.vps, lab.hosts.router]) await rpFilter(h, 1);
    },
    async restoreHosts(lab) {
      for (const h of [lab.hosts.vps, lab.hosts.router]) await rpFilter(h, 0);
    },
    async afterUp({ lab }) {
      const r = await lab.hosts.router.run("sysctl net.ipv4.conf.all.rp_filter net.ipv4.conf.default.rp_filter net.ipv4.conf.wg0.rp_filter");
      assert.equal(r, "net.ipv4.conf.all.rp_filter = 1\nnet.ipv4.conf.default.rp_filter = 1\nnet.ipv4.conf.wg0.rp_filter = 2\n", "loose on the tunnel only");
    },
    traffic: seedTraffic,
    more: [
      [
        "wg0 put back to strict by hand cuts the path (loose mode is what carries it); refresh shows it, up repairs it",
        async ({ lab, stack, program }) => {
          await lab.hosts.router.run("sysctl -qw net.ipv4.conf.wg0.rp_filter=1");
          assert.equal((await askTcp(lab, 5000)).answer, "", "strict rp_filter on wg0 drops the client's packets");
          const drift = await refreshDrift(stack);
          assert.deepEqual(Object.keys(drift), ["home-return"]);
          assert.ok(drift["home-return"]!.some((d) => d.includes("rp_filter")), drift["home-return"]!.join("\n"));
          const r = await stack.up(program());
          assert.deepEqual(Object.entries(opsOf(r.steps)).filter(([, op]) => op !== "same"), [["home-return", "update"]]);
          assert.equal(answered(await askTcp(lab, 5000)), saw("tcp", 5000));
        },
      ],
    ],
    async afterDestroy({ lab }) {
      for (const h of [lab.hosts.vps, lab.hosts.router]) {
        assert.equal(
          await h.run("sysctl net.ipv4.conf.all.rp_filter net.ipv4.conf.default.rp_filter"),
          "net.ipv4.conf.all.rp_filter = 1\nnet.ipv4.conf.default.rp_filter = 1\n",
          `${h.name}: the values the test set`,
        );
      }
    },
  });

  // A router that drops forwarding still lets its LAN out (this machine, the laptop, reaches the
  // VPS through it) and replies back in: only new connections from elsewhere are dropped.
  const ROUTER_FORWARD = ["-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", "-i br-lan -o wan -j ACCEPT"];
  const hadFilterTable: Record<string, boolean> = {};
  describeVariant({
    title: "iptables FORWARD policy DROP on the VPS (Docker's) and on the router (LAN out and replies only, like ufw)",
    label: "FORWARD DROP both",
    args: seedLikeArgs,
    services: [["tcp", 5000], ["udp", 6000]],
    async prepareHosts(lab) {
      for (const h of [lab.hosts.vps, lab.hosts.router]) {
        hadFilterTable[h.name] = /^table ip filter$/m.test(await h.run("nft list tables"));
        if (h.name === "router") for (const r of ROUTER_FORWARD) await h.run(`iptables -w -A FORWARD ${r}`);
        await h.run("iptables -w -P FORWARD DROP");
      }
    },
    async restoreHosts(lab) {
      for (const h of [lab.hosts.vps, lab.hosts.router]) {
        await h.run("iptables -w -P FORWARD ACCEPT");
        if (h.name === "router") for (const r of ROUTER_FORWARD) await h.run(`iptables -w -D FORWARD ${r}`);
        if (!hadFilterTable[h.name]) await h.run("nft delete table ip filter");
      }
    },
    async afterUp({ lab }) {
      for (const h of [lab.hosts.vps, lab.hosts.router]) {
        const chain = await h.run("iptables -w -S FORWARD");
        assert.match(chain, /^-P FORWARD DROP$/m);
        assert.match(chain, /--comment "?natgate:home_(vps|router)_0"? -j ACCEPT/, `${h.name}: ${chain}`);
      }
    },
    traffic: seedTraffic,
    more: [
      [
        "the router's accepts deleted by hand cut the path; refresh shows it, up repairs it",
        async ({ lab, stack, program }) => {
          const { router } = lab.hosts;
          const ours = (await router.run("iptables -w -S FORWARD")).split("\n").filter((l) => l.includes("natgate:"));
          assert.ok(ours.length > 0);
          for (const l of ours) await router.run(`iptables -w ${l.replace(/^-A /, "-D ")}`);
          assert.equal((await askTcp(lab, 5000)).answer, "", "the DROP policy stops the forwarded connection");
          const drift = await refreshDrift(stack);
          assert.deepEqual(Object.keys(drift), ["home-router-0"]);
          assert.ok(drift["home-router-0"]!.every((d) => d.startsWith("missing iptables accept")), drift["home-router-0"]!.join("\n"));
          const r = await stack.up(program());
          assert.deepEqual(Object.entries(opsOf(r.steps)).filter(([, op]) => op !== "same"), [["home-router-0", "update"]]);
          await seedTraffic({ lab });
        },
      ],
    ],
    async afterDestroy({ lab }) {
      for (const h of [lab.hosts.vps, lab.hosts.router]) {
        const rest = h.name === "router" ? ROUTER_FORWARD.map((r) => `-A FORWARD ${r}\n`).join("") : "";
        assert.equal(await h.run("iptables -w -S FORWARD"), `-P FORWARD DROP\n${rest}`, `${h.name}: the policy and other rules stay, natgate's rules are gone`);
      }
    },
  });

  describe("BusyBox ash and applets as the router's shell (OpenWrt's userland): the whole seed example", function () {
    this.timeout(180_000);
    let lab: Lab;
    let stack: Stack;
    let services: LabProcess[] = [];
    let initial: Awaited<ReturnType<typeof snapshotAll>>;
    let bb: ReturnType<typeof busyboxUserland>;
    const starts = () => fs.readFileSync(bb.log, "utf8").split("\n").filter(Boolean).length;

    before(async () => {
      lab = getLab();
      bb = busyboxUserland(lab);
      await setRouterRootPath(lab, [bb.dir, ...STANDARD_PATH]);
      initial = await snapshotAll(lab);
      services = await startLanServices(lab);
      stack = seedStack(lab);
      stack.setConfig("verifyPort", "5000");
    });

    after(async () => {
      await stopAll(services);
      await cleanup(stack);
      await closeAll();
      if (lab) await clearRouterRootPath(lab);
    });

    it("a script sent the way natgate sends its scripts runs under BusyBox ash on the router (and only there)", async () => {
      const probe = 'echo "$0"; readlink /proc/$$/exe; command -v ip; command -v nft; command -v cat; command -v awk';
      const n = starts();
      const r = await runScript(lab.hosts.router.ssh!, probe);
      assert.equal(r.code, 0, r.stderr);
      const [arg0, exe, ip, nft, cat, awk] = r.stdout.trim().split("\n");
      assert.equal(arg0, "sh");
      assert.equal(exe, bb.busybox, "the shell process is BusyBox");
      assert.match(ip!, /^\/usr\/s?bin\/ip$/, "ip is iproute2 (OpenWrt's ip-full)");
      assert.match(nft!, /^\/usr\/s?bin\/nft$/);
      assert.equal(cat, `${bb.dir}/cat`, "coreutils are BusyBox applets");
      assert.equal(awk, `${bb.dir}/awk`);
      assert.equal(starts(), n + 1, "the session went through the logging BusyBox sh");
      const onVps = await runScript(lab.hosts.vps.ssh!, "readlink /proc/$$/exe");
      assert.notEqual(onVps.stdout.trim(), bb.busybox, "other hosts keep their sh");
    });

    it("up: every resource created, and the PathCheck proves the path from this machine", async () => {
      const n = starts();
      const r = await timedUp("seed under BusyBox (+PathCheck)", stack, seedProgram);
      assert.ok(Object.values(opsOf(r.steps)).every((op) => op === "create"), JSON.stringify(opsOf(r.steps)));
      assert.ok(starts() - n >= 5, `natgate's scripts ran under BusyBox on the router (${starts() - n} sessions)`);
      const check = stack.get("home-check").outputs;
      assert.equal((check.probe as { outcome: string }).outcome, "connected", JSON.stringify(check.probe));
      assert.equal(check.callerAddress, lab.addresses.ispPublic, "this machine behind the router and the CGNAT, as the VPS saw it");
      for (const res of stack.state.filter((x) => Array.isArray(x.outputs.drift))) assert.deepEqual(res.outputs.drift, [], res.name);
    });

    it("the LAN services see the client's address; VPS:2222 is the router's sshd", async () => {
      await seedTraffic({ lab });
    });

    it("refresh finds no drift, and up again changes nothing", async () => {
      const steps = await stack.refresh();
      assert.deepEqual(steps.filter((s) => s.op !== "same").map((s) => [s.name, s.changes]), []);
      const r = await stack.up(seedProgram);
      assert.ok(Object.values(opsOf(r.steps)).every((op) => op === "same"), JSON.stringify(opsOf(r.steps)));
    });

    it("destroy leaves both hosts exactly as before", async () => {
      const n = starts();
      await timedDestroy("seed under BusyBox (+PathCheck)", stack);
      assert.ok(starts() > n, "destroy's scripts ran under BusyBox too");
      await assertHostsAsBefore(lab, initial);
    });
  });

  describe("a tool missing on the router: the error names it and its package, nothing is left applied", function () {
    this.timeout(120_000);
    let lab: Lab;
    let stack: Stack | undefined;
    let services: LabProcess[] = [];

    before(async () => {
      lab = getLab();
      services = await lanServices(lab, [["tcp", 5000]]);
    });
    afterEach(async () => {
      await clearRouterRootPath(lab);
      await cleanup(stack);
      stack = undefined;
    });
    after(async () => stopAll(services));

    async function failingUp(tool: string, program: () => unknown): Promise<Error> {
      stack = variantStack();
      const started = Date.now();
      const e = await stack.up(program).then(
        () => undefined,
        (x: Error) => x,
      );
      timings.push({ variant: `failing up (no ${tool})`, up: Date.now() - started });
      assert.ok(e, "up should fail");
      console.log(`      the error: ${e.message.split("\n").filter((l) => /not found/.test(l))[0] ?? e.message}`);
      return e;
    }

    it("no wg: the Tunnel fails naming wg and wireguard-tools; the VPS's key is rolled back; both hosts as before", async () => {
      const initial = await snapshotAll(lab);
      await setRouterRootPath(lab, [pathWithout(lab, ["wg"])]);
      const e = await failingUp("wg", portForwardProgram("home", { ...baseArgs(lab), forwards: [{ ports: 5000 }] }));
      assert.match(e.message, /wg not found on host 192\.168\.1\.1: install package wireguard-tools/, e.message);
      assert.deepEqual(stack!.state.filter((r) => r.custom), [], "nothing was created");
      await clearRouterRootPath(lab);
      await assertHostsAsBefore(lab, initial, "the failed up");
    });

    const lanWeb = (backend?: "nftables") => () => {
      new DnatRule("lan-web", { connection: connectionTo(lab, "router"), inInterface: "wg0", ports: 5000, toAddress: lab.hosts.lan.addr, backend });
    };

    it("no nft, backend nftables asked for: the DnatRule fails naming nftables and the other choices; the router is as before", async () => {
      const initial = await snapshotAll(lab);
      await setRouterRootPath(lab, [pathWithout(lab, ["nft"])]);
      const e = await failingUp("nft", lanWeb("nftables"));
      assert.match(e.message, /backend "nftables" was asked for but nft does not work on this host: install nftables/, e.message);
      assert.match(e.message, /192\.168\.1\.1/, "the error names the host");
      assert.deepEqual(stack!.state.filter((r) => r.custom), [], "nothing was created");
      await clearRouterRootPath(lab);
      await assertHostsAsBefore(lab, initial, "the failed up");
    });

    it("neither nft nor iptables: the DnatRule fails naming both packages; the router is as before", async () => {
      const initial = await snapshotAll(lab);
      const iptablesTool = /^(ip6?tables|xtables|arptables|ebtables)/;
      await setRouterRootPath(lab, [pathWithoutMatching(lab, "nft-iptables", (n) => n === "nft" || iptablesTool.test(n))]);
      const e = await failingUp("nft, iptables", lanWeb());
      assert.match(e.message, /neither nft nor iptables-restore works on this host: install nftables/, e.message);
      assert.match(e.message, /iptables/, e.message);
      assert.deepEqual(stack!.state.filter((r) => r.custom), [], "nothing was created");
      await clearRouterRootPath(lab);
      await assertHostsAsBefore(lab, initial, "the failed up");
    });

    it("no nft, backend auto: the DnatRule falls back to iptables (its chain is in the nat table); destroy leaves the router as before", async () => {
      // iptables-nft leaves its built-in tables behind (empty): the snapshot with legacy counts them absent.
      const initial = await snapshotWithLegacy(lab);
      await setRouterRootPath(lab, [pathWithout(lab, ["nft"])]);
      stack = variantStack();
      await stack.up(lanWeb());
      const dnat = stack.get("lan-web");
      assert.equal(dnat.outputs.activeBackend, "iptables", JSON.stringify(dnat.outputs));
      const listed = await lab.hosts.router.run("iptables -t nat -S | grep -c natgate-dnat-lan_web || true");
      assert.ok(Number(listed.trim()) > 0, `the router's iptables nat table has natgate's chain:\n${listed}`);
      await stack.destroy();
      await clearRouterRootPath(lab);
      await assertAsBeforeWithLegacy(lab, initial);
    });

    it("no conntrack: the PathCheck fails naming conntrack; the VPS's capture was stopped; destroy leaves both hosts as before", async () => {
      const initial = await snapshotAll(lab);
      await setRouterRootPath(lab, [pathWithout(lab, ["conntrack"])]);
      const e = await failingUp("conntrack", portForwardProgram("home", { ...baseArgs(lab), forwards: [{ ports: 5000 }], verify: { port: 5000 } }));
      assert.match(e.message, /conntrack not found on host 192\.168\.1\.1: install package conntrack/, e.message);
      assert.equal((await processesIn(lab.hosts.vps, "conntrack")).trim(), "", "no conntrack -E left running on the VPS");
      // The data path itself was applied and works; only the check could not run.
      assert.equal(answered(await askTcp(lab, 5000)), saw("tcp", 5000));
      await clearRouterRootPath(lab);
      const started = Date.now();
      await stack!.destroy();
      timings.push({ variant: "destroy after failed PathCheck", up: NaN, destroy: Date.now() - started });
      await assertHostsAsBefore(lab, initial);
    });
  });
});
