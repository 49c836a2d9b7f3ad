import { strict as assert } from "assert";
import { execFileSync } from "child_process";
import { mkdtempSync, readFileSync, rmSync } from "fs";
import { tmpdir } from "os";
import { join } from "path";
import { inspect } from "util";
import { remote } from "@pulumi/command/types/input";
import {
  checkConnection,
  ConnectionSchema,
  formatZodError,
  isNatgateError,
  ProxyConnectionSchema,
  runScript,
  type ConnectionInput,
} from "../../provider/ssh";

function failures(input: unknown): string[] {
  const r = checkConnection(input);
  return r.failures.map((f) => `${f.property}: ${f.reason}`);
}

function assertFails(input: unknown, re: RegExp): void {
  const lines = failures(input);
  assert.ok(lines.some((l) => re.test(l)), `expected a failure matching ${re}, got ${JSON.stringify(lines)}`);
}

/** Field names declared in an interface of @pulumi/command's generated types. */
function declaredFields(iface: string): string[] {
  const dts = readFileSync(require.resolve("@pulumi/command/types/input.d.ts"), "utf8");
  const body = new RegExp(`interface ${iface} \\{([\\s\\S]*?)\\n    \\}`).exec(dts)?.[1];
  assert.ok(body, `interface ${iface} not found`);
  return [...body.matchAll(/^\s+(\w+)\??: /gm)].map((m) => m[1]!).sort();
}

describe("ConnectionSchema", () => {
  let dir: string;
  let key: string;
  let encryptedKey: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "natgate-schema-"));
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "t", "-f", join(dir, "k")]);
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "s3cret-passphrase", "-C", "t", "-f", join(dir, "e")]);
    key = readFileSync(join(dir, "k"), "utf8");
    encryptedKey = readFileSync(join(dir, "e"), "utf8");
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("has exactly the fields of @pulumi/command 1.2.1's remote.ConnectionArgs, plus sudo, knownHosts and scriptTimeout", () => {
    assert.deepEqual(Object.keys(ConnectionSchema.shape).sort(), [...declaredFields("ConnectionArgs"), "sudo", "knownHosts", "scriptTimeout"].sort());
    assert.deepEqual(Object.keys(ProxyConnectionSchema.shape).sort(), declaredFields("ProxyConnectionArgs"));
  });

  it("fills the same defaults as @pulumi/command (port 22, user root, 10 dials, 15 s) and sudo false", () => {
    const ours = ConnectionSchema.parse({ host: "vps.example", privateKey: key });
    const theirs = remote.connectionArgsProvideDefaults({ host: "vps.example", privateKey: key });
    for (const f of ["port", "user", "dialErrorLimit", "perDialTimeout"] as const) assert.equal(ours[f], theirs[f], f);
    assert.deepEqual(ours, { host: "vps.example", privateKey: key, port: 22, user: "root", dialErrorLimit: 10, perDialTimeout: 15, sudo: false });
    const withProxy = ConnectionSchema.parse({ host: "10.0.0.2", password: "p", proxy: { host: "198.51.100.1", agentSocketPath: "/run/agent.sock" } });
    assert.deepEqual(withProxy.proxy, { host: "198.51.100.1", agentSocketPath: "/run/agent.sock", port: 22, user: "root", dialErrorLimit: 10, perDialTimeout: 15 });
  });

  it("accepts an object typed as @pulumi/command's ConnectionArgs with plain values", () => {
    const args: remote.ConnectionArgs & ConnectionInput = {
      host: "2001:db8::1",
      port: 2222,
      user: "admin",
      password: "pw",
      privateKey: encryptedKey,
      privateKeyPassword: "s3cret-passphrase",
      agentSocketPath: "/tmp/agent",
      dialErrorLimit: -1,
      perDialTimeout: 30, // not 0: with dialErrorLimit -1 that is refused (a host that accepts and stalls would hang the dial for ever)
      hostKey: "SHA256:" + "A".repeat(43),
      proxy: { host: "jump.example.", port: 22, user: "u", privateKey: key, dialErrorLimit: 3, perDialTimeout: 5, hostKey: "SHA256:" + "B".repeat(43) },
    };
    assert.deepEqual(checkConnection(args).failures, []);
  });

  it("rejects a bad port, naming the field", () => {
    for (const port of [0, 65536, -22, 22.5, "22", null]) assertFails({ host: "h", password: "p", port }, /^connection\.port: must be/);
    assert.deepEqual(failures({ host: "h", password: "p", port: 70000 }), ["connection.port: must be 1-65535"]);
  });

  it("rejects an empty or missing host and a host that is neither a hostname nor an IP", () => {
    assert.deepEqual(failures({ host: "", password: "p" }), ["connection.host: must not be empty"]);
    assertFails({ password: "p" }, /^connection\.host: is required$/);
    for (const host of ["a b", "$(reboot)", "`id`", "h;rm -rf /", "h'x", "-oProxyCommand=x", "999.1.1.1", "[::1]", "h..example", "a".repeat(64) + ".example", "host\n"]) {
      assertFails({ host, password: "p" }, /^connection\.host: /);
    }
    for (const host of ["198.51.100.1", "::1", "fe80::1", "router", "vps.example.org", "vps.example.org.", "xn--bcher-kva.example", "a-b.c"]) {
      assert.deepEqual(failures({ host, password: "p" }), [], host);
    }
  });

  it("wants at least one of password, privateKey or agentSocketPath (also for the proxy)", () => {
    assertFails({ host: "h" }, /^connection: give at least one of password, privateKey or agentSocketPath/);
    assertFails({ host: "h", password: "p", proxy: { host: "j" } }, /^connection\.proxy: give at least one of/);
    assertFails({}, /^connection: give at least one of/); // reported along with the missing host
    assert.deepEqual(failures({ host: "h", agentSocketPath: "/run/a" }), []);
    assert.deepEqual(failures({ host: "h", password: "" }), []);
  });

  it("rejects non-integer or out-of-range dial limits", () => {
    assertFails({ host: "h", password: "p", dialErrorLimit: 2.5 }, /^connection\.dialErrorLimit: must be an integer/);
    assertFails({ host: "h", password: "p", dialErrorLimit: -2 }, /^connection\.dialErrorLimit: must be -1/);
    assertFails({ host: "h", password: "p", perDialTimeout: 1.5 }, /^connection\.perDialTimeout: must be a whole number/);
    assertFails({ host: "h", password: "p", perDialTimeout: -1 }, /^connection\.perDialTimeout: must be 0/);
    assertFails({ host: "h", password: "p", proxy: { host: "j", password: "p", dialErrorLimit: 0.5 } }, /^connection\.proxy\.dialErrorLimit: /);
  });

  it("rejects unknown fields, top level and in proxy", () => {
    assert.deepEqual(failures({ host: "h", password: "p", hostname: "x" }), [
      "connection.hostname: unknown field (not in @pulumi/command's ConnectionArgs, nor natgate's sudo)",
    ]);
    assertFails({ host: "h", password: "p", proxy: { host: "j", password: "p", sudo: true } }, /^connection\.proxy\.sudo: unknown field/);
  });

  it("accepts host keys as an OpenSSH key line or a SHA256 fingerprint, and rejects other forms", () => {
    const pub = readFileSync(join(dir, "k.pub"), "utf8").trim();
    const fp = execFileSync("ssh-keygen", ["-lf", join(dir, "k.pub")], { encoding: "utf8" });
    for (const hostKey of [pub, pub.split(" ").slice(0, 2).join(" "), fp.split(" ")[1]!, fp.trim(), fp.split(" ")[1]! + "="]) {
      assert.deepEqual(failures({ host: "h", password: "p", hostKey }), [], hostKey);
    }
    const bad: Array<[string, RegExp]> = [
      ["SHA256:tooShort", /must be an OpenSSH public key line/],
      ["MD5:12:34:56:78:9a:bc:de:f0:12:34:56:78:9a:bc:de:f0", /MD5 fingerprints are not accepted/],
      ["12:34:56:78:9a:bc:de:f0:12:34:56:78:9a:bc:de:f0", /MD5 fingerprints are not accepted/],
      ["ssh-rsa " + pub.split(" ")[1], /does not hold a ssh-rsa key \(it holds ssh-ed25519\)/],
      ["ssh-ed25519 not*base64", /not base64/],
      ["AAAAC3NzaC1lZDI1NTE5AAAAI", /must be an OpenSSH public key line/],
      ["", /must be an OpenSSH public key line/],
    ];
    for (const [hostKey, re] of bad) assertFails({ host: "h", password: "p", hostKey }, new RegExp("^connection\\.hostKey: .*" + re.source));
  });

  it("checks that privateKey is a usable private key without echoing it", () => {
    assertFails({ host: "h", privateKey: "/home/me/.ssh/id_ed25519" }, /^connection\.privateKey: is not a private key ssh can read/);
    assertFails({ host: "h", privateKey: readFileSync(join(dir, "k.pub"), "utf8") }, /^connection\.privateKey: is a public key/);
    assertFails({ host: "h", privateKey: encryptedKey }, /^connection\.privateKey: is encrypted: set privateKeyPassword/);
    assertFails({ host: "h", privateKey: encryptedKey, privateKeyPassword: "wrong" }, /^connection\.privateKey: could not be decrypted/);
    assert.deepEqual(failures({ host: "h", privateKey: encryptedKey, privateKeyPassword: "s3cret-passphrase" }), []);
  });

  it("formats issues as one 'connection.field: message' line each, with a chosen prefix", () => {
    const r = ConnectionSchema.safeParse({ host: "", port: 0, password: "p", proxy: { host: "j", port: 1.5, password: "p" } });
    assert.equal(r.success, false);
    assert.equal(
      formatZodError(r.error!, "args.connection"),
      ["args.connection.host: must not be empty", "args.connection.port: must be 1-65535", "args.connection.proxy.port: must be an integer 1-65535"].join("\n"),
    );
    assert.equal(failures(undefined)[0], "connection: is required");
    assert.equal(failures("root@h")[0], "connection: must be an object like @pulumi/command's remote.ConnectionArgs");
  });

  it("never puts a password, private key or passphrase into a failure message", () => {
    const secrets = { password: "pw-Zq81!x", privateKeyPassword: "pp-Yw02?z" };
    const inputs: unknown[] = [
      { host: "", port: "x", password: secrets.password, privateKey: encryptedKey, privateKeyPassword: secrets.privateKeyPassword, bogus: 1 },
      { host: "h", password: 12345, privateKey: key.replace("-----END", "garbage-----END") },
      { host: "h", privateKey: encryptedKey, privateKeyPassword: secrets.privateKeyPassword + "-wrong" },
      { host: "h", password: secrets.password, proxy: { host: "", password: secrets.password, privateKey: "not a key " + secrets.password } },
    ];
    for (const input of inputs) {
      const r = ConnectionSchema.safeParse(input);
      assert.equal(r.success, false);
      const texts = [formatZodError(r.error!), String(r.error), inspect(r.error, { depth: 10 }), JSON.stringify(checkConnection(input))];
      for (const t of texts) {
        for (const s of [secrets.password, secrets.privateKeyPassword, "12345", key.slice(40, 90), encryptedKey.slice(40, 90)]) {
          assert.ok(!t.includes(s), `a secret leaked into: ${t.slice(0, 200)}`);
        }
      }
    }
  });

  it("runScript refuses an invalid connection with a config error before connecting", async () => {
    await assert.rejects(
      runScript({ host: "127.0.0.1", port: 0, password: "pw-Zq81!x" }, "true"),
      (e: unknown) => isNatgateError(e, "config") && /connection\.port: must be 1-65535/.test(e.message) && !e.message.includes("pw-Zq81!x"),
    );
    await assert.rejects(runScript({ host: "127.0.0.1", port: 1, password: "x" }, "true", ["a\0"]), /NUL/);
  });
});
