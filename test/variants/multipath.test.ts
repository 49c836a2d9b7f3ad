// Several natgate paths on one router (issue 12), as a program writes them, no slot given: one
// PortForward with two VPSes (the lab's VPS with a second public address stands in for the second
// VPS: its own tunnel wg1 on port 51821, its own DNAT rules) and a second PortForward for other
// ports, which takes the next free slot (2); traffic through all three paths at once, each showing
// the client's real address; another stack's PortForward on the same router, which this program's
// choice cannot see, is refused on the router before anything there changes; destroy leaves both
// hosts as they were.
// Run: node_modules/.bin/tsx test/lab/cli.ts run -- node_modules/.bin/mocha test/variants/multipath.test.ts
import { strict as assert } from "assert";
import { PortForward, type PortForwardArgs } from "natgate";
import { getLab, type Lab, type LabProcess } from "../lab";
import type { Stack } from "../engine/stack";
import { askBanner } from "../engine/seedLab";
import {
  askTcp,
  askUdp,
  assertHostsAsBefore,
  baseArgs,
  CLIENT,
  cleanup,
  connectionTo,
  driftAfterRefresh,
  lanServices,
  PUBLIC,
  snapshotAll,
  stopAll,
  timedDestroy,
  timedUp,
  variantStack,
} from "./variantLab";

/** The second "VPS": another public address on the lab's VPS, reached from the client through core. */
const SECOND = "198.51.100.2";

/** What the client got back from the LAN service at `address`:`port` ("" when nothing came back; askUdp asks twice). */
const ask = (lab: Lab, proto: "tcp" | "udp", address: string, port: number) =>
  (proto === "tcp" ? askTcp(lab, port, address) : askUdp(lab, port, address)).then((p) => p.answer);

function twoVpses(lab: Lab): PortForwardArgs {
  const base = baseArgs(lab);
  return {
    ...base,
    vps: [
      { connection: connectionTo(lab, "vps"), publicAddress: PUBLIC },
      { connection: connectionTo(lab, "vps"), publicAddress: SECOND },
    ],
    forwards: [{ protocol: "both", ports: "5000-5010" }],
    routerForwards: [{ protocol: "tcp", ports: 2222, toPorts: 22 }],
  };
}

// No slot: the one after home's two.
const games = (lab: Lab): PortForwardArgs => ({ ...baseArgs(lab), forwards: [{ protocol: "both", ports: 7000 }] });

describe("variants: several paths on one router", function () {
  this.timeout(300_000);
  let lab: Lab;
  let stack: Stack | undefined;
  let services: LabProcess[] = [];
  let initial: Awaited<ReturnType<typeof snapshotAll>>;
  const program = () => () => {
    const home = new PortForward("home", twoVpses(lab));
    const g = new PortForward("games", games(lab));
    return { home: home.paths.map((p) => p.slot), games: g.paths.map((p) => p.slot) };
  };

  before(async () => {
    lab = getLab();
    await lab.hosts.vps.run(`ip addr add ${SECOND}/24 dev eth0`);
    initial = await snapshotAll(lab);
    services = await lanServices(lab, [["tcp", 5000], ["udp", 5003], ["tcp", 7000], ["udp", 7000], ["tcp", 7100]]);
    stack = variantStack();
  });

  after(async () => {
    await stopAll(services);
    await cleanup(stack);
    stack = undefined;
    await lab.hosts.vps.run(`ip addr del ${SECOND}/24 dev eth0`).catch(() => undefined);
  });

  it("up: each path has its own tunnel, table, priorities and mark on the router", async () => {
    const up = await timedUp("two VPSes + a second component", stack!, program());
    assert.deepEqual(up.exports, { home: [0, 1], games: [2] }, "games, given no slot, takes the one after home's two");
    const r = lab.hosts.router;
    const rules = (await r.run("ip rule show")).split("\n").filter((l) => /^9[5-6]\d:/.test(l)).map((l) => l.replace(/\s+/g, " ").trim());
    assert.deepEqual(rules, [
      "950: from all fwmark 0x10000000/0x10000000 lookup 8764",
      "951: from 10.10.10.2 lookup 8764",
      "952: from all fwmark 0x20000000/0x20000000 lookup 8765",
      "953: from 10.10.11.2 lookup 8765",
      "954: from all fwmark 0x40000000/0x40000000 lookup 8766",
    ]);
    assert.match(await r.run("ip route show table 8765"), /^default via 10\.10\.11\.1 dev wg1/m);
    assert.match(await r.run("ip route show table 8766"), /^default via 10\.10\.12\.1 dev wg2/m);
    assert.match(await lab.hosts.vps.run("wg show wg1 listen-port"), /^51821$/m);
    assert.match(await r.run("ls /etc/natgate/claims"), /wireguard-wg2/);
  });

  it("traffic through all three paths at once shows the client's real address", async () => {
    const asks: Array<[string, Promise<string>]> = [
      ["tcp/5000", ask(lab, "tcp", PUBLIC, 5000)],
      ["tcp/5000", ask(lab, "tcp", SECOND, 5000)],
      ["udp/5003", ask(lab, "udp", SECOND, 5003)],
      ["tcp/7000", ask(lab, "tcp", PUBLIC, 7000)],
      ["udp/7000", ask(lab, "udp", PUBLIC, 7000)],
    ];
    const got = await Promise.all(asks.map(([, p]) => p));
    assert.deepEqual(got, asks.map(([what]) => `${what} saw ${CLIENT}`));
    assert.match((await askBanner(lab, 2222, SECOND)).answer, /^SSH-2\.0-OpenSSH/, "the router's own sshd answers through the second VPS too");
    assert.equal(await ask(lab, "tcp", SECOND, 7000), "", "games is only on the first VPS");
  });

  it("refresh finds every path in sync", async () => {
    assert.deepEqual(await driftAfterRefresh(stack!), []);
  });

  it("another stack's PortForward on the router (slot 0 in its own program) is refused before anything on the router changes", async () => {
    const before = await snapshotAll(lab);
    const other = variantStack();
    try {
      await assert.rejects(other.up(() => void new PortForward("clash", { ...baseArgs(lab), forwards: [{ protocol: "tcp", ports: 7100 }] })), (e: Error) => {
        assert.match(e.message, /WireGuard interface wg0 on the (dialer|listener) .* is already used by another natgate resource \(Tunnel home_tunnel; .*nothing was changed\. .*`slot: 1`/s);
        return true;
      });
    } finally {
      await cleanup(other);
    }
    await assertHostsAsBefore(lab, before, "the refused up");
    // The paths that were there still carry traffic.
    assert.equal(await ask(lab, "tcp", SECOND, 5000), `tcp/5000 saw ${CLIENT}`);
  });

  it("destroy leaves both hosts as they were", async () => {
    await timedDestroy("two VPSes + a second component", stack!);
    await assertHostsAsBefore(lab, initial);
  });
});

