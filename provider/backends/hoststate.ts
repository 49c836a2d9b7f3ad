/**
 * natgate's own files on a host, and the lock its writing scripts hold.
 *
 * They live under /run (tmpfs, /var/run on OpenWrt) because everything they describe (sysctl
 * values, nft tables, ip rules) is gone after a reboot too; a persistent file would outlive the
 * state it records. The directory is removed again when the last natgate object using it goes, so
 * a host with no natgate resources has no natgate files.
 *
 * The lock (issue 11). Each script that takes it makes a token PID.START.RANDOM: its PID, its
 * start time (field 22 of /proc/PID/stat, so a PID the kernel has since given to another process
 * does not pass for the holder) and a random part (/proc/sys/kernel/random/uuid, which Linux has
 * on Debian and OpenWrt alike). It writes the token to its own file `lock.TOKEN`, then holds the
 * lock by hard-linking that file as `lock`: link() is atomic, fails while `lock` exists, and the
 * lock is never seen without its owner's token. A waiter whose holder is gone renames the
 * holder's file `lock.TOKEN` (of several waiters, one rename succeeds, and a name is renamed
 * once); only that waiter may then remove `lock`, while it still holds the dead token, and every
 * waiter competes again. Unlock removes `lock` only while it holds the script's own token. A
 * script run by one that holds the lock goes on under it (NG_LOCK_TOKEN in its environment names
 * the holder) instead of waiting for its own parent. A boot entry whose file was replaced or
 * removed while it waited does nothing.
 */
import { BOOT_DIR } from "./bootPaths";

export const HOSTSTATE_SH = `
if [ -d /run ]; then NG_STATE=/run/natgate; else NG_STATE=/var/run/natgate; fi
# ng_lock: serialize natgate's writing scripts on this host (Pulumi runs resources in parallel, the
# boot runner may run entries meanwhile, and the sysctl holder files, claims and iptables checks
# are read-then-write). See hoststate.ts for why each step is atomic. Every command here is in a
# condition or cannot fail: scripts call it under set -e.
# A waiter polls every 50 ms (sleep 1 where sleep takes whole seconds only): N resources applied
# in parallel on one host queue here, and whole-second polls made each wait up to a second more.
#
# ng_start PID: ng_sv = start time of process PID; fails when there is none (or only its zombie)
ng_start() {
  ng_sv=
  { read -r ng_sv < "/proc/$1/stat"; } 2>/dev/null || return 1
  ng_sv=\${ng_sv##*) }
  set -- $ng_sv
  case $1 in Z|X|x) return 1 ;; esac
  [ $# -ge 20 ] || return 1
  shift 19
  ng_sv=$1
}
# ng_alive TOKEN: the process that made TOKEN still runs (what is not a token counts as running:
# the lock is then left to the 30-s message)
ng_alive() {
  case $1 in ''|.*|*/*) return 0 ;; esac
  ng_ap=\${1%%.*}
  ng_as=\${1#*.}
  ng_as=\${ng_as%%.*}
  [ "$ng_ap" -ge 1 ] 2>/dev/null || return 0
  if [ "$ng_as" = - ]; then kill -0 "$ng_ap" 2>/dev/null && return 0; return 1; fi
  ng_start "$ng_ap" && [ "$ng_sv" = "$ng_as" ] && return 0
  return 1
}
# ng_owner: ng_o = the token in the lock (empty: no lock, or an older natgate's lock directory)
ng_owner() {
  { read -r ng_o < "$NG_STATE/lock"; } 2>/dev/null || ng_o=
}
# ng_takeover TOKEN: TOKEN's process ended holding the lock. The waiter whose rename of its file
# succeeds removes the lock (nothing else can change a lock that holds a dead token); the others
# find their rename failing and wait on.
ng_takeover() {
  mv "$NG_STATE/lock.$1" "$NG_STATE/stale.$NG_TOKEN" 2>/dev/null || return 0
  ng_owner
  if [ "$ng_o" = "$1" ]; then
    rm -f "$NG_STATE/lock"
    echo "natgate: took over $NG_STATE/lock from process \${1%%.*}, which ended without releasing it" >&2
  fi
  rm -f "$NG_STATE/stale.$NG_TOKEN"
}
ng_lock() {
  mkdir -p "$NG_STATE" 2>/dev/null || true
  if [ -n "\${NG_LOCK_TOKEN:-}" ]; then
    ng_owner
    if [ "$ng_o" = "$NG_LOCK_TOKEN" ]; then return 0; fi
  fi
  if ng_start $$; then NG_TOKEN=$$.$ng_sv; else NG_TOKEN=$$.-; fi
  ng_r=
  { read -r ng_r < /proc/sys/kernel/random/uuid; } 2>/dev/null || ng_r=$(od -An -N8 -tx1 /dev/urandom 2>/dev/null | tr -d ' \\n') || ng_r=
  NG_TOKEN=$NG_TOKEN.\${ng_r:-$(date +%s)}
  trap ng_unlock EXIT
  trap 'exit 129' HUP
  trap 'exit 130' INT
  trap 'exit 143' TERM
  # (again: another script's unlock may have removed the empty directory since)
  ng_i=0
  until { printf '%s\\n' "$NG_TOKEN" > "$NG_STATE/lock.$NG_TOKEN"; } 2>/dev/null; do
    ng_i=$((ng_i + 1))
    if [ "$ng_i" -ge 5 ]; then echo "natgate: cannot write $NG_STATE/lock.$NG_TOKEN" >&2; exit 1; fi
    mkdir -p "$NG_STATE" 2>/dev/null || true
  done
  ng_t0=$(date +%s)
  while :; do
    if ln "$NG_STATE/lock.$NG_TOKEN" "$NG_STATE/lock" 2>/dev/null; then
      [ -d "$NG_STATE/lock" ] || break
      # an older natgate's lock directory: ln put the link inside it
      rm -f "$NG_STATE/lock/lock.$NG_TOKEN"
    fi
    ng_owner
    if [ -d "$NG_STATE/lock" ]; then
      # an older natgate's lock (mkdir, then its pid file): renaming the pid file is the takeover,
      # given back if it no longer names the dead process (another older script's lock since)
      { read -r ng_o < "$NG_STATE/lock/pid"; } 2>/dev/null || ng_o=
      if [ -n "$ng_o" ] && ! ng_start "$ng_o" && mv "$NG_STATE/lock/pid" "$NG_STATE/lock/pid.$NG_TOKEN" 2>/dev/null; then
        { read -r ng_b < "$NG_STATE/lock/pid.$NG_TOKEN"; } 2>/dev/null || ng_b=
        if [ "$ng_b" = "$ng_o" ]; then
          rm -rf "$NG_STATE/lock"
          echo "natgate: took over $NG_STATE/lock (an older natgate's) from process $ng_o, which ended without releasing it" >&2
        else
          mv "$NG_STATE/lock/pid.$NG_TOKEN" "$NG_STATE/lock/pid" 2>/dev/null || true
        fi
        continue
      fi
    elif [ -n "$ng_o" ] && ! ng_alive "$ng_o"; then
      ng_takeover "$ng_o"
      continue
    fi
    if [ $(($(date +%s) - ng_t0)) -ge 30 ]; then
      echo "natgate: $NG_STATE/lock has been held by process \${ng_o%%.*} for 30 s; if no natgate operation is running, remove that file" >&2
      exit 75
    fi
    if [ -n "$ng_o" ] || [ -e "$NG_STATE/lock" ]; then sleep 0.05 2>/dev/null || sleep 1; fi
  done
  NG_LOCK_TOKEN=$NG_TOKEN
  export NG_LOCK_TOKEN
  # A boot entry (the runner runs it as sh FILE) that waited while an apply or delete of the same
  # resource replaced or removed FILE would put back what is older than what that left. The shell
  # still reads the old file: its descriptor then names FILE " (deleted)".
  case $0 in ${BOOT_DIR}/*.sh)
    for ng_fd in /proc/$$/fd/*; do
      if [ "$(readlink "$ng_fd" 2>/dev/null)" = "$0 (deleted)" ]; then
        echo "natgate: $0 was replaced or removed while it waited for the lock: not run (what replaced it is newer)" >&2
        exit 0
      fi
    done ;;
  esac
}
# ng_unlock (the EXIT trap ng_lock sets): the lock goes only if it still holds this script's token;
# a takeover cut short hands the dead holder's file back for the next waiter.
# (|| true: it runs as the EXIT trap of scripts under set -e, where a failing rmdir would turn their
# success into exit 1)
ng_unlock() {
  if [ -n "\${NG_TOKEN:-}" ]; then
    ng_owner
    if [ "$ng_o" = "$NG_TOKEN" ]; then rm -f "$NG_STATE/lock"; fi
    if [ -f "$NG_STATE/stale.$NG_TOKEN" ]; then
      { read -r ng_b < "$NG_STATE/stale.$NG_TOKEN"; } 2>/dev/null || ng_b=
      if [ -n "$ng_b" ] && [ "$ng_b" = "$ng_o" ]; then mv "$NG_STATE/stale.$NG_TOKEN" "$NG_STATE/lock.$ng_b" 2>/dev/null || true; fi
      rm -f "$NG_STATE/stale.$NG_TOKEN"
    fi
    rm -f "$NG_STATE/lock.$NG_TOKEN"
    NG_TOKEN=
  fi
  rmdir "$NG_STATE/sysctl" "$NG_STATE" 2>/dev/null || true
}
`;
