// A VPS that drops forwarded IPv6 (issue 10's pitfalls): ufw's way, `ip6tables -P FORWARD DROP`,
// and a hand-written nftables `table inet filter` whose forward policy is drop. An accept only ends
// its own base chain, so natgate's IPv6 accept has to land in the chain that drops: ip6tables'
// FORWARD, or the inet chain. Each case: a dual-stack PortForward with two forwards; the IPv6
// client reaches the LAN service with its own address; taking that accept away by hand breaks the
// path (the drop is real); dropping one forward from the program deletes exactly its accept and
// leaves the other's; destroy leaves the drop as it was. The drops go again after each case.
// Run: node_modules/.bin/tsx test/lab/cli.ts run -- node_modules/.bin/mocha test/variants/v6-drops.test.ts
import { strict as assert } from "assert";
import type { PortForwardArgs } from "natgate";
import { getLab, type Lab, type LabHost, type LabProcess } from "../lab";
import type { Stack } from "../engine/stack";
import { snapshotDiff } from "../engine/seedLab";
import { ask as askFrom, canonical } from "./dualStack";
import { baseArgs, CLIENT, hostState, portForwardProgram, PUBLIC, refreshChanges, refreshDrift, stopAll, timedDestroy, timedUp, variantStack } from "./variantLab";

/** What the LAN service behind address:port saw for a tcp connection from the client. */
const ask = (lab: Lab, address: string, port: number) => askFrom(lab.hosts.client, "tcp", address, port);

async function state(h: LabHost): Promise<string> {
  const v6 = await h.run("echo '# ip6tables'; ip6tables -w -S; ip6tables -w -t nat -S; sysctl net.ipv6.conf.all.forwarding");
  return ((await hostState(h)) + "\n" + v6).replace(/counter packets \d+ bytes \d+/g, "counter");
}

interface DropCase {
  title: string;
  /** puts the drop on the VPS */
  add: string;
  /** takes it away again (the lab's VPS has neither table) */
  remove: string;
  /** the chain natgate's accepts land in, listed with comments */
  list: string;
  /** a listed line that is natgate's IPv6 accept for one forward (LAN port) */
  accept6: (line: string, port: number) => boolean;
  /** deletes one listed accept by hand */
  delAccept: (line: string) => string;
}

const cases: DropCase[] = [
  {
    title: "ip6tables -P FORWARD DROP (ufw's default)",
    add: "ip6tables -w -P FORWARD DROP",
    remove: "ip6tables -w -P FORWARD ACCEPT; nft delete table ip6 filter",
    list: "ip6tables -w -S FORWARD",
    accept6: (l, port) => /^-A FORWARD /.test(l) && /natgate/.test(l) && new RegExp(`\\b${port}\\b`).test(l) && /-j ACCEPT/.test(l),
    delAccept: (l) => `ip6tables -w ${l.replace(/^-A /, "-D ")}`,
  },
  {
    title: "nftables table inet filter, forward policy drop",
    add: "nft -f - <<'EOF'\ntable inet filter {\n  chain forward {\n    type filter hook forward priority filter; policy drop;\n  }\n}\nEOF",
    remove: "nft delete table inet filter",
    list: "nft -a list chain inet filter forward",
    accept6: (l, port) => /natgate/.test(l) && /\bip6\b/.test(l) && new RegExp(`\\b${port}\\b`).test(l) && /\baccept\b/.test(l),
    delAccept: (l) => `nft delete rule inet filter forward handle ${/# handle (\d+)/.exec(l)![1]}`,
  },
];

describe("variants: a VPS that drops forwarded IPv6 (ip6tables FORWARD DROP, nft inet filter drop)", function () {
  this.timeout(300_000);
  let lab: Lab;
  let vps: LabHost;
  const services: LabProcess[] = [];
  let PUBLIC6: string;
  let CLIENT6: string;
  let initial: string;

  const args = (ports: number[]): PortForwardArgs => {
    const b = baseArgs(lab);
    return {
      ...b,
      vps: { ...(b.vps as object), publicAddress: PUBLIC, publicAddress6: PUBLIC6 } as PortForwardArgs["vps"],
      router: { ...b.router, lanSubnet6: lab.addresses6.lanSubnet },
      lanHost6: lab.hosts.lan.addr6,
      forwards: ports.map((p) => ({ protocol: "tcp" as const, ports: p })),
    };
  };

  before(async () => {
    lab = getLab();
    vps = lab.hosts.vps;
    PUBLIC6 = vps.addr6!;
    CLIENT6 = lab.hosts.client.addr6!;
    assert.doesNotMatch(await vps.run("nft list tables"), /ip6 filter|inet filter/, "the lab's VPS has no filter table of its own");
    initial = await state(vps);
    const echo = "SYSTEM:'echo $SOCAT_PEERADDR; sleep 0.3'";
    for (const port of [5000, 5001]) services.push(await lab.hosts.lan.start(`socat TCP6-LISTEN:${port},ipv6only=0,reuseaddr,fork ${echo}`, { waitForTcpPort: port }));
  });

  after(async () => {
    await stopAll(services);
    const d = snapshotDiff(initial, await state(vps));
    assert.deepEqual(d, [], `the VPS after the test differs from the lab's:\n${d.join("\n")}`);
  });

  for (const c of cases) {
    describe(c.title, function () {
      let stack: Stack | undefined;
      let withDrop: string;
      let accepts = "";

      before(async () => {
        await vps.run(c.add);
        withDrop = await state(vps);
        stack = variantStack();
      });
      after(async () => {
        if (stack) {
          await stack.destroy().catch(() => undefined);
          await stack.close();
        }
        await vps.exec(c.remove);
      });

      it("up: the IPv6 (and IPv4) client reaches the LAN service with its own address; natgate's accepts are in the dropping chain", async () => {
        await timedUp(c.title, stack!, portForwardProgram("drop6", args([5000, 5001])));
        assert.equal(await ask(lab, PUBLIC6, 5000), canonical(CLIENT6));
        assert.equal(await ask(lab, PUBLIC6, 5001), canonical(CLIENT6));
        assert.equal(await ask(lab, PUBLIC, 5000), CLIENT);
        accepts = await vps.run(c.list);
        const lines = accepts.split("\n");
        for (const port of [5000, 5001]) assert.ok(lines.some((l) => c.accept6(l, port)), `an IPv6 accept for ${port} in:\n${accepts}`);
        const fa = stack!.get("drop6-vps6-1").outputs.forwardAccept as string[];
        assert.ok(fa.length > 0, "drop6-vps6-1 reports its forward accept");
        assert.deepEqual(await refreshChanges(stack!), {});
      });

      it("control: natgate's IPv6 accept for 5001 taken away by hand, the drop stops 5001 (5000 still works); refresh names it, up puts it back", async () => {
        const line = (await vps.run(c.list)).split("\n").find((l) => c.accept6(l, 5001))!;
        await vps.run(c.delAccept(line));
        assert.notEqual(await ask(lab, PUBLIC6, 5001), canonical(CLIENT6), "the drop is real");
        assert.equal(await ask(lab, PUBLIC6, 5000), canonical(CLIENT6));
        // As `pulumi up --refresh`: the refresh reads the missing accept as drift, the up repairs it.
        const drift = Object.values(await refreshDrift(stack!)).flat();
        assert.ok(drift.some((d) => /missing/.test(d)), JSON.stringify(drift));
        await stack!.up(portForwardProgram("drop6", args([5000, 5001])));
        assert.equal(await ask(lab, PUBLIC6, 5001), canonical(CLIENT6));
        assert.deepEqual(await refreshChanges(stack!), {});
      });

      it("the forward of 5001 dropped from the program: exactly its accepts go, 5000's stay and still work", async () => {
        const before5001 = (await vps.run(c.list)).split("\n").filter((l) => !/^\s*$/.test(l));
        await stack!.up(portForwardProgram("drop6", args([5000])));
        const now = (await vps.run(c.list)).split("\n").filter((l) => !/^\s*$/.test(l));
        const gone = before5001.filter((l) => !now.includes(l));
        const added = now.filter((l) => !before5001.includes(l));
        assert.deepEqual(added, [], "nothing new in the chain");
        assert.ok(gone.length > 0 && gone.every((l) => /natgate/.test(l) && /\b5001\b/.test(l)), `only 5001's accepts went:\n${gone.join("\n")}`);
        assert.ok(gone.some((l) => c.accept6(l, 5001)), `5001's IPv6 accept went:\n${gone.join("\n")}`);
        assert.ok(now.some((l) => c.accept6(l, 5000)), "5000's IPv6 accept stays");
        assert.equal(await ask(lab, PUBLIC6, 5000), canonical(CLIENT6));
        assert.notEqual(await ask(lab, PUBLIC6, 5001), canonical(CLIENT6));
      });

      it("destroy leaves the VPS as before up: the drop in place, no accept of natgate's", async () => {
        await timedDestroy(c.title, stack!);
        await stack!.close();
        stack = undefined;
        const d = snapshotDiff(withDrop, await state(vps));
        assert.deepEqual(d, [], `the VPS after destroy differs from before up:\n${d.join("\n")}`);
        assert.doesNotMatch(await vps.run(c.list), /natgate/);
      });
    });
  }
});
