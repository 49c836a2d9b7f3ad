import type { Connection } from "../../ssh";

/** Counts of remote scripts run by this process, so tests and users can see what an operation cost. */
export const remoteStats = { scripts: 0, writes: 0 };

export interface ScriptOutput {
  stdout: string;
  stderr: string;
}

/**
 * One host as a resource operation sees it: the connection plus the host key fingerprint from
 * state (trust on first use), updated with what the host presents.
 */
export class Host {
  fingerprint: string | undefined;

  constructor(
    readonly connection: Connection,
    knownFingerprint: string | undefined,
  ) {
    this.fingerprint = knownFingerprint;
  }

  get label(): string {
    const c = this.connection;
    return `${c.user}@${c.host}${c.port === 22 ? "" : ":" + c.port}`;
  }

  /**
   * Run a script (constant text; values only in `args`). A non-zero exit throws an error that
   * names the host and what was being done, with the script's stderr.
   */
  async run(what: string, script: string, args: string[], opts: { writes?: boolean } = {}): Promise<ScriptOutput> {
    // Loaded here so that check and diff, which never touch a host, do not load the SSH pool.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const ssh = require("../../ssh") as typeof import("../../ssh");
    remoteStats.scripts++;
    if (opts.writes) remoteStats.writes++;
    const r = await ssh.runScript(this.connection, ssh.SH_PRELUDE + script, args, { knownFingerprint: this.fingerprint });
    this.fingerprint = r.fingerprint;
    if (r.code !== 0) {
      const detail = (r.stderr.trim() || r.stdout.trim()).split("\n").slice(-15).join("\n");
      throw new ssh.NatgateError("remote", `${what} on ${this.label} failed (exit ${r.code}):\n${detail}`);
    }
    return { stdout: r.stdout, stderr: r.stderr };
  }
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
