// A VPS whose IPv6 default route comes from router advertisements (issue 10's pitfalls): with
// forwarding on, the kernel ignores RAs on an interface whose accept_ra is 1, so the route expires
// at its lifetime and IPv6 replies to the internet have no way out. natgate holds accept_ra at 2
// before it turns forwarding on. Real RAs (ICMPv6 type 134, hop limit 255, to ff02::1) are sent by
// the core on its VPS-side interface from a raw socket; the VPS's static IPv6 default route is
// taken away first and put back at the end.
// Run: node_modules/.bin/tsx test/lab/cli.ts run -- node_modules/.bin/mocha test/variants/vps-ra.test.ts
import { strict as assert } from "assert";
import type { PortForwardArgs } from "natgate";
import { getLab, type Lab, type LabHost, type LabProcess } from "../lab";
import type { Stack } from "../engine/stack";
import { snapshotDiff } from "../engine/seedLab";
import { ask, canonical } from "./dualStack";
import { baseArgs, hostState, portForwardProgram, PUBLIC, refreshDrift, stopAll, timedDestroy, timedUp, variantStack } from "./variantLab";

// One router advertisement: cur hop limit 0 and reachable/retrans 0 (unspecified: the VPS keeps its
// own), no flags, no options; only the router lifetime matters. The kernel fills in the checksum.
const RA_PY = `
import socket, struct, sys
dev, lifetime = sys.argv[1], int(sys.argv[2])
idx = socket.if_nametoindex(dev)
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, idx)
s.sendto(struct.pack("!BBHBBHII", 134, 0, 0, 0, 0, lifetime, 0, 0), ("ff02::1", 0, 0, idx))
`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The VPS's RA-learned default route: its router and seconds left (<= 0: expired, not used). */
async function raRoute(vps: LabHost): Promise<{ via: string; expires: number } | undefined> {
  const out = await vps.run("ip -6 route show default");
  const m = /^default via (fe80::\S+) dev eth0 proto ra .*expires (-?\d+)sec/m.exec(out);
  return m ? { via: m[1]!, expires: Number(m[2]) } : undefined;
}

const live = (r: { expires: number } | undefined) => r !== undefined && r.expires > 0;

/** What the LAN service behind [PUBLIC6]:5000 saw for a connection from the client. */
const ask6 = (lab: Lab, address: string) => ask(lab.hosts.client, "tcp", address, 5000);

/** Host state with the RA route's countdown left out (it moves by itself). */
async function state(h: LabHost): Promise<string> {
  const v6 = await h.run("echo '# ip -6 route'; ip -6 route show table all | grep -v ' proto kernel ' | sed 's/ expires -\\?[0-9]*sec//'; echo '# ip6tables'; ip6tables -w -S; sysctl net.ipv6.conf.all.forwarding; for f in /proc/sys/net/ipv6/conf/*/accept_ra; do echo \"$f $(cat $f)\"; done");
  return (await hostState(h)).replace(/ expires -?\d+sec/g, "") + "\n" + v6;
}

describe("variants: a VPS whose IPv6 default route comes from router advertisements", function () {
  this.timeout(240_000);
  let lab: Lab;
  let vps: LabHost;
  let stack: Stack | undefined;
  const services: LabProcess[] = [];
  let initial: string; // the lab's VPS, static route
  let raOnly: string; // the VPS with its route from an RA, before up
  let coreDev: string;
  let PUBLIC6: string;
  let CLIENT6: string;

  const sendRa = async (lifetime: number) => {
    await lab.hosts.core.run(`python3 - ${coreDev} ${lifetime}`, { input: RA_PY });
    await sleep(300);
  };
  const args = (): PortForwardArgs => {
    const b = baseArgs(lab);
    return {
      ...b,
      vps: { ...(b.vps as object), publicAddress: PUBLIC, publicAddress6: PUBLIC6 } as PortForwardArgs["vps"],
      router: { ...b.router, lanSubnet6: lab.addresses6.lanSubnet },
      lanHost6: lab.hosts.lan.addr6,
      forwards: [{ protocol: "tcp", ports: 5000 }],
    };
  };

  before(async () => {
    lab = getLab();
    vps = lab.hosts.vps;
    PUBLIC6 = vps.addr6!;
    CLIENT6 = lab.hosts.client.addr6!;
    coreDev = (await lab.hosts.core.run(`ip -6 -o addr show to ${lab.addresses6.coreVpsSide}/128 | awk '{print $2}'`)).trim();
    assert.ok(coreDev, "the core's VPS-side interface");
    assert.match(await lab.hosts.core.run("python3 -c 'import socket; print(socket.IPPROTO_ICMPV6)'"), /58/);
    initial = await state(vps);
    services.push(await lab.hosts.lan.start("socat TCP6-LISTEN:5000,ipv6only=0,reuseaddr,fork SYSTEM:'echo $SOCAT_PEERADDR; sleep 0.3'", { waitForTcpPort: 5000 }));
    stack = variantStack();
  });

  after(async () => {
    await stopAll(services);
    if (stack) {
      await stack.destroy().catch(() => undefined);
      await stack.close();
    }
    // The lab's VPS as it was: no RA route, the static default via the core, accept_ra 0.
    await vps.exec(
      `ip -6 route del default proto ra 2>/dev/null; ip -6 route show default | grep -q . || ip -6 route add default via ${lab.addresses6.coreVpsSide} dev eth0;` +
        " echo 0 > /proc/sys/net/ipv6/conf/eth0/accept_ra",
    );
    const d = snapshotDiff(initial, await state(vps));
    assert.deepEqual(d, [], `the VPS after the test differs from the lab's:\n${d.join("\n")}`);
  });

  it("the static route gone and accept_ra=1 on eth0, a router advertisement gives the VPS `default via fe80::… proto ra` (control: forwarding=1 by hand purges it)", async () => {
    await vps.run("ip -6 route del default; echo 1 > /proc/sys/net/ipv6/conf/eth0/accept_ra");
    assert.equal((await vps.run("ip -6 route show default")).trim(), "", "no IPv6 default route before the RA");
    await sendRa(120);
    const r = await raRoute(vps);
    assert.ok(live(r), `RA route: ${await vps.run("ip -6 route show default")}`);
    assert.match(r!.via, /^fe80::/);
    const ping = await lab.hosts.client.exec(`ping -6 -c1 -W2 ${PUBLIC6}`);
    assert.equal(ping.code, 0, `the client reaches the VPS by its RA route: ${ping.stdout}`);
    // Control: forwarding turned on while accept_ra is 1 purges RA-learned default routes at once
    // (the kernel's rt6_purge_dflt_routers spares only accept_ra 2), so the hold must come first.
    await vps.run("echo 1 > /proc/sys/net/ipv6/conf/all/forwarding");
    const purged = (await vps.run("ip -6 route show default")).trim();
    await vps.run("echo 0 > /proc/sys/net/ipv6/conf/all/forwarding");
    assert.equal(purged, "", "forwarding=1 with accept_ra 1 removed the RA route");
    await sendRa(120);
    assert.ok(live(await raRoute(vps)));
    raOnly = await state(vps);
  });

  it("up (forwarding=1 on the VPS) holds eth0's accept_ra at 2 first: the RA route is still there, the client reaches the LAN service", async () => {
    await timedUp("vps ra", stack!, portForwardProgram("ra", args()));
    assert.equal((await vps.run("cat /proc/sys/net/ipv6/conf/all/forwarding /proc/sys/net/ipv6/conf/eth0/accept_ra")).trim().split("\n").join(" "), "1 2");
    assert.ok(live(await raRoute(vps)), `turning forwarding on kept the RA route: ${await vps.run("ip -6 route show default")}`);
    assert.equal(await ask6(lab, PUBLIC6), canonical(CLIENT6));
  });

  it("RAs keep coming (lifetime 6 s, one every 4 s): the VPS takes each, its route outlives the first one's lifetime, the forward works", async () => {
    await sendRa(6);
    const first = await raRoute(vps);
    assert.ok(live(first) && first!.expires <= 6, `the 6 s RA was taken: ${JSON.stringify(first)}`);
    await sleep(4000);
    await sendRa(6);
    await sleep(4000); // 8 s after the first: only the second RA keeps the route
    const r = await raRoute(vps);
    assert.ok(live(r), `route after 8 s: ${await vps.run("ip -6 route show default")}`);
    assert.equal(await ask6(lab, PUBLIC6), canonical(CLIENT6));
  });

  it("control: accept_ra=1 by hand (the hold defeated) and the same RAs: they are ignored, the route expires, the forward stops; refresh names the interface; up puts 2 back and the next RA restores the path", async () => {
    await vps.run("echo 1 > /proc/sys/net/ipv6/conf/eth0/accept_ra");
    await sendRa(6);
    await sleep(4000);
    await sendRa(6);
    await sleep(4000);
    const r = await raRoute(vps);
    assert.ok(!live(r), `the route expired with forwarding on and accept_ra 1: ${await vps.run("ip -6 route show default")}`);
    assert.notEqual(await ask6(lab, PUBLIC6), canonical(CLIENT6), "no route back to the client");
    const drift = Object.values(await refreshDrift(stack!)).flat();
    assert.ok(drift.some((d) => /net\.ipv6\.conf\.eth0\.accept_ra is 1/.test(d)), JSON.stringify(drift));
    await stack!.up(portForwardProgram("ra", args()));
    assert.equal((await vps.run("cat /proc/sys/net/ipv6/conf/eth0/accept_ra")).trim(), "2");
    await sendRa(6);
    assert.ok(live(await raRoute(vps)), `the RA after up was taken: ${await vps.run("ip -6 route show default")}`);
    assert.equal(await ask6(lab, PUBLIC6), canonical(CLIENT6));
  });

  it("destroy: forwarding 0 and accept_ra 1 again (the VPS as before up, its RA route aside); RAs are taken as before", async () => {
    await sendRa(120);
    await timedDestroy("vps ra", stack!);
    await stack!.close();
    stack = undefined;
    const d = snapshotDiff(raOnly, await state(vps));
    assert.deepEqual(d, [], `the VPS after destroy differs from before up:\n${d.join("\n")}`);
    await sendRa(30);
    const r = await raRoute(vps);
    assert.ok(live(r) && r!.expires <= 30, `an RA after destroy is taken (accept_ra 1, forwarding 0): ${JSON.stringify(r)}`);
  });
});
