// Hosts without nft (issue 8, item 5): the VPS and the router with no `nft` on root's PATH and an
// iptables of one flavour only, the router running OpenWrt 21.02's fw3 firewall (iptables), and
// the backend choice on the standard lab hosts. First the hosts themselves (plumbing, no natgate),
// then the seed's traffic through PortForward on them.
// Run: node_modules/.bin/tsx test/lab/cli.ts run -- node_modules/.bin/mocha test/variants/iptables-hosts.test.ts
import { strict as assert } from "assert";
import { closeAll } from "../../provider/ssh";
import { getLab, type Lab, type LabProcess } from "../lab";
import type { Stack } from "../engine/stack";
import { askBanner } from "../engine/seedLab";
import {
  assertAsBeforeWithLegacy,
  installFw3,
  makeIptablesOnly,
  probeFromWan,
  routerInterfaces,
  snapshotWithLegacy,
  sshAsRoot,
  withBackend,
  type BackendChoice,
  type FirewallHost,
  type IptablesFlavour,
  type Snapshot,
} from "./iptablesHosts";
import {
  answered,
  askTcp,
  askUdp,
  baseArgs,
  CLIENT,
  cleanup,
  lanServices,
  opsOf,
  portForwardProgram,
  printTimings,
  refreshDrift,
  stopAll,
  timedDestroy,
  timedUp,
  variantStack,
} from "./variantLab";
import type { PortForwardArgs } from "natgate";

const saw = (proto: string, port: number) => `${proto}/${port} saw ${CLIENT}`;
const HOSTS: FirewallHost[] = ["vps", "router"];
const FLAVOUR_NAME: Record<IptablesFlavour, string> = { legacy: "legacy", nft: "nf_tables" };

/** The seed's shape: tcp+udp 5000-5010 to the LAN host, 7000-7002 remapped to 8000-8002, VPS:2222 → the router's sshd. */
function seedShapeArgs(lab: Lab): PortForwardArgs {
  return {
    ...baseArgs(lab),
    forwards: [
      { protocol: "both", ports: "5000-5010" },
      { protocol: "tcp", ports: "7000-7002", toPorts: "8000-8002" },
    ],
    routerForwards: [{ protocol: "tcp", ports: 2222, toPorts: 22 }],
  };
}
const SERVICES: Array<["tcp" | "udp", number]> = [["tcp", 5000], ["udp", 5010], ["tcp", 8000], ["tcp", 8002]];

async function seedTraffic(lab: Lab): Promise<void> {
  assert.equal(answered(await askTcp(lab, 5000)), saw("tcp", 5000));
  assert.equal(answered(await askUdp(lab, 5010)), saw("udp", 5010));
  assert.equal(answered(await askTcp(lab, 7002)), saw("tcp", 8002), "7000-7002 → 8000-8002 on the LAN host");
  assert.equal(answered(await askTcp(lab, 7000)), saw("tcp", 8000));
  assert.match(answered(await askBanner(lab, 2222)), /^SSH-2\.0-OpenSSH/, "VPS:2222 is the router's sshd");
}

/** DnatRules and the return path: the resources with a firewall backend. */
const firewallResources = (stack: Stack) => stack.state.filter((r) => r.custom && /-(vps|router)(-local)?-\d+$|-return$/.test(r.name));

function assertBackend(stack: Stack, backend: "nftables" | "iptables"): void {
  const rs = firewallResources(stack);
  assert.ok(rs.length >= 5, `DnatRules and the return path in state: ${stack.state.map((r) => r.name).join(", ")}`);
  const got = Object.fromEntries(rs.map((r) => [r.name, r.outputs.activeBackend]));
  assert.deepEqual(got, Object.fromEntries(rs.map((r) => [r.name, backend])), "output `backend` of each firewall resource");
}

async function assertNoDriftAndStable(stack: Stack, program: () => unknown): Promise<void> {
  const steps = await stack.refresh();
  assert.deepEqual(steps.filter((s) => s.op !== "same").map((s) => [s.name, s.op, s.changes]), []);
  const r = await stack.up(program);
  assert.ok(Object.values(opsOf(r.steps)).every((op) => op === "same"), JSON.stringify(opsOf(r.steps)));
}

/** Runs a script over a fresh root SSH session, failing with its stderr. */
async function overSsh(lab: Lab, host: FirewallHost, cmd: string): Promise<string> {
  const r = await sshAsRoot(lab, host, cmd);
  assert.equal(r.code, 0, `${host}: ${cmd}\n${r.stderr}`);
  return r.stdout;
}

/** What root's SSH session finds: nft, the iptables commands' flavours, the other tools natgate needs. */
const TOOLS_PROBE = [
  "if command -v nft; then echo 'nft: present'; else echo 'nft: absent'; fi",
  "for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do $t -V; done",
  "for t in ip wg sysctl conntrack sh; do command -v $t >/dev/null && echo \"$t: present\" || echo \"$t: absent\"; done",
].join("\n");

async function assertToolsOf(lab: Lab, host: FirewallHost, flavour: IptablesFlavour): Promise<void> {
  const out = await overSsh(lab, host, TOOLS_PROBE);
  const lines = out.trim().split("\n");
  assert.equal(lines[0], "nft: absent", `${host}: ${out}`);
  const names = ["iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore"];
  names.forEach((n, i) => assert.match(lines[1 + i] ?? "", new RegExp(`^${n} v\\S+ \\(${FLAVOUR_NAME[flavour]}\\)$`), `${host}: ${out}`));
  assert.deepEqual(lines.slice(7), ["ip: present", "wg: present", "sysctl: present", "conntrack: present", "sh: present"], `${host}: ${out}`);
}

/** Undoes, latest first, whatever setup steps ran (each returned its undo). */
async function undoAll(undo: Array<() => Promise<void>>): Promise<void> {
  while (undo.length) {
    const u = undo.pop()!;
    await u().catch((e) => console.error(`      undo failed: ${(e as Error).message}`));
  }
}

describe("variants: hosts without nft (iptables only)", function () {
  after(() => printTimings("iptables hosts: up and destroy"));

  for (const flavour of ["legacy", "nft"] as const) {
    describe(`plumbing, before natgate: VPS and router with no nft and iptables-${flavour} only, fw3 (in iptables-${flavour}) on the router`, function () {
      this.timeout(120_000);
      let lab: Lab;
      let initial: Snapshot;
      let services: LabProcess[] = [];
      const undo: Array<() => Promise<void>> = [];

      before(async () => {
        lab = getLab();
        initial = await snapshotWithLegacy(lab);
        services = await lanServices(lab, [["tcp", 5000]]);
        for (const h of HOSTS) undo.push(await makeIptablesOnly(lab, h, flavour));
        await closeAll();
      });
      after(async () => {
        await stopAll(services);
        await undoAll(undo);
      });

      it(`over SSH as root, on both hosts: no nft; iptables, iptables-save, iptables-restore, ip6tables* say ${FLAVOUR_NAME[flavour]}; ip, wg, sysctl, conntrack are there`, async () => {
        for (const h of HOSTS) await assertToolsOf(lab, h, flavour);
      });

      it("control, without the firewall: a new connection from the wan reaches the LAN service and the router's sshd", async () => {
        assert.equal((await probeFromWan(lab, 5000)).answer, "tcp/5000 saw 100.64.0.1");
        assert.match((await probeFromWan(lab, 22, lab.addresses.routerWan)).answer, /^SSH-2\.0-OpenSSH/);
      });

      it("fw3 installed: the filter, mangle and nat tables have fw3's shape, as the router's own iptables shows them", async () => {
        undo.push(await installFw3(lab, flavour));
        const { lan, wan } = await routerInterfaces(lab);
        assert.deepEqual([lan, wan], ["br-lan", "wan"]);
        const filter = await overSsh(lab, "router", "iptables -w -S");
        for (const l of [
          "-P INPUT ACCEPT",
          "-P FORWARD DROP",
          '-A FORWARD -m comment --comment "!fw3: Custom forwarding rule chain" -j forwarding_rule',
          '-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "!fw3" -j ACCEPT',
          '-A FORWARD -i br-lan -m comment --comment "!fw3" -j zone_lan_forward',
          '-A FORWARD -i wan -m comment --comment "!fw3" -j zone_wan_forward',
          '-A FORWARD -m comment --comment "!fw3" -j reject',
          '-A zone_lan_forward -m comment --comment "!fw3: Zone lan to wan forwarding policy" -j zone_wan_dest_ACCEPT',
          '-A zone_wan_forward -m comment --comment "!fw3" -j zone_wan_dest_REJECT',
          '-A zone_wan_input -m comment --comment "!fw3" -j zone_wan_src_REJECT',
          '-A zone_wan_src_REJECT -i wan -m comment --comment "!fw3" -j reject',
        ]) assert.ok(filter.split("\n").includes(l), `missing: ${l}\n${filter}`);
        assert.match(await overSsh(lab, "router", "iptables -w -t mangle -S fwmark"), /-A fwmark -i br-lan .*-j MARK --set-xmark 0x100\/0x3f00/);
        assert.match(await overSsh(lab, "router", "iptables -w -t nat -S zone_wan_postrouting"), /-A zone_wan_postrouting .*-j MASQUERADE/);
        const where = flavour === "legacy" ? "iptables-legacy-save" : "nft list table ip filter";
        assert.match(await lab.hosts.router.run(where), /zone_wan_forward/, `fw3 lives in iptables-${flavour}'s tables`);
      });

      it("fw3 rejects a new connection from the wan to the LAN host (its service listens) and to the router's sshd", async () => {
        const toLan = await probeFromWan(lab, 5000);
        assert.equal(toLan.answer, "", "nothing answers");
        assert.match(toLan.error, /Connection refused|Connection timed out|no answer/, toLan.error);
        const toRouter = await probeFromWan(lab, 22, lab.addresses.routerWan);
        assert.equal(toRouter.answer, "", `wan input REJECT: ${toRouter.error}`);
        const counts = await lab.hosts.router.run(
          flavour === "legacy" ? "iptables-legacy -w -L reject -v -x -n" : "iptables-nft -w -L reject -v -x -n",
        );
        const rejected = counts.split("\n").filter((l) => /REJECT/.test(l)).reduce((n, l) => n + Number(l.trim().split(/\s+/)[0]), 0);
        assert.ok(rejected >= 2, `fw3's reject chain counted them:\n${counts}`);
      });

      it("through fw3: SSH from the LAN (this machine, on br-lan) to the router and out to the VPS; the LAN's traffic is marked 0x100/0x3f00", async () => {
        for (const h of HOSTS) assert.equal((await overSsh(lab, h, "echo ok")).trim(), "ok", h);
        const marks = await lab.hosts.router.run(`iptables-${flavour} -w -t mangle -L fwmark -v -x -n`);
        const marked = Number(marks.split("\n").find((l) => /MARK/.test(l))!.trim().split(/\s+/)[0]);
        assert.ok(marked > 0, `the mangle rule marked LAN packets:\n${marks}`);
      });

      it("the undo leaves both hosts exactly as before (iptables-legacy's tables included)", async () => {
        await undoAll(undo);
        await closeAll();
        await assertAsBeforeWithLegacy(lab, initial, "the undo");
        const out = await overSsh(lab, "router", "command -v nft; iptables -V");
        assert.match(out, /^\/usr\/s?bin\/nft\n/, "root's PATH is the standard one again");
        assert.equal((await probeFromWan(lab, 5000)).answer, "tcp/5000 saw 100.64.0.1", "the wan reaches the LAN again");
      });
    });
  }

  /** The seed's traffic through PortForward on hosts without nft; `backend` unset means "auto". */
  function iptablesVariant(spec: { title: string; label: string; flavour: IptablesFlavour; fw3: boolean; backend?: BackendChoice }): void {
    describe(spec.title, function () {
      this.timeout(180_000);
      let lab: Lab;
      let stack: Stack;
      let services: LabProcess[] = [];
      let initial: Snapshot;
      let args: PortForwardArgs;
      /** Set once up succeeded: the steps after it prove nothing without it. */
      let upDone = false;
      const undo: Array<() => Promise<void>> = [];
      const program = () => portForwardProgram("home", args);

      before(async () => {
        lab = getLab();
        for (const h of HOSTS) undo.push(await makeIptablesOnly(lab, h, spec.flavour));
        if (spec.fw3) undo.push(await installFw3(lab, spec.flavour));
        await closeAll();
        initial = await snapshotWithLegacy(lab);
        args = spec.backend ? withBackend(seedShapeArgs(lab), spec.backend) : seedShapeArgs(lab);
        services = await lanServices(lab, SERVICES);
        stack = variantStack();
      });
      after(async () => {
        await stopAll(services);
        await cleanup(stack);
        await undoAll(undo);
      });

      it("up creates every resource, each in sync with its host; the DnatRules and the return path say backend \"iptables\"", async () => {
        const r = await timedUp(spec.label, stack, program());
        assert.ok(Object.values(opsOf(r.steps)).every((op) => op === "create"), JSON.stringify(opsOf(r.steps)));
        for (const res of stack.state.filter((x) => x.custom)) {
          if (res.outputs.drift !== undefined) assert.deepEqual(res.outputs.drift, [], `${res.name} drift right after up`);
        }
        upDone = true;
        assertBackend(stack, "iptables");
        for (const h of HOSTS) {
          assert.equal((await lab.hosts[h].run("nft list tables")).split("\n").filter((l) => l.includes("natgate")).join("\n"), "", `${h}: no nft table of natgate's`);
        }
        const natgateLines = (await overSsh(lab, "router", "iptables-save")).split("\n").filter((l) => /natgate/i.test(l));
        assert.ok(natgateLines.length > 0, "natgate's rules are in the router's iptables");
        if (spec.flavour === "legacy") assert.match(await lab.hosts.router.run("iptables-legacy-save"), /natgate/i, "in iptables-legacy's tables");
      });

      it("tcp and udp forwards show the client's real address; the remapped range; VPS:2222 is the router's sshd", async () => {
        await seedTraffic(lab);
      });

      if (spec.fw3) {
        it("fw3 still rejects the wan: natgate opened the tunnel's DNATed flows only", async () => {
          assert.ok(upDone, "up did not succeed");
          const toLan = await probeFromWan(lab, 5000);
          assert.equal(toLan.answer, "", `from the wan the LAN service stays closed (${toLan.error})`);
          assert.match(await overSsh(lab, "router", "iptables -w -S FORWARD"), /^-P FORWARD DROP$/m);
        });
      }

      it("refresh finds no drift, and up again changes nothing", async () => {
        await assertNoDriftAndStable(stack, program());
      });

      it("a natgate DNAT rule deleted by hand with iptables: that forward stops, refresh shows drift there only, up repairs it", async () => {
        const lanAddr = lab.hosts.lan.addr;
        const rules = (await overSsh(lab, "router", "iptables -w -t nat -S")).split("\n");
        const ours = rules.filter((l) => l.startsWith("-A ") && / -j DNAT /.test(`${l} `) && l.includes(`--to-destination ${lanAddr}`) && / -p tcp /.test(l) && /5000:5010/.test(l));
        assert.equal(ours.length, 1, `one DNAT rule for tcp 5000-5010 → ${lanAddr}:\n${rules.join("\n")}`);
        await overSsh(lab, "router", `iptables -w -t nat ${ours[0]!.replace(/^-A /, "-D ")}`);
        assert.equal((await askTcp(lab, 5000)).answer, "", "tcp 5000 no longer reaches the LAN host");
        assert.equal(answered(await askUdp(lab, 5010)), saw("udp", 5010), "udp of the same forward is another rule, still there");
        const drift = await refreshDrift(stack);
        assert.deepEqual(Object.keys(drift), ["home-router-0"], JSON.stringify(drift));
        assert.ok(drift["home-router-0"]!.length > 0, "the drift says what is missing");
        console.log(`      drift: ${drift["home-router-0"]!.join("; ")}`);
        const r = await stack.up(program());
        assert.deepEqual(Object.entries(opsOf(r.steps)).filter(([, op]) => op !== "same"), [["home-router-0", "update"]]);
        await seedTraffic(lab);
        await assertNoDriftAndStable(stack, program());
      });

      it("destroy removes everything: both hosts exactly as before (iptables-legacy's tables included)", async () => {
        assert.ok(upDone, "up did not succeed (what it left is destroyed after the suite)");
        await timedDestroy(spec.label, stack);
        assert.deepEqual(stack.state, []);
        await assertAsBeforeWithLegacy(lab, initial);
        if (spec.fw3) {
          assert.equal((await probeFromWan(lab, 5000)).answer, "", "fw3 is still there, untouched");
          assert.match(await overSsh(lab, "router", "iptables -w -S FORWARD"), /^-A FORWARD -m comment --comment "!fw3" -j reject$/m);
        }
      });
    });
  }

  iptablesVariant({
    title: "(i) VPS and router with no nft and iptables-legacy, fw3 (legacy) on the router; backend auto",
    label: "legacy + fw3 (auto)",
    flavour: "legacy",
    fw3: true,
  });

  iptablesVariant({
    title: "(ii) VPS and router with no nft and iptables-nft only; backend \"iptables\" given",
    label: "iptables-nft only",
    flavour: "nft",
    fw3: false,
    backend: "iptables",
  });

  describe("(iii) the same stack with backend \"nftables\", then \"iptables\", on the standard lab hosts (both there)", function () {
    this.timeout(180_000);
    let lab: Lab;
    let stack: Stack;
    let services: LabProcess[] = [];
    let initial: Snapshot;
    const program = (backend: BackendChoice) => portForwardProgram("home", withBackend(seedShapeArgs(lab), backend));
    const natgateNftTables = async (h: FirewallHost) =>
      (await lab.hosts[h].run("nft list tables")).split("\n").filter((l) => l.includes("natgate_"));

    before(async () => {
      lab = getLab();
      await closeAll();
      initial = await snapshotWithLegacy(lab);
      services = await lanServices(lab, SERVICES);
      stack = variantStack();
    });
    after(async () => {
      await stopAll(services);
      await cleanup(stack);
    });

    it("backend \"nftables\": up; the outputs say nftables, natgate's rules are nft tables; the client's address is seen", async () => {
      const r = await timedUp("backend nftables", stack, program("nftables"));
      assert.ok(Object.values(opsOf(r.steps)).every((op) => op === "create"), JSON.stringify(opsOf(r.steps)));
      assertBackend(stack, "nftables");
      for (const h of HOSTS) assert.ok((await natgateNftTables(h)).length > 0, `${h}: natgate's nft tables`);
      await seedTraffic(lab);
    });

    it("backend \"iptables\": up moves every firewall resource; the outputs say iptables, no natgate nft table is left; the same traffic result", async () => {
      const r = await timedUp("backend nftables → iptables", stack, program("iptables"));
      const changed = Object.entries(opsOf(r.steps)).filter(([, op]) => op !== "same").map(([n]) => n).sort();
      assert.deepEqual(changed, firewallResources(stack).map((x) => x.name).sort(), `the DnatRules and the return path change, nothing else: ${JSON.stringify(opsOf(r.steps))}`);
      assertBackend(stack, "iptables");
      for (const h of HOSTS) assert.deepEqual(await natgateNftTables(h), [], `${h}: natgate's nft tables are gone`);
      assert.ok((await overSsh(lab, "router", "iptables-save")).split("\n").some((l) => /natgate/i.test(l)), "natgate's rules are in iptables now");
      await seedTraffic(lab);
      await assertNoDriftAndStable(stack, program("iptables"));
    });

    it("destroy: both hosts exactly as before", async () => {
      await timedDestroy("backend nftables → iptables", stack);
      assert.deepEqual(stack.state, []);
      await assertAsBeforeWithLegacy(lab, initial);
    });
  });
});
