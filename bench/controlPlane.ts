// `npm run bench` part 2 (inside a fresh lab): what N DnatRules on one host cost natgate's control
// plane: create from nothing, an `up` with no change, `refresh`, destroy; the SSH logins and the
// remote scripts the VPS's sshd recorded for each. Baseline in the same run: what a program of one
// remote command per rule does (`@pulumi/command`'s remote.Command opens an SSH connection per
// command): the OpenSSH client, one connection per rule, loading and then deleting an nft table
// of the same shape, one rule after the other (--parallel 1) and all at once (the engine's
// default, which runs independent resources in parallel). Each size runs at every one-way delay
// of NATGATE_BENCH_DELAY_MS: 0 is the lab's own link, and anything else puts bench/delay.js
// between the laptop and the VPS's sshd (this kernel has no sch_netem, so `tc netem` cannot).
// NATGATE_BENCH_N (default "1,10,50") picks the sizes, NATGATE_BENCH_DELAY_MS (default "0,75":
// 75 ms each way is 150 ms RTT, Asia to Europe) the delays; the suite's smoke run uses small ones.
// NATGATE_BENCH_LOSS_PCT (default 1) drops that share of packets on a delayed path (lossOn).
import { spawn, spawnSync, type ChildProcess } from "child_process";
import * as path from "path";
import { DnatRule } from "natgate";
import { getLab, type Lab } from "../test/lab";
import { Stack } from "../test/engine/stack";
import { PUBLIC } from "../test/engine/seedLab";
import { connectionTo, sshLogins, sshSessions } from "../test/variants/variantLab";
import { vpsSshOptions } from "./vpsSsh";
import { busyCpuSeconds } from "./cpu";

const SIZES = (process.env.NATGATE_BENCH_N ?? "1,10,50").split(",").map(Number);
const DELAYS = (process.env.NATGATE_BENCH_DELAY_MS ?? "0,75").split(",").map(Number);
/** Loss (%) on the delayed path: 0 on the lab's own link. */
const LOSS_PCT = Number(process.env.NATGATE_BENCH_LOSS_PCT ?? 1);
const BASE_PORT = 21000;
const TARGET = "10.10.10.2"; // the router's tunnel address in the seed; nothing needs to answer
const out = (s = "") => process.stdout.write(s + "\n");
const s1 = (ms: number) => (ms / 1000).toFixed(1);

/** Where the bench's SSH goes: the VPS itself, or the local end of a delay relay in front of it. */
interface Route {
  host: string;
  port: number;
  relay?: ChildProcess;
  /** the loss table in this (the laptop's) namespace, when there is one */
  lossTable?: string;
}

const LOSS_TABLE = "natgate_bench_loss";

/**
 * Drop `pct` % of the packets between the relay and the VPS's sshd, each way, at random (nft's
 * numgen, in the laptop's namespace where the bench runs): the kernel's TCP between them then
 * retransmits as over a lossy path, at the RTO's 200 ms floor where a loss has no packets behind
 * it to tell it. The delay itself is the relay's, so the RTT a retransmission pays is the lab's.
 */
function lossOn(vps: string, pct: number): string {
  const drop = `numgen random mod 100 < ${pct} drop`;
  const rules = `table ip ${LOSS_TABLE} {\n  chain out { type filter hook output priority -300; ip daddr ${vps} tcp dport 22 ${drop}; }\n` +
    `  chain in { type filter hook input priority -300; ip saddr ${vps} tcp sport 22 ${drop}; }\n}\n`;
  const r = spawnSync("nft", ["-f", "-"], { input: rules, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`cannot add the loss table: ${r.stderr}`);
  return LOSS_TABLE;
}

async function routeTo(lab: Lab, oneWayMs: number, lossPct: number): Promise<Route> {
  if (oneWayMs === 0) return { host: lab.hosts.vps.addr, port: 22 };
  const relay = spawn(process.execPath, [path.join(__dirname, "delay.js"), "0", lab.hosts.vps.addr, "22", String(oneWayMs)], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise<number>((resolve, reject) => {
    relay.once("exit", (code) => reject(new Error(`the delay relay exited (${code}) before it listened`)));
    relay.stdout!.once("data", (d: Buffer) => resolve(Number(/^ready (\d+)/.exec(String(d))?.[1])));
  });
  const route: Route = { host: "127.0.0.1", port, relay };
  try {
    if (lossPct > 0) route.lossTable = lossOn(lab.hosts.vps.addr, lossPct);
  } catch (e) {
    relay.kill();
    throw e;
  }
  return route;
}

function routeDown(route: Route): void {
  route.relay?.kill();
  if (route.lossTable) spawnSync("nft", ["delete", "table", "ip", route.lossTable]);
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
  /** the machine's busy CPU seconds meanwhile: every lab host, sshd, the remote shells, the bench */
  cpu: number;
}

async function cell(lab: Lab, f: () => Promise<unknown>): Promise<Cell> {
  const before = sshdCounts(lab);
  const cpu0 = busyCpuSeconds();
  const t = Date.now();
  await f();
  const ms = Date.now() - t;
  const cpu = busyCpuSeconds() - cpu0;
  const after = sshdCounts(lab);
  return { ms, logins: after.logins - before.logins, scripts: after.scripts - before.scripts, cpu };
}

/** A failed `ssh` that never reached its command (sshd's MaxStartups refused it, the connection reset): remote.Command dials again. */
const dialFailed = (status: number | null, stderr: string) => status === 255 && /kex_exchange_identification|Connection (closed|reset)|banner exchange/.test(stderr);

/**
 * One `ssh` per rule, as remote.Command runs it: load a DNAT table, then (second pass) delete it.
 * `parallel`: all N at once, as the engine runs N independent remote.Commands by default
 * (`pulumi up --parallel` is unbounded); otherwise one after the other (`--parallel 1`). A dial
 * sshd refused is tried again, up to 10 times as remote.Command's dialErrorLimit; `redials`
 * counts them.
 */
async function perCommandBaseline(lab: Lab, route: Route, n: number, parallel: boolean): Promise<{ create: Cell; destroy: Cell; redials: number }> {
  const options = [...vpsSshOptions(lab, route.port === 22 ? route.host : `[${route.host}]:${route.port}`), "-p", String(route.port)];
  let redials = 0;
  const once = (cmd: string, input?: string) =>
    new Promise<{ status: number | null; stderr: string }>((resolve, reject) => {
      const c = spawn("ssh", [...options, `root@${route.host}`, cmd], { stdio: ["pipe", "ignore", "pipe"] });
      let stderr = "";
      c.stderr!.on("data", (d: Buffer) => (stderr += String(d)));
      c.on("error", reject);
      c.on("close", (status) => resolve({ status, stderr }));
      c.stdin!.end(input ?? "");
    });
  const ssh = async (cmd: string, input?: string) => {
    for (let dial = 1; ; dial++) {
      const r = await once(cmd, input);
      if (r.status === 0) return;
      if (!dialFailed(r.status, r.stderr) || dial >= 10) throw new Error(`baseline ssh failed (exit ${r.status}): ${r.stderr}`);
      redials++;
    }
  };
  const each = async (f: (i: number) => Promise<void>) => {
    if (parallel) await Promise.all(Array.from({ length: n }, (_, i) => f(i)));
    else for (let i = 0; i < n; i++) await f(i);
  };
  const table = (i: number) =>
    `table ip bench_cp_${i} {\n  chain pre { type nat hook prerouting priority dstnat; policy accept;\n` +
    `    ip daddr ${PUBLIC} tcp dport ${BASE_PORT + i} counter dnat to ${TARGET}\n  }\n}\n`;
  const create = await cell(lab, () => each((i) => ssh("nft -f -", table(i))));
  const destroy = await cell(lab, () => each((i) => ssh(`nft delete table ip bench_cp_${i}`)));
  return { create, destroy, redials };
}

async function main(): Promise<void> {
  const lab = getLab();
  out(`natgate bench: control plane, N DnatRules on one host (the lab's VPS), natgate vs one SSH connection per command`);
  for (const oneWay of DELAYS) {
    const route = await routeTo(lab, oneWay, LOSS_PCT);
    try {
      out(
        oneWay === 0
          ? `  the lab's link (RTT ~0)`
          : `  ${oneWay} ms each way (RTT ${2 * oneWay} ms) through bench/delay.js` + (route.lossTable ? `, ${LOSS_PCT} % of packets dropped each way` : ""),
      );
      out(
        `  ${"N".padStart(3)}  ${"create".padStart(13)}  ${"no-change up".padStart(13)}  ${"refresh".padStart(13)}  ${"destroy".padStart(13)}  ` +
          `${"1-by-1 create".padStart(14)}  ${"1-by-1 delete".padStart(14)}  ${"parallel create".padStart(15)}  ${"parallel delete".padStart(15)}  ` +
          `ratios: 1-by-1 (create, destroy), parallel (create, destroy)`,
      );
      for (const n of SIZES) {
        const stack = new Stack({ project: "natgate-bench" });
        try {
          const create = await cell(lab, () => stack.up(program(lab, route, n)));
          const again = await cell(lab, () => stack.up(program(lab, route, n)));
          const refresh = await cell(lab, () => stack.refresh());
          const destroy = await cell(lab, () => stack.destroy());
          const serial = await perCommandBaseline(lab, route, n, false);
          const parallel = await perCommandBaseline(lab, route, n, true);
          const c = (x: Cell, w = 13) => `${s1(x.ms)} s ${x.logins}/${x.scripts}`.padStart(w);
          const ratio = (base: Cell, x: Cell) => `×${(base.ms / x.ms).toFixed(2)}`;
          out(
            `  ${String(n).padStart(3)}  ${c(create)}  ${c(again)}  ${c(refresh)}  ${c(destroy)}  ${c(serial.create, 14)}  ${c(serial.destroy, 14)}  ` +
              `${c(parallel.create, 15)}  ${c(parallel.destroy, 15)}  ${ratio(serial.create, create)}, ${ratio(serial.destroy, destroy)}, ` +
              `${ratio(parallel.create, create)}, ${ratio(parallel.destroy, destroy)}` +
              (parallel.redials ? `  (${parallel.redials} parallel dials refused by sshd, dialled again)` : ""),
          );
          const cpu = (x: Cell) => `${x.cpu.toFixed(1)} s`;
          out(
            `       CPU busy (the machine): create ${cpu(create)}, refresh ${cpu(refresh)}, destroy ${cpu(destroy)}; ` +
              `1-by-1 create ${cpu(serial.create)}, delete ${cpu(serial.destroy)}; parallel create ${cpu(parallel.create)}, delete ${cpu(parallel.destroy)}`,
          );
        } finally {
          if (stack.state.length) await stack.destroy().catch(() => undefined);
          await stack.close();
        }
      }
    } finally {
      routeDown(route);
    }
  }
  out(`  (cells: time, then SSH logins / remote scripts (exec sessions) the VPS's sshd recorded;`);
  out(`  1-by-1: one SSH connection per command, one after the other (pulumi up --parallel 1);`);
  out(`  parallel: all at once (pulumi up's default); ratio = the baseline's time / natgate's)`);
}

main().then(
  () => process.exit(0),
  (e) => {
    out(`control-plane bench failed: ${(e as Error).message}`);
    process.exit(1);
  },
);
