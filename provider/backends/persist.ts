/**
 * Boot persistence: what natgate sets with nft, ip, wg and sysctl is gone after a reboot, so each
 * resource also leaves a boot entry on its host, and the first one installs a runner that the
 * host's init system starts at boot.
 *
 *   /etc/natgate/boot.d/<kind>-<id>.sh   one per resource (per side for a Tunnel): `set -- <args>`
 *                                        followed by the very apply script the provider runs over
 *                                        SSH, with the arguments that build the state from nothing
 *   /etc/natgate/boot.sh                 runs the entries: tunnels, route tables, return paths, DNAT
 *   systemd: /etc/systemd/system/natgate.service + its multi-user.target.wants link
 *   procd (OpenWrt): /etc/init.d/natgate + /etc/rc.d/S99natgate, /etc/hotplug.d/iface/99-natgate
 *                    (again when an interface comes up), /lib/upgrade/keep.d/natgate (sysupgrade)
 *
 * The runner and hooks are reference-counted by the entries: the last entry removed takes them
 * away, with the directories natgate created for them (listed in /etc/natgate/made-dirs) and
 * /etc/natgate itself when empty, so a host with no natgate resources has no natgate files.
 *
 * Entries must be idempotent (an interface coming up runs them again), which is why every apply
 * script's boot arguments replace rather than add. What is on the host is compared by md5, which
 * OpenWrt's BusyBox has (it has no cksum).
 */
import { createHash } from "node:crypto";
import { shQuote } from "../ssh/quote";
import { HOSTSTATE_SH } from "./hoststate";

export const NATGATE_DIR = "/etc/natgate";
export const BOOT_DIR = `${NATGATE_DIR}/boot.d`;
export const RUNNER_PATH = `${NATGATE_DIR}/boot.sh`;
const MADE_DIRS = `${NATGATE_DIR}/made-dirs`;

export type InitSystem = "systemd" | "procd" | "none";

/** Entry kinds in the order the runner runs them: the later ones need what the earlier set up. */
export const BOOT_ORDER = ["tunnel", "routes", "ret", "dnat"] as const;
export type BootKind = (typeof BOOT_ORDER)[number];

/** `<kind>-<id>.sh`; ids are validated names (a-z0-9_, interface names, table numbers). */
export function bootEntryName(kind: BootKind, id: string | number): string {
  const name = `${kind}-${id}.sh`;
  if (!/^[A-Za-z0-9_.=+-]+$/.test(name)) throw new Error(`boot entry name ${JSON.stringify(name)} has characters natgate does not write`);
  return name;
}

export function bootEntryPath(name: string): string {
  return `${BOOT_DIR}/${name}`;
}

/**
 * One entry: `prefix` (header and `set -- <args>`) and `suffix` carry the resource's values and
 * travel as script arguments; `body` is constant script text and travels inside the persist
 * script (arguments have a size limit on some SSH servers; dropbear's is 9000 bytes).
 */
export interface BootEntry {
  name: string;
  prefix: string;
  body: string;
  suffix: string;
}

export function bootEntry(kind: BootKind, id: string | number, title: string, args: string[], body: string, suffix = ""): BootEntry {
  const prefix =
    "#!/bin/sh\n" +
    `# natgate boot entry: ${title.replace(/\n/g, " ")}.\n` +
    "# Written by natgate (pulumi up), removed by the resource's delete; run by /etc/natgate/boot.sh.\n" +
    `set --${args.map((a) => " " + shQuote(a)).join("")}\n`;
  return { name: bootEntryName(kind, id), prefix, body, suffix };
}

export function bootEntryText(e: BootEntry): string {
  return e.prefix + e.body + e.suffix;
}

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
if [ -d /run ]; then ng_run=/run/natgate; else ng_run=/var/run/natgate; fi
ng_log() {
  if command -v logger >/dev/null 2>&1 && logger -t natgate -- "$1" 2>/dev/null; then
    [ ! -t 2 ] || printf 'natgate: %s\\n' "$1" >&2
  else
    printf 'natgate: %s\\n' "$1" >&2
  fi
  return 0
}
# One run at a time: init and an interface coming up may start it together.
mkdir -p "$ng_run" || exit 1
ng_i=0
until mkdir "$ng_run/boot.lock" 2>/dev/null; do
  ng_pid=$(cat "$ng_run/boot.lock/pid" 2>/dev/null)
  if [ -n "$ng_pid" ] && ! kill -0 "$ng_pid" 2>/dev/null; then rm -rf "$ng_run/boot.lock"; continue; fi
  ng_i=$((ng_i + 1))
  if [ "$ng_i" -gt 300 ]; then ng_log "another boot.sh (process $ng_pid) has been running for 5 minutes: not running the entries"; exit 1; fi
  sleep 1
done
echo $$ > "$ng_run/boot.lock/pid"
trap 'rm -rf "$ng_run/boot.lock" "$ng_run/boot.err"; rmdir "$ng_run" 2>/dev/null' EXIT
trap 'exit 1' HUP INT TERM
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

// After the firewalls, so an accept natgate puts into their chains is not wiped by their start.
const SYSTEMD_UNIT = `${OWNED}
[Unit]
Description=natgate: restore WireGuard tunnels, policy routes and port forwards
Wants=network-online.target
After=network-online.target nftables.service firewalld.service ufw.service docker.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh ${RUNNER_PATH}

[Install]
WantedBy=multi-user.target
`;

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

const PROCD_KEEP = `${NATGATE_DIR}/\n`;

export interface BootFile {
  path: string;
  /** File content, or undefined for a symlink. */
  content?: string;
  mode?: "600" | "644" | "700" | "755";
  /** Symlink target. */
  target?: string;
}

const SYSTEMD_UNIT_PATH = "/etc/systemd/system/natgate.service";
const PROCD_INIT_PATH = "/etc/init.d/natgate";

/** What the runner consists of on a host with this init system. */
export function runnerFiles(init: InitSystem): BootFile[] {
  const files: BootFile[] = [{ path: RUNNER_PATH, content: RUNNER_SH, mode: "700" }];
  if (init === "systemd") {
    files.push(
      { path: SYSTEMD_UNIT_PATH, content: SYSTEMD_UNIT, mode: "644" },
      { path: "/etc/systemd/system/multi-user.target.wants/natgate.service", target: SYSTEMD_UNIT_PATH },
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

// ---------- host scripts ----------

/**
 * Shell functions every script that reads or removes boot state includes (the apply scripts too,
 * so they are part of each entry; at boot their output is discarded).
 */
export const BOOT_SH = `
# boot_init: which init system would run natgate's boot runner here
boot_init() {
  if [ -d /run/systemd/system ]; then echo systemd
  elif [ -f /etc/openwrt_release ] || [ -x /sbin/procd ]; then echo procd
  else echo none; fi
}
# boot_state PATH: "-" (absent), "@TARGET" (a symlink), "MD5" or "MD5+x" (a file)
boot_state() {
  if [ -L "$1" ]; then printf '@%s\\n' "$(readlink "$1")"
  elif [ -f "$1" ]; then
    ng_m=$(md5sum < "$1") || return 1
    ng_m=\${ng_m%% *}
    if [ -x "$1" ]; then echo "$ng_m+x"; else echo "$ng_m"; fi
  else echo -; fi
}
# boot_show ENTRY: the init system, then "STATE PATH" for the entry, the runner and every hook
boot_show() {
  echo "@@boot"
  echo "init $(boot_init)"
  for ng_f in "${BOOT_DIR}/$1" ${RUNNER_PATHS.join(" ")}; do
    printf '%s %s\\n' "$(boot_state "$ng_f")" "$ng_f"
  done
}
# boot_remove ENTRY: the entry, and with the last one the runner, its hooks, the directories made
# for them and /etc/natgate when empty. Needs ng_lock.
boot_remove() {
  rm -f "${BOOT_DIR}/$1" "${BOOT_DIR}/$1.natgate-tmp" || return 1
  for ng_f in "${BOOT_DIR}"/*.sh; do [ -e "$ng_f" ] && return 0; done
  ng_unit=; [ -e ${SYSTEMD_UNIT_PATH} ] && ng_unit=1
  rm -f ${RUNNER_PATHS.join(" ")} || return 1
  if [ -n "$ng_unit" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload >/dev/null 2>&1 || echo "natgate: systemctl daemon-reload failed; natgate.service is removed, run it yourself" >&2
  fi
  if [ -f ${MADE_DIRS} ]; then
    sort -r ${MADE_DIRS} | while IFS= read -r ng_d; do [ -z "$ng_d" ] || rmdir "$ng_d" 2>/dev/null; done
    rm -f ${MADE_DIRS}
  fi
  rmdir "${BOOT_DIR}" "${NATGATE_DIR}" 2>/dev/null
  return 0
}
`;

function heredoc(fn: string, text: string): string {
  const end = "NATGATE_BOOT_TEXT_END";
  if (!text.endsWith("\n")) throw new Error(`boot text for ${fn} must end with a newline`);
  if (text.split("\n").includes(end)) throw new Error(`boot text for ${fn} contains the line ${end}`);
  return `${fn}() {\ncat <<'${end}'\n${text}${end}\n}\n`;
}

const INITS: InitSystem[] = ["none", "systemd", "procd"];

// Each file's text once (boot.sh is part of every init system's runner), as boot_file_<k>.
const TEXT_PATHS = [...new Set(INITS.flatMap((init) => runnerFiles(init).filter((f) => f.content !== undefined).map((f) => f.path)))];

function installLines(init: InitSystem): string {
  return runnerFiles(init)
    .map((f) => {
      const dir = f.path.slice(0, f.path.lastIndexOf("/"));
      if (f.target !== undefined) return `  boot_mkdir ${dir} && boot_link ${f.path} ${f.target} || return 1\n`;
      return `  boot_mkdir ${dir} && boot_file_${TEXT_PATHS.indexOf(f.path)} | boot_put ${f.path} ${f.mode} || return 1\n`;
    })
    .join("");
}

const RUNNER_TEXTS = TEXT_PATHS.map((path, k) => {
  const f = INITS.flatMap((init) => runnerFiles(init)).find((x) => x.path === path)!;
  return heredoc(`boot_file_${k}`, f.content!);
}).join("");

const WRITE_FUNCTIONS = `
# boot_put PATH MODE: stdin becomes PATH unless PATH already has that content and mode
boot_put() {
  ng_tmp="$1.natgate-tmp"
  cat > "$ng_tmp" && chmod "$2" "$ng_tmp" || { rm -f "$ng_tmp"; return 1; }
  if [ ! -L "$1" ] && [ "$(boot_state "$1")" = "$(boot_state "$ng_tmp")" ]; then rm -f "$ng_tmp"; return 0; fi
  mv -f "$ng_tmp" "$1"
}
# boot_link PATH TARGET
boot_link() {
  [ "$(readlink "$1" 2>/dev/null)" = "$2" ] && return 0
  rm -f "$1" && ln -s "$2" "$1"
}
# boot_mkdir DIR: what did not exist is listed in made-dirs, for the last delete to remove
boot_mkdir() {
  [ -d "$1" ] && return 0
  ng_d=$1
  ng_new=
  while [ -n "$ng_d" ] && [ ! -d "$ng_d" ]; do ng_new="$ng_d
$ng_new"; ng_d=\${ng_d%/*}; done
  mkdir -p "$1" || return 1
  case $1 in ${NATGATE_DIR}|${NATGATE_DIR}/*) return 0 ;; esac
  printf '%s' "$ng_new" >> ${MADE_DIRS}
}
# boot_install INIT: the runner and INIT's hooks, each written only when it differs
boot_install() {
  case $1 in
${INITS.map((init) => `  ${init})\n${installLines(init)}  ;;\n`).join("")}  esac
  return 0
}
# boot_write ENTRY PREFIX SUFFIX MD5: the entry is PREFIX, boot_body's text and SUFFIX
boot_write() {
  umask 077
  boot_mkdir ${BOOT_DIR} || return 1
  ng_before=$(boot_state ${SYSTEMD_UNIT_PATH})
  { printf '%s' "$2"; boot_body; printf '%s' "$3"; } | boot_put "${BOOT_DIR}/$1" 600 || return 1
  ng_got=$(boot_state "${BOOT_DIR}/$1")
  if [ "$ng_got" != "$4" ]; then
    echo "natgate: ${BOOT_DIR}/$1 came out different from what natgate computed (md5 $ng_got, expected $4); it was not removed: check the disk, then apply again" >&2
    return 1
  fi
  umask 022
  ng_init=$(boot_init)
  ng_changed=
  boot_install "$ng_init" || return 1
  [ "$ng_before" = "$(boot_state ${SYSTEMD_UNIT_PATH})" ] || ng_changed=1
  if [ "$ng_init" = systemd ] && [ -n "$ng_changed" ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload >/dev/null 2>&1 || echo "natgate: systemctl daemon-reload failed (natgate.service is written and enabled for the next boot)" >&2
  fi
  return 0
}
`;

/**
 * The script that writes an entry whose constant part is `body` (args: ENTRY PREFIX SUFFIX MD5),
 * installs the runner for the host's init system, and prints boot_show.
 */
export function persistWriteScript(body: string): string {
  return (
    HOSTSTATE_SH +
    BOOT_SH +
    WRITE_FUNCTIONS +
    RUNNER_TEXTS +
    heredoc("boot_body", body) +
    `ng_lock\nboot_write "$1" "$2" "$3" "$4" || exit 1\nboot_show "$1"\n`
  );
}

/** Removes an entry (and with the last one the runner); args: ENTRY. Prints boot_show. */
export const PERSIST_REMOVE_SH = HOSTSTATE_SH + BOOT_SH + `ng_lock\nboot_remove "$1" || exit 1\nboot_show "$1"\n`;

/** Arguments of persistWriteScript for an entry. */
export function persistWriteArgs(e: BootEntry): string[] {
  return [e.name, e.prefix, e.suffix, expectedFileState({ path: "", content: bootEntryText(e), mode: "600" })];
}

// ---------- reading back ----------

export interface BootStatus {
  init: InitSystem;
  /** path → state as boot_state prints it. */
  files: Map<string, string>;
}

/** The lines of the @@boot section boot_show prints. */
export function parseBootShow(lines: string[]): BootStatus {
  let init: InitSystem | undefined;
  const files = new Map<string, string>();
  for (const line of lines) {
    const m = /^init (systemd|procd|none)$/.exec(line.trim());
    if (m) {
      init = m[1] as InitSystem;
      continue;
    }
    const f = /^(\S*) (\/\S+)$/.exec(line.trim());
    if (f) files.set(f[2]!, f[1]!);
  }
  if (!init) throw new Error(`unexpected boot state output:\n${lines.join("\n").slice(0, 300)}`);
  return { init, files };
}

function md5(text: string): string {
  return createHash("md5").update(text, "utf8").digest("hex");
}

export function expectedFileState(f: BootFile): string {
  if (f.target !== undefined) return `@${f.target}`;
  const exec = f.mode !== undefined && /[1357]/.test(f.mode);
  return md5(f.content ?? "") + (exec ? "+x" : "");
}

/**
 * The resource's boot state as lines of `rendered`: the desired form (also what the host shows
 * when the entry and the runner are as natgate would write them) and the live form.
 */
export function bootRenderedLine(entryName: string): string {
  return `# at boot: ${RUNNER_PATH} runs ${bootEntryPath(entryName)}`;
}

export interface BootObservation {
  rendered: string[];
  drift: string[];
  facts: { boot: InitSystem | "off"; bootNote: string };
}

function fileProblem(f: BootFile, state: string | undefined): string | undefined {
  if (state === undefined || state === "-") return `${f.path} is missing`;
  if (state === expectedFileState(f)) return undefined;
  if (f.target !== undefined) return `${f.path} does not link to ${f.target}`;
  return `${f.path} is not what natgate writes (changed by hand, or from another natgate version)`;
}

const NOTES: Record<InitSystem | "off", string> = {
  systemd: `natgate.service (systemd) runs ${RUNNER_PATH} at boot`,
  procd: `/etc/init.d/natgate (procd) runs ${RUNNER_PATH} at boot, and /etc/hotplug.d/iface/99-natgate when an interface comes up`,
  none: `no init system detected: run ${RUNNER_PATH} at boot`,
  off: "persist is false: nothing restores this after a reboot until the next pulumi up",
};

/**
 * Compare the host's boot state with what the resource needs: its entry (when persisting) and the
 * runner for the host's init system; without persist, no entry. `entry` undefined = persist off.
 */
export function observeBoot(entryName: string, entry: BootEntry | undefined, status: BootStatus): BootObservation {
  const path = bootEntryPath(entryName);
  const live = status.files.get(path);
  const present = live !== undefined && live !== "-";
  if (!entry) {
    return {
      rendered: present ? [`${bootRenderedLine(entryName)} (persist is false)`] : [],
      drift: present ? [`boot entry ${path} exists but persist is false`] : [],
      facts: { boot: "off", bootNote: NOTES.off },
    };
  }
  const drift: string[] = [];
  const want: BootFile = { path, content: bootEntryText(entry), mode: "600" };
  if (!present) drift.push(`boot entry ${path} is missing: nothing would restore this after a reboot`);
  else if (live !== expectedFileState(want)) drift.push(`boot entry ${path} is out of date`);
  for (const f of runnerFiles(status.init)) {
    const p = fileProblem(f, status.files.get(f.path));
    if (p) drift.push(`boot runner: ${p}`);
  }
  const line = bootRenderedLine(entryName);
  const rendered = !present ? [] : drift.length === 0 ? [line] : [`${line} (not as natgate writes it: see drift)`];
  return { rendered, drift, facts: { boot: status.init, bootNote: NOTES[status.init] } };
}
