import { HOSTSTATE_SH } from "../../backends/hoststate";
import { DEADMAN_SECONDS, IPROUTE_SH, inverseBatch, parseRules, ruleLine, ruleSpec, type LiveRule } from "../../backends/iproute";
import { NFT_SH, parseNftTableJson, replaceTableTransaction, tableLines } from "../../backends/nftables";
import { BOOT_SH, bootEntry, bootEntryPath, observeBoot, parseBootShow, type BootEntry, type BootStatus } from "../../backends/persist";
import { SYSCTL_SH, parseSysctlShow, sysctlLine, sysctlName, type LiveSysctl, type SysctlSetting } from "../../backends/sysctl";
import type { Host } from "../common/host";
import { confirmFreshLogin, deadmanToken, runGuarded, shPrelude, splitSections, syncBoot } from "../common/host";
import { lineDrift, makeProvider, type Observation, type ResourceKind } from "../common/provider";
import { cmarkBootEntryName, cmarkOwner, cmarkRules, cmarkSysctls, cmarkTable, cmarkTableName, renderConnmark } from "./render";
import { ConnmarkReturnPathSchema, connmarkCrossCheck, effectiveLocalSourcePriority, type ConnmarkReturnPathInputs } from "./schema";

// $1 table, $2 owner, $3 sysctl paths to show (one per line), $4 boot entry
const SHOW_SH = `
cmark_show() {
  echo "@@nft"; nft_show ip "$1" || exit 1
  echo "@@rules"; ip_rules || exit 1
  echo "@@sysctl"
  for ng_p in $3; do sysctl_show "$ng_p" "$2"; done
  boot_show "$4"
}
# cmark_rules_ensure SPECS (boot entries): ip rule add each; one that is there already counts as
# added (ip rule has no replace, and the kernel refuses a duplicate), so a second run changes nothing
cmark_rules_ensure() {
  printf '%s\\n' "$1" | while IFS= read -r ng_r; do
    [ -n "$ng_r" ] || continue
    set -f
    ng_e=$(ip rule add $ng_r 2>&1) || case $ng_e in
      *"File exists"*) ;;
      *) printf 'natgate: ip rule add %s failed: %s\\n' "$ng_r" "$ng_e" >&2; exit 1 ;;
    esac
  done
}
`;

const PRELUDE = HOSTSTATE_SH + NFT_SH + IPROUTE_SH + SYSCTL_SH + BOOT_SH + SHOW_SH + "need nft nftables nftables-json\nip_need\n";

/** $1 table, $2 owner, $3 sysctl paths, $4 boot entry */
export const CMARK_READ_SH = PRELUDE + `cmark_show "$1" "$2" "$3" "$4"\n`;

/**
 * $1 table, $2 owner, $3 sysctl paths to show, $4 nft transaction, $5 ip batch, $6 "path value" to
 * hold, $7 paths to release, $8 dead-man token, $9 its seconds, $10 the batch that undoes $5,
 * $11 boot entry; boot entries only: $12 rules to ensure (cmark_rules_ensure)
 */
export const CMARK_APPLY_SH =
  PRELUDE +
  `ng_lock
[ -z "$4" ] || nft_apply "$4" || exit 1
ip_deadman_arm "$8" "$9" "\${10}" || exit 1
ip_batch "$5" || { ip_deadman_now "$8" "\${10}"; exit 1; }
[ -z "\${12}" ] || cmark_rules_ensure "\${12}" || exit 1
printf '%s\\n' "$6" | while read -r ng_p ng_v; do [ -z "$ng_p" ] || sysctl_hold "$ng_p" "$ng_v" "$2" || exit 1; done || exit 1
printf '%s\\n' "$7" | while read -r ng_p; do [ -z "$ng_p" ] || sysctl_release "$ng_p" "$2" || exit 1; done || exit 1
cmark_show "$1" "$2" "$3" "\${11}"
`;

/** $1 table, $2 owner, $3 sysctl paths (shown and released), $4 ip batch, $5 boot entry */
export const CMARK_DELETE_SH =
  PRELUDE +
  `ng_lock
nft_delete ip "$1" || exit 1
ip_batch "$4" || exit 1
for ng_p in $3; do sysctl_release "$ng_p" "$2" || exit 1; done
boot_remove "$5" || exit 1
cmark_show "$1" "$2" "$3" "$5"
`;

/** Which rules and sysctls to look at: this resource's, and during an update also the old inputs'. */
interface Scope {
  priorities: number[];
  tables: number[];
  sysctlPaths: string[];
}

function scopeOf(list: ConnmarkReturnPathInputs[]): Scope {
  const s: Scope = { priorities: [], tables: [], sysctlPaths: [] };
  const add = <T>(arr: T[], v: T) => arr.includes(v) || arr.push(v);
  for (const i of list) {
    add(s.priorities, i.priority);
    if (i.localSource !== undefined) add(s.priorities, effectiveLocalSourcePriority(i));
    add(s.tables, i.table);
    // rp_filter is owned even when looseRpFilter is now off, so turning it off restores it.
    add(s.sysctlPaths, `net/ipv4/conf/${i.tunnelInterface}/rp_filter`);
  }
  return s;
}

export interface CmarkLive {
  nft: string[];
  rules: LiveRule[];
  sysctls: LiveSysctl[];
  boot: BootStatus;
}

export function parseCmarkShow(stdout: string, scope: Scope): CmarkLive {
  const s = splitSections(stdout);
  if (!s.has("nft") || !s.has("rules") || !s.has("sysctl") || !s.has("boot")) {
    throw new Error(`unexpected output from the ConnmarkReturnPath read script:\n${stdout.slice(0, 500)}`);
  }
  return {
    nft: parseNftTableJson(s.get("nft")!.lines.join("\n")),
    // A rule at our priority and table with fields natgate never sets is someone else's: left alone.
    rules: parseRules(s.get("rules")!.lines.join("\n"), scope.priorities, scope.tables).filter((r) => !r.extra),
    sysctls: parseSysctlShow(s.get("sysctl")!.lines),
    boot: parseBootShow(s.get("boot")!.lines),
  };
}

interface Plan {
  drift: string[];
  nftChange: boolean;
  batch: string[];
  hold: SysctlSetting[];
  release: string[];
}

export function planConnmark(i: ConnmarkReturnPathInputs, live: Omit<CmarkLive, "boot">): Plan {
  const nftDrift = lineDrift("nft", tableLines(cmarkTable(i)), live.nft);
  const remaining = [...live.rules];
  const add: string[] = [];
  for (const r of cmarkRules(i)) {
    const k = remaining.findIndex((l) => ruleLine(l) === ruleLine(r));
    if (k >= 0) remaining.splice(k, 1);
    else add.push(ruleSpec(r));
  }
  const del = remaining.map(ruleSpec);
  const drift = [...nftDrift];
  for (const a of add) drift.push(`missing ip rule: ip rule add ${a}`);
  for (const d of del) drift.push(`unexpected ip rule: ip rule add ${d}`);
  const wanted = cmarkSysctls(i);
  const hold: SysctlSetting[] = [];
  for (const w of wanted) {
    const l = live.sysctls.find((s) => s.path === w.path);
    if (!l || l.value !== w.value) {
      drift.push(`${sysctlName(w.path)} is ${l?.value ?? "missing"}, the return path needs ${w.value}`);
      hold.push(w);
    } else if (!l.held) {
      drift.push(`${sysctlName(w.path)} is not recorded as set by this resource (it would not be restored on delete)`);
      hold.push(w);
    }
  }
  const release = live.sysctls.filter((l) => l.held && !wanted.some((w) => w.path === l.path)).map((l) => l.path);
  for (const r of release) drift.push(`${sysctlName(r)} is still held by this resource`);
  return {
    drift,
    nftChange: nftDrift.length > 0,
    // Deletes first: an old rule identical in priority and table to a new one would be matched by `del`.
    batch: [...del.map((d) => `rule del ${d}`), ...add.map((a) => `rule add ${a}`)],
    hold,
    release,
  };
}

/** What rebuilds the return path at boot: the apply script with the arguments that make it from nothing. */
export function cmarkBootEntry(i: ConnmarkReturnPathInputs): BootEntry {
  const scope = scopeOf([i]);
  const args = [
    cmarkTableName(i.name),
    cmarkOwner(i.name),
    scope.sysctlPaths.join("\n"),
    replaceTableTransaction(cmarkTable(i)),
    "",
    cmarkSysctls(i).map((h) => `${h.path} ${h.value}`).join("\n"),
    "",
    // no dead-man switch at boot: there is no SSH session to lose
    "",
    "",
    "",
    cmarkBootEntryName(i.name),
    cmarkRules(i).map(ruleSpec).join("\n"),
  ];
  return bootEntry("ret", i.name, `ConnmarkReturnPath ${i.name}`, args, shPrelude() + CMARK_APPLY_SH);
}

function observation(i: ConnmarkReturnPathInputs, live: CmarkLive): Observation {
  const plan = planConnmark(i, live);
  const previous: Record<string, string> = {};
  for (const s of live.sysctls) if (s.held && s.prev !== undefined) previous[sysctlName(s.path)] = s.prev;
  const wanted = new Set(cmarkSysctls(i).map((s) => s.path));
  const boot = observeBoot(cmarkBootEntryName(i.name), i.persist ? cmarkBootEntry(i) : undefined, live.boot);
  return {
    rendered: [
      ...live.nft,
      ...live.rules.map(ruleLine),
      ...live.sysctls.filter((s) => wanted.has(s.path)).map(sysctlLine),
      ...boot.rendered,
    ],
    drift: [...plan.drift, ...boot.drift],
    facts: { sysctlPrevious: previous, ...boot.facts },
  };
}

function oldInputs(olds: Record<string, unknown> | undefined): ConnmarkReturnPathInputs[] {
  if (!olds) return [];
  const r = ConnmarkReturnPathSchema.safeParse(
    Object.fromEntries(Object.keys(ConnmarkReturnPathSchema.shape).filter((k) => olds[k] !== undefined).map((k) => [k, olds[k]])),
  );
  return r.success ? [r.data] : [];
}

async function readLive(host: Host, i: ConnmarkReturnPathInputs, scope: Scope): Promise<CmarkLive> {
  const out = await host.run(`reading ConnmarkReturnPath ${i.name}`, CMARK_READ_SH, [
    cmarkTableName(i.name),
    cmarkOwner(i.name),
    scope.sysctlPaths.join("\n"),
    cmarkBootEntryName(i.name),
  ]);
  return parseCmarkShow(out.stdout, scope);
}

export const ConnmarkReturnPathKind: ResourceKind<ConnmarkReturnPathInputs> = {
  kind: "ConnmarkReturnPath",
  schema: ConnmarkReturnPathSchema,
  crossCheck: connmarkCrossCheck,
  render: renderConnmark,
  identityFields: [],
  // A renamed resource would add the same ip rules (same priority, mark, table) that the old
  // one's delete then removes: delete first.
  deleteBeforeReplace: true,

  async converge(host, i, olds) {
    const scope = scopeOf([i, ...oldInputs(olds)]);
    let after = await readLive(host, i, scope);
    const plan = planConnmark(i, after);
    if (plan.drift.length > 0) after = await apply(host, i, scope, plan);
    after.boot = await syncBoot(host, `ConnmarkReturnPath ${i.name}`, cmarkBootEntryName(i.name), i.persist ? cmarkBootEntry(i) : undefined, after.boot);
    return observation(i, after);
  },

  async observe(host, i) {
    return observation(i, await readLive(host, i, scopeOf([i])));
  },

  async remove(host, i) {
    const scope = scopeOf([i]);
    const live = await readLive(host, i, scope);
    const entry = bootEntryPath(cmarkBootEntryName(i.name));
    const hasEntry = (s: CmarkLive) => (s.boot.files.get(entry) ?? "-") !== "-";
    if (live.nft.length === 0 && live.rules.length === 0 && !live.sysctls.some((s) => s.held) && !hasEntry(live)) return;
    const batch = live.rules.map((r) => `rule del ${ruleSpec(r)}`).join("\n");
    const out = await host.run(
      `deleting ConnmarkReturnPath ${i.name}`,
      CMARK_DELETE_SH,
      [cmarkTableName(i.name), cmarkOwner(i.name), scope.sysctlPaths.join("\n"), batch, cmarkBootEntryName(i.name)],
      { writes: true },
    );
    const after = parseCmarkShow(out.stdout, scope);
    const left = [
      ...after.nft,
      ...after.rules.map(ruleLine),
      ...after.sysctls.filter((s) => s.held).map((s) => `${sysctlName(s.path)} holder file`),
      ...(hasEntry(after) ? [entry] : []),
    ];
    if (left.length) throw new Error(`ConnmarkReturnPath ${i.name} on ${host.label}: still present after delete:\n  ${left.join("\n  ")}`);
  },
};

/** Runs the plan (non-empty) behind the dead-man switch; returns the state read back. */
async function apply(host: Host, i: ConnmarkReturnPathInputs, scope: Scope, plan: Plan): Promise<CmarkLive> {
  const token = deadmanToken(cmarkOwner(i.name));
  const out = await runGuarded(plan.batch.length > 0, () =>
    host.run(
      `applying ConnmarkReturnPath ${i.name}`,
      CMARK_APPLY_SH,
      [
        cmarkTableName(i.name),
        cmarkOwner(i.name),
        scope.sysctlPaths.join("\n"),
        plan.nftChange ? replaceTableTransaction(cmarkTable(i)) : "",
        plan.batch.join("\n"),
        plan.hold.map((h) => `${h.path} ${h.value}`).join("\n"),
        plan.release.join("\n"),
        token,
        String(DEADMAN_SECONDS),
        inverseBatch(plan.batch).join("\n"),
        cmarkBootEntryName(i.name),
      ],
      { writes: true },
    ),
  );
  if (plan.batch.length) await confirmFreshLogin(host, `ConnmarkReturnPath ${i.name}`, token);
  return parseCmarkShow(out.stdout, scope);
}

export const connmarkReturnPathProvider = makeProvider(ConnmarkReturnPathKind);
