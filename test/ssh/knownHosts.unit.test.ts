// known_hosts (issue 11): parse and lookup as OpenSSH does, checked against real ssh-keygen where it exists.
import { strict as assert } from "assert";
import { execFileSync, spawnSync } from "child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "fs";
import { tmpdir } from "os";
import { join } from "path";
import { isNatgateError } from "../../provider/ssh";
import { poolKey, targetExpectations } from "../../provider/ssh/dial";
import { fingerprintOfKeyBlob } from "../../provider/ssh/hostkey";
import {
  certAuthorityNote,
  entryMatches,
  judgeHostKey,
  knownHostsFiles,
  knownHostsFor,
  knownHostsName,
  knownHostsNoCommonType,
  knownHostsOffer,
  knownHostsRefusal,
  lookupKnownHosts,
  matchPattern,
  parseKnownHosts,
  readKnownHostsFiles,
  type KnownHostsVerdict,
} from "../../provider/ssh/knownHosts";
import { ConnectionSchema } from "../../provider/ssh/schema";

const hasKeygen = spawnSync("sh", ["-c", "command -v ssh-keygen"]).status === 0;

interface Key {
  line: string; // "type base64"
  type: string;
  fingerprint: string;
}

function keyOf(line: string): Key {
  const [type, b64] = line.trim().split(/\s+/) as [string, string];
  return { line: `${type} ${b64}`, type, fingerprint: fingerprintOfKeyBlob(Buffer.from(b64, "base64")) };
}

// Real keys when ssh-keygen exists; fixed ones (blob = string type + 32 bytes) otherwise.
function makeKey(dir: string, name: string, type: "ed25519" | "ecdsa" | "rsa"): Key {
  if (hasKeygen) {
    const file = join(dir, name);
    execFileSync("ssh-keygen", ["-q", "-t", type, ...(type === "rsa" ? ["-b", "2048"] : []), "-N", "", "-C", name, "-f", file]);
    return keyOf(readFileSync(file + ".pub", "utf8"));
  }
  const t = { ed25519: "ssh-ed25519", ecdsa: "ecdsa-sha2-nistp256", rsa: "ssh-rsa" }[type];
  const len = Buffer.alloc(4);
  len.writeUInt32BE(t.length);
  return keyOf(`${t} ${Buffer.concat([len, Buffer.from(t), Buffer.from(name.padEnd(32, "x"))]).toString("base64")}`);
}

describe("known_hosts", () => {
  let dir: string;
  let a: Key; // ed25519
  let b: Key; // ed25519, another host's
  let e: Key; // ecdsa
  let r: Key; // rsa

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "natgate-kh-"));
    a = makeKey(dir, "a", "ed25519");
    b = makeKey(dir, "b", "ed25519");
    e = makeKey(dir, "e", "ecdsa");
    r = makeKey(dir, "r", "rsa");
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const lookup = (text: string, host: string, port = 22) => lookupKnownHosts(parseKnownHosts(text, "/kh"), host, port);
  const lines = (text: string, host: string, port = 22) => {
    const l = lookup(text, host, port);
    return { keys: l.keys.map((x) => x.line), revoked: l.revoked.map((x) => x.line), ca: l.certAuthorities.map((x) => x.line) };
  };

  it("names a host as ssh does: bare for port 22, [host]:port otherwise, lowercase", () => {
    assert.equal(knownHostsName("VPS.example", 22), "vps.example");
    assert.equal(knownHostsName("vps.example", 2222), "[vps.example]:2222");
    assert.equal(knownHostsName("2001:DB8::1", 22), "2001:db8::1");
    assert.equal(knownHostsName("2001:db8::1", 2200), "[2001:db8::1]:2200");
  });

  it("matches * and ? as OpenSSH's match_pattern", () => {
    const cases: Array<[string, string, boolean]> = [
      ["a.example.com", "*.example.com", true],
      ["example.com", "*.example.com", false],
      ["10.0.0.7", "10.0.0.?", true],
      ["10.0.0.17", "10.0.0.?", false],
      ["abc", "*", true],
      ["", "*", true],
      ["aXbXc", "a*b*c", true],
      ["aXbX", "a*b*c", false],
      ["[h]:2222", "[h]:22*", true],
    ];
    for (const [s, p, want] of cases) assert.equal(matchPattern(s, p), want, `${s} ~ ${p}`);
  });

  it("parses plain lines with comma-separated patterns, keeps line numbers, skips comments, blanks and malformed lines", () => {
    const text = [
      "# a comment",
      "",
      `vps.example,198.51.100.1 ${a.line} comment words`,
      `   ${b.line}`, // no host field: the key type would be read as the hosts
      `bad.example ssh-ed25519 not*base64`,
      `bad.example ${e.type} ${a.line.split(" ")[1]}`, // blob holds another type
      `bad.example 2048 65537 1234567890`, // SSH-1
      `@unknown-marker bad.example ${a.line}`,
      `|1|c2FsdA==|aGFzaA== ${a.line}`, // hash of the wrong length
      `\tother.example\t${r.line}`,
      "bad.example",
    ].join("\n");
    const entries = parseKnownHosts(text, "/kh");
    assert.deepEqual(
      entries.map((x) => [x.line, x.keyType, x.fingerprint, x.hosts]),
      [
        [3, "ssh-ed25519", a.fingerprint, { patterns: ["vps.example", "198.51.100.1"] }],
        [10, "ssh-rsa", r.fingerprint, { patterns: ["other.example"] }],
      ],
    );
    assert.deepEqual(lines(text, "198.51.100.1").keys, [3]);
    assert.deepEqual(lines(text, "VPS.Example").keys, [3]);
    assert.deepEqual(lines(text, "bad.example").keys, []);
  });

  it("looks up a non-22 port only as [host]:port, and port 22 only bare", () => {
    const text = [`vps.example ${a.line}`, `[vps.example]:2222 ${b.line}`, `[vps.example]:22 ${e.line}`, `[2001:db8::1]:2200,2001:db8::1 ${r.line}`].join("\n");
    assert.deepEqual(lines(text, "vps.example").keys, [1]);
    assert.deepEqual(lines(text, "vps.example", 2222).keys, [2]);
    assert.deepEqual(lines(text, "vps.example", 2223).keys, []);
    assert.deepEqual(lines(text, "2001:db8::1").keys, [4]);
    assert.deepEqual(lines(text, "2001:db8::1", 2200).keys, [4]);
  });

  it("honours wildcards and negation: a matching !pattern rules the whole line out", () => {
    const text = [`*.example.com,!bad.example.com ${a.line}`, `10.0.0.? ${b.line}`, `!*.example.com ${e.line}`, `[*.example.com]:2222 ${r.line}`].join("\n");
    assert.deepEqual(lines(text, "good.example.com").keys, [1]);
    assert.deepEqual(lines(text, "bad.example.com").keys, []);
    assert.deepEqual(lines(text, "10.0.0.5").keys, [2]);
    assert.deepEqual(lines(text, "10.0.0.50").keys, []);
    assert.deepEqual(lines(text, "elsewhere.org").keys, [], "a line of only negated patterns matches nothing");
    assert.deepEqual(lines(text, "x.example.com", 2222).keys, [4]);
  });

  it("sorts @revoked and @cert-authority lines apart from host keys", () => {
    const text = [`@revoked * ${b.line}`, `@cert-authority *.example.com ${e.line}`, `vps.example.com ${a.line}`, `@revoked vps.example.com ${r.line}`].join("\n");
    assert.deepEqual(lines(text, "vps.example.com"), { keys: [3], revoked: [1, 4], ca: [2] });
    assert.deepEqual(lines(text, "x.example.com"), { keys: [], revoked: [1], ca: [2] });
  });

  (hasKeygen ? it : it.skip)("matches hashed entries written by ssh-keygen -H, for port 22 and [host]:port", () => {
    const file = join(dir, "hashed");
    writeFileSync(file, [`vps.example,198.51.100.1 ${a.line}`, `[vps.example]:2222 ${b.line}`, `revoked.example ${e.line}`].join("\n") + "\n");
    execFileSync("ssh-keygen", ["-q", "-H", "-f", file], { stdio: "ignore" });
    // ssh-keygen -H leaves marker lines as they are; a hashed @revoked line is the marker before a hashed line.
    const text = readFileSync(file, "utf8").replace(/^(\|1\|\S+ ecdsa-)/m, "@revoked $1");
    assert.ok(!/vps\.example|198\.51/.test(text), text);
    const entries = parseKnownHosts(text, file);
    assert.ok(entries.length >= 3 && entries.every((x) => "salt" in x.hosts), text);
    const keysOf = (host: string, port = 22) => lookupKnownHosts(entries, host, port).keys.map((x) => x.fingerprint);
    assert.deepEqual(keysOf("vps.example"), [a.fingerprint]);
    assert.deepEqual(keysOf("VPS.EXAMPLE"), [a.fingerprint]);
    assert.deepEqual(keysOf("198.51.100.1"), [a.fingerprint]);
    assert.deepEqual(keysOf("vps.example", 2222), [b.fingerprint]);
    assert.deepEqual(keysOf("vps.example", 2200), []);
    assert.deepEqual(keysOf("198.51.100.2"), []);
    assert.deepEqual(lookupKnownHosts(entries, "revoked.example", 22).revoked.map((x) => x.fingerprint), [e.fingerprint]);
  });

  (hasKeygen ? it : it.skip)("finds the same lines as ssh-keygen -F for every pattern form", () => {
    const file = join(dir, "patterns");
    const text = [
      `*.example.com,!bad.example.com ${a.line}`,
      `10.0.0.? ${b.line}`,
      `[vps.example.com]:2222 ${e.line}`,
      `vps.example.com,192.0.2.* ${r.line}`,
      `!*.org,*.net ${a.line}`,
      `[2001:db8::1]:2200 ${b.line}`,
    ].join("\n");
    writeFileSync(file, text + "\n");
    const names = ["good.example.com", "bad.example.com", "vps.example.com", "[vps.example.com]:2222", "10.0.0.5", "10.0.0.55", "192.0.2.9", "x.net", "x.org", "[2001:db8::1]:2200", "nothing.here"];
    for (const name of names) {
      const out = spawnSync("ssh-keygen", ["-F", name, "-f", file], { encoding: "utf8" }).stdout;
      const theirs = [...out.matchAll(/found: line (\d+)/g)].map((m) => Number(m[1]));
      const entries = parseKnownHosts(text, file);
      const ours = entries.filter((x) => entryMatches(x, name)).map((x) => x.line);
      assert.deepEqual(ours, theirs, name);
    }
  });

  it("judges a presented key: known, revoked, changed (same type / only other types), unknown", () => {
    const text = [`vps ${a.line}`, `vps ${r.line}`, `@revoked * ${b.line}`, `@cert-authority vps,ca-only ${e.line}`].join("\n");
    const l = lookup(text, "vps");
    const kind = (v: KnownHostsVerdict) => (v.kind === "changed" ? `changed:${v.sameType}:${v.entries.map((x) => x.line)}` : v.kind === "unknown" ? v.kind : `${v.kind}:${v.entry.line}`);
    assert.equal(kind(judgeHostKey(l, a.fingerprint, a.type)), "known:1");
    assert.equal(kind(judgeHostKey(l, r.fingerprint, r.type)), "known:2");
    assert.equal(kind(judgeHostKey(l, b.fingerprint, b.type)), "revoked:3");
    const other = makeKey(dir, "other", "ed25519");
    assert.equal(kind(judgeHostKey(l, other.fingerprint, other.type)), "changed:true:1");
    // the CA's own key is not a host key of vps
    assert.equal(kind(judgeHostKey(l, e.fingerprint, e.type)), "changed:false:1,2");
    // only a @cert-authority line: nothing is known, first use decides, and a refusal notes why
    const ca = lookup(text, "ca-only");
    assert.equal(kind(judgeHostKey(ca, e.fingerprint, e.type)), "unknown");
    assert.equal(kind(judgeHostKey(ca, b.fingerprint, b.type)), "revoked:3");
    assert.match(certAuthorityNote(ca)!, /only @cert-authority lines for ca-only \(\/kh:4\): natgate does not check host certificates/);
    assert.equal(certAuthorityNote(l), undefined);
  });

  it("offers only the known key types, in ssh2's order (RSA as its three signature algorithms)", () => {
    assert.deepEqual(knownHostsOffer(lookup(`h ${r.line}\nh ${a.line}`, "h")), ["ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]);
    assert.deepEqual(knownHostsOffer(lookup(`h ${e.line}`, "h")), ["ecdsa-sha2-nistp256"]);
    assert.deepEqual(knownHostsOffer(lookup(`@cert-authority h ${e.line}`, "h")), []);
  });

  it("refuses with both fingerprints, the file:line and the fix", () => {
    const text = `# x\n[vps.example]:2222 ${a.line}\n@revoked * ${b.line}`;
    const l = lookupKnownHosts(parseKnownHosts(text, "/home/u/.ssh/known_hosts"), "vps.example", 2222);
    const changed = knownHostsRefusal("root@vps.example:2222", l, judgeHostKey(l, r.fingerprint, r.type), r.fingerprint, r.type, "connection.hostKey");
    assert.equal(changed.code, "hostkey-mismatch");
    assert.ok(changed.message.includes(`${a.fingerprint} (ssh-ed25519, /home/u/.ssh/known_hosts:2)`), changed.message);
    assert.ok(changed.message.includes(`received ${r.fingerprint} (ssh-rsa)`), changed.message);
    assert.ok(changed.message.includes(`ssh-keygen -f /home/u/.ssh/known_hosts -R '[vps.example]:2222'`), changed.message);
    assert.match(changed.message, /Nothing was run on the host.*set connection\.hostKey to the new fingerprint/);
    const revoked = knownHostsRefusal("jump host root@vps.example:2222", l, judgeHostKey(l, b.fingerprint, b.type), b.fingerprint, b.type, "connection.proxy.hostKey");
    assert.match(revoked.message, /^host key of jump host root@vps\.example:2222 is revoked: .*known_hosts:3 marks @revoked\. Nothing was run/);
    assert.ok(revoked.message.includes(b.fingerprint));
    const none = knownHostsNoCommonType("root@vps.example:2222", l, "connection.hostKey");
    assert.match(none.message, /known_hosts has ssh-ed25519 SHA256:\S+ \(\/home\/u\/\.ssh\/known_hosts:2\) for \[vps\.example\]:2222, and the server offers no key of that type/);
  });

  it("reads ssh's files by default, one file when given, none for false; a missing file is no entry", () => {
    assert.deepEqual(knownHostsFiles(undefined, "/home/u"), ["/home/u/.ssh/known_hosts", "/home/u/.ssh/known_hosts2", "/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"]);
    assert.deepEqual(knownHostsFiles("~/kh", "/home/u"), ["/home/u/kh"]);
    assert.deepEqual(knownHostsFiles("/etc/kh", "/home/u"), ["/etc/kh"]);
    assert.deepEqual(knownHostsFiles(false, "/home/u"), []);
    assert.deepEqual(readKnownHostsFiles([join(dir, "missing"), join(dir, "missing", "below")]), []);
    const sub = join(dir, "a-directory");
    mkdirSync(sub);
    assert.throws(() => readKnownHostsFiles([sub]), (err: unknown) => isNatgateError(err, "config") && /connection\.knownHosts: cannot read .*a-directory \(EISDIR\)/.test(err.message));
  });

  it("re-reads a file that changed", () => {
    const file = join(dir, "changing");
    writeFileSync(file, `h ${a.line}\n`);
    assert.deepEqual(knownHostsFor("h", 22, file).keys.map((x) => x.fingerprint), [a.fingerprint]);
    writeFileSync(file, `# now another key, longer line\nh ${b.line}\n`);
    assert.deepEqual(knownHostsFor("h", 22, file).keys.map((x) => [x.line, x.fingerprint]), [[2, b.fingerprint]]);
  });

  it("a pin wins over known_hosts, which decides instead of first use; the pool tells the settings apart", () => {
    const file = join(dir, "kh-dial");
    writeFileSync(file, `known.example ${a.line}\n[known.example]:2222 ${e.line}\n`);
    const conn = (extra: object) => ConnectionSchema.parse({ host: "known.example", password: "x", knownHosts: file, ...extra });
    assert.deepEqual(targetExpectations(conn({})), []);
    assert.deepEqual(targetExpectations(conn({ hostKey: b.fingerprint })), [{ fingerprint: b.fingerprint, source: "hostKey" }]);
    assert.deepEqual(targetExpectations(conn({ host: "unknown.example" }), a.fingerprint), [{ fingerprint: a.fingerprint, source: "state" }]);
    assert.deepEqual(targetExpectations(conn({ knownHosts: false }), b.fingerprint), [{ fingerprint: b.fingerprint, source: "state" }]);
    const keys = [conn({}), conn({ knownHosts: false }), conn({ port: 2222 }), conn({ knownHosts: join(dir, "missing") })].map(poolKey);
    assert.equal(new Set(keys).size, 4);
  });

  it("connection.knownHosts takes a path or false, with a clear error otherwise", () => {
    const base = { host: "h", password: "x" };
    assert.equal(ConnectionSchema.parse({ ...base, knownHosts: "~/.ssh/other" }).knownHosts, "~/.ssh/other");
    assert.equal(ConnectionSchema.parse({ ...base, knownHosts: false }).knownHosts, false);
    assert.equal(ConnectionSchema.parse(base).knownHosts, undefined);
    for (const bad of [true, "relative/known_hosts", "", 7]) {
      const r = ConnectionSchema.safeParse({ ...base, knownHosts: bad });
      assert.ok(!r.success);
      assert.match(r.error.issues[0]!.message, /must be the path of a known_hosts file \(absolute, or starting with ~\/\), or false to read none/);
    }
  });
});
