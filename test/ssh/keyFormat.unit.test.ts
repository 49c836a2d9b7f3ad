// The private key check that runs at `check` time without ssh2 (issue 8): keys ssh-keygen writes
// now, in every format and type natgate's client uses, with and without a passphrase, plus broken
// copies of them. ssh2's own parser (which uses the key at connect) is the reference it must agree with.
import { strict as assert } from "assert";
import { execFileSync } from "child_process";
import { mkdtempSync, readFileSync, rmSync } from "fs";
import { tmpdir } from "os";
import { join, resolve } from "path";
import { utils as ssh2utils } from "ssh2";
import { checkPrivateKeyText, parseOpenSshKey, type KeyCheck } from "../../provider/ssh/keyFormat";

const PASS = "s3cret 'pass' $(x)";

interface Generated {
  name: string;
  text: string;
  pub: string;
  passphrase?: string;
}

const KINDS: { name: string; args: string[]; pem?: "PEM" | "PKCS8" }[] = [
  { name: "ed25519", args: ["-t", "ed25519"] },
  { name: "rsa", args: ["-t", "rsa", "-b", "2048"] },
  { name: "ecdsa-256", args: ["-t", "ecdsa", "-b", "256"] },
  { name: "ecdsa-384", args: ["-t", "ecdsa", "-b", "384"] },
  { name: "ecdsa-521", args: ["-t", "ecdsa", "-b", "521"] },
  { name: "rsa-pem", args: ["-t", "rsa", "-b", "2048"], pem: "PEM" },
  { name: "ecdsa-pem", args: ["-t", "ecdsa", "-b", "256"], pem: "PEM" },
  { name: "rsa-pkcs8", args: ["-t", "rsa", "-b", "2048"], pem: "PKCS8" },
];

/** ssh2's verdict, in keyFormat's terms: ok, or whether it is a public key, or just refused. */
function ssh2Verdict(text: string, passphrase?: string): "ok" | "public" | "refused" {
  let k: ReturnType<typeof ssh2utils.parseKey>;
  try {
    k = ssh2utils.parseKey(text, passphrase);
  } catch {
    return "refused";
  }
  if (k instanceof Error) return "refused";
  const key = Array.isArray(k) ? k[0] : k;
  if (!key) return "refused"; // an empty list: a key file holding no key
  return key.isPrivateKey() ? "ok" : "public";
}

function verdict(r: KeyCheck): "ok" | "public" | "refused" {
  return r.ok ? "ok" : r.problem === "public" ? "public" : "refused";
}

/** Re-armors an OpenSSH key after `edit` changed its decoded bytes. */
function editOpenSsh(text: string, edit: (b: Buffer) => Buffer): string {
  const body = /-----BEGIN OPENSSH PRIVATE KEY-----\n([\s\S]+?)\n-----END/.exec(text)![1]!;
  const b64 = edit(Buffer.from(body.replace(/\s+/g, ""), "base64")).toString("base64");
  return `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64.replace(/(.{70})/g, "$1\n").trim()}\n-----END OPENSSH PRIVATE KEY-----\n`;
}

interface Fields {
  cipher: string;
  kdf: string;
  kdfOptions: Buffer;
  count: number;
  pub: Buffer;
  priv: Buffer;
  rest: Buffer;
}

/** Splits an OpenSSH key into its fields, then writes it again with `edit` applied. */
function rebuild(text: string, edit: (f: Fields) => void): string {
  return editOpenSsh(text, (b) => {
    let pos = 15;
    const str = () => {
      const n = b.readUInt32BE(pos);
      const v = b.subarray(pos + 4, pos + 4 + n);
      pos += 4 + n;
      return v;
    };
    const cipher = str().toString("latin1");
    const kdf = str().toString("latin1");
    const kdfOptions = str();
    const count = b.readUInt32BE(pos);
    pos += 4;
    const f: Fields = { cipher, kdf, kdfOptions, count, pub: str(), priv: str(), rest: b.subarray(pos) };
    edit(f);
    const s = (v: Buffer | string) => {
      const d = typeof v === "string" ? Buffer.from(v, "latin1") : v;
      const n = Buffer.alloc(4);
      n.writeUInt32BE(d.length);
      return Buffer.concat([n, d]);
    };
    const c = Buffer.alloc(4);
    c.writeUInt32BE(f.count);
    return Buffer.concat([b.subarray(0, 15), s(f.cipher), s(f.kdf), s(f.kdfOptions), c, s(f.pub), s(f.priv), f.rest]);
  });
}

describe("private key check without ssh2 (keyFormat)", function () {
  this.timeout(120_000);
  let dir: string;
  const keys: Generated[] = [];
  const byName = (name: string) => keys.find((k) => k.name === name)!;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "natgate-keyformat-"));
    for (const kind of KINDS) {
      for (const passphrase of [undefined, PASS]) {
        const name = passphrase === undefined ? kind.name : `${kind.name}-enc`;
        const file = join(dir, name);
        const args = ["-q", ...kind.args, "-N", passphrase ?? "", "-C", "t", "-f", file];
        if (kind.pem) args.push("-m", kind.pem);
        execFileSync("ssh-keygen", args);
        const g: Generated = { name, text: readFileSync(file, "utf8"), pub: readFileSync(`${file}.pub`, "utf8") };
        if (passphrase !== undefined) g.passphrase = passphrase;
        keys.push(g);
      }
    }
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("takes every OpenSSH and PEM key ssh-keygen writes, with its passphrase", () => {
    for (const k of keys.filter((k) => !k.name.includes("pkcs8"))) {
      const r = checkPrivateKeyText(k.text, k.passphrase);
      assert.ok(r.ok, `${k.name}: ${JSON.stringify(r)}`);
      assert.equal(r.encrypted, k.passphrase !== undefined, k.name);
      assert.equal(r.format, k.name.includes("pem") ? "pem" : "openssh", k.name);
    }
    assert.deepEqual(checkPrivateKeyText(byName("ed25519").text), { ok: true, format: "openssh", type: "ssh-ed25519", encrypted: false });
    assert.equal((checkPrivateKeyText(byName("ecdsa-384").text) as { type: string }).type, "ecdsa-sha2-nistp384");
    assert.equal((checkPrivateKeyText(byName("rsa-enc").text, PASS) as { type: string }).type, "ssh-rsa");
    // Windows line endings and surrounding blank lines, as a key pasted into a config may have.
    assert.ok(checkPrivateKeyText(`\n${byName("ed25519").text.replace(/\n/g, "\r\n")}\n`).ok);
    assert.ok(checkPrivateKeyText(`\n${byName("rsa-pem").text.replace(/\n/g, "\r\n")}\n`).ok);
  });

  it("says an encrypted key needs privateKeyPassword, and that a wrong one does not decrypt it", () => {
    for (const k of keys.filter((k) => k.passphrase !== undefined && !k.name.includes("pkcs8"))) {
      assert.deepEqual(checkPrivateKeyText(k.text), { ok: false, problem: "encrypted" }, k.name);
      assert.deepEqual(checkPrivateKeyText(k.text, ""), { ok: false, problem: "encrypted" }, k.name);
      assert.deepEqual(checkPrivateKeyText(k.text, `${PASS}-wrong`), { ok: false, problem: "wrong-passphrase" }, k.name);
    }
  });

  it("refuses a public key, a path, PKCS#8 (which ssh2 cannot read) and text that is no key", () => {
    for (const k of keys) assert.deepEqual(checkPrivateKeyText(k.pub), { ok: false, problem: "public" }, `${k.name}.pub`);
    const rfc4716 = execFileSync("ssh-keygen", ["-e", "-f", join(dir, "ed25519.pub")], { encoding: "utf8" });
    assert.deepEqual(checkPrivateKeyText(rfc4716), { ok: false, problem: "public" });
    for (const t of ["/home/me/.ssh/id_ed25519", "~/.ssh/id_rsa", "", "   ", "not a key", byName("rsa-pkcs8").text, byName("rsa-pkcs8-enc").text]) {
      assert.equal(verdict(checkPrivateKeyText(t, PASS)), "refused", JSON.stringify(t.slice(0, 40)));
    }
  });

  it("refuses corrupted copies of an OpenSSH key", () => {
    const plain = byName("ed25519").text;
    const enc = byName("ed25519-enc").text;
    const body = /KEY-----\n([\s\S]+?)\n-----END/.exec(plain)![1]!;
    const corrupt: [string, string][] = [
      ["truncated body", plain.replace(body, body.slice(0, Math.floor(body.length / 2)))],
      ["no END line", plain.replace(/-----END OPENSSH PRIVATE KEY-----\s*$/, "")],
      ["not base64", plain.replace(body, body.slice(0, 20) + "*" + body.slice(21))],
      ["garbage before END", plain.replace("-----END", "garbage-----END")],
      ["wrong magic", editOpenSsh(plain, (b) => (b.write("openssh-key-v2", 0, "latin1"), b))],
      ["two keys", rebuild(plain, (f) => (f.count = 2))],
      ["no keys", rebuild(plain, (f) => (f.count = 0))],
      ["check-ints differ", rebuild(plain, (f) => (f.priv = Buffer.from(f.priv), (f.priv[0]! ^= 0xff)))],
      ["private section cut", rebuild(plain, (f) => (f.priv = f.priv.subarray(0, 16)))],
      ["bytes after the key", rebuild(plain, (f) => (f.rest = Buffer.from("x")))],
      ["unknown cipher", rebuild(enc, (f) => (f.cipher = "zzz256-ctr"))],
      ["unknown kdf", rebuild(enc, (f) => (f.kdf = "scrypt"))],
      ["kdf without cipher", rebuild(enc, (f) => (f.cipher = "none"))],
      ["cipher without kdf", rebuild(enc, (f) => ((f.kdf = "none"), (f.kdfOptions = Buffer.alloc(0))))],
      ["no salt", rebuild(enc, (f) => (f.kdfOptions = Buffer.alloc(0)))],
    ];
    // The helper's parsing holds: an untouched rewritten copy still passes.
    assert.ok(checkPrivateKeyText(rebuild(plain, () => undefined)).ok);
    assert.ok(checkPrivateKeyText(rebuild(enc, () => undefined), PASS).ok);
    for (const [what, text] of corrupt) {
      // With a passphrase, so the encrypted copies reach the structure checks.
      assert.deepEqual(checkPrivateKeyText(text, PASS), { ok: false, problem: "unreadable" }, what);
      assert.equal(ssh2Verdict(text, PASS), "refused", `ssh2 refuses it too: ${what}`);
    }
  });

  it("refuses an OpenSSH key of a type ssh2 cannot use, without echoing the type", () => {
    const plain = byName("ed25519").text;
    // Same length as ssh-ed25519 in both places it appears (public blob and private section).
    const text = editOpenSsh(plain, (b) => Buffer.from(b.toString("latin1").split("ssh-ed25519").join("ssh-ed99999"), "latin1"));
    assert.equal(parseOpenSshKey(text)?.type, "ssh-ed99999");
    assert.deepEqual(checkPrivateKeyText(text), { ok: false, problem: "unsupported-type" });
  });

  it("checks the passphrase of keys encrypted with each cipher ssh2 decrypts, and refuses chacha20-poly1305", () => {
    for (const cipher of ["aes128-ctr", "aes192-ctr", "aes128-cbc", "aes256-cbc", "aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com"]) {
      const file = join(dir, `z-${cipher}`);
      execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", PASS, "-Z", cipher, "-C", "t", "-f", file]);
      const text = readFileSync(file, "utf8");
      assert.equal(parseOpenSshKey(text)?.cipher, cipher);
      if (cipher.startsWith("chacha20")) {
        for (const pass of [PASS, "nope"]) assert.deepEqual(checkPrivateKeyText(text, pass), { ok: false, problem: "unsupported-cipher" });
        assert.equal(ssh2Verdict(text, PASS), "refused", "ssh2 cannot decrypt it either");
        continue;
      }
      assert.ok(checkPrivateKeyText(text, PASS).ok, cipher);
      assert.deepEqual(checkPrivateKeyText(text, "nope"), { ok: false, problem: "wrong-passphrase" }, cipher);
      assert.deepEqual(checkPrivateKeyText(text), { ok: false, problem: "encrypted" }, cipher);
      assert.equal(ssh2Verdict(text, PASS), "ok", cipher);
    }
  });

  it("takes a PuTTY (PPK v2) key by its header, and wants the passphrase of an encrypted one", () => {
    const ppk = (enc: string) =>
      `PuTTY-User-Key-File-2: ssh-rsa\nEncryption: ${enc}\nComment: t\nPublic-Lines: 1\nAAAAB3NzaC1yc2E=\nPrivate-Lines: 1\nAAAA\nPrivate-MAC: 00\n`;
    assert.deepEqual(checkPrivateKeyText(ppk("none")), { ok: true, format: "ppk", type: "ssh-rsa", encrypted: false });
    assert.deepEqual(checkPrivateKeyText(ppk("aes256-cbc")), { ok: false, problem: "encrypted" });
    assert.ok(checkPrivateKeyText(ppk("aes256-cbc"), PASS).ok);
  });

  it("reads the structure of an OpenSSH key: cipher, kdf, rounds, type", () => {
    const plain = parseOpenSshKey(byName("rsa").text)!;
    assert.equal(plain.cipher, "none");
    assert.equal(plain.kdf, "none");
    assert.equal(plain.type, "ssh-rsa");
    const enc = parseOpenSshKey(byName("ecdsa-521-enc").text)!;
    assert.equal(enc.cipher, "aes256-ctr");
    assert.equal(enc.kdf, "bcrypt");
    assert.equal(enc.rounds, 16);
    assert.equal(enc.salt?.length, 16);
    assert.equal(enc.type, "ecdsa-sha2-nistp521");
  });

  it("agrees with ssh2's parser on every generated key, public key and passphrase case", () => {
    for (const k of keys) {
      const cases: [string, string, string | undefined][] = [
        [k.name, k.text, k.passphrase],
        [`${k.name}.pub`, k.pub, undefined],
      ];
      if (k.passphrase !== undefined) cases.push([`${k.name} wrong passphrase`, k.text, "nope"]);
      for (const [what, text, pass] of cases) {
        assert.equal(verdict(checkPrivateKeyText(text, pass)), ssh2Verdict(text, pass), what);
      }
    }
  });

  it("loads no ssh2, also to check an encrypted key's passphrase", () => {
    const repo = resolve(__dirname, "..", "..");
    const script = `
      const { checkConnection } = require("./provider/ssh/schema");
      const r = checkConnection({ host: "h", privateKey: process.env.K, privateKeyPassword: process.env.P });
      const bad = checkConnection({ host: "h", privateKey: process.env.K, privateKeyPassword: "wrong" });
      const ssh2 = Object.keys(require.cache).filter((f) => /node_modules[\\\\/]ssh2[\\\\/]/.test(f));
      process.stdout.write(JSON.stringify({ ok: r.failures.length, bad: bad.failures.map((f) => f.reason), ssh2 }));`;
    const out = execFileSync(process.execPath, ["--require", "tsx/cjs", "-e", script], {
      cwd: repo,
      env: { ...process.env, K: byName("ed25519-enc").text, P: PASS },
      encoding: "utf8",
    });
    const r = JSON.parse(out) as { ok: number; bad: string[]; ssh2: string[] };
    assert.equal(r.ok, 0);
    assert.match(r.bad.join(), /could not be decrypted with privateKeyPassword/);
    assert.deepEqual(r.ssh2, []);
  });
});
