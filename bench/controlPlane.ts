// `npm run bench` part 2 (inside a fresh lab): what N DnatRules on one host cost natgate's control
// plane: create from nothing, an `up` with no change, `refresh`, destroy; the SSH logins and the
// remote scripts the VPS's sshd recorded for each. Baseline in the same run: what a program of one
// remote command per rule does (`@pulumi/command`'s remote.Command opens an SSH connection per
// command): the OpenSSH client, one connection per rule, loading and then deleting an nft table
// of the same shape. Each size runs at every one-way delay of NATGATE_BENCH_DELAY_MS: 0 is the
// lab's own link, and anything else puts bench/delay.js between the laptop and the VPS's sshd
// (this kernel has no sch_netem, so `tc netem` cannot).
// NATGATE_BENCH_N (default "1,10,50") picks the sizes, NATGATE_BENCH_DELAY_MS (default "0,75":
// 75 ms each way is 150 ms RTT, Asia to Europe) the delays; the suite's smoke run uses small ones.
import { spawn, spawnSync, type ChildProcess } from "child_process";
import * as path from "path";
import { DnatRule } from "natgate";
import { getLab, type Lab } from "../test/lab";
import { Stack } from "../test/engine/stack";
import { PUBLIC } from "../test/engine/seedLab";
import { connectionTo, sshLogins, sshSessions } from "../test/variants/variantLab";
import { vpsSshOptions } from "./vpsSsh";

const SIZES = (process.env.NATGATE_BENCH_N ?? "1,10,50").split(",").map(Number);
const DELAYS = (process.env.NATGATE_BENCH_DELAY_MS ?? "0,75").split(",").map(Number);
const BASE_PORT = 21000;
const TARGET = "10.10.10.2"; // the router's tunnel address in the seed; nothing needs to answer
const out = (s = "") => process.stdout.write(s + "\n");
const s1 = (ms: number) => (ms / 1000).toFixed(1);

/** Where the bench's SSH goes: the VPS itself, or the local end of a delay relay in front of it. */
interface Route {
  host: string;
  port: number;
  relay?: ChildProcess;
}

async function routeTo(lab: Lab, oneWayMs: number): Promise<Route> {
  if (oneWayMs === 0) return { host: lab.hosts.vps.addr, port: 22 };
  const relay = spawn(process.execPath, [path.join(__dirname, "delay.js"), "0", lab.hosts.vps.addr, "22", String(oneWayMs)], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise<number>((resolve, reject) => {
    relay.once("exit", (code) => reject(new Error(`the delay relay exited (${code}) before it listened`)));
    relay.stdout!.once("data", (d: Buffer) => resolve(Number(/^ready (\d+)/.exec(String(d))?.[1])));
  });
  return { host: "127.0.0.1", port, relay };
}

/** What the VPS's sshd recorded so far: logins, and sessions (one per remote script). */
function sshdCounts(lab: Lab): { logins: number; scripts: number } {
  const vps = lab.hosts.vps;
  return { logins: Object.values(sshLogins(vps)).reduce((a, b) => a + b, 0), scripts: sshSessions(vps) };
}

function program(lab: Lab, route: Route, n: number) {
  return () => {
    const connection = { ...connectionTo(lab, "vps"), host: route.host, port: route.port };
    for (let i = 0; i < n; i++) {
      new DnatRule(`cp-${i}`, { connection, destination: PUBLIC, protocol: "tcp", ports: BASE_PORT + i, toAddress: TARGET });
    }
  };
}

interface Cell {
  ms: number;
  logins: number;
  scripts: number;
}

async function cell(lab: Lab, f: () => Promise<unknown>): Promise<Cell> {
  const before = sshdCounts(lab);
  const t = Date.now();
  await f();
  const ms = Date.now() - t;
  const after = sshdCounts(lab);
  return { ms, logins: after.logins - before.logins, scripts: after.scripts - before.scripts };
}

/** One `ssh` per rule, as remote.Command would run it: load a DNAT table, then (second pass) delete it. */
async function perCommandBaseline(lab: Lab, route: Route, n: number): Promise<{ create: Cell; destroy: Cell }> {
  const options = [...vpsSshOptions(lab, route.port === 22 ? route.host : `[${route.host}]:${route.port}`), "-p", String(route.port)];
  const ssh = (cmd: string, input?: string) => {
    const r = spawnSync("ssh", [...options, `root@${route.host}`, cmd], { input, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`baseline ssh failed: ${r.stderr}`);
  };
  const table = (i: number) =>
    `table ip bench_cp_${i} {\n  chain pre { type nat hook prerouting priority dstnat; policy accept;\n` +
    `    ip daddr ${PUBLIC} tcp dport ${BASE_PORT + i} counter dnat to ${TARGET}\n  }\n}\n`;
  const create = await cell(lab, async () => {
    for (let i = 0; i < n; i++) ssh("nft -f -", table(i));
  });
  const destroy = await cell(lab, async () => {
    for (let i = 0; i < n; i++) ssh(`nft delete table ip bench_cp_${i}`);
  });
  return { create, destroy };
}

async function main(): Promise<void> {
  const lab = getLab();
  out(`natgate bench: control plane, N DnatRules on one host (the lab's VPS), natgate vs one SSH connection per command`);
  for (const oneWay of DELAYS) {
    const route = await routeTo(lab, oneWay);
    try {
      out(oneWay === 0 ? `  the lab's link (RTT ~0)` : `  ${oneWay} ms each way (RTT ${2 * oneWay} ms) through bench/delay.js`);
      out(`  ${"N".padStart(3)}  ${"create".padStart(13)}  ${"no-change up".padStart(13)}  ${"refresh".padStart(13)}  ${"destroy".padStart(13)}  ${"per-cmd create".padStart(14)}  ${"per-cmd delete".padStart(14)}  create, destroy ratio`);
      for (const n of SIZES) {
        const stack = new Stack({ project: "natgate-bench" });
        try {
          const create = await cell(lab, () => stack.up(program(lab, route, n)));
          const again = await cell(lab, () => stack.up(program(lab, route, n)));
          const refresh = await cell(lab, () => stack.refresh());
          const destroy = await cell(lab, () => stack.destroy());
          const base = await perCommandBaseline(lab, route, n);
          const c = (x: Cell, w = 13) => `${s1(x.ms)} s ${x.logins}/${x.scripts}`.padStart(w);
          out(
            `  ${String(n).padStart(3)}  ${c(create)}  ${c(again)}  ${c(refresh)}  ${c(destroy)}  ${c(base.create, 14)}  ${c(base.destroy, 14)}  ` +
              `×${(base.create.ms / create.ms).toFixed(2)}, ×${(base.destroy.ms / destroy.ms).toFixed(2)}`,
          );
        } finally {
          if (stack.state.length) await stack.destroy().catch(() => undefined);
          await stack.close();
        }
      }
    } finally {
      route.relay?.kill();
    }
  }
  out(`  (cells: time, then SSH logins / remote scripts (exec sessions) the VPS's sshd recorded;`);
  out(`  ratio = the per-command baseline's time / natgate's)`);
}

main().then(
  () => process.exit(0),
  (e) => {
    out(`control-plane bench failed: ${(e as Error).message}`);
    process.exit(1);
  },
);
