// Who may connect (issue 10): `allowFrom` on a PortForward's forwards, enforced on the VPS before
// DNAT, on both backends. The lab's internet client (203.0.113.10, inside 203.0.113.0/25) is
// admitted; the ISP host (203.0.113.130) stands in for a stranger. An admitted client reaches the
// LAN service, which sees its real address; the stranger is rejected (TCP reset) or dropped, and
// never reaches what else listens on that port of the VPS; the refusals are counted; a rule
// removed by hand shows as drift; widening the list admits the stranger at the next up; destroy
// leaves the VPS and router as they were.
// Run: node_modules/.bin/tsx test/lab/cli.ts run -- node_modules/.bin/mocha test/variants/allow-from.test.ts
import { strict as assert } from "assert";
import type { PortForwardArgs } from "natgate";
import { getLab, type Lab, type LabHost, type LabProcess } from "../lab";
import type { Stack } from "../engine/stack";
import {
  askTcp,
  askUdp,
  baseArgs,
  CLIENT,
  cleanup,
  connectionTo,
  lanServices,
  portForwardProgram,
  PUBLIC,
  refreshDrift,
  saw,
  stopAll,
  timedDestroy,
  timedUp,
  variantStack,
} from "./variantLab";
import { assertAsBeforeWithLegacy, snapshotWithLegacy, type Snapshot } from "./iptablesHosts";

const STRANGER = "203.0.113.130";

/** The stranger (the ISP host, outside 203.0.113.0/25) connects to the VPS's public address. */
async function strangerTcp(h: LabHost, port: number): Promise<{ answer: string; error: string; ms: number }> {
  const t = Date.now();
  const r = await h.exec(`socat -T3 - TCP:${PUBLIC}:${port},connect-timeout=3 </dev/null`, { timeoutMs: 10_000 });
  const answer = r.stdout.split("\n")[0]!.trim();
  return { answer, error: r.stderr.trim().split("\n").pop() ?? "", ms: Date.now() - t };
}

async function strangerUdp(h: LabHost, port: number): Promise<string> {
  const r = await h.exec(`echo hello | socat -T2 - UDP:${PUBLIC}:${port}`, { timeoutMs: 10_000 });
  return r.stdout.split("\n")[0]!.trim();
}

function args(lab: Lab, backend: "nftables" | "iptables", allow: string[]): PortForwardArgs {
  return {
    ...baseArgs(lab),
    vps: { connection: connectionTo(lab, "vps"), publicAddress: PUBLIC, backend },
    forwards: [
      { protocol: "both", ports: 5000, allowFrom: allow, refuse: "reject" },
      { protocol: "tcp", ports: 5001, allowFrom: [CLIENT] },
    ],
  };
}

function counterOf(stack: Stack, name: string): { packets: number } | undefined {
  const r = stack.state.find((x) => x.name === name);
  return (r?.outputs.counters as Record<string, { packets: number }> | undefined)?.refused;
}

for (const backend of ["nftables", "iptables"] as const) {
  describe(`variants: allowFrom on the VPS (${backend})`, function () {
    this.timeout(300_000);
    let lab: Lab;
    let stack: Stack | undefined;
    let services: LabProcess[] = [];
    let vpsOwn: LabProcess | undefined;
    let initial: Snapshot;

    before(async () => {
      lab = getLab();
      // iptables-nft leaves its tables behind, empty: the snapshot counts them as absent.
      initial = await snapshotWithLegacy(lab);
      services = await lanServices(lab, [["tcp", 5000], ["udp", 5000], ["tcp", 5001]]);
      // Something of the VPS's own on a forwarded port: a refused source must not reach it either.
      vpsOwn = await lab.hosts.vps.start(`socat TCP-LISTEN:5001,reuseaddr,fork SYSTEM:'echo the VPS itself'`, { waitForTcpPort: 5001 });
      stack = variantStack();
    });

    after(async () => {
      await stopAll([...services, ...(vpsOwn ? [vpsOwn] : [])]);
      await cleanup(stack);
      stack = undefined;
    });

    it("admitted clients reach the LAN service with their real address", async () => {
      await timedUp(`allowFrom ${backend}`, stack!, portForwardProgram("home", args(lab, backend, ["203.0.113.0/25"])));
      assert.equal((await askTcp(lab, 5000)).answer, saw("tcp", 5000));
      assert.equal((await askUdp(lab, 5000)).answer, saw("udp", 5000));
      assert.equal((await askTcp(lab, 5001)).answer, saw("tcp", 5001));
    });

    it("a stranger is rejected (tcp reset) or dropped, never reaching the VPS's own listener", async () => {
      const isp = lab.hosts.isp;
      const rejected = await strangerTcp(isp, 5000);
      assert.equal(rejected.answer, "");
      assert.match(rejected.error, /Connection refused/, "refuse: reject answers TCP with a reset");
      assert.equal(await strangerUdp(isp, 5000), "", "no UDP answer for a stranger");
      const dropped = await strangerTcp(isp, 5001);
      assert.equal(dropped.answer, "", "the VPS's own listener on 5001 must not answer a stranger");
      assert.doesNotMatch(dropped.error, /Connection refused/, "refuse: drop (the default) stays silent");
    });

    it("refusals are counted; refresh finds no drift", async () => {
      const drift = await refreshDrift(stack!);
      assert.deepEqual(Object.values(drift).flat(), []);
      assert.ok((counterOf(stack!, "home-vps-0")?.packets ?? 0) >= 2, "home-vps-0 counted the stranger's tcp and udp");
      assert.ok((counterOf(stack!, "home-vps-1")?.packets ?? 0) >= 1, "home-vps-1 counted the stranger's SYN");
    });

    it("a refusal removed by hand shows as drift, and up puts it back", async () => {
      const vps = lab.hosts.vps;
      await vps.run(backend === "nftables" ? "nft flush chain ip natgate_dnat_home_vps_1 refuse_in" : "iptables -w -F natgate-ref-home_vps_1");
      const drift = await refreshDrift(stack!);
      assert.ok((drift["home-vps-1"] ?? []).length > 0, `drift of home-vps-1: ${JSON.stringify(drift)}`);
      assert.equal((await strangerTcp(lab.hosts.isp, 5001)).answer, "the VPS itself", "without the refusal the stranger reaches the VPS's own listener");
      await stack!.up(portForwardProgram("home", args(lab, backend, ["203.0.113.0/25"])));
      assert.equal((await strangerTcp(lab.hosts.isp, 5001)).answer, "");
    });

    it("widening allowFrom admits the stranger, with its real address", async () => {
      await stack!.up(portForwardProgram("home", args(lab, backend, ["203.0.113.0/25", "203.0.113.128/25"])));
      assert.equal((await strangerTcp(lab.hosts.isp, 5000)).answer, `tcp/5000 saw ${STRANGER}`);
      assert.equal((await askTcp(lab, 5000)).answer, saw("tcp", 5000));
      assert.deepEqual(Object.values(await refreshDrift(stack!)).flat(), [], "the merged 203.0.113.0/24 reads back as written");
    });

    it("destroy leaves both hosts as they were", async () => {
      await timedDestroy(`allowFrom ${backend}`, stack!);
      await assertAsBeforeWithLegacy(lab, initial);
    });
  });
}
