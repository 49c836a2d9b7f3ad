// OpenWrt's real firewall (fw4) on the lab router, for tests that need the manager natgate has to
// live with (DESIGN.md §1 "Other managers"): fw4 rebuilds `table inet fw4` on reload/restart,
// re-applies /usr/share/nftables.d/*.nft includes, and /etc/init.d/firewall stop deletes every
// table. scripts/build-fw4.sh builds it once into a cache; installFw4 puts it where OpenWrt has
// it, inside the router's mount namespace only (private: nothing reaches the machine or the other
// hosts), and removeFw4 takes it away again.
//
// Where things go in the router:
//   /usr        an overlay (upper dir in the lab dir): /usr/sbin/fw4 (= /sbin/fw4),
//               /usr/share/firewall4, /usr/share/ucode/fw4.uc, /usr/share/nftables.d/ (writable:
//               natgate writes include files there), /usr/bin/utpl and /usr/bin/ucode (wrappers
//               adding the built module path), /usr/sbin/uci
//   /etc        (the router's own copy-on-write /etc) config/firewall, init.d/firewall (a POSIX
//               stand-in for firewall4's procd script), rc.d/S19firewall, openwrt_release
// fw4's own script runs under BusyBox ash, as on OpenWrt: it starts with `set -o pipefail`, which
// Debian's dash rejects. Without ubusd fw4 warns "Unable to connect to ubus" and goes on; zones
// name their devices (`option device`) instead of networks.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { shQuote, type ExecResult, type Lab } from "./index";

const REPO = path.resolve(__dirname, "..", "..");
const BUILD_SCRIPT = path.join(REPO, "scripts", "build-fw4.sh");

/** The lab's devices for OpenWrt's default zones (the router has no netifd to map networks). */
export const FW4_ZONE_DEVICES: Readonly<Record<string, string>> = { lan: "br-lan", wan: "wan" };

/** fw4's include directory (its README there says what goes where). */
export const FW4_INCLUDE_DIR = "/usr/share/nftables.d";
export const FW4_INCLUDE_SUBDIRS = ["ruleset-pre", "ruleset-post", "table-pre", "table-post", "chain-pre", "chain-post"] as const;

const STATE_FILES = ["/var/run/fw4.state", "/var/run/fw4.lock"];
// Files installFw4 writes into the router's /etc (and removes again; it refuses to replace any).
const ETC_FILES = ["/etc/config/firewall", "/etc/init.d/firewall", "/etc/rc.d/S19firewall", "/etc/openwrt_release"];

let cachedDir: string | undefined;

/** The built fw4 (scripts/build-fw4.sh's cache dir for the current sources); throws saying how to build it. */
export function fw4Dir(): string {
  if (cachedDir) return cachedDir;
  let dir: string;
  try {
    dir = execFileSync("bash", [BUILD_SCRIPT, "--print-dir"], { encoding: "utf8" }).trim();
  } catch (e) {
    throw new Error(`cannot work out fw4's cache dir (${BUILD_SCRIPT} --print-dir): ${(e as Error).message}`);
  }
  const needed = ["bin/utpl", "lib/ucode/uci.so", "root/sbin/fw4", "root/usr/share/firewall4/main.uc", "root/etc/config/firewall"];
  const missing = needed.filter((f) => !fs.existsSync(path.join(dir, f)));
  if (missing.length) {
    throw new Error(`OpenWrt's fw4 is not built (${dir} lacks ${missing.join(", ")}): run scripts/build-fw4.sh as root (about 30 s; npm test does it)`);
  }
  return (cachedDir = dir);
}

/**
 * OpenWrt's default /etc/config/firewall for the lab: each zone's `list network` lines become one
 * `option device` (FW4_ZONE_DEVICES), since there is no netifd/ubus to resolve networks.
 */
export function labFirewallConfig(openwrtDefault: string): string {
  const out: string[] = [];
  let zone: { start: number; name?: string; deviceAt?: number } | undefined;
  const finishZone = () => {
    if (!zone) return;
    if (zone.deviceAt === undefined) {
      zone = undefined;
      return;
    }
    const dev = zone.name && FW4_ZONE_DEVICES[zone.name];
    if (!dev) throw new Error(`firewall config: zone ${JSON.stringify(zone.name)} has networks but the lab has no device for it`);
    out.splice(zone.deviceAt, 0, `\toption device\t'${dev}'`);
    zone = undefined;
  };
  for (const line of openwrtDefault.split("\n")) {
    if (/^config\s/.test(line)) {
      finishZone();
      if (/^config\s+zone\b/.test(line)) zone = { start: out.length };
    } else if (zone) {
      const name = /^\s*option\s+name\s+'?([^'\s]+)'?/.exec(line);
      if (name) zone.name = name[1];
      if (/^\s*list\s+network\s/.test(line)) {
        zone.deviceAt ??= out.length;
        continue;
      }
    }
    out.push(line);
  }
  finishZone();
  return out.join("\n");
}

/** OpenWrt's default firewall config (firewall4's root/etc/config/firewall) as the lab uses it. */
export function defaultLabFirewallConfig(): string {
  return labFirewallConfig(fs.readFileSync(path.join(fw4Dir(), "root/etc/config/firewall"), "utf8"));
}

export interface InstallFw4Options {
  /** /etc/config/firewall; default defaultLabFirewallConfig() */
  config?: string;
  /** run `fw4 start` (default true) */
  start?: boolean;
}

/** Per-lab state dir for the router's fw4 (the /usr overlay's upper and work dirs). */
function stateDir(lab: Lab): string {
  return path.join(lab.dir, "fw4", "router");
}

function router(lab: Lab) {
  const r = lab.hosts.router;
  if (!r.sshdPid) throw new Error("the lab router has no sshd (its mount namespace is where fw4 goes)");
  return r;
}

// firewall4's root/etc/init.d/firewall runs under procd's rc.common, absent here; this maps the same
// actions to the same fw4 calls (start_service: fw4 start, stop_service: fw4 flush, restart: fw4
// restart, reload_service: fw4 reload, boot: QUIET=-q start) and rc.common's enable/disable/enabled.
const INIT_SCRIPT = `#!/bin/sh
# natgate lab: stands in for firewall4's procd init script (same actions, same fw4 calls)
PATH=/usr/sbin:/usr/bin:/sbin:/bin
case "$1" in
  start) exec fw4 start ;;
  stop) exec fw4 flush ;;
  restart) exec fw4 restart ;;
  reload) exec fw4 reload ;;
  boot) exec fw4 -q start ;;
  enable) ln -sf ../init.d/firewall /etc/rc.d/S19firewall ;;
  disable) rm -f /etc/rc.d/S19firewall ;;
  enabled) [ -x /etc/rc.d/S19firewall ] ;;
  *) echo "Syntax: $0 [start|stop|restart|reload|boot|enable|disable|enabled]" >&2; exit 1 ;;
esac
`;

const OPENWRT_RELEASE = `DISTRIB_ID='OpenWrt'
DISTRIB_RELEASE='24.10.0'
DISTRIB_REVISION='r28427-6df0e3d02a'
DISTRIB_TARGET='x86/64'
DISTRIB_ARCH='x86_64'
DISTRIB_DESCRIPTION='OpenWrt 24.10.0 (natgate lab router: real fw4, Debian userland)'
DISTRIB_TAINTS=''
`;

/** The router's /usr overlay mount line in /proc/self/mountinfo, if installFw4's is mounted. */
const MOUNTED_CHECK = (upper: string) => `grep -F ' /usr ' /proc/self/mountinfo | grep -qF ${shQuote(`upperdir=${upper}`)}`;

/**
 * Puts OpenWrt's fw4 on the lab router (its mount namespace only) and, by default, starts it. The
 * laptop keeps SSH to the router (lan zone input ACCEPT), LAN hosts keep the internet (lan→wan
 * forwarding, wan masquerade); the wan side gets fw4's reject/drop. Undo with removeFw4.
 */
export async function installFw4(lab: Lab, opts: InstallFw4Options = {}): Promise<void> {
  const r = router(lab);
  const D = fw4Dir();
  const S = stateDir(lab);
  const U = `${S}/usr`;
  const config = opts.config ?? defaultLabFirewallConfig();
  const q = shQuote;
  const wrapper = (tool: string) =>
    `#!/bin/sh\n# natgate lab: the built ${tool} with its modules and OpenWrt's /usr/share/ucode on the search path\n` +
    `LD_LIBRARY_PATH=${D}/lib\${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} exec ${D}/bin/${tool} -L ${D}/lib/ucode -L /usr/share/ucode "$@"\n`;
  const files: Array<[string, string, string]> = [
    [`${U}/bin/utpl`, wrapper("utpl"), "755"],
    [`${U}/bin/ucode`, wrapper("ucode"), "755"],
    ["/etc/config/firewall", config.endsWith("\n") ? config : config + "\n", "644"],
    ["/etc/init.d/firewall", INIT_SCRIPT, "755"],
    ["/etc/openwrt_release", OPENWRT_RELEASE, "644"],
  ];
  // Checked first, so a refusal leaves what is there alone.
  await r.run(
    [
      `if ${MOUNTED_CHECK(U)} || [ -e ${q(`${S}/installed`)} ]; then echo "fw4 is already installed on the router (removeFw4 first)" >&2; exit 1; fi`,
      `for f in ${ETC_FILES.join(" ")}; do if [ -e "$f" ] || [ -L "$f" ]; then echo "router already has $f: installFw4 would replace it" >&2; exit 1; fi; done`,
    ].join("\n"),
  );
  const script = [
    "set -eu",
    `rm -rf ${q(S)}`,
    `mkdir -p ${q(S)} && : >${q(`${S}/installed`)}`,
    `mkdir -p ${q(`${U}/bin`)} ${q(`${U}/sbin`)} ${q(`${U}/share/ucode`)} ${q(`${S}/usr.work`)}`,
    ...FW4_INCLUDE_SUBDIRS.map((d) => `mkdir -p ${q(`${U}/share/nftables.d/${d}`)}`),
    `cp ${q(`${D}/root/usr/share/nftables.d/README`)} ${q(`${U}/share/nftables.d/README`)}`,
    `cp -R ${q(`${D}/root/usr/share/firewall4`)} ${q(`${U}/share/firewall4`)}`,
    `cp ${q(`${D}/root/usr/share/ucode/fw4.uc`)} ${q(`${U}/share/ucode/fw4.uc`)}`,
    // OpenWrt's /bin/sh is BusyBox ash; Debian's dash stops at fw4's `set -o pipefail`.
    `sed '1s|^#!/bin/sh$|#!/bin/busybox ash|' ${q(`${D}/root/sbin/fw4`)} >${q(`${U}/sbin/fw4`)}`,
    `chmod 755 ${q(`${U}/sbin/fw4`)}`,
    `ln -s ${q(`${D}/bin/uci`)} ${q(`${U}/sbin/uci`)}`,
    "command -v flock >/dev/null || { echo 'fw4 needs flock (util-linux)' >&2; exit 1; }",
    "[ -x /bin/busybox ] || { echo 'fw4 runs under BusyBox ash here: install busybox' >&2; exit 1; }",
    ...files
      .filter(([p]) => p.startsWith(U))
      .map(([p, text, mode]) => `printf '%s' ${q(text)} >${q(p)} && chmod ${mode} ${q(p)}`),
    // One overlay for everything under /usr: the targets do not exist on the machine, so binds
    // would need mount points created in the shared file system.
    `mount -t overlay natgate-fw4 -o ${q(`lowerdir=/usr,upperdir=${U},workdir=${S}/usr.work`)} /usr`,
    `[ -d /etc/config ] || { mkdir /etc/config && : >${q(`${S}/made-etc-config`)}; }`,
    `[ -d /etc/rc.d ] || { mkdir /etc/rc.d && : >${q(`${S}/made-etc-rc.d`)}; }`,
    ...files
      .filter(([p]) => p.startsWith("/etc/"))
      .map(([p, text, mode]) => `printf '%s' ${q(text)} >${q(p)} && chmod ${mode} ${q(p)}`),
    "ln -s ../init.d/firewall /etc/rc.d/S19firewall",
    "test -x /sbin/fw4 && command -v utpl >/dev/null",
  ].join("\n");
  try {
    await r.run(script);
    if (opts.start ?? true) await fw4(lab, "start");
  } catch (e) {
    await removeFw4(lab).catch(() => undefined);
    throw e;
  }
}

/**
 * Takes fw4 off the router: deletes `table inet fw4` (only that: `fw4 flush` would delete every
 * table), its state and lock files, the /usr overlay and the /etc files installFw4 wrote. Safe to
 * call when fw4 is not (or only partly) installed.
 */
export async function removeFw4(lab: Lab): Promise<void> {
  const r = router(lab);
  const S = stateDir(lab);
  const U = `${S}/usr`;
  const q = shQuote;
  const script = [
    "set -u",
    "if nft list table inet fw4 >/dev/null 2>&1; then nft delete table inet fw4 || exit 1; fi",
    `rm -f ${STATE_FILES.join(" ")}`,
    // Only files installFw4 wrote (it refuses to replace any): a router without the marker keeps its own.
    `if [ -e ${q(`${S}/installed`)} ]; then`,
    `  rm -f ${ETC_FILES.join(" ")}`,
    `  [ ! -e ${q(`${S}/made-etc-config`)} ] || rmdir /etc/config 2>/dev/null || true`,
    `  [ ! -e ${q(`${S}/made-etc-rc.d`)} ] || rmdir /etc/rc.d 2>/dev/null || true`,
    "fi",
    // Lazy: this very shell runs from the overlay (/bin is /usr/bin). The mount leaves the router's
    // tree at once; the kernel drops it when the last process started under it exits.
    `if ${MOUNTED_CHECK(U)}; then umount -l /usr || exit 1; fi`,
    `if ${MOUNTED_CHECK(U)}; then echo "the fw4 overlay is still mounted on /usr" >&2; exit 1; fi`,
  ].join("\n");
  await r.run(script);
  // Its dirs move aside rather than go: a process started under the overlay (an SSH session whose
  // sshd re-exec'd from it) keeps the detached overlay alive, and removing an overlay's upper dir
  // under it is undefined. Lab teardown removes the lab dir with everything in it.
  await r.run(`if [ -e ${q(S)} ]; then mv ${q(S)} ${q(`${S}.removed-${Date.now()}`)}; fi`);
}

export type Fw4Action = "start" | "stop" | "restart" | "reload" | "flush" | "check" | "print" | "reload-sets";
export type InitAction = "start" | "stop" | "restart" | "reload" | "boot" | "enable" | "disable" | "enabled";

/**
 * Runs `fw4 <action>` on the router (or, with via "init.d", `/etc/init.d/firewall <action>`, whose
 * stop is `fw4 flush`: every table goes). Throws with fw4's output on a non-zero exit unless
 * allowFailure; the "Unable to connect to ubus" warning on stderr is expected.
 */
export async function fw4(
  lab: Lab,
  action: Fw4Action | InitAction,
  opts: { via?: "fw4" | "init.d"; allowFailure?: boolean } = {},
): Promise<ExecResult> {
  const cmd = opts.via === "init.d" ? `/etc/init.d/firewall ${action}` : `/sbin/fw4 ${action}`;
  const res = await router(lab).exec(cmd);
  if (res.code !== 0 && !opts.allowFailure) {
    throw new Error(`${cmd} on the router failed (exit ${res.code}): ${(res.stderr + res.stdout).trim()}`);
  }
  return res;
}
