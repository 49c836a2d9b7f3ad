// `npm run bench` part 2 (inside a fresh lab): what N DnatRules on one host cost natgate's control
// plane: create from nothing, an `up` with no change, `refresh`, destroy; the SSH logins the VPS's
// sshd recorded for each. Baseline in the same run: what a program of one remote command per rule
// does (`@pulumi/command`'s remote.Command opens an SSH connection per command): the OpenSSH
// client, one connection per rule, loading and then deleting an nft table of the same shape.
// NATGATE_BENCH_N (default "1,10,50") picks the sizes; the suite's smoke run uses "1,3".
import { spawnSync } from "child_process";
import { DnatRule } from "natgate";
import { getLab, type Lab } from "../test/lab";
import { Stack } from "../test/engine/stack";
import { PUBLIC } from "../test/engine/seedLab";
import { connectionTo, sshLogins } from "../test/variants/variantLab";
import { vpsSshOptions } from "./vpsSsh";

const SIZES = (process.env.NATGATE_BENCH_N ?? "1,10,50").split(",").map(Number);
const BASE_PORT = 21000;
const TARGET = "10.10.10.2"; // the router's tunnel address in the seed; nothing needs to answer
const out = (s = "") => process.stdout.write(s + "\n");
const s1 = (ms: number) => (ms / 1000).toFixed(1);

function program(lab: Lab, n: number) {
  return () => {
    for (let i = 0; i < n; i++) {
      new DnatRule(`cp-${i}`, { connection: connectionTo(lab, "vps"), destination: PUBLIC, protocol: "tcp", ports: BASE_PORT + i, toAddress: TARGET });
    }
  };
}

async function timed<T>(f: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t = Date.now();
  const value = await f();
  return { ms: Date.now() - t, value };
}

/** One `ssh` per rule, as remote.Command would run it: load a DNAT table, then (second pass) delete it. */
function perCommandBaseline(lab: Lab, n: number): { createMs: number; deleteMs: number } {
  const options = vpsSshOptions(lab, lab.hosts.vps.addr);
  const ssh = (cmd: string, input?: string) => {
    const r = spawnSync("ssh", [...options, `root@${lab.hosts.vps.addr}`, cmd], { input, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`baseline ssh failed: ${r.stderr}`);
  };
  const table = (i: number) =>
    `table ip bench_cp_${i} {\n  chain pre { type nat hook prerouting priority dstnat; policy accept;\n` +
    `    ip daddr ${PUBLIC} tcp dport ${BASE_PORT + i} counter dnat to ${TARGET}\n  }\n}\n`;
  let t = Date.now();
  for (let i = 0; i < n; i++) ssh("nft -f -", table(i));
  const createMs = Date.now() - t;
  t = Date.now();
  for (let i = 0; i < n; i++) ssh(`nft delete table ip bench_cp_${i}`);
  return { createMs, deleteMs: Date.now() - t };
}

async function main(): Promise<void> {
  const lab = getLab();
  const logins = () => Object.values(sshLogins(lab.hosts.vps)).reduce((a, b) => a + b, 0);
  out(`natgate bench: control plane, N DnatRules on one host (the lab's VPS), natgate vs one SSH connection per command`);
  out(`  ${"N".padStart(3)}  ${"create".padStart(11)}  ${"no-change up".padStart(12)}  ${"refresh".padStart(11)}  ${"destroy".padStart(11)}  ${"per-cmd create".padStart(14)}  ${"per-cmd delete".padStart(14)}  create ratio`);
  for (const n of SIZES) {
    const stack = new Stack({ project: "natgate-bench" });
    try {
      const cell = async (f: () => Promise<unknown>) => {
        const before = logins();
        const r = await timed(f);
        return { ms: r.ms, logins: logins() - before };
      };
      const create = await cell(() => stack.up(program(lab, n)));
      const again = await cell(() => stack.up(program(lab, n)));
      const refresh = await cell(() => stack.refresh());
      const destroy = await cell(() => stack.destroy());
      const base = perCommandBaseline(lab, n);
      const c = (x: { ms: number; logins: number }) => `${s1(x.ms)} s/${x.logins}`.padStart(11);
      out(
        `  ${String(n).padStart(3)}  ${c(create)}  ${c(again).padStart(12)}  ${c(refresh)}  ${c(destroy)}  ` +
          `${`${s1(base.createMs)} s/${n}`.padStart(14)}  ${`${s1(base.deleteMs)} s/${n}`.padStart(14)}  ×${(base.createMs / create.ms).toFixed(2)}`,
      );
    } finally {
      if (stack.state.length) await stack.destroy().catch(() => undefined);
      await stack.close();
    }
  }
  out(`  (time / SSH logins the VPS's sshd recorded; ratio = per-command create time / natgate's create time)`);
}

main().then(
  () => process.exit(0),
  (e) => {
    out(`control-plane bench failed: ${(e as Error).message}`);
    process.exit(1);
  },
);
