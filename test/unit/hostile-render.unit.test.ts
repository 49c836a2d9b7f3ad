// Hostile input at the rendering layer (issue 8, item 6): interface names that mean more than one
// interface or look like options, a peer public key that is not one, preview placeholders and the
// engine's unknown marker on their way to a host, and '[' / ']' in remote script text.
import { strict as assert } from "assert";
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { providers } from "../../provider";
import { interfaceName, interfaceNameProblem, ipv4, mark32, networkCidr, portSpec, resourceName, tableId } from "../../provider/resources/common/fields";
import { assertNoUnknown, UNKNOWN } from "../../provider/engine/unknown";
import { ConnmarkReturnPathSchema } from "../../provider/resources/connmark/schema";
import { DnatRuleSchema } from "../../provider/resources/dnat/schema";
import { ROUTES_APPLY_SH, ROUTES_DELETE_SH, ROUTES_READ_SH } from "../../provider/backends/routesSh";
import { RouteSchema } from "../../provider/resources/routetable/schema";
import { inputsFromProps, publicKeyFrom } from "../../provider/resources/tunnel/lifecycle";
import type { SideRead, SideTarget } from "../../provider/resources/tunnel/effects";
import { wireGuardKeyProblem } from "../../provider/resources/tunnel/parse";
import { bootPlan, planSide } from "../../provider/resources/tunnel/plan";
import { desiredSide, renderTunnel } from "../../provider/resources/tunnel/render";
import { APPLY_HEAD, applyScript, DELETE_SCRIPT, PREPARE_SCRIPT, READ_SCRIPT } from "../../provider/resources/tunnel/scripts";
import { parseTunnelArgs } from "../../provider/resources/tunnel/schema";
import { forwardLayoutProblems } from "../../sdk/forwardChecks";

const connection = { host: "198.51.100.1", password: "x" };
const router = { host: "192.168.1.1", password: "x" };
const LISTENER_KEY = "SZpcNltCYhCjRvtIDSUP6n8GwZokVcsnxNL1QgRlxkI=";
const DIALER_KEY = "ctTSF0QS6WZHPg9Qbw1xlBbs4HNWJ4zECOiQ8FdT8Rk=";
const tunnelArgs = (extra: object = {}) => ({
  listener: { connection, address: "10.10.10.1/24" },
  dialer: { connection: router, address: "10.10.10.2/24" },
  ...extra,
});

const BAD_NAMES: [string, RegExp][] = [
  ["all", /"all" is not an interface: sysctl's net\.ipv4\.conf\.all would set every interface.*like wg0/],
  ["default", /"default" is not an interface: .*template for new interfaces.*like wg0/],
  ["lo", /"lo" is the loopback interface: .*like wg0/],
  ["-h", /must not start with '-' \(wireguard-go, ip and wg would read it as an option\): give a name like wg0/],
  ["--version", /must not start with '-'/],
  [".", /"\." is not an interface name .*like wg0/],
  ["..", /"\.\." is not an interface name .*like wg0/],
];

function zodReasons(schema: { safeParse(v: unknown): { success: boolean; error?: { issues: { path: PropertyKey[]; message: string }[] } } }, v: unknown, field: string): string[] {
  const r = schema.safeParse(v);
  return r.success ? [] : r.error!.issues.filter((i) => i.path.join(".") === field).map((i) => i.message);
}

describe("hostile input at the rendering layer (pure)", () => {
  describe("interface names", () => {
    it("the shared rule refuses all, default, lo, '.', '..' and names starting with '-', saying what a valid one looks like", () => {
      for (const [name, reason] of BAD_NAMES) {
        const r = interfaceName.safeParse(name);
        assert.equal(r.success, false, `${name} was accepted`);
        assert.match(r.error!.issues.map((i) => i.message).join("; "), reason, name);
        assert.match(interfaceNameProblem(name)!, reason);
      }
    });

    it("keeps accepting ordinary names, also ones that only look like the reserved ones", () => {
      for (const name of ["wg0", "tun0", "br-lan", "eth0.100", "lo0", "ALL", "Default", "wg-", "a-b_c.d"]) {
        assert.equal(interfaceName.safeParse(name).success, true, name);
        assert.equal(interfaceNameProblem(name), undefined);
      }
    });

    it("every resource's interface field uses it: tunnelInterface, routes[].dev, inInterface, the Tunnel's names, PathCheck", async () => {
      assert.match(zodReasons(ConnmarkReturnPathSchema, { connection, name: "home", tunnelInterface: "all" }, "tunnelInterface").join(), /"all" is not an interface/);
      assert.match(zodReasons(RouteSchema, { to: "default", dev: "lo" }, "dev").join(), /loopback/);
      assert.match(zodReasons(DnatRuleSchema, { connection, name: "web", inInterface: "-h", ports: 80, toAddress: "192.168.1.99" }, "inInterface").join(), /must not start with '-'/);
      const t = parseTunnelArgs(tunnelArgs({ interfaceName: "-h", dialer: { connection: router, address: "10.10.10.2/24", interfaceName: "default" } }));
      const byProp = Object.fromEntries(t.failures.map((f) => [f.property, f.reason]));
      assert.match(byProp["interfaceName"]!, /must not start with '-'/);
      assert.match(byProp["dialer.interfaceName"]!, /"default" is not an interface/);
      const pc = await providers.PathCheck!.check!({}, { vpsConnection: connection, routerConnection: router, publicAddress: "198.51.100.1", port: 5000, routerTunnelAddress: "10.10.10.2", tunnelInterface: "lo" });
      assert.ok((pc.failures ?? []).some((f) => f.property === "tunnelInterface" && /loopback/.test(f.reason)), JSON.stringify(pc.failures));
    });

    it("ConnmarkReturnPath with tunnelInterface \"all\" fails its check and renders no host-wide rp_filter", async () => {
      const r = await providers.ConnmarkReturnPath!.check!({}, { connection, name: "home", tunnelInterface: "all" });
      assert.deepEqual((r.failures ?? []).map((f) => f.property), ["tunnelInterface"]);
      assert.doesNotMatch(JSON.stringify(r.inputs), /conf[./]all/);
      const ok = await providers.ConnmarkReturnPath!.check!({}, { connection, name: "home", tunnelInterface: "wg0" });
      assert.match(JSON.stringify(ok.inputs.rendered), /net\.ipv4\.conf\.wg0\.rp_filter/, "the check above can fail: wg0 renders its rp_filter");
    });

    it("the Tunnel's check refuses `-h` (it would become `wireguard-go -h`)", async () => {
      const r = await providers.Tunnel!.check!({}, tunnelArgs({ interfaceName: "-h" }));
      assert.deepEqual((r.failures ?? []).map((f) => f.property), ["interfaceName"]);
      assert.equal(r.inputs.renderedListener, undefined);
    });

    it("PortForward's layout check names an interface field no child receives", () => {
      const layout = { lanSubnet: "192.168.1.0/24", lanHost: "192.168.1.99", forwards: [{ ports: 80 }], routerForwards: [] };
      assert.deepEqual(forwardLayoutProblems({ ...layout, interfaces: { "router.lanInterface": "br-lan", "existingTunnel.vpsInterfaceName": undefined } }), []);
      const p = forwardLayoutProblems({ ...layout, interfaces: { "existingTunnel.vpsInterfaceName": "all", "router.lanInterface": "-h" } });
      assert.equal(p.length, 2, p.join("\n"));
      assert.match(p[0]!, /^existingTunnel\.vpsInterfaceName: "all" is not an interface/);
      assert.match(p[1]!, /^router\.lanInterface: must not start with '-'/);
    });
  });

  describe("peer public keys read from a host", () => {
    const target: SideTarget = { role: "dialer", connection: { ...router, port: 22, user: "root" } as SideTarget["connection"], interfaceName: "wg0" };
    const readWith = (key: string | undefined) => ({ live: { state: { role: "dialer", interfaceName: "wg0" }, ...(key === undefined ? {} : { keyFilePublicKey: key }) } }) as unknown as SideRead;

    it("accepts what wg pubkey prints", () => {
      for (const k of [LISTENER_KEY, DIALER_KEY, Buffer.alloc(32).toString("base64"), Buffer.alloc(32, 0xff).toString("base64")]) {
        assert.equal(wireGuardKeyProblem(k), undefined, k);
        assert.equal(publicKeyFrom(target, readWith(k)), k);
      }
    });

    it("refuses anything else, naming the host it was read from and what a key looks like, without echoing the text", () => {
      const bad: [string, RegExp][] = [
        [DIALER_KEY.slice(0, 43), /is 43 characters long/],
        [DIALER_KEY + "=", /is 45 characters long/],
        [`${"$(touch /tmp/pwned)'; reboot; echo '".padEnd(43, "A")}=`, /has characters that are not base64/],
        ["A".repeat(44), /does not end in '='/],
        [`${"L".repeat(43)}=`, /does not decode to 32 bytes the way wg encodes them/], // low bits set: wg refuses it
        ["", /is 0 characters long/],
      ];
      for (const [key, reason] of bad) {
        assert.match(wireGuardKeyProblem(key)!, reason, JSON.stringify(key));
        assert.throws(() => publicKeyFrom(target, readWith(key)), (e: Error) => {
          assert.match(e.message, /the public key read from the dialer \(root@192\.168\.1\.1\)/);
          assert.match(e.message, reason);
          assert.match(e.message, /44 characters of base64 ending in '=' \(32 bytes\), like /);
          if (key.length > 0) assert.ok(!e.message.includes(key), "the host's text is not repeated");
          return true;
        });
      }
      assert.throws(() => publicKeyFrom(target, readWith(undefined)), /no public key could be read from the dialer \(root@192\.168\.1\.1\)/);
    });
  });

  describe("no preview placeholder or unknown value reaches a host", () => {
    const inputs = parseTunnelArgs(tunnelArgs()).inputs!;

    it("a plan built without the peer's key (preview) is refused by applyScript; with the keys it runs", () => {
      const preview = planSide(desiredSide(inputs, "listener"), { role: "listener", interfaceName: "wg0", keyFile: "/etc/natgate/wg/wg0.key" });
      assert.ok(preview.some((l) => l.includes("<dialer public key>")), preview.join("\n"));
      assert.throws(() => applyScript(preview), /public key placeholder/);
      const real = planSide(desiredSide(inputs, "listener", { dialer: DIALER_KEY }), { role: "listener", interfaceName: "wg0", keyFile: "/etc/natgate/wg/wg0.key" });
      assert.match(applyScript(real), new RegExp(`wg set wg0 peer ${DIALER_KEY.replace(/[+/]/g, "\\$&")} allowed-ips`));
      assert.throws(() => applyScript([`ip address add ${UNKNOWN} dev wg0`]), /does not know yet/);
      assert.throws(() => assertNoUnknown("x", "a", `b${UNKNOWN}`), /does not know yet/);
      assert.doesNotThrow(() => assertNoUnknown("x", "a", "b"));
    });

    it("the Tunnel refuses to act on inputs that are still unknown (the schema lets them through for preview)", () => {
      const raw = tunnelArgs({ listener: { connection, address: UNKNOWN } });
      assert.ok(parseTunnelArgs(raw).inputs, "preview accepts an unknown address");
      assert.throws(() => inputsFromProps(raw), /not all known yet/);
      assert.equal(inputsFromProps(tunnelArgs()).listener.address, "10.10.10.1/24");
    });

    it("the other resources' field rules refuse the unknown marker, so it cannot be parsed into what they apply", () => {
      for (const [what, rule] of Object.entries({ interfaceName, ipv4, networkCidr, resourceName, portSpec, mark32 })) {
        assert.equal(rule.safeParse(UNKNOWN).success, false, what);
      }
      assert.equal(tableId.safeParse(UNKNOWN).success, false);
    });
  });

  describe("'[' and ']' in remote script text", () => {
    it("an IPv6 endpoint is quoted in the rendered line, the plan and the boot plan", () => {
      const a = parseTunnelArgs(tunnelArgs({ listener: { connection, address: "10.10.10.1/24", endpoint: "2001:db8::1" } })).inputs!;
      const keys = { listener: LISTENER_KEY, dialer: DIALER_KEY };
      const line = `wg set wg0 peer ${LISTENER_KEY} endpoint '[2001:db8::1]:51820' persistent-keepalive 25 allowed-ips 0.0.0.0/0`;
      assert.ok(renderTunnel(a, keys).renderedDialer.includes(line), renderTunnel(a, keys).renderedDialer.join("\n"));
      const desired = desiredSide(a, "dialer", keys);
      assert.ok(planSide(desired, { role: "dialer", interfaceName: "wg0", keyFile: "/etc/natgate/wg/wg0.key" }).includes(line));
      assert.ok(bootPlan(desired).includes(line));
    });

    it("sh passes the rendered endpoint to wg unchanged even where a file matches it as a glob", function () {
      const a = parseTunnelArgs(tunnelArgs({ listener: { connection, address: "10.10.10.1/24", endpoint: "2001:db8::1" } })).inputs!;
      const line = bootPlan(desiredSide(a, "dialer", { listener: LISTENER_KEY })).find((l) => l.includes(" endpoint "))!;
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ng-glob-"));
      try {
        fs.writeFileSync(path.join(dir, "1:51820"), ""); // [2001:db8::1]:51820 unquoted matches this name
        const out = execFileSync("sh", ["-c", `wg() { printf '%s\\n' "$@"; }\n${line}`], { cwd: dir }).toString().split("\n");
        assert.equal(out[out.indexOf("endpoint") + 1], "[2001:db8::1]:51820");
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    // Outside quotes, '[' may only start a test (`[ ...`), ']' only end one (`... ]`); `/proc/[0-9]*`
    // in wireguard.ts is a glob on purpose, and so is ng_args' name check (args.ts), a case pattern,
    // matched against a word, never against file names.
    function unquotedBrackets(script: string): string[] {
      const out: string[] = [];
      script.split("\n").forEach((raw, n) => {
        if (/^\s*#/.test(raw)) return;
        const line = raw
          .replace(/\\./g, "__")
          .replace(/'[^']*'/g, (m) => "_".repeat(m.length))
          .replace(/"[^"]*"/g, (m) => "_".repeat(m.length))
          .replace(/\s#.*$/, "")
          .replace(/\/proc\/\[0-9\]\*/g, "")
          .replace(/\*\[!abcdefghijklmnopqrstuvwxyz0123456789_\]\*\)/g, "");
        for (let i = 0; i < line.length; i++) {
          const c = line[i];
          if (c === "[" && /^\s?$/.test(line[i - 1] ?? "") && /\s/.test(line[i + 1] ?? "")) continue;
          if (c === "]" && /\s/.test(line[i - 1] ?? "") && /^[\s;)]?$/.test(line[i + 1] ?? "")) continue;
          if (c === "[" || c === "]") {
            out.push(`line ${n + 1}: ${raw.trim()}`);
            break;
          }
        }
      });
      return out;
    }

    it("the scanner finds a literal bracket (so the next test can fail)", () => {
      assert.deepEqual(unquotedBrackets("echo [#] done\ncase $x in [a]*) ;; esac\n[ -n \"$1\" ] && echo '[ok]' \"[#]\"\necho ok]"), [
        "line 1: echo [#] done",
        "line 2: case $x in [a]*) ;; esac",
        "line 4: echo ok]",
      ]);
    });

    it("none in the tunnel's and the routing table's scripts, or in a plan", () => {
      const a = parseTunnelArgs(tunnelArgs({ listener: { connection, address: "10.10.10.1/24", endpoint: "2001:db8::1" } })).inputs!;
      const plan = planSide(desiredSide(a, "dialer", { listener: LISTENER_KEY }), { role: "dialer", interfaceName: "wg0", keyFile: "/k" });
      const scripts = { PREPARE_SCRIPT, READ_SCRIPT, DELETE_SCRIPT, APPLY_HEAD, ROUTES_READ_SH, ROUTES_APPLY_SH, ROUTES_DELETE_SH, plan: plan.join("\n") };
      for (const [name, text] of Object.entries(scripts)) assert.deepEqual(unquotedBrackets(text), [], name);
    });
  });
});
