// Watch a host's conntrack events while the probe runs. Events, not listings: a connection
// whose only reply is a TCP reset is deleted by the kernel at once, so a `conntrack -L` after
// the probe would not show it, and the hop that answered with the reset could not be named.
import type { Connection } from "../ssh/schema";
import type { Login } from "./hostKeys";
import { START_CAPTURE_SCRIPT, STOP_CAPTURE_SCRIPT } from "../backends/conntrackSh";
import { NatgateError } from "../ssh/errors";

/** runScript, loaded on first use so that check and diff, which never touch a host, do not load ssh2. */
function runScript(...args: Parameters<typeof import("../ssh").runScript>): ReturnType<typeof import("../ssh").runScript> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require("../ssh") as typeof import("../ssh")).runScript(...args);
}

export interface Capture {
  host: string;
  pid: string;
  watchdog: string;
  file: string;
}

export interface LinkState {
  name: string;
  exists: boolean;
  /** IFF_UP: the administrator set it up */
  up: boolean;
  /** /sys/class/net/<if>/operstate: up, down, unknown (WireGuard and tun devices say unknown when up) */
  operstate?: string;
}

export interface CaptureResult {
  text: string;
  link?: LinkState;
}

function hostLabel(c: Connection): string {
  return c.port === 22 ? c.host : `${c.host}:${c.port}`;
}

/** Run a capture script on a login: its host keys must match those it had (state, then each run), and are kept. */
async function runOn(login: Login, script: string, args: string[]): Promise<Awaited<ReturnType<typeof runScript>>> {
  const r = await runScript(login.connection, script, args, {
    knownFingerprint: login.fingerprint,
    knownProxyFingerprint: login.proxyFingerprint,
    timeoutSeconds: 30,
  });
  login.fingerprint = r.fingerprint;
  if (r.proxyFingerprint) login.proxyFingerprint = r.proxyFingerprint;
  return r;
}

/** Start watching `conntrack -E` with these filter arguments (e.g. `-p tcp --orig-dst X --dport N`). */
export async function startCapture(login: Login, filter: string[], limitSeconds: number): Promise<Capture> {
  const conn = login.connection;
  const r = await runOn(login, START_CAPTURE_SCRIPT, [String(limitSeconds), ...filter]);
  const m = /^(\d+) (\d+) (\/\S+)\s*$/m.exec(r.stdout);
  if (r.code !== 0 || !m) {
    const why = (r.stderr.trim() || r.stdout.trim() || `exit ${r.code}`).split("\n").slice(-3).join("; ");
    throw new NatgateError(
      "remote",
      `could not watch conntrack events on ${hostLabel(conn)} (${why}). ` +
        `conntrack needs the nf_conntrack_netlink kernel module and root (or sudo: true).`,
    );
  }
  return { host: hostLabel(conn), pid: m[1], watchdog: m[2], file: m[3] };
}

/** Stop a capture; returns its event text and, when asked, the state of one interface. */
export async function stopCapture(login: Login, cap: Capture, linkName?: string): Promise<CaptureResult> {
  const args = [cap.pid, cap.watchdog, cap.file, ...(linkName ? [linkName] : [])];
  const r = await runOn(login, STOP_CAPTURE_SCRIPT, args);
  let text = r.stdout;
  let link: LinkState | undefined;
  const m = /^natgate-link (\S+) (missing|(\S+) (0x[0-9a-fA-F]+))\s*$/m.exec(text);
  if (m) {
    link =
      m[2] === "missing"
        ? { name: m[1], exists: false, up: false }
        : { name: m[1], exists: true, up: (Number(m[4]) & 1) === 1, operstate: m[3] };
    text = text.replace(m[0], "");
  }
  return { text, ...(link ? { link } : {}) };
}
