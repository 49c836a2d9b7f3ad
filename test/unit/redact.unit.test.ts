// Secrets never reach a message (issue 11): a private key pasted into connection.host, a password
// in the user field, key material anywhere; public keys and fingerprints stay readable.
import { strict as assert } from "assert";
import { execFileSync } from "child_process";
import { mkdtempSync, readFileSync, rmSync } from "fs";
import { tmpdir } from "os";
import { join } from "path";
import { checkInputs } from "../../provider/engine/check";
import { redact, secretsOf } from "../../provider/engine/redact";
import { DnatRuleKind } from "../../provider/resources/dnat";
import { hostKind } from "../../provider/resources/common/hostKind";

function newKey(): { priv: string; pub: string } {
  const dir = mkdtempSync(join(tmpdir(), "natgate-redact-"));
  try {
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "k")]);
    return { priv: readFileSync(join(dir, "k"), "utf8"), pub: readFileSync(join(dir, "k.pub"), "utf8").trim() };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("redaction of secrets in messages", () => {
  const { priv, pub } = newKey();
  const body = priv.split("\n")[1]!;
  const kind = hostKind(DnatRuleKind);
  const base = { name: "web", inInterface: "wg0", ports: 80, toAddress: "192.168.1.99" };

  it("a private key pasted into connection.host is refused without echoing it", () => {
    const r = checkInputs(kind, { ...base, connection: { host: priv, privateKey: priv } });
    const text = JSON.stringify(r.failures);
    assert.ok(r.failures.some((f) => f.property === "connection.host"), text);
    assert.ok(!text.includes(body), `key material in: ${text.slice(0, 300)}`);
    assert.match(text, /<redacted/);
  });

  it("a password typed into another field is taken out of that field's error", () => {
    const password = "hunter2 and more";
    const r = checkInputs(kind, { ...base, connection: { host: "192.168.1.1", user: password, password } });
    assert.ok(!JSON.stringify(r.failures).includes(password), JSON.stringify(r.failures));
  });

  it("finds every secret at any depth, and keeps public keys and fingerprints", () => {
    assert.deepEqual(secretsOf({ connection: { password: "pw-one", proxy: { privateKey: "k-two", privateKeyPassword: "pp-3x" } } }).sort(), ["k-two", "pp-3x", "pw-one"]);
    const fp = "SHA256:" + "A".repeat(43);
    assert.equal(redact(`host key ${pub} (${fp})`), `host key ${pub} (${fp})`);
    assert.equal(redact(`x ${priv.replace(/\n/g, " ")} y`).includes(body), false, "a flattened key");
    assert.equal(redact(`x ${priv.slice(0, 120)}`).includes(body.slice(0, 30)), false, "a key cut short");
  });

  it("a key's body without its BEGIN/END lines, still wrapped, is taken out: by lines, escaped newlines or spaces", () => {
    const lines = priv.split("\n").filter((l) => l && !l.startsWith("-----"));
    for (const [how, text] of [
      ["lines", lines.join("\n")],
      ["CRLF lines", lines.join("\r\n")],
      ["JSON-escaped lines", JSON.stringify(lines.join("\n")).slice(1, -1)],
      ["spaces", lines.join(" ")],
      ["the first two lines", lines.slice(0, 2).join("\n")],
    ]) {
      const out = redact(`connection.host: "${text}" is not a hostname`);
      assert.ok(lines.every((l) => l.length < 16 || !out.includes(l)), `${how}: ${out}`);
      assert.match(out, /^connection\.host: "<redacted>" is not a hostname$/, how);
    }
    // What must stay readable: one public key line, WireGuard keys one per line, fingerprints, words.
    const wg = ["x".repeat(43) + "=", "y".repeat(43) + "="].join("\n");
    const fp = "SHA256:" + "B".repeat(43);
    for (const text of [pub, wg, `${fp}\n${fp}`, "interface wg0 already exists on the router\nchoose another interfaceName"]) {
      assert.equal(redact(text), text);
    }
  });
});
