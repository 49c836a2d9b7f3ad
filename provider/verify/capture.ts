// Watch a host's conntrack events while the probe runs. Events, not listings: a connection
// whose only reply is a TCP reset is deleted by the kernel at once, so a `conntrack -L` after
// the probe would not show it, and the hop that answered with the reset could not be named.
import { SH_PRELUDE, type Connection } from "../ssh";
import { NatgateError } from "../ssh/errors";

/** runScript, loaded on first use so that check and diff, which never touch a host, do not load ssh2. */
function runScript(...args: Parameters<typeof import("../ssh").runScript>): ReturnType<typeof import("../ssh").runScript> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require("../ssh") as typeof import("../ssh")).runScript(...args);
}

/**
 * Starts `conntrack -E -o id <filter>` in the background with its output in a temp file and
 * prints "<pid> <watchdog pid> <file>". The watchdog ends the capture after $1 seconds even when
 * natgate never comes back to stop it (a lost connection, a killed `pulumi up`).
 */
export const START_CAPTURE_SCRIPT = `${SH_PRELUDE}need conntrack conntrack
limit=$1; shift
out=$(mktemp "\${TMPDIR:-/tmp}/natgate-conntrack.XXXXXX") || exit 1
conntrack -E -o id "$@" >"$out" 2>&1 </dev/null &
pid=$!
# stopping the watchdog also stops its sleep (wait returns on the trapped signal), so nothing lingers
(
  trap 'kill "$s" 2>/dev/null; exit 0' TERM
  sleep "$limit" & s=$!
  wait "$s"
  grep -q conntrack "/proc/$pid/cmdline" 2>/dev/null && kill "$pid"
) >/dev/null 2>&1 </dev/null &
watchdog=$!
# conntrack subscribes at once; give it a moment before the probe's first packet
sleep 0.3 2>/dev/null || sleep 1
if ! kill -0 "$pid" 2>/dev/null; then
  cat "$out" >&2
  rm -f "$out"
  kill "$watchdog" 2>/dev/null
  exit 3
fi
printf '%s %s %s\\n' "$pid" "$watchdog" "$out"
`;

/**
 * Stops a capture and prints its events. With a 4th argument (an interface), first prints
 * "natgate-link <name> <operstate> <flags>" or "natgate-link <name> missing".
 */
export const STOP_CAPTURE_SCRIPT = `${SH_PRELUDE}pid=$1; watchdog=$2; out=$3; link=$4
if [ -n "$link" ]; then
  if [ -e "/sys/class/net/$link/flags" ]; then
    printf 'natgate-link %s %s %s\\n' "$link" "$(cat "/sys/class/net/$link/operstate")" "$(cat "/sys/class/net/$link/flags")"
  else
    printf 'natgate-link %s missing\\n' "$link"
  fi
fi
# events are written as the kernel sends them; a short pause lets the last ones land
sleep 0.2 2>/dev/null || sleep 1
grep -q conntrack "/proc/$pid/cmdline" 2>/dev/null && kill "$pid" 2>/dev/null
kill "$watchdog" 2>/dev/null
n=0
# until it has exited (a zombie has an empty cmdline: whoever inherited it may be slow to reap it)
while grep -q conntrack "/proc/$pid/cmdline" 2>/dev/null && [ "$n" -lt 20 ]; do sleep 0.1 2>/dev/null || sleep 1; n=$((n + 1)); done
cat "$out"
rm -f "$out"
`;

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

/** Start watching `conntrack -E` with these filter arguments (e.g. `-p tcp --orig-dst X --dport N`). */
export async function startCapture(
  conn: Connection,
  filter: string[],
  limitSeconds: number,
): Promise<Capture> {
  const r = await runScript(conn, START_CAPTURE_SCRIPT, [String(limitSeconds), ...filter], { timeoutSeconds: 30 });
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
export async function stopCapture(conn: Connection, cap: Capture, linkName?: string): Promise<CaptureResult> {
  const args = [cap.pid, cap.watchdog, cap.file, ...(linkName ? [linkName] : [])];
  const r = await runScript(conn, STOP_CAPTURE_SCRIPT, args, { timeoutSeconds: 30 });
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
