// Port layouts no other test names, each through the PortForward component as a user would write
// it, run by the stack driver (the real dynamic-provider server) against the lab: up → traffic
// shows the client's address → refresh in sync → destroy → both hosts exactly as before.
// Run: node_modules/.bin/tsx test/lab/cli.ts run -- node_modules/.bin/mocha test/variants/layouts.test.ts
import { strict as assert } from "assert";
import { lineDiff } from "../engine/stack";
import { askBanner } from "../engine/seedLab";
import type { LabProcess } from "../lab";
import { describeVariant } from "./describeVariant";
import {
  answered,
  askTcp,
  askUdp,
  baseArgs,
  CLIENT,
  connectionTo,
  opsOf,
  printTimings,
  PUBLIC,
  sshLogins,
} from "./variantLab";

const saw = (proto: string, port: number) => `${proto}/${port} saw ${CLIENT}`;

describe("variants: port layouts, tunnel shapes, marks and users", function () {
  after(() => printTimings("layouts: up and destroy"));

  describeVariant({
    title: "a single TCP port remapped (VPS 8080 → LAN 80)",
    label: "tcp 8080 → 80",
    args: (lab) => ({ ...baseArgs(lab), forwards: [{ protocol: "tcp", ports: 8080, toPorts: 80 }] }),
    services: [["tcp", 80], ["tcp", 8080], ["udp", 8080]],
    async traffic({ lab }) {
      assert.equal(answered(await askTcp(lab, 8080)), saw("tcp", 80));
      assert.equal((await askUdp(lab, 8080)).answer, "", "udp 8080 is not forwarded");
      assert.equal((await askTcp(lab, 80)).answer, "", "VPS:80 is not forwarded");
    },
  });

  describeVariant({
    title: "UDP only, range 7000-7099",
    label: "udp 7000-7099",
    args: (lab) => ({ ...baseArgs(lab), forwards: [{ protocol: "udp", ports: "7000-7099" }] }),
    services: [["udp", 7000], ["udp", 7099], ["udp", 7100], ["tcp", 7000]],
    async traffic({ lab }) {
      assert.equal(answered(await askUdp(lab, 7000)), saw("udp", 7000));
      assert.equal(answered(await askUdp(lab, 7099)), saw("udp", 7099));
      assert.equal((await askUdp(lab, 7100)).answer, "", "7100 is past the range");
      const tcp = await askTcp(lab, 7000);
      assert.equal(tcp.answer, "", "tcp 7000 is not forwarded (the LAN host listens on it)");
    },
  });

  // The laptop (192.168.1.50) is a second host on the LAN: one forward goes to it.
  let laptopWeb: LabProcess | undefined;
  describeVariant({
    title: "several forwards in one component, each with its own toPorts, one to a second LAN host, plus a router-local one",
    label: "4 forwards + router-local",
    args: (lab) => ({
      ...baseArgs(lab),
      forwards: [
        { protocol: "tcp", ports: 8080, toPorts: 80 },
        { protocol: "udp", ports: "9000-9001", toPorts: "5300-5301" },
        { protocol: "both", ports: 6000 },
        { protocol: "tcp", ports: 8081, to: lab.hosts.laptop.addr, toPorts: 80 },
      ],
      routerForwards: [{ protocol: "tcp", ports: 2222, toPorts: 22 }],
    }),
    services: [["tcp", 80], ["udp", 5300], ["udp", 5301], ["udp", 5302], ["tcp", 6000], ["udp", 6000]],
    async beforeUp({ lab }) {
      laptopWeb = await lab.hosts.laptop.start(`socat TCP-LISTEN:80,reuseaddr,fork SYSTEM:'echo laptop tcp/80 saw \\$SOCAT_PEERADDR; sleep 0.3'`, { waitForTcpPort: 80 });
    },
    async afterDestroy() {
      await laptopWeb?.stop();
    },
    async traffic({ lab }) {
      assert.equal(answered(await askTcp(lab, 8081)), `laptop ${saw("tcp", 80)}`);
      assert.equal(answered(await askTcp(lab, 8080)), saw("tcp", 80));
      assert.equal(answered(await askUdp(lab, 9000)), saw("udp", 5300));
      assert.equal(answered(await askUdp(lab, 9001)), saw("udp", 5301));
      assert.equal((await askUdp(lab, 9002)).answer, "", "9002 is not forwarded yet");
      assert.equal(answered(await askTcp(lab, 6000)), saw("tcp", 6000));
      assert.equal(answered(await askUdp(lab, 6000)), saw("udp", 6000));
      assert.match(answered(await askBanner(lab, 2222)), /^SSH-2\.0-OpenSSH/);
    },
    more: [
      [
        "widening one forward's range previews as an update of that forward's two DnatRules only, with the changed lines",
        async ({ lab, stack, program, args }) => {
          const wider = { ...args, forwards: args.forwards.map((f, i) => (i === 1 ? { ...f, ports: "9000-9002", toPorts: "5300-5302" } : f)) };
          const r = await stack.preview(program(wider));
          const changed = Object.fromEntries(Object.entries(opsOf(r.steps)).filter(([, op]) => op !== "same"));
          assert.deepEqual(changed, { "home-router-1": "update", "home-vps-1": "update" });
          for (const name of ["home-router-1", "home-vps-1"]) {
            const s = r.steps.find((x) => x.name === name)!;
            assert.deepEqual(s.replaces, []);
            const props = s.changes.map((c) => c.property).sort();
            assert.deepEqual(props, name === "home-router-1" ? ["ports", "rendered", "toPorts"] : ["ports", "rendered"]);
            const rendered = s.changes.find((c) => c.property === "rendered")!;
            const lines = lineDiff(rendered.old, rendered.new);
            console.log(`      preview ${name}:\n${lines.map((l) => `        ${l}`).join("\n")}`);
            assert.ok(lines.some((l) => l.startsWith("- ") && l.includes("9000-9001")), lines.join("\n"));
            assert.ok(lines.some((l) => l.startsWith("+ ") && l.includes("9000-9002")), lines.join("\n"));
          }
          assert.match(await lab.hosts.router.run("nft list ruleset"), /9000-9001/, "preview applied nothing");
        },
      ],
      [
        "up applies it: 9002 reaches 5302; the other forwards still work",
        async ({ lab, stack, program, args }) => {
          const wider = { ...args, forwards: args.forwards.map((f, i) => (i === 1 ? { ...f, ports: "9000-9002", toPorts: "5300-5302" } : f)) };
          const r = await stack.up(program(wider));
          const changed = Object.fromEntries(Object.entries(opsOf(r.steps)).filter(([, op]) => op !== "same"));
          assert.deepEqual(changed, { "home-router-1": "update", "home-vps-1": "update" });
          assert.equal(answered(await askTcp(lab, 8081)), `laptop ${saw("tcp", 80)}`);
          assert.equal(answered(await askUdp(lab, 9002)), saw("udp", 5302));
          assert.equal(answered(await askUdp(lab, 9000)), saw("udp", 5300));
          assert.equal(answered(await askTcp(lab, 8080)), saw("tcp", 80));
          assert.equal(answered(await askTcp(lab, 6000)), saw("tcp", 6000));
        },
      ],
    ],
  });

  describeVariant({
    title: "a /30 tunnel named wg-home on port 51999",
    label: "wg-home /30 :51999",
    args: (lab) => ({
      ...baseArgs(lab),
      tunnel: { interfaceName: "wg-home", vpsAddress: "10.99.0.1/30", routerAddress: "10.99.0.2/30", listenPort: 51999 },
      forwards: [{ protocol: "both", ports: 5000 }],
    }),
    services: [["tcp", 5000], ["udp", 5000]],
    async afterUp({ lab }) {
      const { vps, router } = lab.hosts;
      assert.equal((await vps.run("wg show wg-home listen-port")).trim(), "51999");
      assert.match(await vps.run("ss -Hlnu"), /:51999\b/);
      assert.match(await router.run("wg show wg-home endpoints"), new RegExp(`\\t${PUBLIC.replace(/\./g, "\\.")}:51999$`, "m"));
      assert.match(await vps.run("ip -4 -br addr show dev wg-home"), /10\.99\.0\.1\/30/);
      assert.match(await router.run("ip -4 -br addr show dev wg-home"), /10\.99\.0\.2\/30/);
      assert.equal((await router.exec("ip link show wg0")).code, 1, "no wg0 on the router");
      assert.match(await router.run("ip route show table 8764"), /^default via 10\.99\.0\.1 dev wg-home/m);
      assert.match(await vps.run("nft list ruleset"), /dnat to 10\.99\.0\.2/);
      assert.match(await router.run("sysctl net.ipv4.conf.wg-home.rp_filter"), /= 2$/m);
    },
    async traffic({ lab }) {
      assert.equal(answered(await askTcp(lab, 5000)), saw("tcp", 5000));
      assert.equal(answered(await askUdp(lab, 5000)), saw("udp", 5000));
    },
    more: [
      [
        "renaming the live tunnel (wg-home → wg-alt, port 52000): the Tunnel is replaced (deleted first), what uses it is updated, traffic flows",
        async ({ lab, stack, program, args }) => {
          const renamed = { ...args, tunnel: { ...args.tunnel, interfaceName: "wg-alt", listenPort: 52000 } };
          const p = await stack.preview(program(renamed));
          const changed = Object.fromEntries(Object.entries(opsOf(p.steps)).filter(([, op]) => op !== "same"));
          assert.deepEqual(changed, { "home-tunnel": "replace", "home-routes": "update", "home-return": "update", "home-router-0": "update" });
          const r = await stack.up(program(renamed));
          assert.deepEqual(Object.fromEntries(Object.entries(opsOf(r.steps)).filter(([, op]) => op !== "same")), changed);
          const { vps, router } = lab.hosts;
          for (const h of [vps, router]) assert.equal((await h.exec("ip link show wg-home")).code, 1, `${h.name}: wg-home is gone`);
          assert.equal((await vps.run("wg show wg-alt listen-port")).trim(), "52000");
          assert.match(await router.run("ip route show table 8764"), /^default via 10\.99\.0\.1 dev wg-alt/m);
          assert.match(await router.run("sysctl net.ipv4.conf.wg-alt.rp_filter"), /= 2$/m);
          assert.equal(answered(await askTcp(lab, 5000)), saw("tcp", 5000));
          assert.equal(answered(await askUdp(lab, 5000)), saw("udp", 5000));
          const steps = await stack.refresh();
          assert.deepEqual(steps.filter((s) => s.op !== "same").map((s) => [s.name, s.changes]), [], "in sync after the rename");
        },
      ],
    ],
  });

  // Another tool on the router (like mwan3 or pbr) marks every packet and connection with bit
  // 0x100; natgate's mask 0x1234 must leave that bit alone in both directions.
  const OTHER_TOOL = `table ip variants_othertool {
  chain pre {
    type filter hook prerouting priority -180; policy accept;
    meta mark set meta mark | 0x100
    ct mark set ct mark | 0x100
  }
  chain seen {
    type filter hook prerouting priority -140; policy accept;
    iifname "wg0" meta mark & 0x1334 == 0x1334 counter comment "in: natgate's mark and the other bit"
    iifname "br-lan" meta mark & 0x1334 == 0x1334 counter comment "back: natgate's mark and the other bit"
  }
}
`;
  const counters = async (router: { run(c: string): Promise<string> }) =>
    [...(await router.run("nft list table ip variants_othertool")).matchAll(/counter packets (\d+) bytes \d+ comment "(\w+):/g)].map((m) => [m[2], Number(m[1])]);

  describeVariant({
    title: "the seed's mark 0x1234/0x1234, table 1234, priority 4321, next to another tool's mark bit 0x100",
    label: "mark 0x1234 + foreign 0x100",
    args: (lab) => ({
      ...baseArgs(lab),
      forwards: [{ protocol: "tcp", ports: 5000 }],
      routerForwards: [{ protocol: "tcp", ports: 2222, toPorts: 22 }],
      returnPath: { mark: 0x1234, mask: 0x1234, table: 1234, priority: 4321 },
    }),
    services: [["tcp", 5000]],
    async beforeUp({ lab }) {
      await lab.hosts.router.run("nft -f -", { input: OTHER_TOOL });
    },
    async afterUp({ lab }) {
      const { router } = lab.hosts;
      const rules = await router.run("ip rule");
      assert.match(rules, /^4321:\s+from all fwmark 0x1234\/0x1234 lookup 1234\s*$/m);
      assert.match(rules, /^4322:\s+from 10\.10\.10\.2 lookup 1234\s*$/m);
      assert.doesNotMatch(rules, /lookup 8764/);
      assert.match(await router.run("ip route show table 1234"), /^default via 10\.10\.10\.1 dev wg0/m);
      assert.equal((await router.run("ip route show table 8764")).trim(), "");
    },
    async traffic({ lab }) {
      const { router } = lab.hosts;
      assert.equal(answered(await askTcp(lab, 5000)), saw("tcp", 5000));
      assert.match(answered(await askBanner(lab, 2222)), /^SSH-2\.0-OpenSSH/);
      const seen = Object.fromEntries(await counters(router));
      assert.ok(seen.in > 0 && seen.back > 0, `packets carrying both natgate's bits and 0x100, each way: ${JSON.stringify(seen)}`);
      // The connection's mark keeps both: natgate's 0x1234 and the other tool's 0x100 (0x1334 = 4916).
      const ct = await router.run(`conntrack -L -p tcp --orig-src ${CLIENT} --dport 5000 2>/dev/null`);
      assert.match(ct, /mark=4916\b/, ct);
    },
    async afterDestroy({ lab }) {
      const { router } = lab.hosts;
      const left = await router.run("nft -s list table ip variants_othertool");
      assert.match(left, /meta mark set meta mark \| 0x00000100/, "the other tool's rules are untouched");
      assert.match(left, /ct mark set ct mark \| 0x00000100/);
      await router.run("nft delete table ip variants_othertool");
    },
  });

  const loginsBefore: Record<string, Record<string, number>> = {};
  describeVariant({
    title: "as ops with sudo on both hosts, with a Pulumi name in spaces and unicode",
    label: "ops+sudo, unicode name",
    pulumiName: "家 Home (ops)",
    args: (lab) => ({
      ...baseArgs(lab),
      vps: { connection: connectionTo(lab, "vps", "ops"), publicAddress: PUBLIC },
      router: { connection: connectionTo(lab, "router", "ops"), lanInterface: "br-lan", lanSubnet: lab.addresses.lanSubnet },
      forwards: [{ protocol: "tcp", ports: 5000 }],
    }),
    services: [["tcp", 5000]],
    async beforeUp({ lab }) {
      for (const h of ["vps", "router"] as const) loginsBefore[h] = sshLogins(lab.hosts[h]);
    },
    async afterUp({ lab, stack }) {
      for (const h of ["vps", "router"] as const) {
        const now = sshLogins(lab.hosts[h]);
        assert.ok((now.ops ?? 0) > (loginsBefore[h]!.ops ?? 0), `${h}: natgate logged in as ops`);
        assert.equal(now.root ?? 0, loginsBefore[h]!.root ?? 0, `${h}: no root login`);
      }
      // The host-side names derived from the Pulumi name are plain, distinct, and hashed.
      const names = stack.state.filter((r) => typeof r.outputs.name === "string").map((r) => r.outputs.name as string);
      assert.equal(names.length, 5, names.join(" "));
      assert.equal(new Set(names).size, names.length, names.join(" "));
      for (const n of names) assert.match(n, /^[a-z][a-z0-9_]{0,31}$/);
      const tables = await lab.hosts.router.run("nft list tables");
      for (const n of names.filter((x) => x.includes("router"))) assert.match(tables, new RegExp(`natgate_dnat_${n}\\b`));
    },
    async traffic({ lab }) {
      assert.equal(answered(await askTcp(lab, 5000)), saw("tcp", 5000));
    },
    async afterDestroy({ lab }) {
      for (const h of ["vps", "router"] as const) {
        assert.equal(sshLogins(lab.hosts[h]).root ?? 0, loginsBefore[h]!.root ?? 0, `${h}: no root login during destroy either`);
      }
    },
  });
});
