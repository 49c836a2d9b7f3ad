// PathCheck's conntrack capture on a host: events, not listings (see verify/capture.ts).
import { SH_PRELUDE } from "./prelude";

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
