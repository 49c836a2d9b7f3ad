import { constants as osConstants } from "os";
import type { ClientChannel } from "ssh2";
import { NatgateError } from "./errors";
import { acquire, type Lease } from "./pool";
import { MISSING_TOOL_MARKER, NOT_ROOT_EXIT, NOT_ROOT_MARKER, SH_PRELUDE } from "../backends/prelude";
import { shQuote } from "./quote";
import { ConnectionSchema, formatZodError, type Connection, type ConnectionInput } from "./schema";

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Host key fingerprint stored in state on first use (TOFU); a different key is refused. Ignored when connection.hostKey is set. */
  knownFingerprint?: string | undefined;
  /** Same for the jump host of connection.proxy. */
  knownProxyFingerprint?: string | undefined;
  /** Dial a new connection for this run only (e.g. to prove a fresh login still works after a routing change). */
  fresh?: boolean | undefined;
  /** Give up waiting after this many seconds (the script may keep running on the host). Default: no limit. */
  timeoutSeconds?: number | undefined;
}

export interface RunResult extends ExecResult {
  /** SHA256 fingerprint of the key the host presented: store it and pass it back as knownFingerprint. */
  fingerprint: string;
  /** Same for the jump host, when connection.proxy is set. */
  proxyFingerprint?: string;
}

export { SH_PRELUDE };

// Parsing a passphrase-protected key is slow; the same input object is often run many times.
const parsed = new WeakMap<object, Connection>();

function toConnection(input: ConnectionInput | Connection): Connection {
  if (typeof input === "object" && input !== null) {
    const hit = parsed.get(input);
    if (hit) return hit;
  }
  const r = ConnectionSchema.safeParse(input);
  if (!r.success) throw new NatgateError("config", `invalid SSH connection:\n${formatZodError(r.error)}`);
  if (typeof input === "object" && input !== null) parsed.set(input, r.data);
  return r.data;
}

/** Whether runScript goes through sudo for this connection. */
export function usesSudo(conn: Connection): boolean {
  return conn.sudo && conn.user !== "root";
}

/** The command line sent over SSH: `[sudo -n ]sh -s -- 'arg'...`; the script itself goes on stdin. */
export function scriptCommand(conn: Connection, args: readonly string[]): string {
  const quoted = args.map(shQuote).join(" ");
  return (usesSudo(conn) ? "sudo -n " : "") + "sh -s --" + (quoted ? " " + quoted : "");
}

/** The exec channel never opened: nothing ran, so trying again on a new connection is safe. */
class ChannelNotOpened extends Error {}

function execScript(lease: Lease, command: string, script: string, timeoutSeconds: number | undefined): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let code: number | null = null;
    let signal: string | undefined;
    let channel: ClientChannel | undefined;
    let done = false;
    let timer: NodeJS.Timeout | undefined;

    const finish = (e?: Error) => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      lease.client.removeListener("close", onClientClose);
      if (e) return reject(e);
      let stderr = Buffer.concat(err).toString("utf8");
      if (code === null) {
        // Killed by a signal: report it like a shell does ($? = 128 + n).
        const n = signal ? (osConstants.signals as Record<string, number>)[`SIG${signal}`] : undefined;
        code = n ? 128 + n : 255;
        stderr += `${stderr && !stderr.endsWith("\n") ? "\n" : ""}natgate: the remote shell ended ${signal ? `by signal ${signal}` : "without an exit status"}\n`;
      }
      resolve({ code, stdout: Buffer.concat(out).toString("utf8"), stderr });
    };
    const onClientClose = () => {
      if (!channel) return finish(new ChannelNotOpened("the connection closed"));
      finish(
        new NatgateError(
          "remote",
          `the connection to ${lease.label} was lost while the script ran; it may or may not have completed. Run the operation again.`,
        ),
      );
    };
    lease.client.on("close", onClientClose);
    if (timeoutSeconds !== undefined && timeoutSeconds > 0) {
      timer = setTimeout(() => {
        channel?.close();
        finish(new NatgateError("timeout", `the script on ${lease.label} did not finish within ${timeoutSeconds} s; it may still be running there.`));
      }, timeoutSeconds * 1000);
    }

    try {
      lease.client.exec(command, (e, ch) => {
        if (e) return finish(new ChannelNotOpened(e.message));
        if (done) return ch.close();
        channel = ch;
        ch.on("data", (d: Buffer) => out.push(d));
        ch.stderr.on("data", (d: Buffer) => err.push(d));
        ch.on("exit", (c: number | null, sig?: string) => {
          if (typeof c === "number") code = c;
          else if (sig) signal = sig;
        });
        ch.on("error", () => {}); // a write after the remote closed stdin (e.g. sudo refused) is not our failure
        ch.on("close", () => finish());
        ch.end(script);
      });
    } catch (e) {
      finish(new ChannelNotOpened((e as Error).message));
    }
  });
}

function hostName(conn: Connection): string {
  return conn.port === 22 ? conn.host : `${conn.host}:${conn.port}`;
}

function classify(conn: Connection, r: ExecResult): void {
  if (r.code === NOT_ROOT_EXIT) {
    const m = new RegExp(`^${NOT_ROOT_MARKER} (\\S+)\\s*$`, "m").exec(r.stderr);
    if (m) {
      throw new NatgateError(
        "not-root",
        `connected to ${hostName(conn)} as ${conn.user} (uid ${m[1]}), but natgate needs root there: set connection.sudo = true (the user needs passwordless sudo) or connect as root`,
      );
    }
  }
  if (r.code === 127) {
    const m = new RegExp(`^${MISSING_TOOL_MARKER} (\\S+) (\\S+)(?: (\\S+))?\\s*$`, "m").exec(r.stderr);
    if (m) {
      const [, cmd, pkg, openwrtPkg] = m;
      throw new NatgateError(
        "missing-tool",
        `${cmd} not found on host ${hostName(conn)}: install package ${pkg}${openwrtPkg ? ` (on OpenWrt: ${openwrtPkg})` : ""}`,
      );
    }
  }
  if (!usesSudo(conn) || r.code === 0) return;
  const sudoLine = /^sudo: .*$/m.exec(r.stderr)?.[0];
  if (r.code === 127 && /^(sh: )?(\S+: )*sudo: (command )?not found/m.test(r.stderr)) {
    throw new NatgateError(
      "missing-tool",
      `sudo not found on host ${hostName(conn)}: install package sudo, or connect as root (connection.user "root", sudo false)`,
    );
  }
  if (!sudoLine || r.stdout !== "") return;
  if (/password is required|terminal is required|no tty present|askpass/i.test(sudoLine)) {
    throw new NatgateError(
      "sudo-password",
      `sudo on ${hostName(conn)} wants a password for ${conn.user} ("${sudoLine}"). natgate cannot type one: ` +
        `allow ${conn.user} to run commands without a password (a sudoers line "${conn.user} ALL=(ALL) NOPASSWD: ALL" in /etc/sudoers.d/), or connect as root.`,
    );
  }
  if (/not in the sudoers|not allowed to|may not run sudo/i.test(sudoLine)) {
    throw new NatgateError(
      "sudo-password",
      `${conn.user} may not use sudo on ${hostName(conn)} ("${sudoLine}"): add a NOPASSWD sudoers rule for ${conn.user} in /etc/sudoers.d/, or connect as root.`,
    );
  }
}

/**
 * Run `script` on the host with `sh -s -- <args>` (through `sudo -n` when connection.sudo is set
 * and the user is not root). A non-zero exit of the script is returned, not thrown; connection,
 * host key, sudo and missing-tool problems throw NatgateError before or instead of a result.
 */
export async function runScript(
  connection: ConnectionInput | Connection,
  script: string,
  args: readonly string[] = [],
  opts: RunOptions = {},
): Promise<RunResult> {
  const conn = toConnection(connection);
  const command = scriptCommand(conn, args); // quoting refuses NUL before anything is sent
  for (let attempt = 1; ; attempt++) {
    const lease = await acquire(conn, opts);
    let result: ExecResult;
    try {
      result = await execScript(lease, command, script, opts.timeoutSeconds);
    } catch (e) {
      if (e instanceof ChannelNotOpened) {
        const stale = lease.isDead() || /not connected|no response|closed/i.test(e.message);
        if (stale && attempt === 1) {
          lease.discard();
          continue; // a pooled connection the server had dropped: redial once
        }
        throw new NatgateError(
          "remote",
          `could not start a session on ${lease.label}: ${e.message}. If many operations run at once, check sshd's MaxSessions on the host.`,
        );
      }
      throw e;
    } finally {
      lease.release();
    }
    classify(conn, result);
    return {
      ...result,
      fingerprint: lease.fingerprint,
      ...(lease.proxyFingerprint ? { proxyFingerprint: lease.proxyFingerprint } : {}),
    };
  }
}
