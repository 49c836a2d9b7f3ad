// tsx test/lab/cli.ts up               build a lab, leave it up (prints prefix and record path)
// tsx test/lab/cli.ts down [prefix...] tear down one lab, or every lab recorded in .lab/
// tsx test/lab/cli.ts run -- cmd...    up, run cmd in the laptop namespace with NATGATE_LAB set,
//                                      always down; exits with cmd's exit code
// Progress and timings go to stderr so a wrapped command's stdout stays its own.
import { spawn } from "node:child_process";
import { constants as osConstants } from "node:os";
import { labDown, labUp, recordedPrefixes } from "./control";

const note = (msg: string) => process.stderr.write(`[lab] ${msg}\n`);

async function up(): Promise<number> {
  const r = await labUp();
  note(`${r.prefix} up in ${r.seconds.toFixed(2)} s`);
  process.stdout.write(`${r.prefix}\n${r.file}\n`);
  note(`use it: NATGATE_LAB=${r.file} ip netns exec ${r.prefix}-laptop <command>`);
  return 0;
}

async function down(prefixes: string[]): Promise<number> {
  const all = prefixes.length ? prefixes : recordedPrefixes();
  if (!all.length) note("no lab recorded");
  let failed = 0;
  for (const p of all) {
    try {
      const r = await labDown(p);
      note(`${p} down in ${r.seconds.toFixed(2)} s`);
    } catch (e) {
      failed++;
      note(`${p}: teardown failed: ${(e as Error).message}`);
    }
  }
  return failed ? 1 : 0;
}

async function run(cmd: string[]): Promise<number> {
  if (!cmd.length) throw new Error("usage: cli.ts run -- <command> [args...]");
  let child: ReturnType<typeof spawn> | undefined;
  let signalled: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    // The first signal asks the command to stop (teardown follows); a second one insists.
    if (child && child.exitCode === null) child.kill(signalled ? "SIGKILL" : sig);
    signalled ??= sig;
  };
  const signals: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];
  for (const s of signals) process.on(s, onSignal);

  let prefix: string | undefined;
  let code = 1;
  try {
    const r = await labUp();
    prefix = r.prefix;
    note(`${r.prefix} up in ${r.seconds.toFixed(2)} s`);
    if (signalled) return 128 + osConstants.signals[signalled];
    const c = spawn("ip", ["netns", "exec", `${r.prefix}-laptop`, ...cmd], {
      stdio: "inherit",
      env: { ...process.env, NATGATE_LAB: r.file },
    });
    child = c;
    code = await new Promise<number>((resolve) => {
      c.on("error", (e) => {
        note(`cannot run ${cmd[0]}: ${e.message}`);
        resolve(127);
      });
      c.on("close", (exit, sig) => resolve(exit ?? 128 + (sig ? osConstants.signals[sig] : 0)));
    });
  } finally {
    if (prefix) {
      try {
        const d = await labDown(prefix);
        note(`${prefix} down in ${d.seconds.toFixed(2)} s`);
      } catch (e) {
        note(`teardown of ${prefix} failed: ${(e as Error).message}`);
        code = code || 1;
      }
    }
    for (const s of signals) process.off(s, onSignal);
  }
  return code;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case "up":
      return up();
    case "down":
      return down(rest);
    case "run":
      return run(rest[0] === "--" ? rest.slice(1) : rest);
    default:
      process.stderr.write("usage: tsx test/lab/cli.ts up | down [prefix...] | run -- <command...>\n");
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: Error) => {
    note(e.message);
    process.exit(1);
  },
);
