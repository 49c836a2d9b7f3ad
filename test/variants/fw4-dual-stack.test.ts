// OpenWrt's real fw4 on the router with its default zones (wan: input REJECT, forward REJECT, and
// fw4's defaults apply to IPv6 as much as to IPv4) and a dual-stack PortForward (issue 10's
// pitfalls): the IPv6 forwards to the LAN host and the router-local IPv6 service work because
// natgate's accepts in `table inet fw4` cover IPv6 (`ct reply ip6 saddr ...`), in include files fw4
// re-applies; fw4 reload / restart keep both families' paths with nothing else done; taking the
// IPv6 accept out of fw4's live chain breaks only IPv6 (the control); destroy leaves the router
// as before. See fw4-router.test.ts for the IPv4-only variant and test/lab/fw4.ts for the setup.
// Run: node_modules/.bin/tsx test/lab/cli.ts run -- node_modules/.bin/mocha test/variants/fw4-dual-stack.test.ts
import { strict as assert } from "assert";
import type { PortForwardArgs } from "natgate";
import { getLab, privateLib, type Lab, type LabHost, type LabProcess } from "../lab";
import { fw4, installFw4, removeFw4 } from "../lab/fw4";
import type { Stack } from "../engine/stack";
import { snapshotDiff } from "../engine/seedLab";
import { ask, canonical, stateBothFamilies as state } from "./dualStack";
import { baseArgs, CLIENT, cleanup, portForwardProgram, PUBLIC, refreshChanges, refreshDrift, stopAll, timedDestroy, timedUp, variantStack } from "./variantLab";

const INCLUDES = "/usr/share/nftables.d/chain-pre";

describe("variants: OpenWrt's real fw4 on the router, a dual-stack PortForward (IPv6 forwards through fw4's REJECT)", function () {
  this.timeout(300_000);
  let lab: Lab;
  let stack: Stack | undefined;
  const services: LabProcess[] = [];
  let undoLib: (() => Promise<void>) | undefined;
  let fw4Installed = false;
  let initial: Record<"vps" | "router", string>;
  let PUBLIC6: string;
  let CLIENT6: string;
  const backIn: Array<[string, number, number]> = [];

  const args = (): PortForwardArgs => {
    const b = baseArgs(lab);
    return {
      ...b,
      vps: { ...(b.vps as object), publicAddress: PUBLIC, publicAddress6: PUBLIC6 } as PortForwardArgs["vps"],
      router: { ...b.router, lanSubnet6: lab.addresses6.lanSubnet },
      lanHost6: lab.hosts.lan.addr6,
      forwards: [{ protocol: "both", ports: "5000-5001" }],
      // 7000 → 7001 remaps; 7002 keeps its port, where the router's DNAT to its own tunnel address
      // changes nothing and conntrack marks no flow dnat: its input accept goes by the tunnel
      // interface instead (fw4 rejected it while the accept asked for `ct status dnat`).
      routerForwards: [{ protocol: "tcp", ports: 7000, toPorts: 7001 }, { protocol: "tcp", ports: 7002 }],
    };
  };

  /** Both families, both protocols, to the LAN host and to the router-local service. */
  async function traffic(when: string): Promise<void> {
    const got = {
      "tcp 5000 v4": await ask(lab.hosts.client, "tcp", PUBLIC, 5000),
      "udp 5001 v4": await ask(lab.hosts.client, "udp", PUBLIC, 5001),
      "tcp 7000 v4 (router)": await ask(lab.hosts.client, "tcp", PUBLIC, 7000),
      "tcp 7002 v4 (router, same port)": await ask(lab.hosts.client, "tcp", PUBLIC, 7002),
      "tcp 5000 v6": await ask(lab.hosts.client, "tcp", PUBLIC6, 5000),
      "udp 5001 v6": await ask(lab.hosts.client, "udp", PUBLIC6, 5001),
      "tcp 7000 v6 (router)": await ask(lab.hosts.client, "tcp", PUBLIC6, 7000),
      "tcp 7002 v6 (router, same port)": await ask(lab.hosts.client, "tcp", PUBLIC6, 7002),
    };
    const c4 = canonical(CLIENT);
    const c6 = canonical(CLIENT6);
    assert.deepEqual(got, {
      "tcp 5000 v4": c4, "udp 5001 v4": c4, "tcp 7000 v4 (router)": c4, "tcp 7002 v4 (router, same port)": c4,
      "tcp 5000 v6": c6, "udp 5001 v6": c6, "tcp 7000 v6 (router)": c6, "tcp 7002 v6 (router, same port)": c6,
    }, when);
  }

  /** Seconds until a new tcp connection of the family shows the client's address; Infinity after maxMs. */
  async function secondsUntilBack(address: string, client: string, maxMs = 10_000): Promise<number> {
    const t = Date.now();
    while (Date.now() - t < maxMs) {
      if ((await ask(lab.hosts.client, "tcp", address, 5000)) === canonical(client)) return (Date.now() - t) / 1000;
      await new Promise((r) => setTimeout(r, 200));
    }
    return Infinity;
  }

  before(async () => {
    lab = getLab();
    PUBLIC6 = lab.hosts.vps.addr6!;
    CLIENT6 = lab.hosts.client.addr6!;
    undoLib = await privateLib(lab, lab.hosts.router, "fw4-dual-stack");
    await installFw4(lab);
    fw4Installed = true;
    const echo = "SYSTEM:'echo $SOCAT_PEERADDR; sleep 0.3'";
    services.push(await lab.hosts.lan.start(`socat TCP6-LISTEN:5000,ipv6only=0,reuseaddr,fork ${echo}`, { waitForTcpPort: 5000 }));
    services.push(await lab.hosts.lan.start(`socat UDP6-RECVFROM:5001,ipv6only=0,fork ${echo}`, { waitForUdpPort: 5001 }));
    services.push(await lab.hosts.router.start(`socat TCP6-LISTEN:7001,ipv6only=0,reuseaddr,fork ${echo}`, { waitForTcpPort: 7001 }));
    services.push(await lab.hosts.router.start(`socat TCP6-LISTEN:7002,ipv6only=0,reuseaddr,fork ${echo}`, { waitForTcpPort: 7002 }));
    initial = { vps: await state(lab.hosts.vps), router: await state(lab.hosts.router) };
    stack = variantStack();
  });
  after(async () => {
    if (backIn.length) console.log(`      seconds until the path was back (IPv4, IPv6):\n${backIn.map(([a, s4, s6]) => `        ${a.padEnd(36)} ${s4.toFixed(2)}  ${s6.toFixed(2)}`).join("\n")}`);
    await cleanup(stack);
    await stopAll(services);
    if (fw4Installed) await removeFw4(lab);
    await undoLib?.();
  });

  it("fw4's default zones reject forwards of both families (control: its forward chain ends in a reject that does not look at the family)", async () => {
    const fwd = await lab.hosts.router.run("nft list chain inet fw4 forward");
    assert.match(fwd, /jump handle_reject/, fwd);
    assert.doesNotMatch(fwd.split("\n").filter((l) => /handle_reject/.test(l)).join("\n"), /nfproto|ip6? /);
    assert.match(await lab.hosts.router.run("uci -q get firewall.@defaults[0].forward"), /REJECT/);
    assert.equal((await lab.hosts.router.exec("uci -q get firewall.@defaults[0].disable_ipv6")).stdout.trim(), "", "fw4 handles IPv6");
  });

  it("up: both families reach the LAN host (tcp, udp) and the router-local service through fw4; natgate's accepts in inet fw4 cover IPv6", async () => {
    await timedUp("fw4 dual stack", stack!, portForwardProgram("fds", args()));
    await traffic("after up");
    const r = lab.hosts.router;
    const forward = await r.run(`cat ${INCLUDES}/forward/natgate-*.nft`);
    const lan6 = canonical(lab.hosts.lan.addr6!);
    assert.match(forward, new RegExp(`^meta l4proto tcp ct status dnat ct reply ip6 saddr ${lan6.replace(/[.:]/g, "\\$&")} ct reply proto-src 5000-5001 accept comment "natgate:`, "m"), forward);
    assert.match(forward, new RegExp(`^meta l4proto udp ct status dnat ct reply ip6 saddr ${lan6.replace(/[.:]/g, "\\$&")} `, "m"), forward);
    assert.match(forward, /^meta l4proto tcp ct status dnat ct reply ip saddr 192\.168\.1\.99 /m, forward);
    const input = await r.run(`cat ${INCLUDES}/input/natgate-*.nft`);
    assert.match(input, /^meta l4proto tcp ct status dnat ct reply ip6 saddr \S+ ct reply proto-src 7001 accept comment "natgate:/m, input);
    // The same rules in fw4's live chains (what fw4 loaded from the include files).
    const live = await r.run("nft list chain inet fw4 forward; nft list chain inet fw4 input");
    assert.match(live, /ct reply ip6 saddr fd00:1::99 ct reply proto-src 5000-5001 accept/, live);
    assert.match(live, /ct reply ip6 saddr \S+ ct reply proto-src 7001 accept/, live);
    assert.equal((await fw4(lab, "check")).code, 0, "fw4 check passes with natgate's include files");
    assert.deepEqual(await refreshChanges(stack!), {});
  });

  for (const a of [
    { title: "fw4 reload", run: (l: Lab) => fw4(l, "reload") },
    { title: "fw4 restart", run: (l: Lab) => fw4(l, "restart") },
    { title: "/etc/init.d/firewall reload (LuCI)", run: (l: Lab) => fw4(l, "reload", { via: "init.d" }) },
    { title: "/etc/init.d/firewall restart", run: (l: Lab) => fw4(l, "restart", { via: "init.d" }) },
  ]) {
    it(`${a.title}: fw4's table is rebuilt, both families' paths work with nothing else done`, async () => {
      const was = await lab.hosts.router.run("nft -a list table inet fw4");
      await a.run(lab);
      assert.notEqual(await lab.hosts.router.run("nft -a list table inet fw4"), was, "fw4 rebuilt its table (new handles)");
      const s6 = await secondsUntilBack(PUBLIC6, CLIENT6);
      const s4 = await secondsUntilBack(PUBLIC, CLIENT);
      backIn.push([a.title, s4, s6]);
      assert.ok(s6 < 5 && s4 < 5, `the path was not back within 5 s after ${a.title} (IPv4 ${s4}, IPv6 ${s6})`);
      await traffic(`after ${a.title}`);
      assert.deepEqual(await refreshChanges(stack!), {}, `refresh after ${a.title}`);
    });
  }

  it("control: natgate's IPv6 forward accept taken out of fw4's live chain, IPv6 forwards are rejected (IPv4 still works); refresh says so; fw4 reload puts it back from the include file", async () => {
    const r = lab.hosts.router;
    const handles = [...(await r.run("nft -a list chain inet fw4 forward")).matchAll(/ct reply ip6 saddr fd00:1::99 .*natgate.* # handle (\d+)/g)].map((m) => m[1]);
    assert.ok(handles.length >= 2, "a tcp and a udp accept");
    for (const h of handles) await r.run(`nft delete rule inet fw4 forward handle ${h}`);
    assert.notEqual(await ask(lab.hosts.client, "tcp", PUBLIC6, 5000), canonical(CLIENT6), "fw4's reject stops the IPv6 forward");
    assert.equal(await ask(lab.hosts.client, "tcp", PUBLIC, 5000), canonical(CLIENT));
    assert.equal(await ask(lab.hosts.client, "tcp", PUBLIC6, 7000), canonical(CLIENT6), "the router-local IPv6 service (its input accept) is untouched");
    const drift = Object.values(await refreshDrift(stack!)).flat();
    assert.ok(drift.some((d) => d.startsWith("missing accept in inet fw4 forward")), JSON.stringify(drift));
    await fw4(lab, "reload");
    assert.ok((await secondsUntilBack(PUBLIC6, CLIENT6)) < 5);
    await traffic("after the control's reload");
    assert.deepEqual(Object.values(await refreshDrift(stack!)).flat(), []);
  });

  // The lab's fw4 (firewall4 b6e5157) has no zone `option rpfilter`: its templates have no fib
  // rule. What such an option would add, `fib saddr . iif oif missing drop` for the tunnel, goes
  // where fw4 would put it (its mangle_prerouting chain, an include file fw4 loads) by hand.
  it("a strict reverse-path rule on the tunnel in fw4's mangle_prerouting (before DNAT): both families still work (the lookup's source is the router's tunnel address, natgate's `from` rule routes it back into the tunnel); control: the same rule after the router's DNAT drops the LAN forwards", async () => {
    const r = lab.hosts.router;
    const tun = (await r.run("ip -6 route show table all default | awk '{for(i=1;i<=NF;i++) if ($i==\"dev\") print $(i+1)}' | head -1")).trim();
    assert.ok(tun, "the tunnel interface (natgate's IPv6 default route's device)");
    const dir = `${INCLUDES}/mangle_prerouting`;
    const hadDir = (await r.exec(`[ -d ${dir} ]`)).code === 0;
    const rule = `iifname "${tun}" fib saddr . iif oif missing counter drop comment "lab: rpfilter"`;
    try {
      await r.run(`mkdir -p ${dir} && printf '%s\\n' '${rule}' > ${dir}/lab-rpfilter.nft`);
      await fw4(lab, "reload");
      assert.match(await r.run("nft list chain inet fw4 mangle_prerouting"), /fib saddr \. iif oif missing counter packets 0 bytes 0 drop comment "lab: rpfilter"/);
      await traffic("with the rpfilter rule in mangle_prerouting");
      assert.match(await r.run("nft list chain inet fw4 mangle_prerouting"), /counter packets 0 bytes 0 drop comment "lab: rpfilter"/, "it dropped nothing");
      // After dstnat the lookup's source is the LAN host's address, which no `from` rule covers.
      await r.run(`nft -f - <<'EOF'\ntable inet lab_rpf_late {\n  chain pre {\n    type filter hook prerouting priority dstnat + 10; policy accept;\n    ${rule}\n  }\n}\nEOF`);
      try {
        assert.notEqual(await ask(lab.hosts.client, "tcp", PUBLIC6, 5000), canonical(CLIENT6), "after DNAT the rule drops the IPv6 forward");
        assert.notEqual(await ask(lab.hosts.client, "tcp", PUBLIC, 5000), canonical(CLIENT), "and the IPv4 one");
        assert.equal(await ask(lab.hosts.client, "tcp", PUBLIC6, 7000), canonical(CLIENT6), "the router-local service (still the tunnel address) passes");
      } finally {
        await r.run("nft delete table inet lab_rpf_late");
      }
    } finally {
      await r.run(`rm -f ${dir}/lab-rpfilter.nft; ${hadDir ? "true" : `rmdir ${dir}`}`);
      await fw4(lab, "reload");
    }
    await traffic("after the rpfilter rules went");
  });

  it("destroy removes natgate's include files and leaves both hosts' IPv4 and IPv6 state as before", async () => {
    await timedDestroy("fw4 dual stack", stack!);
    await stack!.close();
    stack = undefined;
    assert.equal((await lab.hosts.router.run(`ls -A ${INCLUDES}`)).trim(), "", "chain-pre/ is as fw4 ships it: empty");
    assert.equal((await fw4(lab, "check")).code, 0);
    await fw4(lab, "reload");
    for (const h of ["vps", "router"] as const) {
      const d = snapshotDiff(initial[h], await state(lab.hosts[h]));
      assert.deepEqual(d, [], `${h} after destroy differs from before:\n${d.join("\n")}`);
    }
  });
});
