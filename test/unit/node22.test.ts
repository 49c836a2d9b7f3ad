// The unit and engine-path tests (`npm run test:quick`'s files), and the seed's lab lifecycle, on Node.js 22 too: @pulumi/pulumi
// declares Node >= 22 and the lab's machines ship 20, which the rest of the suite runs on. The
// engine-path tests start Pulumi's real dynamic-provider server, so this is natgate as the
// Pulumi CLI would run it on Node 22. Node 22 comes from scripts/install-node22.sh (prepare.sh
// runs it), cached per machine.
import { strict as assert } from "node:assert";
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { getLab } from "../lab";

const repo = path.resolve(__dirname, "..", "..");

/** The mocha arguments of `npm run test:quick`, so this runs exactly that subset. */
function quickFiles(): string[] {
  const scripts = (JSON.parse(fs.readFileSync(path.join(repo, "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts;
  const mocha = scripts["test:quick"]!.split("&& mocha ")[1];
  assert.ok(mocha, `test:quick runs mocha: ${scripts["test:quick"]}`);
  return mocha.trim().split(/\s+/).map((w) => w.replace(/^'(.*)'$/, "$1"));
}

/**
 * mocha with `args` on Node 22 (its own bin directory first on PATH, so everything the tests
 * start, the provider server and tsc, is Node 22 too): its version, the summary line's counts,
 * and the output for the failure messages.
 */
function mochaOnNode22(args: string[]): { version: string; passed: number; summary: string; status: number | null } {
  const node = execFileSync("bash", [path.join(repo, "scripts", "install-node22.sh")], { encoding: "utf8" }).trim();
  const version = execFileSync(node, ["-v"], { encoding: "utf8" }).trim();
  assert.match(version, /^v22\./);
  const env = { ...process.env, PATH: `${path.dirname(node)}:${process.env.PATH ?? ""}` };
  const r = spawnSync(node, [path.join(repo, "node_modules", ".bin", "mocha"), ...args], { cwd: repo, env, encoding: "utf8", maxBuffer: 64 << 20 });
  const summary = /^(\d+) passed, (\d+) failed$/m.exec(r.stdout);
  assert.ok(summary, `no summary line from mocha ${args.join(" ")} on ${version}:\n${r.stdout.slice(-2000)}${r.stderr.slice(-2000)}`);
  assert.equal(summary[2], "0", `${version}: failing tests:\n${r.stdout.slice(-4000)}`);
  return { version, passed: Number(summary[1]), summary: summary[0], status: r.status };
}

describe("Node.js 22", function () {
  this.timeout(300_000);

  it("runs the unit and engine-path tests (npm run test:quick's files) with none failing", () => {
    const r = mochaOnNode22(quickFiles());
    console.log(`      ${r.version}: ${r.summary}`);
    assert.ok(r.passed > 250, `${r.version} ran the subset (${r.passed} tests)`);
    assert.equal(r.status, 0);
  });

  // The lab half: the seed's whole lifecycle (up, traffic with the client's real address, change,
  // drift, repair, destroy) with the test process and the provider server on Node 22, in the lab
  // this suite runs in (the namespace hosts; the real-hosts run stays on the machine's Node).
  it("runs the seed's lab lifecycle (test/engine/seed.test.ts, namespace hosts) with none failing", () => {
    getLab(); // inside the lab wrapper, as npm test runs it (else it says how)
    const r = mochaOnNode22(["test/engine/seed.test.ts", "--grep", "namespace hosts"]);
    console.log(`      ${r.version}, lab: ${r.summary}`);
    assert.ok(r.passed >= 5, `the seed lifecycle ran (${r.passed} tests)`);
    assert.equal(r.status, 0);
  });
});
