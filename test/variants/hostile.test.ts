// Hostile and malformed input, as a user (or a config value from somewhere else) might give it:
// shell metacharacters, newlines, out-of-range numbers, addresses that do not fit together. Each
// program is previewed through the stack driver (Check in the real dynamic-provider server) and
// must fail there, naming the field and saying what to do, before any host is touched: the lab's
// sshd logs gain no login and /tmp/pwned never appears. Values that are legitimately free text
// (a key passphrase, a host key's comment) then go through a real up and destroy unharmed.
// Run: node_modules/.bin/tsx test/lab/cli.ts run -- node_modules/.bin/mocha test/variants/hostile.test.ts
import { strict as assert } from "assert";
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { ConnmarkReturnPath, DnatRule, PolicyRouteTable, type ConnectionArgs, type PortForwardArgs, type VpsArgs } from "natgate";
import { getLab, type Lab } from "../lab";
import type { Stack } from "../engine/stack";
import {
  assertHostsAsBefore,
  baseArgs,
  cleanup,
  connectionTo,
  portForwardProgram,
  scratchDir,
  snapshotAll,
  sshLogins,
  timedDestroy,
  timedUp,
  printTimings,
  variantStack,
} from "./variantLab";

const PWNED = "/tmp/pwned";
const SSHD_HOSTS = ["vps", "router", "lan"] as const;

interface Expected {
  /** The resource whose Check fails. */
  resource: string;
  property: string;
  /** The reason, including what to do about it. */
  reason: RegExp;
}

interface HostileCase {
  title: string;
  program(lab: Lab): () => unknown;
  expect: Expected[];
  /** For a component's own field: the program's error, naming it as the user wrote it (no child is registered). */
  message?: RegExp;
}

const pf = (lab: Lab, change: (a: PortForwardArgs) => PortForwardArgs, name = "home") => portForwardProgram(name, change({ ...baseArgs(lab), forwards: [{ protocol: "both", ports: "5000-6000" }] }));
const rule = (lab: Lab, args: Partial<ConstructorParameters<typeof DnatRule>[1]>) => () => {
  new DnatRule("web", { connection: connectionTo(lab, "router"), inInterface: "wg0", ports: 80, toAddress: "192.168.1.99", ...args });
};
const conn = (c: unknown) => c as ConnectionArgs;

/** The check failures of each resource in a failed preview's message: resource → "property: reason" list. */
function checkFailures(message: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const m of message.matchAll(/^\s*\S+ "([^"]+)": failed its check: (.*)$/gm)) {
    out.set(m[1]!, m[2]!.split(/; (?=[\w.[\]]+: )/));
  }
  return out;
}

const CASES: HostileCase[] = [
  {
    title: "a DnatRule name `x; rm -rf /`",
    program: (lab) => rule(lab, { name: "x; rm -rf /" }),
    expect: [{ resource: "web", property: "name", reason: /must start with a-z and contain only a-z, 0-9 and _/ }],
  },
  {
    title: "inInterface `wg0$(touch /tmp/pwned)`",
    program: (lab) => rule(lab, { inInterface: "wg0$(touch /tmp/pwned)" }),
    expect: [{ resource: "web", property: "inInterface", reason: /may contain only A-Z, a-z, 0-9, '_', '\.' and '-'/ }],
  },
  {
    // The component judges its own fields before any child exists, so each case is one component.
    title: "the tunnel's interface name `wg0`reboot``",
    program: (lab) => pf(lab, (a) => ({ ...a, tunnel: { interfaceName: "wg0`reboot`" } }), "a"),
    expect: [],
    message: /PortForward a:\n {2}tunnel\.interfaceName: may contain only A-Z, a-z, 0-9, '_', '\.' and '-'/,
  },
  {
    title: "the tunnel's interface name `wg0$(touch /tmp/pwned)`",
    program: (lab) => pf(lab, (a) => ({ ...a, tunnel: { interfaceName: "wg0$(touch /tmp/pwned)" } }), "b"),
    expect: [],
    message: /PortForward b:\n {2}tunnel\.interfaceName: must be at most 15 characters \(Linux IFNAMSIZ\)/,
  },
  {
    title: "a tunnel interface name that reads as an option: `-h`",
    program: (lab) => pf(lab, (a) => ({ ...a, tunnel: { interfaceName: "-h" } })),
    expect: [],
    message: /PortForward home:\n {2}tunnel\.interfaceName: must not start with '-' .*: give a name like wg0/,
  },
  {
    // "all" would set net.ipv4.conf.all.rp_filter for the whole host; "-h" would become `wireguard-go -h`.
    title: "interface names that are not one interface or read as an option: `all`, `default`, `lo`, `-i`",
    program: (lab) => () => {
      new ConnmarkReturnPath("ret", { connection: connectionTo(lab, "router"), tunnelInterface: "all" });
      new PolicyRouteTable("rt", { connection: connectionTo(lab, "router"), routes: [{ to: "default", dev: "default" }, { to: "192.168.1.0/24", dev: "lo" }] });
      rule(lab, { inInterface: "-i" })();
    },
    expect: [
      { resource: "ret", property: "tunnelInterface", reason: /"all" is not an interface: sysctl's net\.ipv4\.conf\.all would set every interface of the host; .*like wg0/ },
      { resource: "rt", property: "routes[0].dev", reason: /"default" is not an interface: .*like wg0/ },
      { resource: "rt", property: "routes[1].dev", reason: /"lo" is the loopback interface: .*like wg0/ },
      { resource: "web", property: "inInterface", reason: /must not start with '-'/ },
    ],
  },
  {
    title: 'ports "5000-6000;id"',
    program: (lab) => pf(lab, (a) => ({ ...a, forwards: [{ ports: "5000-6000;id" }] })),
    // the component's own field, before any child is registered
    expect: [],
    message: /PortForward home:\n {2}forwards\[0\]\.ports "5000-6000;id": must be a port 1-65535 or a range like "5000-6000"/,
  },
  {
    title: 'the LAN host (toAddress) "10.0.0.1 && reboot"',
    program: (lab) => pf(lab, (a) => ({ ...a, lanHost: "10.0.0.1 && reboot" })),
    expect: [],
    message: /PortForward home:\n {2}lanHost: "10\.0\.0\.1 && reboot" must be an IPv4 address like 192\.168\.1\.10/,
  },
  {
    // Every resource of the component waits for the tunnel, so the preview stops there.
    title: "the VPS's connection host \"`reboot`\" (component and a DnatRule)",
    program: (lab) => () => {
      pf(lab, (a) => ({ ...a, vps: { ...(a.vps as VpsArgs), connection: { ...conn((a.vps as VpsArgs).connection), host: "`reboot`" } } }))();
      rule(lab, { connection: { ...conn(connectionTo(lab, "vps")), host: "`reboot`" } })();
    },
    expect: [
      { resource: "home-tunnel", property: "listener.connection.host", reason: /"`reboot`" is not a hostname or an IP address/ },
      { resource: "web", property: "connection.host", reason: /"`reboot`" is not a hostname or an IP address/ },
    ],
  },
  {
    title: 'the router\'s user "root\\nid" (component and a DnatRule)',
    program: (lab) => () => {
      pf(lab, (a) => ({ ...a, router: { ...a.router, connection: { ...conn(a.router.connection), user: "root\nid" } } }))();
      rule(lab, { connection: { ...conn(connectionTo(lab, "router")), user: "root\nid" } })();
    },
    expect: [
      { resource: "home-tunnel", property: "dialer.connection.user", reason: /must not contain spaces or control characters/ },
      { resource: "web", property: "connection.user", reason: /must not contain spaces or control characters/ },
    ],
  },
  {
    title: "a lanSubnet with host bits (10.1.2.3/16), a lanHost at the subnet's broadcast address: the component's own fields",
    program: (lab) => pf(lab, (a) => ({ ...a, lanHost: "192.168.1.255", router: { ...a.router, lanSubnet: "10.1.2.3/16" } })),
    expect: [],
    message: /PortForward home:\n {2}router\.lanSubnet "10\.1\.2\.3\/16": has host bits set: write 10\.1\.0\.0\/16/,
  },
  {
    title: "a lanHost at the network address, a lanInterface of lo: named as the component's fields",
    program: (lab) => pf(lab, (a) => ({ ...a, lanHost: "192.168.1.0", router: { ...a.router, lanInterface: "lo" } })),
    expect: [],
    message: /router\.lanInterface: "lo" is the loopback interface.*\n {2}lanHost: 192\.168\.1\.0 is the network address of router\.lanSubnet 192\.168\.1\.0\/24/s,
  },
  {
    title: "tunnel addresses in different subnets (10.10.10.1/24, 10.10.20.2/24)",
    program: (lab) => pf(lab, (a) => ({ ...a, tunnel: { vpsAddress: "10.10.10.1/24", routerAddress: "10.10.20.2/24" } })),
    expect: [{ resource: "home-tunnel", property: "dialer.address", reason: /10\.10\.20\.2\/24 is not in the listener's subnet 10\.10\.10\.0\/24 .*: give both ends addresses in one subnet/ }],
  },
  {
    title: "a mark outside its mask (0x1234 under 0xff)",
    program: (lab) => pf(lab, (a) => ({ ...a, returnPath: { mark: 0x1234, mask: 0xff } })),
    expect: [{ resource: "home-return", property: "mark", reason: /0x1234 has bits outside mask 0xff: every bit of mark must be in mask/ }],
  },
  {
    title: "a 16-character interface name (the tunnel's)",
    program: (lab) => pf(lab, (a) => ({ ...a, tunnel: { interfaceName: "wg-home-01234567" } })),
    expect: [],
    message: /PortForward home:\n {2}tunnel\.interfaceName: must be at most 15 characters \(Linux IFNAMSIZ\)/,
  },
  {
    title: "a 16-character interface name (an existing tunnel's)",
    program: (lab) => pf(lab, (a) => ({ ...a, existingTunnel: { interfaceName: "tun-home-0123456", vpsAddress: "10.10.10.1", routerAddress: "10.10.10.2" } }), "other"),
    expect: [],
    message: /PortForward other:\n {2}existingTunnel\.interfaceName: must be at most 15 characters \(Linux IFNAMSIZ\)/,
  },
  {
    title: "toPorts of a different size (5000-5010 → 6000-6005)",
    program: (lab) => pf(lab, (a) => ({ ...a, forwards: [{ ports: "5000-5010", toPorts: "6000-6005" }] })),
    // named by the component, under the field the program wrote, not by the DnatRule it would make
    expect: [],
    message: /PortForward home:\n {2}forwards\[0\]\.toPorts "6000-6005": maps 11 ports \(forwards\[0\]\.ports "5000-5010"\) to 6: give a range of the same size/,
  },
  {
    title: "forwarded ports -1, 0, 65536, 1.5 and toPorts 0",
    program: (lab) => pf(lab, (a) => ({ ...a, forwards: [{ ports: -1 }, { ports: 0 }, { ports: 65536 }, { ports: 1.5 }, { ports: 80, toPorts: 0 }] })),
    expect: [],
    message: new RegExp(
      "PortForward home:\\n" +
        ["-1", "0", "65536", "1.5"].map((v, i) => ` {2}forwards\\[${i}\\]\\.ports ${v.replace(".", "\\.")}: must be a port 1-65535 or a range like "5000-6000"\\n`).join("") +
        ' {2}forwards\\[4\\]\\.toPorts 0: must be a port 1-65535 or a range like "5000-6000"',
    ),
  },
  {
    title: "a listen port 65536, an SSH port 0, a keepalive -1 and an MTU of 100",
    program: (lab) =>
      pf(lab, (a) => ({ ...a, vps: { ...(a.vps as VpsArgs), connection: { ...conn((a.vps as VpsArgs).connection), port: 0 } }, tunnel: { listenPort: 65536, persistentKeepalive: -1, mtu: 100 } })),
    expect: [
      { resource: "home-tunnel", property: "listenPort", reason: /must be 1-65535 \(the listener's UDP port\)/ },
      { resource: "home-tunnel", property: "listener.connection.port", reason: /must be 1-65535/ },
      { resource: "home-tunnel", property: "persistentKeepalive", reason: /must be 0-65535/ },
      { resource: "home-tunnel", property: "mtu", reason: /must be 576-9000/ },
    ],
  },
  {
    title: 'a public address "198.51.100.1; reboot" (component)',
    program: (lab) => pf(lab, (a) => ({ ...a, vps: { ...a.vps, publicAddress: "198.51.100.1; reboot" } })),
    expect: [],
    message: /PortForward home:\n {2}vps\.publicAddress: "198\.51\.100\.1; reboot" must be an IPv4 address like 10\.10\.10\.2/,
  },
  {
    title: 'a destination "198.51.100.1; reboot" (DnatRule)',
    program: (lab) => rule(lab, { connection: connectionTo(lab, "vps"), inInterface: undefined, destination: "198.51.100.1; reboot" }),
    expect: [{ resource: "web", property: "destination", reason: /must be an IPv4 address like 10\.10\.10\.2/ }],
  },
  {
    title: "a host key `reboot` and a private key `$(touch /tmp/pwned)`",
    program: (lab) => rule(lab, { connection: { ...conn(connectionTo(lab, "router")), hostKey: "`reboot`", privateKey: "$(touch /tmp/pwned)" } }),
    expect: [
      { resource: "web", property: "connection.hostKey", reason: /must be an OpenSSH public key line .* or a fingerprint/ },
      { resource: "web", property: "connection.privateKey", reason: /is not a private key ssh can read .*not its path/ },
    ],
  },
];

async function previewError(stack: Stack, program: () => unknown): Promise<string> {
  try {
    await stack.preview(program);
  } catch (e) {
    return (e as Error).message;
  }
  return assert.fail("the preview passed: it should have failed its checks");
}

describe("variants: hostile input", function () {
  this.timeout(120_000);
  after(() => printTimings("hostile input: up and destroy"));

  describe("fails at preview, naming the field and the fix, and touches no host", function () {
    let lab: Lab;
    let stack: Stack;
    const loginsBefore: Record<string, Record<string, number>> = {};

    before(async () => {
      lab = getLab();
      for (const h of SSHD_HOSTS) loginsBefore[h] = sshLogins(lab.hosts[h]);
      assert.equal(fs.existsSync(PWNED), false, `${PWNED} exists before the test: remove it`);
      stack = variantStack();
    });
    after(async () => cleanup(stack));

    for (const c of CASES) {
      it(c.title, async () => {
        const message = await previewError(stack, c.program(lab));
        if (c.message) {
          assert.match(message, c.message);
          assert.doesNotMatch(message, /error serializing property/, "the component's error comes as itself, not wrapped by its children");
        }
        const failures = checkFailures(message);
        for (const x of c.expect) {
          const reasons = (failures.get(x.resource) ?? []).filter((l) => l.startsWith(`${x.property}: `)).map((l) => l.slice(x.property.length + 2));
          assert.ok(
            reasons.some((r) => x.reason.test(r)),
            `expected ${x.resource} to fail on ${x.property} with ${x.reason}; got:\n${message.split("\n").slice(0, 4).join("\n")}`,
          );
        }
        assert.deepEqual(stack.state, [], "a preview keeps nothing");
      });
    }

    it("a Pulumi name made of shell syntax and unicode previews fine: the host-side names are derived, plain and distinct", async () => {
      const name = "$(touch /tmp/pwned); rm -rf / #家";
      const r = await stack.preview(pf(lab, (a) => a, name));
      const names = r.steps.map((s) => s.changes.find((c) => c.property === "name")?.new).filter((n): n is string => typeof n === "string");
      assert.equal(names.length, 5, JSON.stringify(names));
      assert.equal(new Set(names).size, 5);
      for (const n of names) assert.match(n, /^[a-z][a-z0-9_]{0,31}$/);
      const rendered = JSON.stringify(r.steps.map((s) => s.changes.filter((c) => c.property.startsWith("rendered"))));
      assert.doesNotMatch(rendered, /\$\(|;\s*rm|家/, "nothing of the raw name reaches a rendered line");
    });

    it("no host was touched: no SSH login on any lab host, and no /tmp/pwned", async () => {
      for (const h of SSHD_HOSTS) {
        assert.deepEqual(sshLogins(lab.hosts[h]), loginsBefore[h], `${h}: SSH logins during the previews`);
        assert.equal((await lab.hosts[h].exec(`test -e ${PWNED}`)).code, 1, `${PWNED} on ${h}`);
      }
      assert.equal(fs.existsSync(PWNED), false);
    });
  });

  describe("free text that is allowed (a key passphrase, a host key comment) reaches no script: a real up and destroy", function () {
    let lab: Lab;
    let stack: Stack;

    before(() => {
      lab = getLab();
      stack = variantStack();
    });
    after(async () => cleanup(stack));

    it("a passphrase with quotes, a newline and $(...), and a host key comment with the same, work and leave the host as before", async () => {
      const passphrase = `it's "quoted"\n$(touch ${PWNED}); \`touch ${PWNED}\` \\ $HOME`;
      const keyFile = path.join(scratchDir(lab, "hostile-key"), "root_ed25519");
      fs.writeFileSync(keyFile, lab.hosts.vps.ssh!.privateKey, { mode: 0o600 });
      execFileSync("ssh-keygen", ["-q", "-p", "-f", keyFile, "-P", "", "-N", passphrase]);
      const encrypted = fs.readFileSync(keyFile, "utf8");
      assert.match(encrypted, /BEGIN OPENSSH PRIVATE KEY/);
      const [type, blob] = lab.hosts.vps.ssh!.hostKey.split(/\s+/);
      const hostKey = `${type} ${blob} it's "my" vps $(touch ${PWNED}); \`id\``;
      const before = await snapshotAll(lab);
      const program = () => {
        new DnatRule("quoted", {
          connection: { host: lab.hosts.vps.addr, privateKey: encrypted, privateKeyPassword: passphrase, hostKey },
          destination: "198.51.100.1",
          ports: 5000,
          toAddress: "10.10.10.2",
        });
      };
      const r = await timedUp("DnatRule with passphrase key", stack, program);
      assert.deepEqual(r.steps.map((s) => [s.name, s.op]), [["quoted", "create"]]);
      assert.match(await lab.hosts.vps.run("nft list tables"), /natgate_dnat_quoted/);
      await timedDestroy("DnatRule with passphrase key", stack);
      await assertHostsAsBefore(lab, before);
      for (const h of SSHD_HOSTS) assert.equal((await lab.hosts[h].exec(`test -e ${PWNED}`)).code, 1, `${PWNED} on ${h}`);
      assert.equal(fs.existsSync(PWNED), false);
    });
  });
});
