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
  });

  it("the control-plane bench (N = 1, 3) prints a row per size with the per-command baseline", async () => {
    const r = await runBench("controlPlane.ts", { NATGATE_BENCH_N: "1,3" });
    assert.equal(r.code, 0, r.out);
    for (const n of [1, 3]) assert.match(r.out, new RegExp(`^\\s+${n}\\s+\\d+\\.\\d s/\\d+ .* ×\\d+\\.\\d\\d$`, "m"), r.out);
  });
});
