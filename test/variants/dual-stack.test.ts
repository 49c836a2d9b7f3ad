// Dual stack (issue 10): one PortForward publishes the same forwards on the VPS's IPv4 and IPv6
// addresses, each family to the LAN host's address of that family, through one WireGuard tunnel
// that carries both (its endpoint stays IPv4: the router's WAN is IPv4-only behind the CGNAT).
// The LAN service sees the client's own address of either family; an allow-list of both families
// admits the client and refuses strangers of each family; a router-local service answers on both;
// destroy leaves both hosts' IPv4 and IPv6 state exactly as before.
// Run: node_modules/.bin/tsx test/lab/cli.ts run -- node_modules/.bin/mocha test/variants/dual-stack.test.ts
import { strict as assert } from "assert";
import type { PortForwardArgs } from "natgate";
import { getLab, type Lab, type LabHost, type LabProcess } from "../lab";
import type { Stack } from "../engine/stack";
import { snapshotDiff } from "../engine/seedLab";
import { baseArgs, CLIENT, portForwardProgram, PUBLIC, refreshChanges, stopAll, timedDestroy, timedUp, variantStack } from "./variantLab";
import { ask, canonical, stateBothFamilies as state } from "./dualStack";

const STRANGER4 = "203.0.113.130"; // the ISP host
describe("variants: dual stack (IPv4 and IPv6 forwards in one PortForward, one tunnel carrying both)", function () {
  this.timeout(300_000);
  let lab: Lab;
  let stack: Stack | undefined;
  const services: LabProcess[] = [];
  let initial: Record<"vps" | "router", string>;
  let PUBLIC6: string;
  let CLIENT6: string;

  function args(): PortForwardArgs {
    const b = baseArgs(lab);
    return {
      ...b,
      vps: { ...(b.vps as object), publicAddress: PUBLIC, publicAddress6: PUBLIC6 } as PortForwardArgs["vps"],
      router: { ...b.router, lanSubnet6: lab.addresses6.lanSubnet },
      lanHost6: lab.hosts.lan.addr6,
      forwards: [
        { protocol: "both", ports: "5000-5001" },
        { protocol: "tcp", ports: 5002, allowFrom: [CLIENT, CLIENT6], refuse: "reject" },
      ],
      routerForwards: [{ protocol: "tcp", ports: 7000 }],
    };
  }

  before(async () => {
    lab = getLab();
    PUBLIC6 = lab.hosts.vps.addr6!;
    CLIENT6 = lab.hosts.client.addr6!;
    initial = { vps: await state(lab.hosts.vps), router: await state(lab.hosts.router) };
    // LAN services on both families (socat's TCP6/UDP6 listeners with ipv6only=0 take IPv4 too).
    const echo = "SYSTEM:'echo $SOCAT_PEERADDR; sleep 0.3'";
    for (const port of [5000, 5001, 5002]) services.push(await lab.hosts.lan.start(`socat TCP6-LISTEN:${port},ipv6only=0,reuseaddr,fork ${echo}`, { waitForTcpPort: port }));
    for (const port of [5000, 5001]) services.push(await lab.hosts.lan.start(`socat UDP6-RECVFROM:${port},ipv6only=0,fork ${echo}`, { waitForUdpPort: port }));
    // A router-local service, on both families.
    services.push(await lab.hosts.router.start(`socat TCP6-LISTEN:7000,ipv6only=0,reuseaddr,fork ${echo}`, { waitForTcpPort: 7000 }));
    stack = variantStack();
  });

  after(async () => {
    await stopAll(services);
    if (stack) {
      await stack.destroy().catch(() => undefined);
      await stack.close();
    }
  });

  it("up creates both families' rules and a tunnel with IPv6 addresses; refresh finds no drift", async () => {
    await timedUp("dual stack", stack!, portForwardProgram("ds", args()));
    const names = stack!.state.filter((r) => r.custom).map((r) => r.name).sort();
    for (const n of ["ds-vps-0", "ds-vps6-0", "ds-router-0", "ds-router6-0", "ds-vps6-1", "ds-vps6-2", "ds-router6-local-0"]) assert.ok(names.includes(n), `${n} in ${names.join(", ")}`);
    assert.deepEqual(await refreshChanges(stack!), {});
  });

  it("IPv4 and IPv6 clients reach the LAN service with their own address, over tcp and udp", async () => {
    const client = lab.hosts.client;
    const got = [
      await ask(client, "tcp", PUBLIC, 5000), await ask(client, "udp", PUBLIC, 5001),
      await ask(client, "tcp", PUBLIC6, 5000), await ask(client, "udp", PUBLIC6, 5001), await ask(client, "tcp", PUBLIC6, 5001),
    ];
    assert.deepEqual(got, [CLIENT, CLIENT, canonical(CLIENT6), canonical(CLIENT6), canonical(CLIENT6)].map(canonical));
  });

  it("the allow-list admits the client on both families and rejects a stranger of each", async () => {
    assert.equal(await ask(lab.hosts.client, "tcp", PUBLIC, 5002), canonical(CLIENT));
    assert.equal(await ask(lab.hosts.client, "tcp", PUBLIC6, 5002), canonical(CLIENT6));
    const s4 = await lab.hosts.isp.exec(`socat -T3 - TCP4:${PUBLIC}:5002,connect-timeout=3 </dev/null`, { timeoutMs: 10_000 });
    assert.match(s4.stderr, /Connection refused/, `IPv4 stranger ${STRANGER4}: ${s4.stdout} ${s4.stderr}`);
    const s6 = await lab.hosts.core.exec(`socat -T3 - TCP6:[${PUBLIC6}]:5002,connect-timeout=3 </dev/null`, { timeoutMs: 10_000 });
    assert.match(s6.stderr, /Connection refused/, `IPv6 stranger (the core): ${s6.stdout} ${s6.stderr}`);
  });

  it("a router-local service answers on both families, seeing the client's address", async () => {
    assert.equal(await ask(lab.hosts.client, "tcp", PUBLIC, 7000), canonical(CLIENT));
    assert.equal(await ask(lab.hosts.client, "tcp", PUBLIC6, 7000), canonical(CLIENT6));
  });

  it("destroy leaves both hosts' IPv4 and IPv6 state as before", async () => {
    await timedDestroy("dual stack", stack!);
    await stack!.close();
    stack = undefined;
    for (const h of ["vps", "router"] as const) {
      const d = snapshotDiff(initial[h], await state(lab.hosts[h]));
      assert.deepEqual(d, [], `${h} after destroy differs from before:\n${d.join("\n")}`);
    }
  });
});
