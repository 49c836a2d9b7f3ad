import * as assert from "node:assert/strict";
import { tunnelProvider } from "../../provider/resources/tunnel";
import { parseTunnelArgs, UNKNOWN, type TunnelInputs } from "../../provider/resources/tunnel/schema";
import { desiredSide, renderSide, renderTunnel } from "../../provider/resources/tunnel/render";
import { liveSideFromSections, parseIpAddr, parseIpLink, parseWgDump, splitSections } from "../../provider/resources/tunnel/parse";
import { endpointMatches, planSide, renderLive } from "../../provider/resources/tunnel/plan";
import type { SideState } from "../../provider/plan/wireguard";
import { applyScript, DELETE_SCRIPT, PREPARE_SCRIPT, READ_SCRIPT } from "../../provider/resources/tunnel/scripts";
import { execFileSync } from "node:child_process";
import { NATGATE_VERSION } from "../../provider/engine/version";
import { sideBootEntry } from "../../provider/resources/tunnel/lifecycle";
import { bootEntryText } from "../../provider/backends/persist";

const vps = { host: "198.51.100.1", password: "pw" };
const router = { host: "192.168.1.1", password: "pw" };
const seed = () => ({
  listener: { connection: vps, address: "10.10.10.1/24" },
  dialer: { connection: router, address: "10.10.10.2/24" },
});

async function failuresOf(news: Record<string, unknown>): Promise<Record<string, string>> {
  const r = await tunnelProvider.check!({}, news);
  return Object.fromEntries((r.failures ?? []).map((f) => [f.property, f.reason]));
}

function checked(news: Record<string, unknown> = seed()): TunnelInputs {
  const r = parseTunnelArgs(news);
  assert.ok(r.inputs, JSON.stringify(r.failures));
  return r.inputs;
}

// Real output of `wg show wg0 dump` on a wireguard-go dialer (keys are throwaway), after the
// read script replaced the private key field on the host.
const DIALER_KEY = "ctTSF0QS6WZHPg9Qbw1xlBbs4HNWJ4zECOiQ8FdT8Rk=";
const LISTENER_KEY = "SZpcNltCYhCjRvtIDSUP6n8GwZokVcsnxNL1QgRlxkI=";
const DIALER_DUMP =
  `(hidden)\t${DIALER_KEY}\t36289\toff\n` +
  `${LISTENER_KEY}\t(none)\t198.51.100.1:51820\t0.0.0.0/0\t0\t0\t0\t25\n`;
const DIALER_ADDR = `[{"ifindex":2,"ifname":"wg0","flags":["POINTOPOINT","MULTICAST","NOARP","UP","LOWER_UP"],"mtu":1420,"qdisc":"pfifo_fast","operstate":"UNKNOWN","group":"default","txqlen":500,"link_type":"none","addr_info":[{"family":"inet","local":"10.10.10.2","prefixlen":24,"scope":"global","label":"wg0","valid_life_time":4294967295,"preferred_life_time":4294967295},{"family":"inet6","local":"fe80::19f9:e56d:df61:aa04","prefixlen":64,"scope":"link","stable-privacy":true,"valid_life_time":4294967295,"preferred_life_time":4294967295}]}]`;
const DIALER_LINK = `[{"ifindex":2,"ifname":"wg0","flags":["POINTOPOINT","MULTICAST","NOARP","UP","LOWER_UP"],"mtu":1420,"qdisc":"pfifo_fast","operstate":"UNKNOWN","linkmode":"DEFAULT","group":"default","txqlen":500,"link_type":"none","promiscuity":0,"allmulti":0,"min_mtu":68,"max_mtu":65535,"linkinfo":{"info_kind":"tun","info_data":{"type":"tun","pi":true,"vnet_hdr":false,"multi_queue":false,"persist":false}},"inet6_addr_gen_mode":"random","num_tx_queues":1,"num_rx_queues":1,"gso_max_size":65536,"gso_max_segs":65535,"tso_max_size":65536,"tso_max_segs":65535,"gro_max_size":65536}]`;
const READ_OUTPUT = `@@key\n${DIALER_KEY}\n@@link\n${DIALER_LINK}\n\n@@addr\n${DIALER_ADDR}\n\n@@wg\n${DIALER_DUMP}@@end\n`;

describe("Tunnel (unit)", () => {
  describe("check", () => {
    it("fills defaults, canonicalises and adds the rendered commands", async () => {
      const r = await tunnelProvider.check!({}, { ...seed(), __provider: "p" });
      assert.equal(r.failures, undefined);
      const i = r.inputs as Record<string, any>;
      assert.equal(i.interfaceName, "wg0");
      assert.equal(i.mtu, 1420);
      assert.equal(i.listenPort, 51820);
      assert.equal(i.persistentKeepalive, 25);
      assert.equal(i.listener.endpoint, "198.51.100.1");
      assert.equal(i.listener.interfaceName, "wg0");
      assert.deepEqual(i.listener.allowedIps, []);
      assert.deepEqual(i.dialer.allowedIps, ["0.0.0.0/0"]);
      assert.equal(i.listener.connection.port, 22);
      assert.equal(i.listener.connection.user, "root");
      assert.ok(Array.isArray(i.renderedListener) && i.renderedListener.length > 0);
      assert.ok(i.renderedDialer.some((l: string) => l.includes("<listener public key>")));
      assert.equal(i.__provider, undefined, "the server adds __provider back itself");
    });

    it("names the field and what is wrong", async () => {
      const cases: [Record<string, unknown>, string, RegExp][] = [
        [{ ...seed(), dialer: { connection: router, address: "10.10.11.2/24" } }, "dialer.address", /not in the listener's subnet 10\.10\.10\.0\/24/],
        [{ ...seed(), dialer: { connection: router, address: "10.10.10.1/24" } }, "dialer.address", /also listener\.address.*different addresses/],
        [{ ...seed(), dialer: { connection: router, address: "fd00::2/64" } }, "dialer.address", /IPv6 but listener\.address .* IPv4/],
        [{ ...seed(), listenPort: 70000 }, "listenPort", /1-65535/],
        [{ ...seed(), listenPort: 51820.5 }, "listenPort", /whole number/],
        [{ ...seed(), listenPort: "51820" }, "listenPort", /must be a number/],
        [{ ...seed(), interfaceName: "a-very-long-name0" }, "interfaceName", /at most 15 characters.*IFNAMSIZ/],
        [{ ...seed(), interfaceName: "wg 0" }, "interfaceName", /may contain only A-Z, a-z, 0-9, '_', '.' and '-'/],
        [{ ...seed(), interfaceName: "wg/0" }, "interfaceName", /may contain only/],
        // wg-quick allows '=' and '+', but the other resources' tunnelInterface/dev fields do not: one rule for all.
        [{ ...seed(), interfaceName: "wg+home" }, "interfaceName", /may contain only/],
        [{ ...seed(), dialer: { connection: router, address: "10.10.10.2/24", interfaceName: "wg=0" } }, "dialer.interfaceName", /may contain only/],
        [{ ...seed(), listener: { connection: vps, address: "10.10.10.1" } }, "listener.address", /CIDR form/],
        [{ ...seed(), listener: { connection: vps, address: "10.10.10.1/32" } }, "listener.address", /single address/],
        [{ ...seed(), listener: { connection: vps, address: "10.10.10.0/24" } }, "listener.address", /network address/],
        [{ ...seed(), listener: { connection: vps, address: "10.10.10.255/24" } }, "listener.address", /broadcast address/],
        [{ ...seed(), listener: { connection: vps, address: "10.10.10.1/24", endpoint: "198.51.100.1:51820" } }, "listener.endpoint", /host only/],
        [{ ...seed(), listener: { connection: vps, address: "10.10.10.1/24", allowedIps: ["192.168.1.7/24"] } }, "listener.allowedIps[0]", /host bits.*192\.168\.1\.0\/24/],
        [{ ...seed(), mtu: 100 }, "mtu", /576-9000/],
        [{ ...seed(), persistentKeepalive: -1 }, "persistentKeepalive", /0-65535/],
        [{ ...seed(), listenport: 1 }, "listenport", /unknown field/],
        [{ ...seed(), dialer: { connection: { host: "192.168.1.1" }, address: "10.10.10.2/24" } }, "dialer.connection", /password, privateKey or agentSocketPath/],
        [{ ...seed(), dialer: { connection: vps, address: "10.10.10.2/24" } }, "dialer.connection", /same host/],
        [{ listener: seed().listener }, "dialer", /./],
      ];
      for (const [news, property, reason] of cases) {
        const f = await failuresOf(news);
        assert.ok(f[property], `expected a failure on ${property} for ${JSON.stringify(news)}, got ${JSON.stringify(f)}`);
        assert.match(f[property]!, reason, property);
      }
    });

    it("accepts what is valid: /30, /31, IPv6, host name endpoints, per-side names", async () => {
      const ok: Record<string, unknown>[] = [
        { ...seed(), listener: { connection: vps, address: "10.0.0.1/30" }, dialer: { connection: router, address: "10.0.0.2/30" } },
        { ...seed(), listener: { connection: vps, address: "10.0.0.0/31" }, dialer: { connection: router, address: "10.0.0.1/31" } },
        { ...seed(), listener: { connection: vps, address: "fd00:10::1/64" }, dialer: { connection: router, address: "fd00:10::2/64" } },
        { ...seed(), listener: { connection: vps, address: "10.10.10.1/24", endpoint: "vps.example.com" } },
        { ...seed(), interfaceName: "natgate0", dialer: { connection: router, address: "10.10.10.2/24", interfaceName: "ng-vps" } },
      ];
      for (const news of ok) assert.deepEqual(await failuresOf(news), {}, JSON.stringify(news));
      const v6 = checked(ok[2]!);
      assert.deepEqual(v6.dialer.allowedIps, ["::/0"]);
    });

    describe("dual stack (address6)", () => {
      // null: the field is left out
      const dual = (l6: unknown = "fd00:4e47::1/64", d6: unknown = "fd00:4e47::2/64", extra: Record<string, unknown> = {}) => ({
        ...seed(),
        ...extra,
        listener: { ...seed().listener, ...(l6 === null ? {} : { address6: l6 }) },
        dialer: { ...seed().dialer, ...(d6 === null ? {} : { address6: d6 }) },
      });

      it("names the field and what is wrong", async () => {
        const cases: [Record<string, unknown>, string, RegExp][] = [
          [dual("fd00:4e47::1/64", null), "dialer.address6", /listener\.address6 fd00:4e47::1\/64 is given but dialer\.address6 is not.*both, or neither/],
          [dual(null, "fd00:4e47::2/64"), "listener.address6", /dialer\.address6 fd00:4e47::2\/64 is given but listener\.address6 is not/],
          [dual("fd00:4e47::1/64", "fd00:4e48::2/64"), "dialer.address6", /not in the listener's IPv6 subnet fd00:4e47::\/64 \(listener\.address6 fd00:4e47::1\/64\)/],
          [dual("fd00:4e47::1/64", "fd00:4e47::2/80"), "dialer.address6", /not in the listener's IPv6 subnet/],
          [dual("fd00:4e47::1/64", "fd00:4e47:0::1/64"), "dialer.address6", /fd00:4e47::1 is also listener\.address6: the two ends need different addresses/],
          [dual("10.10.20.1/24", "fd00:4e47::2/64"), "listener.address6", /"10\.10\.20\.1\/24" is IPv4: address6 is this end's IPv6 tunnel address/],
          [dual("fd00:4e47::1/64", "fe80::2/64"), "dialer.address6", /link-local \(fe80::\/10\)/],
          [dual("ff02::1/64", "fd00:4e47::2/64"), "listener.address6", /multicast address/],
          [dual("::ffff:10.0.0.1/120", "fd00:4e47::2/64"), "listener.address6", /IPv4-mapped/],
          [dual("fd00:4e47::1", "fd00:4e47::2/64"), "listener.address6", /CIDR form.*e\.g\. fd00:4e47::1\/64/],
          [dual("fd00:4e47::1/128", "fd00:4e47::2/64"), "listener.address6", /single address/],
          [dual("fd00:4e47::/64", "fd00:4e47::2/64"), "listener.address6", /network address/],
          [dual("fd00:4e47::1/64", 64), "dialer.address6", /must be a string in CIDR form/],
          [dual("fd00:4e47::1/64", "fd00:4e47::2/64", { mtu: 1200 }), "mtu", /below 1280, the IPv6 minimum.*address6/],
          [{
            listener: { connection: vps, address: "fd00:10::1/64", address6: "fd00:4e47::1/64" },
            dialer: { connection: router, address: "fd00:10::2/64", address6: "fd00:4e47::2/64" },
          }, "listener.address6", /listener\.address fd00:10::1\/64 is already IPv6: address6 adds an IPv6 address to an IPv4 tunnel/],
        ];
        for (const [news, property, reason] of cases) {
          const f = await failuresOf(news);
          assert.ok(f[property], `expected a failure on ${property} for ${JSON.stringify(news)}, got ${JSON.stringify(f)}`);
          assert.match(f[property]!, reason, property);
        }
      });

      it("accepts both ends in one subnet, canonicalises them and defaults the dialer to both families", async () => {
        assert.deepEqual(await failuresOf(dual()), {});
        assert.deepEqual(await failuresOf(dual("2001:db8:4e47::1/64", "2001:db8:4e47:0:0::2/64")), {});
        const a = checked(dual("FD00:4E47:0::1/64", "fd00:4e47::0:2/64"));
        assert.equal(a.listener.address6, "fd00:4e47::1/64");
        assert.equal(a.dialer.address6, "fd00:4e47::2/64");
        assert.deepEqual(a.dialer.allowedIps, ["0.0.0.0/0", "::/0"]);
        // explicit allowed IPs still win
        const own = checked({ ...dual(), dialer: { ...dual().dialer, allowedIps: ["10.0.0.0/8"] } });
        assert.deepEqual(own.dialer.allowedIps, ["10.0.0.0/8"]);
        // without address6 nothing changes: no address6 key, v4 default
        const single = checked();
        assert.equal("address6" in single.listener || "address6" in single.dialer, false);
        assert.deepEqual(single.dialer.allowedIps, ["0.0.0.0/0"]);
      });

      it("leaves an address6 the engine does not know yet for later", async () => {
        const r = await tunnelProvider.check!({}, dual(UNKNOWN, "fd00:4e47::2/64"));
        assert.equal(r.failures, undefined, JSON.stringify(r.failures));
        const r2 = await tunnelProvider.check!({}, dual(UNKNOWN, UNKNOWN));
        assert.equal(r2.failures, undefined, JSON.stringify(r2.failures));
        // unknown still counts as given: the other side's is missing
        assert.match((await failuresOf(dual(UNKNOWN, null)))["dialer.address6"] ?? "", /is given but dialer\.address6 is not/);
      });
    });

    it("leaves values the engine does not know yet for later, and renders nothing from them", async () => {
      const r = await tunnelProvider.check!({}, { ...seed(), listener: { connection: { ...vps, host: UNKNOWN }, address: "10.10.10.1/24" } });
      assert.equal(r.failures, undefined);
      assert.equal((r.inputs as any).renderedListener, UNKNOWN);
      const r2 = await tunnelProvider.check!({}, { ...seed(), dialer: UNKNOWN });
      assert.equal(r2.failures, undefined);
    });
  });

  describe("render", () => {
    it("renders the seed's tunnel (golden, keys not known yet)", () => {
      const r = renderTunnel(checked());
      assert.deepEqual(r.renderedListener, [
        "umask 077; mkdir -p /etc/natgate/wg; [ -s /etc/natgate/wg/wg0.key ] || wg genkey > /etc/natgate/wg/wg0.key",
        "ip link add dev wg0 type wireguard || wireguard-go wg0",
        "wg set wg0 listen-port 51820 private-key /etc/natgate/wg/wg0.key",
        "wg set wg0 peer <dialer public key> allowed-ips 10.10.10.2/32",
        "ip address add 10.10.10.1/24 dev wg0",
        "ip link set dev wg0 mtu 1420 up",
        "# at boot: /etc/natgate/boot.sh runs /etc/natgate/boot.d/tunnel-wg0.sh",
      ]);
      assert.deepEqual(r.renderedDialer, [
        "umask 077; mkdir -p /etc/natgate/wg; [ -s /etc/natgate/wg/wg0.key ] || wg genkey > /etc/natgate/wg/wg0.key",
        "ip link add dev wg0 type wireguard || wireguard-go wg0",
        "wg set wg0 private-key /etc/natgate/wg/wg0.key",
        "wg set wg0 peer <listener public key> endpoint 198.51.100.1:51820 persistent-keepalive 25 allowed-ips 0.0.0.0/0",
        "ip address add 10.10.10.2/24 dev wg0",
        "ip link set dev wg0 mtu 1420 up",
        "# at boot: /etc/natgate/boot.sh runs /etc/natgate/boot.d/tunnel-wg0.sh",
      ]);
    });

    it("puts real keys, extra allowed IPs and IPv6 endpoints in", () => {
      const a = checked({
        ...seed(),
        listener: { connection: vps, address: "10.10.10.1/24", endpoint: "2001:db8::1", allowedIps: ["192.168.50.0/24"] },
      });
      const r = renderTunnel(a, { listener: LISTENER_KEY, dialer: DIALER_KEY });
      assert.ok(r.renderedListener.includes(`wg set wg0 peer ${DIALER_KEY} allowed-ips 10.10.10.2/32,192.168.50.0/24`));
      assert.ok(r.renderedDialer.includes(`wg set wg0 peer ${LISTENER_KEY} endpoint '[2001:db8::1]:51820' persistent-keepalive 25 allowed-ips 0.0.0.0/0`));
    });
  });

  describe("render (dual stack)", () => {
    const dualArgs = () => ({
      ...seed(),
      listener: { ...seed().listener, address6: "fd00:4e47::1/64" },
      dialer: { ...seed().dialer, address6: "fd00:4e47::2/64" },
    });
    const keys = { listener: LISTENER_KEY, dialer: DIALER_KEY };

    it("puts both addresses on each side, the dialer's /128 in the listener's peer, both defaults in the dialer's", () => {
      const r = renderTunnel(checked(dualArgs()));
      assert.deepEqual(r.renderedListener, [
        "umask 077; mkdir -p /etc/natgate/wg; [ -s /etc/natgate/wg/wg0.key ] || wg genkey > /etc/natgate/wg/wg0.key",
        "ip link add dev wg0 type wireguard || wireguard-go wg0",
        "wg set wg0 listen-port 51820 private-key /etc/natgate/wg/wg0.key",
        "wg set wg0 peer <dialer public key> allowed-ips 10.10.10.2/32,fd00:4e47::2/128",
        "ip address add 10.10.10.1/24 dev wg0",
        "ip address add fd00:4e47::1/64 dev wg0",
        "ip link set dev wg0 mtu 1420 up",
        "# at boot: /etc/natgate/boot.sh runs /etc/natgate/boot.d/tunnel-wg0.sh",
      ]);
      assert.deepEqual(r.renderedDialer, [
        "umask 077; mkdir -p /etc/natgate/wg; [ -s /etc/natgate/wg/wg0.key ] || wg genkey > /etc/natgate/wg/wg0.key",
        "ip link add dev wg0 type wireguard || wireguard-go wg0",
        "wg set wg0 private-key /etc/natgate/wg/wg0.key",
        "wg set wg0 peer <listener public key> endpoint 198.51.100.1:51820 persistent-keepalive 25 allowed-ips 0.0.0.0/0,::/0",
        "ip address add 10.10.10.2/24 dev wg0",
        "ip address add fd00:4e47::2/64 dev wg0",
        "ip link set dev wg0 mtu 1420 up",
        "# at boot: /etc/natgate/boot.sh runs /etc/natgate/boot.d/tunnel-wg0.sh",
      ]);
    });

    it("keeps the endpoint as it is (a v4 underlay carrying v6, and a v6 underlay carrying both)", () => {
      const v6underlay = checked({ ...dualArgs(), listener: { ...dualArgs().listener, endpoint: "2001:db8:100::1", allowedIps: ["fd00:1::/64"] } });
      const r = renderTunnel(v6underlay, keys);
      assert.ok(r.renderedDialer.includes(`wg set wg0 peer ${LISTENER_KEY} endpoint '[2001:db8:100::1]:51820' persistent-keepalive 25 allowed-ips 0.0.0.0/0,::/0`), r.renderedDialer.join("\n"));
      assert.ok(r.renderedListener.includes(`wg set wg0 peer ${DIALER_KEY} allowed-ips 10.10.10.2/32,fd00:1::/64,fd00:4e47::2/128`), r.renderedListener.join("\n"));
    });

    it("plans adding address6 to a running v4 tunnel as a peer change and an address add, nothing else", () => {
      const running = desiredSide(checked(), "dialer", keys);
      const want = desiredSide(checked(dualArgs()), "dialer", keys);
      assert.deepEqual(planSide(want, running), [
        `wg set wg0 peer ${LISTENER_KEY} endpoint 198.51.100.1:51820 persistent-keepalive 25 allowed-ips 0.0.0.0/0,::/0`,
        "ip address add fd00:4e47::2/64 dev wg0",
      ]);
      const l = desiredSide(checked(dualArgs()), "listener", keys);
      assert.deepEqual(planSide(l, desiredSide(checked(), "listener", keys)), [
        `wg set wg0 peer ${DIALER_KEY} allowed-ips 10.10.10.2/32,fd00:4e47::2/128`,
        "ip address add fd00:4e47::1/64 dev wg0",
      ]);
      // and back
      assert.deepEqual(planSide(running, want), [
        `wg set wg0 peer ${LISTENER_KEY} endpoint 198.51.100.1:51820 persistent-keepalive 25 allowed-ips 0.0.0.0/0`,
        "ip address del fd00:4e47::2/64 dev wg0",
      ]);
    });

    it("reads both addresses back: in sync with both, drift with one missing", () => {
      const addr6 = `{"family":"inet6","local":"fd00:4e47::2","prefixlen":64,"scope":"global","valid_life_time":4294967295,"preferred_life_time":4294967295},`;
      const addr = DIALER_ADDR.replace(`"addr_info":[`, `"addr_info":[${addr6}`);
      const dump = DIALER_DUMP.replace("\t0.0.0.0/0\t", "\t0.0.0.0/0,::/0\t");
      const out = (a: string) => `@@key\n${DIALER_KEY}\n@@link\n${DIALER_LINK}\n\n@@addr\n${a}\n\n@@wg\n${dump}@@end\n`;
      const desired = desiredSide(checked(dualArgs()), "dialer", keys);
      const live = liveSideFromSections("dialer", "wg0", "/etc/natgate/wg/wg0.key", splitSections(out(addr)));
      assert.deepEqual(live.state.link!.addresses, ["10.10.10.2/24", "fd00:4e47::2/64"]);
      assert.deepEqual(planSide(desired, live.state), []);
      assert.deepEqual(renderLive(live.state, desired), renderSide(desired));
      const missing = liveSideFromSections("dialer", "wg0", "/etc/natgate/wg/wg0.key", splitSections(out(DIALER_ADDR)));
      assert.notDeepEqual(renderLive(missing.state, desired), renderSide(desired));
      assert.deepEqual(planSide(desired, missing.state), ["ip address add fd00:4e47::2/64 dev wg0"]);
    });

    it("a boot entry restores both addresses", () => {
      const e = sideBootEntry(checked(dualArgs()), "listener", keys)!;
      const text = bootEntryText(e);
      assert.ok(text.includes("\nip address replace 10.10.10.1/24 dev wg0\n"), text);
      assert.ok(text.includes("\nip address replace fd00:4e47::1/64 dev wg0\n"), text);
      assert.ok(text.includes(`\nwg set wg0 peer ${DIALER_KEY} allowed-ips 10.10.10.2/32,fd00:4e47::2/128\n`), text);
      execFileSync("dash", ["-n"], { input: text });
      // a single-stack entry has no IPv6 line
      assert.ok(!bootEntryText(sideBootEntry(checked(), "listener", keys)!).includes("fd00:4e47"));
    });
  });

  describe("parse", () => {
    it("parses a real `wg show dump`", () => {
      const d = parseWgDump(DIALER_DUMP);
      assert.equal(d.publicKey, DIALER_KEY);
      assert.equal(d.listenPort, 36289);
      assert.equal(d.peers.length, 1);
      assert.deepEqual(d.peers[0], {
        publicKey: LISTENER_KEY,
        endpoint: "198.51.100.1:51820",
        allowedIps: ["0.0.0.0/0"],
        latestHandshake: 0,
        rxBytes: 0,
        txBytes: 0,
        keepalive: 25,
      });
      const listener = parseWgDump(`(hidden)\t${LISTENER_KEY}\t51820\toff\n${DIALER_KEY}\t(none)\t(none)\t10.10.10.2/32,192.168.0.0/16\t1732540000\t148\t92\toff\n`);
      assert.equal(listener.peers[0]!.endpoint, undefined);
      assert.equal(listener.peers[0]!.keepalive, 0);
      assert.deepEqual(listener.peers[0]!.allowedIps, ["10.10.10.2/32", "192.168.0.0/16"]);
      assert.throws(() => parseWgDump("a\tb\n"), /expected 4/);
    });

    it("parses ip -j output, skipping the kernel's link-local address", () => {
      assert.deepEqual(parseIpAddr(DIALER_ADDR), ["10.10.10.2/24"]);
      assert.deepEqual(parseIpLink(DIALER_LINK), { kind: "tun", mtu: 1420, up: true });
      assert.equal(parseIpLink(""), undefined);
    });

    it("reads a live side that is in sync: empty plan, same rendering", () => {
      const a = checked();
      const live = liveSideFromSections("dialer", "wg0", "/etc/natgate/wg/wg0.key", splitSections(READ_OUTPUT));
      assert.equal(live.backend, "wireguard-go");
      assert.equal(live.keyFilePublicKey, DIALER_KEY);
      const desired = desiredSide(a, "dialer", { listener: LISTENER_KEY, dialer: DIALER_KEY });
      assert.deepEqual(planSide(desired, live.state), []);
      assert.deepEqual(renderLive(live.state, desired), renderSide(desired));
    });

    it("refuses truncated output", () => {
      assert.throws(() => liveSideFromSections("dialer", "wg0", "/k", splitSections("@@key\n")), /incomplete/);
    });
  });

  describe("plan", () => {
    const a = checked();
    const keys = { listener: LISTENER_KEY, dialer: DIALER_KEY };
    const desiredL = desiredSide(a, "listener", keys);

    it("builds everything from nothing (the key already generated)", () => {
      const plan = planSide(desiredL, { role: "listener", interfaceName: "wg0", keyFile: "/etc/natgate/wg/wg0.key" });
      assert.deepEqual(plan, [
        "natgate_wg_link_add wg0",
        "wg set wg0 listen-port 51820 private-key /etc/natgate/wg/wg0.key",
        `wg set wg0 peer ${DIALER_KEY} allowed-ips 10.10.10.2/32`,
        "ip address add 10.10.10.1/24 dev wg0",
        "ip link set dev wg0 mtu 1420 up",
      ]);
    });

    it("touches only what drifted", () => {
      const live: SideState = {
        role: "listener",
        interfaceName: "wg0",
        keyFile: "/etc/natgate/wg/wg0.key",
        link: {
          mtu: 1500,
          up: true,
          usesKeyFile: true,
          listenPort: 51820,
          addresses: ["10.10.10.1/24", "10.10.10.9/24"],
          peers: [
            { publicKey: DIALER_KEY, endpoint: "100.64.0.1:40000", keepalive: 10, allowedIps: ["10.10.10.2/32"] },
            { publicKey: "OTHERKEYOTHERKEYOTHERKEYOTHERKEYOTHERKEY000=", keepalive: 0, allowedIps: ["10.10.10.3/32"] },
          ],
        },
      };
      assert.deepEqual(planSide(desiredL, live), [
        "wg set wg0 peer OTHERKEYOTHERKEYOTHERKEYOTHERKEYOTHERKEY000= remove",
        `wg set wg0 peer ${DIALER_KEY} allowed-ips 10.10.10.2/32 persistent-keepalive off`,
        "ip address del 10.10.10.9/24 dev wg0",
        "ip link set dev wg0 mtu 1420 up",
      ]);
    });

    it("matches a host name endpoint against the address wg resolved it to", () => {
      assert.ok(endpointMatches("vps.example.com:51820", "198.51.100.1:51820"));
      assert.ok(!endpointMatches("vps.example.com:51820", "198.51.100.1:51821"));
      assert.ok(endpointMatches("[2001:db8::1]:51820", "[2001:db8:0::1]:51820"));
      assert.ok(!endpointMatches("198.51.100.1:51820", "198.51.100.2:51820"));
    });
  });

  describe("diff", () => {
    const outputsFor = (a: TunnelInputs) => ({
      ...a,
      ...renderTunnel(a, { listener: LISTENER_KEY, dialer: DIALER_KEY }),
      listenerPublicKey: LISTENER_KEY,
      dialerPublicKey: DIALER_KEY,
      listenerFingerprint: "SHA256:x",
      dialerFingerprint: "SHA256:y",
      listenerBackend: "wireguard-go",
      dialerBackend: "wireguard-go",
      natgateVersion: NATGATE_VERSION,
    });
    const news = async (raw: Record<string, unknown>) => (await tunnelProvider.check!({}, raw)).inputs;

    it("no change for the same inputs", async () => {
      const olds = outputsFor(checked());
      assert.deepEqual(await tunnelProvider.diff!("id", olds, await news(seed())), { changes: false });
    });

    it("updates in place for MTU, port, keepalive, addresses", async () => {
      const olds = outputsFor(checked());
      for (const change of [{ mtu: 1380 }, { listenPort: 51821 }, { persistentKeepalive: 15 }]) {
        const d = await tunnelProvider.diff!("id", olds, await news({ ...seed(), ...change }));
        assert.deepEqual(d, { changes: true }, JSON.stringify(change));
      }
      // dual stack on and off (address6): in place, the tunnel stays up
      const dual = { listener: { ...seed().listener, address6: "fd00:4e47::1/64" }, dialer: { ...seed().dialer, address6: "fd00:4e47::2/64" } };
      assert.deepEqual(await tunnelProvider.diff!("id", olds, await news(dual)), { changes: true });
      assert.deepEqual(await tunnelProvider.diff!("id", outputsFor(checked(dual)), await news(seed())), { changes: true });
      assert.deepEqual(await tunnelProvider.diff!("id", outputsFor(checked(dual)), await news(dual)), { changes: false });
    });

    it("replaces (old first) when a host, SSH port or interface name changes", async () => {
      const olds = outputsFor(checked());
      const cases: [Record<string, unknown>, string[]][] = [
        [{ ...seed(), listener: { connection: { ...vps, host: "198.51.100.7" }, address: "10.10.10.1/24" } }, ["listener.connection.host"]],
        [{ ...seed(), dialer: { connection: { ...router, port: 2222 }, address: "10.10.10.2/24" } }, ["dialer.connection.port"]],
        [{ ...seed(), interfaceName: "wg1" }, ["listener.interfaceName", "dialer.interfaceName"]],
      ];
      for (const [raw, replaces] of cases) {
        const d = await tunnelProvider.diff!("id", olds, await news(raw));
        assert.deepEqual(d, { changes: true, replaces, deleteBeforeReplace: true });
      }
    });

    it("an older release's state is brought up to date in place (its boot entries)", async () => {
      const { natgateVersion: _v, ...legacy } = outputsFor(checked());
      assert.deepEqual(await tunnelProvider.diff!("id", legacy, await news(seed())), { changes: true });
    });

    it("sees drift that a refresh recorded (e.g. the dialer's interface gone)", async () => {
      const olds = outputsFor(checked());
      olds.renderedDialer = olds.renderedDialer.slice(0, 1);
      const d = await tunnelProvider.diff!("id", olds, await news(seed()));
      assert.equal(d.changes, true);
      assert.equal(d.replaces, undefined);
    });
  });

  describe("scripts", () => {
    it("are valid POSIX sh (dash -n)", () => {
      const plan = planSide(desiredSide(checked(), "listener", { dialer: DIALER_KEY }), { role: "listener", interfaceName: "wg0", keyFile: "/k" });
      for (const s of [PREPARE_SCRIPT, READ_SCRIPT, DELETE_SCRIPT, applyScript(plan)]) {
        execFileSync("dash", ["-n"], { input: s });
      }
    });
  });
});
