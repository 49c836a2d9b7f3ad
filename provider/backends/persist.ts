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
import { NatgateError } from "../ssh/errors";
import { HOSTSTATE_SH } from "./hoststate";

import { BOOT_DIR, MADE_DIRS, NATGATE_DIR, bootEntryText, type BootEntry, type InitSystem } from "./bootPaths";
import { runnerFiles, RUNNER_PATHS, SYSTEMD_UNIT_PATH, type BootFile } from "./bootRunner";
import { expectedFileState } from "./bootObserve";

export * from "./bootPaths";
export * from "./bootRunner";
export * from "./bootObserve";

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
# boot_states PATH...: "STATE PATH" for each PATH, STATE "-" (absent), "@TARGET" (a symlink), "MD5"
# or "MD5+x" (a file), with one md5sum for all the files: boot_show lists ${RUNNER_PATHS.length + 1} paths in every
# read and apply, and a subshell and an md5sum per path were ~30 processes of each. A file md5sum
# cannot read gets no line.
boot_states() {
  ng_n=$#
  for ng_f in "$@"; do
    if [ -L "$ng_f" ]; then printf '@%s %s\\n' "$(readlink "$ng_f")" "$ng_f"
    elif [ -f "$ng_f" ]; then set -- "$@" "$ng_f"
    else printf '%s %s\\n' - "$ng_f"; fi
  done
  shift "$ng_n"
  [ $# -gt 0 ] || return 0
  md5sum -- "$@" 2>/dev/null | while read -r ng_m ng_f; do
    if [ -x "$ng_f" ]; then printf '%s+x %s\\n' "$ng_m" "$ng_f"; else printf '%s %s\\n' "$ng_m" "$ng_f"; fi
  done
}
# boot_show ENTRY: the init system, then "STATE PATH" for the entry, the runner and every hook
boot_show() {
  echo "@@boot"
  echo "init $(boot_init)"
  boot_states "${BOOT_DIR}/$1" ${RUNNER_PATHS.join(" ")}
}
# boot_remove ENTRY: the entry, and with the last one the runner, its hooks, the directories made
# for them and /etc/natgate when empty. Needs ng_lock.
boot_remove() {
  rm -f "${BOOT_DIR}/$1" "${BOOT_DIR}/$1.natgate-tmp" || return 1
  for ng_f in "${BOOT_DIR}"/*.sh; do [ -e "$ng_f" ] && return 0; done
  ng_unit=; [ -e ${SYSTEMD_UNIT_PATH} ] && ng_unit=1
  if [ -n "$ng_unit" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl stop natgate-ufw.path >/dev/null 2>&1
  fi
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
  if (!text.endsWith("\n")) throw new NatgateError("internal", `boot text for ${fn} must end with a newline`);
  if (text.split("\n").includes(end)) throw new NatgateError("internal", `boot text for ${fn} contains the line ${end}`);
  return `${fn}() {\ncat <<'${end}'\n${text}${end}\n}\n`;
}

const INITS: InitSystem[] = ["none", "systemd", "procd"];

const SYSTEMD_FILES = runnerFiles("systemd").filter((f) => f.content !== undefined && f.path.startsWith("/etc/systemd/")).map((f) => f.path);

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

/** What boot_states prints for the runner of `init` when every file is as natgate writes it: the symlinks first, then the files by one md5sum, each in list order. */
function runnerCurrent(init: InitSystem): string {
  const files = runnerFiles(init);
  const line = (f: BootFile) => `${expectedFileState(f)} ${f.path}`;
  const lines = [...files.filter((f) => f.target !== undefined), ...files.filter((f) => f.target === undefined)].map(line);
  if (lines.some((l) => !/^[@0-9a-f+/.\w-]+ [/\w.@-]+$/.test(l))) throw new NatgateError("internal", `runner state for ${init} does not fit in a quoted shell word`);
  return lines.join("\n");
}

const RUNNER_TEXTS = TEXT_PATHS.map((path, k) => {
  const f = INITS.flatMap((init) => runnerFiles(init)).find((x) => x.path === path)!;
  return heredoc(`boot_file_${k}`, f.content!);
}).join("");

export const WRITE_FUNCTIONS = `
# boot_put PATH MODE: stdin becomes PATH unless PATH already has that content and mode
boot_put() {
  ng_tmp="$1.natgate-tmp"
  cat > "$ng_tmp" && chmod "$2" "$ng_tmp" || { rm -f "$ng_tmp"; return 1; }
  if boot_same "$1" "$ng_tmp"; then rm -f "$ng_tmp"; return 0; fi
  mv -f "$ng_tmp" "$1"
}
# boot_same A B: regular files A (not a symlink) and B have the same content and execute bit, by one
# md5sum of both (boot_put runs for every runner file at every entry written)
boot_same() {
  [ -f "$1" ] && [ ! -L "$1" ] || return 1
  { [ -x "$1" ] && [ -x "$2" ]; } || { [ ! -x "$1" ] && [ ! -x "$2" ]; } || return 1
  md5sum -- "$1" "$2" 2>/dev/null | { read -r ng_a ng_r; read -r ng_b ng_r; [ -n "$ng_a" ] && [ "$ng_a" = "$ng_b" ]; }
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
# boot_runner_current INIT: the runner and INIT's hooks are each what natgate writes (one md5sum for
# all): boot_install has nothing to do then, and its ~40 processes for every entry written are spared
boot_runner_current() {
  case $1 in
${INITS.map((init) => `  ${init}) [ "$(boot_states ${runnerFiles(init).map((f) => f.path).join(" ")})" = '${runnerCurrent(init)}' ] ;;
`).join("")}  esac
}
# boot_install INIT: the runner and INIT's hooks, each written only when it differs
boot_install() {
  case $1 in
${INITS.map((init) => `  ${init})\n${installLines(init)}  ;;\n`).join("")}  esac
  return 0
}
# boot_systemd_state: what systemd reads of natgate's (its unit and drop-ins), to know when to daemon-reload
boot_systemd_state() {
  boot_states ${SYSTEMD_FILES.join(" ")}
}
# boot_write ENTRY PREFIX SUFFIX MD5: the entry is PREFIX, boot_body's text and SUFFIX
boot_write() {
  umask 077
  boot_mkdir ${BOOT_DIR} || return 1
  ng_before=$(boot_systemd_state)
  { printf '%s' "$2"; boot_body; printf '%s' "$3"; } | boot_put "${BOOT_DIR}/$1" 600 || return 1
  ng_got=$(boot_states "${BOOT_DIR}/$1")
  ng_got=\${ng_got%% *}
  if [ "$ng_got" != "$4" ]; then
    echo "natgate: ${BOOT_DIR}/$1 came out different from what natgate computed (md5 $ng_got, expected $4); it was not removed: check the disk, then apply again" >&2
    return 1
  fi
  umask 022
  ng_init=$(boot_init)
  ng_changed=
  boot_runner_current "$ng_init" || boot_install "$ng_init" || return 1
  [ "$ng_before" = "$(boot_systemd_state)" ] || ng_changed=1
  if [ "$ng_init" = systemd ] && [ -n "$ng_changed" ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload >/dev/null 2>&1 || echo "natgate: systemctl daemon-reload failed (natgate.service is written and enabled for the next boot)" >&2
    # enabled for the next boot by its link; active from now on
    systemctl start natgate-ufw.path >/dev/null 2>&1 || echo "natgate: systemctl start natgate-ufw.path failed (it is enabled for the next boot)" >&2
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

