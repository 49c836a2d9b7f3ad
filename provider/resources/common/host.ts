import { NatgateError } from "../../ssh/errors";
import { randomBytes } from "node:crypto";
import { DEADMAN_CANCEL_SH, DEADMAN_SECONDS } from "../../backends/iproute";
import { PERSIST_REMOVE_SH, bootEntryPath, observeBoot, parseBootShow, persistWriteArgs, persistWriteScript, type BootEntry, type BootStatus } from "../../backends/persist";
import type { Connection } from "../../ssh";
import { DEFAULT_SCRIPT_TIMEOUT } from "../../ssh/schema";
import { claimConflict } from "../../backends/claims";
import { chainScripts, type ScriptPart } from "../../backends/chain";

/** Counts of remote scripts run by this process, so tests and users can see what an operation cost. */
export const remoteStats = { scripts: 0, writes: 0 };

export interface ScriptOutput {
  stdout: string;
  stderr: string;
}

type Endpoint = { host?: unknown; port?: unknown } | undefined;
const endpointOf = (e: Endpoint): string | undefined => (e && typeof e === "object" ? `${String(e.host)}:${String(e.port ?? 22)}` : undefined);

/**
 * The jump host's fingerprint kept in state, for a connection that still goes through the same
 * jump host address (`before` is the connection in state): a new address may be another machine,
 * which is trusted on first use. Undefined without a jump host or a kept key (a state from before
 * natgate kept it).
 */
export function keptProxyFingerprint(before: unknown, now: Pick<Connection, "proxy">, kept: unknown): string | undefined {
  const was = (before as { proxy?: Endpoint } | undefined)?.proxy;
  if (!was || !now.proxy || endpointOf(was) !== endpointOf(now.proxy)) return undefined;
  return typeof kept === "string" && kept !== "" ? kept : undefined;
}

/**
 * One host as a resource operation sees it: the connection plus the host key fingerprints from
 * state (trust on first use) of the host and of its jump host (connection.proxy), updated with
 * what they present.
 */
export class Host {
  fingerprint: string | undefined;
  /** The jump host's key; undefined without connection.proxy, or before first use. */
  proxyFingerprint: string | undefined;

  constructor(
    readonly connection: Connection,
    knownFingerprint: string | undefined,
    knownProxyFingerprint?: string | undefined,
  ) {
    this.fingerprint = knownFingerprint;
    this.proxyFingerprint = connection.proxy ? knownProxyFingerprint : undefined;
  }

  /** What the host and its jump host presented, for the next run of the same script set. */
  private saw(r: { fingerprint: string; proxyFingerprint?: string }): void {
    this.fingerprint = r.fingerprint;
    if (r.proxyFingerprint) this.proxyFingerprint = r.proxyFingerprint;
  }

  /** The options that hold a run to the keys seen so far. */
  get expectations(): { knownFingerprint: string | undefined; knownProxyFingerprint: string | undefined } {
    return { knownFingerprint: this.fingerprint, knownProxyFingerprint: this.proxyFingerprint };
  }

  get label(): string {
    const c = this.connection;
    return `${c.user}@${c.host}${c.port === 22 ? "" : ":" + c.port}`;
  }

  /**
   * Run a script (constant text; values only in `args`). A non-zero exit throws an error that
   * names the host and what was being done, with the script's stderr. `before`: a script run
   * first in the same exec and the same hold of the host lock (chainScripts); its output comes first.
   */
  async run(what: string, script: string, args: string[], opts: { writes?: boolean; before?: ScriptPart | undefined } = {}): Promise<ScriptOutput> {
    if (opts.before) ({ script, args } = chainScripts([opts.before, { script, args }]));
    // Loaded here so that check and diff, which never touch a host, do not load the SSH pool.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const ssh = require("../../ssh") as typeof import("../../ssh");
    remoteStats.scripts++;
    if (opts.writes) remoteStats.writes++;
    const seconds = this.connection.scriptTimeout ?? DEFAULT_SCRIPT_TIMEOUT;
    let r: Awaited<ReturnType<typeof ssh.runScript>>;
    try {
      r = await ssh.runScript(this.connection, ssh.SH_PRELUDE + script, args, { ...this.expectations, timeoutSeconds: seconds });
    } catch (e) {
      if (e instanceof ssh.NatgateError && e.code === "timeout" && /did not finish within/.test(e.message)) {
        throw new ssh.NatgateError(
          "timeout",
          `${what} on ${this.label}: the script did not finish within ${seconds} s (connection.scriptTimeout). It may still be running there, ` +
            `holding natgate's host lock until it ends; each step is idempotent, so once it has, run pulumi up again and it converges ` +
            `(raise scriptTimeout for a slow host).`,
        );
      }
      throw e;
    }
    this.saw(r);
    const claimed = claimConflict(r.code, r.stderr, this.label);
    if (claimed) throw claimed;
    if (r.code !== 0) {
      const detail = (r.stderr.trim() || r.stdout.trim()).split("\n").slice(-15).join("\n");
      throw new ssh.NatgateError("remote", `${what} on ${this.label} failed (exit ${r.code}):\n${detail}`);
    }
    return { stdout: r.stdout, stderr: r.stderr };
  }
}

export const DEADMAN_NOTE = `natgate's dead-man switch puts the previous ip rules and routes back ${DEADMAN_SECONDS} s after the apply (the nft tables and sysctls stay). Check what routes the host's own replies (localSource, the table's routes, the mark) and apply again.`;

/** Run an apply that armed a dead-man switch; a lost session gets the note saying what happens next. */
export async function runGuarded<T>(armed: boolean, apply: () => Promise<T>): Promise<T> {
  try {
    return await apply();
  } catch (e) {
    if (!armed || !(e instanceof Error)) throw e;
    e.message = `${e.message}\n${DEADMAN_NOTE}`;
    throw e;
  }
}

/** A token naming one armed dead-man switch on a host. */
export function deadmanToken(owner: string): string {
  return `${owner}.${randomBytes(4).toString("hex")}`;
}

/**
 * Prove that a fresh SSH login still works after a rule or route change, and only then cancel the
 * rollback the apply script scheduled (ip_deadman_arm). Throws, saying what happens next, when
 * the login fails or the rollback already ran.
 */
export async function confirmFreshLogin(host: Host, what: string, token: string): Promise<void> {
  if ((await cancelOverFreshLogin(host, what, token)) === "cancelled") return;
  throw new NatgateError(
    "remote",
    `${what} on ${host.label}: the ip rule/route change cut SSH and was rolled back by natgate's dead-man switch (no fresh login confirmed it within ${DEADMAN_SECONDS} s; the nft tables and sysctls stay). Check what routes the host's own replies (localSource, the table's routes, the mark) and apply again.`,
  );
}

/** DEADMAN_CANCEL_SH over a fresh login: whether it cancelled the rollback or found it gone (run). Throws when the login fails. */
async function cancelOverFreshLogin(host: Host, what: string, token: string): Promise<"cancelled" | "gone"> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const ssh = require("../../ssh") as typeof import("../../ssh");
  const undo = DEADMAN_NOTE;
  remoteStats.scripts++;
  let r: Awaited<ReturnType<typeof ssh.runScript>>;
  try {
    r = await ssh.runScript(host.connection, ssh.SH_PRELUDE + DEADMAN_CANCEL_SH, [token], {
      ...host.expectations,
      fresh: true,
      timeoutSeconds: DEADMAN_SECONDS - 5,
    });
  } catch (e) {
    throw new ssh.NatgateError("remote", `${what} on ${host.label}: a fresh SSH login failed after the change (${(e as Error).message}). ${undo}`);
  }
  return r.code === 0 && r.stdout.trim() === "cancelled" ? "cancelled" : "gone";
}

/** The tokens of the owner's rollbacks still pending (the read script's ip_deadman_pending section). */
function pendingRollbacks(stdout: string): string[] {
  return (splitSections(stdout).get("deadman")?.lines ?? []).filter((l) => l !== "");
}

/**
 * An apply whose confirming login was lost (the connection cut after the change, the provider
 * killed) leaves its rollback armed: unsettled, it would undo a re-run's work 30 s later, since
 * the re-run finds the change in place and has nothing to apply. Settle each before planning, as
 * the lost confirmation would have: a fresh login cancels it, or, when it already runs, waits for
 * it. Returns whether any rolled back (what was read before is stale then).
 */
async function settleRollbacks(host: Host, what: string, tokens: string[]): Promise<boolean> {
  let rolledBack = false;
  for (const token of tokens) if ((await cancelOverFreshLogin(host, what, token)) === "gone") rolledBack = true;
  return rolledBack;
}

/**
 * A resource's read script (which lists its owner's pending rollbacks, ip_deadman_pending) run as
 * the step before a change: rollbacks an interrupted apply left are settled first, and the host
 * read again when one of them had run.
 */
export async function readSettled(host: Host, what: string, read: () => Promise<ScriptOutput>): Promise<ScriptOutput> {
  const out = await read();
  return (await settleRollbacks(host, what, pendingRollbacks(out.stdout))) ? read() : out;
}

/** Output split at lines "@@<section> [arg]": section name → its lines (and the arg after the name). */
export function splitSections(stdout: string): Map<string, { arg: string; lines: string[] }> {
  const out = new Map<string, { arg: string; lines: string[] }>();
  let cur: { arg: string; lines: string[] } | undefined;
  for (const line of stdout.split("\n")) {
    const m = /^@@(\S+)(?: (.*))?$/.exec(line);
    if (m) {
      cur = { arg: m[2] ?? "", lines: [] };
      out.set(m[1]!, cur);
    } else if (cur) {
      cur.lines.push(line);
    }
  }
  return out;
}

/** The prelude Host.run puts before every script: a boot entry needs it too. */
export function shPrelude(): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require("../../ssh") as typeof import("../../ssh")).SH_PRELUDE;
}

/** The script that writes `entry` (and the runner, on first use), or removes the entry `entryName` when `entry` is undefined. */
function bootPart(entryName: string, entry: BootEntry | undefined): ScriptPart {
  return entry ? { script: persistWriteScript(entry.body), args: persistWriteArgs(entry) } : { script: PERSIST_REMOVE_SH, args: [entryName] };
}

/**
 * Bring the host's boot entry for a resource in line: write it (and the runner, on first use)
 * when it differs from `entry`, remove it when `entry` is undefined (persist off) and it exists.
 * Returns the boot state read back.
 */
export async function syncBoot(host: Host, what: string, entryName: string, entry: BootEntry | undefined, status: BootStatus): Promise<BootStatus> {
  if (observeBoot(entryName, entry, status).drift.length === 0) return status;
  const part = bootPart(entryName, entry);
  const out = await host.run(`${entry ? "writing" : "removing"} the boot entry of ${what}`, part.script, part.args, { writes: true });
  const boot = splitSections(out.stdout).get("boot");
  if (!boot) throw new NatgateError("unexpected-output", `unexpected output from the boot entry script:\n${out.stdout.slice(0, 500)}`);
  return parseBootShow(boot.lines);
}

/**
 * The boot entry first, then the apply, in one exec under one hold of the host lock (the apply is
 * handed the entry's script as `before`; its own show of the boot state comes after and is the one
 * read). A boot runner that opened the resource's old entry waits for the host lock and skips the
 * entry once its file has been replaced (the " (deleted)" check in hoststate.ts); with the entry
 * written after the apply, an old entry run in between would put the previous state back over the
 * new one. When the apply fails and the entry is new, it is taken away again, so a failed create
 * leaves nothing to run at boot.
 */
export async function bootFirst<L extends { boot: BootStatus }>(
  host: Host,
  what: string,
  entryName: string,
  entry: BootEntry | undefined,
  live: L,
  apply: ((before: ScriptPart | undefined) => Promise<L>) | undefined,
): Promise<L> {
  if (!apply) return { ...live, boot: await syncBoot(host, what, entryName, entry, live.boot) };
  const had = (live.boot.files.get(bootEntryPath(entryName)) ?? "-") !== "-";
  const before = observeBoot(entryName, entry, live.boot).drift.length > 0 ? bootPart(entryName, entry) : undefined;
  try {
    return await apply(before);
  } catch (e) {
    // Whether the entry's part ran is unknown here (the apply after it may be what failed): the
    // removal is idempotent, so it runs regardless.
    if (entry && !had) {
      const gone = bootPart(entryName, undefined);
      await host.run(`removing the boot entry of ${what}`, gone.script, gone.args, { writes: true }).catch(() => undefined);
    }
    throw e;
  }
}
