// The benchmarks' smoke run (issue 12: the full run is not part of the suite, but a benchmark that
// is never run rots): both bench scripts, in this suite's lab, on their smallest sizes, must finish
// and print the figures they exist for. The figures themselves are not judged here: speed is
// measured by `npm run bench`, not asserted in timed tests.
import { strict as assert } from "assert";
import { spawn } from "child_process";
import * as path from "path";
import { getLab } from "../lab";

const ROOT = path.join(__dirname, "..", "..");
const TSX = path.join(ROOT, "node_modules", ".bin", "tsx");

function runBench(file: string, env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(TSX, [path.join(ROOT, "bench", file)], { cwd: ROOT, env: { ...process.env, ...env } });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (out += d));
    p.on("close", (code) => resolve({ code, out }));
  });
}

describe("benchmarks: smoke run", function () {
  this.timeout(240_000);
  before(() => getLab());

  it("the data-path bench (1 round) compares natgate with the relay and names who saw the client", async () => {
    const r = await runBench("throughput.ts", { NATGATE_BENCH_ROUNDS: "1" });
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /natgate \/ relay: throughput ×\d+\.\d\d .*connection setup rate ×\d+\.\d\d/);
    assert.match(r.out, /natgate's service sees the client \(203\.0\.113\.10\)/);
    // UDP through natgate's path arrives (a count, not a speed): the row's UDP pps is above 0
    const row = /^  natgate +\d+ +\d+ +\d+ +(\d+) +\d+ % +\d+\.\d /m.exec(r.out);
    assert.ok(row && Number(row[1]) > 0, r.out);
  });

  it("the control-plane bench (N = 1, 3; direct and through the delay relay) prints a row per size with the per-command baselines, one by one and in parallel", async () => {
    const r = await runBench("controlPlane.ts", { NATGATE_BENCH_N: "1,3", NATGATE_BENCH_DELAY_MS: "0,20" });
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /20 ms each way \(RTT 40 ms\) through bench\/delay\.js/);
    const cell = String.raw`(\d+\.\d) s (\d+)/(\d+)`;
    for (const n of [1, 3]) {
      const ratios = String.raw`×\d+\.\d\d, ×\d+\.\d\d, ×\d+\.\d\d, ×\d+\.\d\d`;
      const rows = [...r.out.matchAll(new RegExp(String.raw`^\s+${n}\s+${cell}\s+${cell}\s+${cell}\s+${cell}\s+${cell}\s+${cell}\s+${cell}\s+${cell}\s+${ratios}(  \(\d+ parallel dials refused by sshd, dialled again\))?$`, "gm"))];
      assert.equal(rows.length, 2, `one row for N = ${n} per delay:\n${r.out}`);
      for (const m of rows) {
        // logins are counts, not timings: one connection for natgate's create, none after it, one per command for either baseline
        const logins = [2, 5, 8, 11, 14, 17, 20, 23].map((g) => Number(m[g]));
        assert.deepEqual(logins, [1, 0, 0, 0, n, n, n, n], m[0]);
      }
    }
  });
});
