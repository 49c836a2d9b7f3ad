import { strict as assert } from "assert";
import { execFileSync } from "child_process";
import { mkdtempSync, readFileSync, rmSync } from "fs";
import { tmpdir } from "os";
import { join } from "path";
import { fingerprintOfKeyBlob, parseHostKeyPin } from "../../provider/ssh";

describe("host key fingerprints", () => {
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), "natgate-hostkey-"))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  const types: Array<[string, string[], string]> = [
    ["ed25519", [], "ssh-ed25519"],
    ["rsa", ["-b", "2048"], "ssh-rsa"],
    ["ecdsa", ["-b", "256"], "ecdsa-sha2-nistp256"],
    ["ecdsa", ["-b", "521"], "ecdsa-sha2-nistp521"],
  ];
  for (const [type, extra, keyType] of types) {
    it(`computes what ssh-keygen -lf prints for a ${keyType} key`, () => {
      const file = join(dir, `${type}${extra.join("")}`);
      execFileSync("ssh-keygen", ["-q", "-t", type, ...extra, "-N", "", "-C", "host@example", "-f", file]);
      const line = readFileSync(file + ".pub", "utf8").trim();
      const expected = execFileSync("ssh-keygen", ["-lf", file + ".pub"], { encoding: "utf8" }).split(" ")[1]!;
      assert.match(expected, /^SHA256:[A-Za-z0-9+/]{43}$/);

      assert.equal(fingerprintOfKeyBlob(Buffer.from(line.split(" ")[1]!, "base64")), expected);
      assert.deepEqual(parseHostKeyPin(line), { fingerprint: expected, keyType });
      assert.deepEqual(parseHostKeyPin(`  ${line.split(" ").slice(0, 2).join(" ")}\n`), { fingerprint: expected, keyType });
      assert.deepEqual(parseHostKeyPin(expected), { fingerprint: expected });
      assert.deepEqual(parseHostKeyPin(execFileSync("ssh-keygen", ["-lf", file + ".pub"], { encoding: "utf8" })), { fingerprint: expected });
    });
  }

  it("tells a different key from the right one", () => {
    const a = join(dir, "a");
    const b = join(dir, "b");
    for (const f of [a, b]) execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", f]);
    const pa = parseHostKeyPin(readFileSync(a + ".pub", "utf8"));
    const pb = parseHostKeyPin(readFileSync(b + ".pub", "utf8"));
    assert.ok(typeof pa !== "string" && typeof pb !== "string");
    assert.notEqual(pa.fingerprint, pb.fingerprint);
  });
});
