/**
 * OpenWrt fw4 include files. fw4 rebuilds `table inet fw4` on every reload and restart (LuCI's
 * "Save & Apply", interface events), which removes any rule natgate inserted into its chains. It
 * re-applies the `*.nft` files under /usr/share/nftables.d/chain-pre/<chain>/ inside the same
 * transaction, so an accept written there is back the moment the chain is, with no gap and no
 * action of natgate's. natgate writes one file per resource and chain, and also inserts the same
 * rules live, so the path works now without reloading the router's firewall.
 *
 * natgate's own tables are kept the same way: fw4 includes ruleset-post/*.nft after its table in
 * every start, restart and reload, so a file there holding the table's replace transaction (add,
 * delete, define) brings the table back after `/etc/init.d/firewall stop` (fw4 flush, which deletes
 * every table) and start. The price: each fw4 reload replaces the table, so its counters restart.
 */
import { NatgateError } from "../ssh/errors";
import type { ChainRef } from "./nftables";

export const FW4_INCLUDE_DIR = "/usr/share/nftables.d";

/** A file natgate owns in fw4's include directory: its path and the rules it holds. */
export interface Fw4Include {
  path: string;
  rules: string[];
}

/** What the host has: whether fw4 re-applies include files here, and natgate's files for one resource. */
export interface Fw4Live {
  available: boolean;
  files: Map<string, string[]>;
}

export const NO_FW4: Fw4Live = { available: false, files: new Map() };

/** Whether an accept for `chain` belongs in an fw4 include file: fw4 rebuilds only its own table. */
export function isFw4Chain(c: ChainRef): boolean {
  return c.family === "inet" && c.table === "fw4" && /^[A-Za-z0-9_]+$/.test(c.chain);
}

export function fw4IncludePath(chain: string, owner: string): string {
  if (!/^[A-Za-z0-9_]+$/.test(chain) || !/^[a-z0-9_]+$/.test(owner)) throw new NatgateError("internal", `fw4 include for chain ${JSON.stringify(chain)} of ${JSON.stringify(owner)}: characters natgate does not write`);
  return `${FW4_INCLUDE_DIR}/chain-pre/${chain}/natgate-${owner}.nft`;
}

/** Where fw4 keeps natgate's table `table` across its flush: included after its own table. */
export function fw4TablePath(table: string): string {
  if (!/^natgate_[a-z0-9_]+$/.test(table)) throw new NatgateError("internal", `fw4 include for table ${JSON.stringify(table)}: characters natgate does not write`);
  return `${FW4_INCLUDE_DIR}/ruleset-post/${table}.nft`;
}

/** The include file that re-creates an owned table: its replace transaction, a command per line. */
export function fw4TableInclude(table: string, transaction: string): Fw4Include {
  return { path: fw4TablePath(table), rules: transaction.split("\n").filter((l) => l.trim() !== "") };
}

/** Whether a file is one of the chains' accept files (not a table's). */
export function isFw4ChainInclude(path: string): boolean {
  return path.startsWith(`${FW4_INCLUDE_DIR}/chain-pre/`);
}

/**
 * The include files for these accepts (lines as `nft insert rule inet fw4 CHAIN RULE`), one per
 * chain, rules in the order given.
 */
export function fw4Includes(owner: string, accepts: (ChainRef & { line: string })[]): Fw4Include[] {
  const byPath = new Map<string, string[]>();
  for (const a of accepts) {
    if (!isFw4Chain(a)) continue;
    const prefix = `nft insert rule inet fw4 ${a.chain} `;
    if (!a.line.startsWith(prefix)) throw new NatgateError("internal", `fw4 include: unexpected accept line ${a.line}`);
    const path = fw4IncludePath(a.chain, owner);
    byPath.set(path, [...(byPath.get(path) ?? []), a.line.slice(prefix.length)]);
  }
  return [...byPath].map(([path, rules]) => ({ path, rules }));
}

/** How a file appears in rendered lines: one line per rule. */
export function fw4IncludeLines(path: string, rules: string[]): string[] {
  return rules.map((r) => `fw4 include ${path}: ${r}`);
}

/** The difference between the files wanted and those on the host. */
export function fw4Change(want: Fw4Include[], live: Fw4Live): { drift: string[]; del: string[]; put: Fw4Include[] } {
  const drift: string[] = [];
  const put: Fw4Include[] = [];
  for (const w of want) {
    const got = live.files.get(w.path);
    if (got === undefined) drift.push(`missing fw4 include ${w.path} (fw4 re-applies it on every reload; without it the next reload drops the accept)`);
    else if (got.join("\n") !== w.rules.join("\n")) drift.push(`fw4 include ${w.path} differs: has ${JSON.stringify(got)}, wants ${JSON.stringify(w.rules)}`);
    else continue;
    put.push(w);
  }
  const del = [...live.files.keys()].filter((p) => !want.some((w) => w.path === p));
  drift.push(...del.map((p) => `unexpected fw4 include ${p}`));
  return { drift, del, put };
}

/** `PATH RULE` per line, for fw4_sync (paths have no spaces). */
export function fw4PutRecords(put: Fw4Include[]): string {
  return put.flatMap((f) => f.rules.map((r) => `${f.path} ${r}`)).join("\n");
}

/** Reads the `@@fw4` section of fw4_show. */
export function parseFw4Show(section: { arg: string; lines: string[] } | undefined): Fw4Live {
  if (!section) return NO_FW4;
  const files = new Map<string, string[]>();
  let cur: string[] | undefined;
  for (const l of section.lines) {
    if (l.startsWith("file ")) files.set(l.slice(5), (cur = []));
    else if (l.startsWith("| ") && cur) {
      const rule = l.slice(2);
      if (rule !== "" && !rule.startsWith("#")) cur.push(rule);
    }
  }
  return { available: section.arg === "yes", files };
}

const MARK = ".natgate-made-dir";

/** Shell functions: fw4_show OWNER and fw4_sync DEL PUT. */
export const FW4_SH = `
# fw4_show OWNER [TABLE]: "@@fw4 yes|no" (whether fw4 re-applies include files here), then natgate's
# files for OWNER's accepts (none for an empty OWNER) and for its table TABLE
fw4_show() {
  if [ -d ${FW4_INCLUDE_DIR} ] && command -v fw4 >/dev/null 2>&1; then echo "@@fw4 yes"; else echo "@@fw4 no"; fi
  for ng_f in ${FW4_INCLUDE_DIR}/chain-pre/*/natgate-"\${1:-/}".nft \${2:+${FW4_INCLUDE_DIR}/ruleset-post/$2.nft}; do
    [ -f "$ng_f" ] || continue
    echo "file $ng_f"
    sed 's/^/| /' "$ng_f"
  done
}
# fw4_mkdir DIR: a directory natgate makes carries a mark, so the last delete removes it again
fw4_mkdir() {
  [ -d "$1" ] && return 0
  mkdir "$1" && : > "$1/${MARK}"
}
# fw4_rmdirs FILE: the file's directory and its parent, where natgate made them and they hold nothing else
fw4_rmdirs() {
  ng_d=\${1%/*}
  for ng_x in 1 2; do
    [ -f "$ng_d/${MARK}" ] || return 0
    [ "$(ls -A "$ng_d")" = "${MARK}" ] || return 0
    rm -f "$ng_d/${MARK}" && rmdir "$ng_d" || return 1
    ng_d=\${ng_d%/*}
  done
}
# fw4_sync DEL PUT: removes the files in DEL, writes PUT ("PATH RULE" lines), then lets fw4 check
# the ruleset it would load with them; a file fw4 rejects would break the router's next reload, so
# on failure the new files are removed again.
fw4_sync() {
  for ng_f in $1; do rm -f "$ng_f" && fw4_rmdirs "$ng_f" || return 1; done
  [ -n "$2" ] || return 0
  ng_paths=$(printf '%s\\n' "$2" | while IFS= read -r ng_l; do echo "\${ng_l%% *}"; done | sort -u)
  for ng_f in $ng_paths; do
    ng_d=\${ng_f%/*}
    fw4_mkdir "\${ng_d%/*}" && fw4_mkdir "$ng_d" || return 1
    {
      echo "# natgate: written by pulumi up, removed by the resource's delete. fw4 includes it on every reload."
      printf '%s\\n' "$2" | while IFS= read -r ng_l; do
        if [ "\${ng_l%% *}" = "$ng_f" ]; then printf '%s\\n' "\${ng_l#* }"; fi
      done
    } > "$ng_f.natgate-tmp" && mv -f "$ng_f.natgate-tmp" "$ng_f" || { rm -f "$ng_f.natgate-tmp"; return 1; }
  done
  if nft list table inet fw4 >/dev/null 2>&1 && ! ng_out=$(fw4 check 2>&1); then
    for ng_f in $ng_paths; do rm -f "$ng_f"; fw4_rmdirs "$ng_f"; done
    printf 'natgate: fw4 check rejected the ruleset with natgate'"'"'s include files (removed again): %s\\n' "$ng_out" >&2
    return 1
  fi
  return 0
}
`;
