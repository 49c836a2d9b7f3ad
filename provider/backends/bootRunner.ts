/** The boot runner and the init systems' hooks that start it (see persist.ts). */
import { FW4_INCLUDE_DIR } from "./fw4Include";
import { HOSTSTATE_SH } from "./hoststate";
import { BOOT_DIR, BOOT_ORDER, NATGATE_DIR, RUNNER_PATH, WG_KEY_DIR, type InitSystem } from "./bootPaths";

// ---------- the runner and the init systems' hooks ----------

const RUNNER_SH = `#!/bin/sh
# natgate's boot runner: written with the first natgate resource on this host and removed with the
# last. The init system runs it at boot (natgate.service, /etc/init.d/natgate); run it yourself
# where there is none. Each entry in boot.d re-establishes one natgate resource with the script
# natgate runs over SSH, and may run again at any time. Tunnels first (the others need their
# interface), then route tables, return paths, DNAT. A failing entry is logged and the others
# still run; the exit status is 1 if any failed.
LC_ALL=C
PATH=$PATH:/usr/sbin:/usr/bin:/sbin:/bin
# wg retries an endpoint name that does not resolve for minutes, and the WAN may not be up yet:
# fail that line soon instead; the tunnel's peer comes last in its entry, and the next run (an
# interface coming up) adds it.
WG_ENDPOINT_RESOLUTION_RETRIES=\${WG_ENDPOINT_RESOLUTION_RETRIES:-3}
export LC_ALL PATH WG_ENDPOINT_RESOLUTION_RETRIES
ng_dir=${BOOT_DIR}
# "boot.sh save" (natgate.service's stop, at shutdown): keep each tunnel's peer endpoints, so a
# listener can dial its dialer behind NAT right after it boots again.
# "boot.sh ufw" (natgate-ufw.service: /etc/ufw/ufw.conf changed, as \`ufw enable\` and \`disable\` do,
# which do not go through systemd): ufw writes ufw.conf before it loads its rules, so wait (10 s at
# most) until FORWARD has the policy /etc/default/ufw gives it, then run the entries again through
# natgate.service, which puts the accepts where the drop now is.
if [ "\${1:-}" = ufw ]; then
  ng_want=
  grep -q '^ENABLED=yes' /etc/ufw/ufw.conf 2>/dev/null &&
    ng_want=$(sed -n 's/^DEFAULT_FORWARD_POLICY=//p' /etc/default/ufw 2>/dev/null | tr -d '"')
  ng_i=0
  while [ -n "$ng_want" ] && [ "$ng_i" -lt 50 ] && ! iptables -S FORWARD 2>/dev/null | grep -qx -- "-P FORWARD $ng_want"; do
    sleep 0.2; ng_i=$((ng_i + 1))
  done
  exec systemctl --no-block restart natgate.service
fi
if [ "\${1:-}" = save ]; then
  for ng_e in "$ng_dir"/tunnel-*.sh; do
    [ -f "$ng_e" ] || continue
    ng_if=\${ng_e##*/tunnel-}
    ng_if=\${ng_if%.sh}
    ng_f=${WG_KEY_DIR}/$ng_if.endpoints
    wg show "$ng_if" endpoints 2>/dev/null | awk '$2 != "(none)"' > "$ng_f.tmp" 2>/dev/null && [ -s "$ng_f.tmp" ] && mv -f "$ng_f.tmp" "$ng_f"
    rm -f "$ng_f.tmp"
  done
  exit 0
fi
${HOSTSTATE_SH}
ng_run=$NG_STATE
ng_log() {
  if command -v logger >/dev/null 2>&1 && logger -t natgate -- "$1" 2>/dev/null; then
    [ ! -t 2 ] || printf 'natgate: %s\\n' "$1" >&2
  else
    printf 'natgate: %s\\n' "$1" >&2
  fi
  return 0
}
# One run at a time (init and an interface coming up may start it together), and none while natgate
# applies over SSH: the host lock, with its owner token (hoststate.ts), held for the whole run.
# Each entry's own ng_lock finds it held by its runner (NG_LOCK_TOKEN) and goes on under it. Held
# by another for 30 s, ng_lock says so on stderr (the init system's log) and the run ends (exit 75).
ng_lock
trap 'rm -f "$ng_run/boot.err"; ng_unlock' EXIT
ng_n=0
ng_failed=0
for ng_kind in ${BOOT_ORDER.join(" ")}; do
  for ng_e in "$ng_dir/$ng_kind"-*.sh; do
    [ -f "$ng_e" ] || continue
    ng_n=$((ng_n + 1))
    sh "$ng_e" </dev/null >/dev/null 2>"$ng_run/boot.err"
    ng_rc=$?
    while IFS= read -r ng_l; do ng_log "\${ng_e##*/}: $ng_l"; done < "$ng_run/boot.err"
    if [ "$ng_rc" -eq 0 ]; then
      ng_log "\${ng_e##*/}: applied"
    else
      ng_failed=$((ng_failed + 1))
      ng_log "\${ng_e##*/}: FAILED (exit $ng_rc); the other entries still run"
    fi
  done
done
ng_log "boot entries: $ng_n run, $ng_failed failed"
[ "$ng_failed" -eq 0 ]
`;

const OWNED = "# Written by natgate; removed with the last natgate resource on this host.";

/**
 * Services whose start wipes natgate's state, from their sources: nftables.service's stock
 * /etc/nftables.conf begins with `flush ruleset`; systemd-networkd (v249+) removes routing policy
 * rules and routes it did not configure when it starts; firewalld and Docker rebuild the iptables
 * chains natgate's accepts are in; ufw.service's start reloads its rules.
 */
export const WIPING_SERVICES = ["nftables.service", "systemd-networkd.service", "firewalld.service", "ufw.service", "docker.service"];

// After the firewalls, so an accept natgate puts into their chains is not wiped by their start.
const SYSTEMD_UNIT = `${OWNED}
[Unit]
Description=natgate: restore WireGuard tunnels, policy routes and port forwards
Wants=network-online.target
After=network-online.target ${WIPING_SERVICES.join(" ")}

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh ${RUNNER_PATH}
ExecStop=/bin/sh ${RUNNER_PATH} save
# wireguard-go, started by a tunnel entry, runs in this unit's cgroup: a restart (the drop-ins
# below) must not kill it.
KillMode=process

[Install]
WantedBy=multi-user.target
`;

// A drop-in for each wiping service: every time it has started (a restart too), natgate.service
// runs the boot entries again, ordered after it. \`restart\` rather than PartOf=, because a
// propagated restart is only a try-restart, which does nothing while natgate.service is inactive
// (written after this boot's start); \`-\` keeps the service itself from failing on natgate's
// account, and --no-block returns at once (the job waits for the service's start to finish).
const systemdDropIn = (service: string) => `${OWNED}
# ${service} starting (or restarting) can remove natgate's tables, rules or routes: put them back.
[Service]
ExecStartPost=-/bin/systemctl --no-block restart natgate.service
${WIPES_ON_STOP.includes(service) ? STOP_HOOK : ""}`;

/**
 * Services whose stop wipes natgate's state too: Debian's nftables.service stops with
 * `nft flush ruleset`. (ufw, firewalld and Docker remove only their own chains on stop and leave
 * the policies accepting; networkd leaves routes and rules in place.) At shutdown the restart job
 * is refused by systemd, and `-` ignores that.
 */
const WIPES_ON_STOP = ["nftables.service"];
const STOP_HOOK = `# ...and so does its stop (ExecStop=nft flush ruleset).
ExecStopPost=-/bin/systemctl --no-block restart natgate.service
`;

// ufw's CLI (\`ufw enable\`, \`ufw disable\`) changes the firewall without starting ufw.service, but
// it always rewrites /etc/ufw/ufw.conf: a path unit sees that and runs boot.sh ufw.
const UFW_PATH_UNIT = `${OWNED}
[Unit]
Description=natgate: run natgate's boot entries again when ufw is enabled or disabled

[Path]
PathChanged=/etc/ufw/ufw.conf
Unit=natgate-ufw.service

[Install]
WantedBy=paths.target
`;
const UFW_SERVICE_UNIT = `${OWNED}
[Unit]
Description=natgate: ufw was enabled or disabled, run natgate's boot entries again

[Service]
Type=oneshot
ExecStart=/bin/sh ${RUNNER_PATH} ufw
`;
export const UFW_PATH_UNIT_PATH = "/etc/systemd/system/natgate-ufw.path";

// START=99: after the network (20) and fw4 (19), whose forward chain natgate's accepts go into.
const PROCD_INIT = `#!/bin/sh /etc/rc.common
${OWNED}
# Restores natgate's tunnels, routes and forwards at boot, after the network and the firewall.
START=99
start() {
	/bin/sh ${RUNNER_PATH}
}
`;

// hotplug-call sources this in a subshell for every interface event, after 20-firewall (fw4
// reloads there on ifup and on an ifupdate with new addresses).
const PROCD_HOTPLUG = `${OWNED}
# An interface came up or changed (the WAN after a reconnect, or late at boot): run natgate's boot
# entries again. They only put back what is missing: the tunnel's peer when its endpoint did not
# resolve at boot, an accept that the firewall's reload for this interface dropped.
case $ACTION in ifup|ifupdate) ;; *) exit 0 ;; esac
/bin/sh ${RUNNER_PATH} </dev/null >/dev/null 2>&1 &
`;

// sysupgrade reads these lines unquoted (find $(sed ... keep.d/*)): the glob keeps fw4 include files.
const PROCD_KEEP = `${NATGATE_DIR}/\n${FW4_INCLUDE_DIR}/chain-pre/*/natgate-*.nft\n${FW4_INCLUDE_DIR}/ruleset-post/natgate_*.nft\n`;

export interface BootFile {
  path: string;
  /** File content, or undefined for a symlink. */
  content?: string;
  mode?: "600" | "644" | "700" | "755";
  /** Symlink target. */
  target?: string;
}

export const SYSTEMD_UNIT_PATH = "/etc/systemd/system/natgate.service";
const PROCD_INIT_PATH = "/etc/init.d/natgate";

/** What the runner consists of on a host with this init system. */
export function runnerFiles(init: InitSystem): BootFile[] {
  const files: BootFile[] = [{ path: RUNNER_PATH, content: RUNNER_SH, mode: "700" }];
  if (init === "systemd") {
    files.push(
      { path: SYSTEMD_UNIT_PATH, content: SYSTEMD_UNIT, mode: "644" },
      { path: "/etc/systemd/system/multi-user.target.wants/natgate.service", target: SYSTEMD_UNIT_PATH },
      ...WIPING_SERVICES.map((svc) => ({ path: `/etc/systemd/system/${svc}.d/natgate.conf`, content: systemdDropIn(svc), mode: "644" as const })),
      { path: UFW_PATH_UNIT_PATH, content: UFW_PATH_UNIT, mode: "644" },
      { path: "/etc/systemd/system/natgate-ufw.service", content: UFW_SERVICE_UNIT, mode: "644" },
      { path: "/etc/systemd/system/paths.target.wants/natgate-ufw.path", target: UFW_PATH_UNIT_PATH },
    );
  } else if (init === "procd") {
    files.push(
      { path: PROCD_INIT_PATH, content: PROCD_INIT, mode: "755" },
      { path: "/etc/rc.d/S99natgate", target: "../init.d/natgate" },
      { path: "/etc/hotplug.d/iface/99-natgate", content: PROCD_HOTPLUG, mode: "644" },
      { path: "/lib/upgrade/keep.d/natgate", content: PROCD_KEEP, mode: "644" },
    );
  }
  return files;
}

/** Every file the runner may consist of, whatever the init system: what the last delete removes. */
export const RUNNER_PATHS = [...new Set([...runnerFiles("systemd"), ...runnerFiles("procd")].map((f) => f.path))];

