// chainScripts runs a resource's boot entry and its apply as one exec: each part must see exactly
// its own arguments (whatever bytes they hold), a failing part must stop the rest with its status,
// and the lock must be taken once and handed down. Run in dash and BusyBox ash (OpenWrt's shell),
// with the lock's directory moved into a temp dir instead of this machine's /run/natgate.
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { chainScripts, type ScriptPart } from "../../provider/backends/chain";
import { HOSTSTATE_SH } from "../../provider/backends/hoststate";

const SHELLS = [["dash"], ["busybox", "ash"]];
const STATE_LINE = /^if \[ -d \/run \]; then NG_STATE=.*$/m;

function runChain(sh: string[], parts: ScriptPart[]): { status: number | null; stdout: string; stderr: string; state: string } {
  const state = fs.mkdtempSync(path.join(os.tmpdir(), "natgate-chain-"));
  const { script, args } = chainScripts(parts);
  assert.match(script, STATE_LINE);
  const text = script.replace(STATE_LINE, `NG_STATE=${state}`);
  const r = spawnSync(sh[0]!, [...sh.slice(1), "-s", "--", ...args], { input: text, encoding: "utf8" });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, state };
}

// Each part prints its arguments NUL-separated, after a line naming it.
const printer = (name: string, args: string[]): ScriptPart => ({ script: `printf '%s\\n' '@@${name}'; printf '%s\\0' "$#" "$@"; echo`, args });

describe("chainScripts: one exec for a boot entry and its apply", () => {
  for (const sh of SHELLS) {
    it(`each part sees only its own arguments, byte for byte (${sh.join(" ")})`, () => {
      const parts = [printer("one", ["a b", "", "c'd", "-e"]), printer("two", []), printer("three", ["$(id)", "*", "x\ny", "--"])];
      const r = runChain(sh, parts);
      assert.equal(r.status, 0, r.stderr);
      const seen = r.stdout.split(/^@@/m).slice(1).map((block) => block.slice(block.indexOf("\n") + 1).replace(/\n$/, "").split("\0").slice(0, -1));
      assert.deepEqual(seen, parts.map((p) => [String(p.args.length), ...p.args]));
    });

    it(`a failing part stops the chain with its exit status (${sh.join(" ")})`, () => {
      const r = runChain(sh, [printer("one", ["x"]), { script: "echo failing >&2; exit 7", args: ["y"] }, printer("three", [])]);
      assert.equal(r.status, 7);
      assert.match(r.stdout, /@@one/);
      assert.doesNotMatch(r.stdout, /@@three/);
    });

    it(`the lock is taken once, held across the parts and released at the end (${sh.join(" ")})`, () => {
      // A part that takes the lock itself (as every writing script does) returns at once since
      // NG_LOCK_TOKEN names the holder; the lock file names the wrapper's token meanwhile.
      const part: ScriptPart = { script: `${HOSTSTATE_SH.replace(STATE_LINE, ': "$NG_STATE"')}ng_lock\nng_owner\necho "held by $ng_o, token $NG_TOKEN"`, args: [] };
      const r = runChain(sh, [part, part]);
      assert.equal(r.status, 0, r.stderr);
      const lines = r.stdout.trim().split("\n");
      assert.equal(lines.length, 2, r.stdout);
      const m = /^held by (\S+), token (\S+)$/.exec(lines[0]!);
      assert.ok(m && m[1] === m[2], r.stdout);
      assert.equal(lines[1], lines[0]);
      // (ng_unlock removes the state directory too once it is empty)
      assert.ok(!fs.existsSync(r.state) || fs.readdirSync(r.state).length === 0, "the lock and its token file are gone after the run");
    });
  }
});
