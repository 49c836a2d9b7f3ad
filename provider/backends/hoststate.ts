/**
 * natgate's own files on a host, and the lock its writing scripts hold.
 *
 * They live under /run (tmpfs, /var/run on OpenWrt) because everything they describe (sysctl
 * values, nft tables, ip rules) is gone after a reboot too; a persistent file would outlive the
 * state it records. The directory is removed again when the last natgate object using it goes, so
 * a host with no natgate resources has no natgate files.
 */
export const HOSTSTATE_SH = `
if [ -d /run ]; then NG_STATE=/run/natgate; else NG_STATE=/var/run/natgate; fi
# ng_lock: serialize natgate's writing scripts on this host (Pulumi runs resources in parallel,
# and the sysctl holder files and iptables checks are read-then-write). mkdir is atomic; a lock
# whose owner died is taken over.
# A waiter polls every 50 ms (sleep 1 where sleep takes whole seconds only): N resources applied
# in parallel on one host queue here, and whole-second polls made each wait up to a second more.
ng_lock() {
  ng_t0=$(date +%s)
  while :; do
    mkdir -p "$NG_STATE" 2>/dev/null
    if mkdir "$NG_STATE/lock" 2>/dev/null; then echo $$ > "$NG_STATE/lock/pid"; break; fi
    ng_pid=$(cat "$NG_STATE/lock/pid" 2>/dev/null)
    if [ -n "$ng_pid" ] && ! kill -0 "$ng_pid" 2>/dev/null; then rm -rf "$NG_STATE/lock"; continue; fi
    if [ $(($(date +%s) - ng_t0)) -ge 30 ]; then
      echo "natgate: $NG_STATE/lock has been held by process $ng_pid for 30 s; if no natgate operation is running, remove that directory" >&2
      exit 75
    fi
    sleep 0.05 2>/dev/null || sleep 1
  done
  trap ng_unlock EXIT
}
# (|| true: it also runs as the EXIT trap of scripts under set -e, where a failing rmdir would turn
# their success into exit 1)
ng_unlock() {
  rm -rf "$NG_STATE/lock"
  rmdir "$NG_STATE/sysctl" "$NG_STATE" 2>/dev/null || true
}
`;
