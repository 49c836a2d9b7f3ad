import { HOSTSTATE_SH } from "../../backends/hoststate";
import { DEADMAN_SECONDS, IPROUTE_SH, inverseBatch, parseRules, ruleLine, ruleSpec, type LiveRule } from "../../backends/iproute";
import { NFT_SH, parseNftTableJson, replaceTableTransaction, tableLines } from "../../backends/nftables";
import { SYSCTL_SH, parseSysctlShow, sysctlLine, sysctlName, type LiveSysctl, type SysctlSetting } from "../../backends/sysctl";
import type { Host } from "../common/host";
import { confirmFreshLogin, deadmanToken, runGuarded, splitSections } from "../common/host";
import { lineDrift, makeProvider, type Observation, type ResourceKind } from "../common/provider";
import { cmarkOwner, cmarkRules, cmarkSysctls, cmarkTable, cmarkTableName, renderConnmark } from "./render";
import { ConnmarkReturnPathSchema, connmarkCrossCheck, effectiveLocalSourcePriority, type ConnmarkReturnPathInputs } from "./schema";

// $1 table, $2 owner, $3 sysctl paths to show (one per line)
const SHOW_SH = `
cmark_show() {
  echo "@@nft"; nft_show ip "$1" || exit 1
  echo "@@rules"; ip_rules || exit 1
  echo "@@sysctl"
  for ng_p in $3; do sysctl_show "$ng_p" "$2"; done
}
`;

const PRELUDE = HOSTSTATE_SH + NFT_SH + IPROUTE_SH + SYSCTL_SH + SHOW_SH + "need nft nftables nftables-json\nip_need\n";

export const CMARK_READ_SH = PRELUDE + `cmark_show "$1" "$2" "$3"\n`;

/**
 * $1 table, $2 owner, $3 sysctl paths to show, $4 nft transaction, $5 ip batch, $6 "path value" to
 * hold, $7 paths to release, $8 dead-man token, $9 its seconds, $10 the batch that undoes $5
 */
export const CMARK_APPLY_SH =
  PRELUDE +
  `ng_lock
[ -z "$4" ] || nft_apply "$4" || exit 1
ip_deadman_arm "$8" "$9" "\${10}" || exit 1
ip_batch "$5" || { ip_deadman_now "$8" "\${10}"; exit 1; }
printf '%s\\n' "$6" | while read -r ng_p ng_v; do [ -z "$ng_p" ] || sysctl_hold "$ng_p" "$ng_v" "$2" || exit 1; done || exit 1
printf '%s\\n' "$7" | while read -r ng_p; do [ -z "$ng_p" ] || sysctl_release "$ng_p" "$2" || exit 1; done || exit 1
cmark_show "$1" "$2" "$3"
`;

/** $1 table, $2 owner, $3 sysctl paths (shown and released), $4 ip batch */
export const CMARK_DELETE_SH =
  PRELUDE +
  `ng_lock
nft_delete ip "$1" || exit 1
ip_batch "$4" || exit 1
for ng_p in $3; do sysctl_release "$ng_p" "$2" || exit 1; done
cmark_show "$1" "$2" "$3"
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
}

export function parseCmarkShow(stdout: string, scope: Scope): CmarkLive {
  const s = splitSections(stdout);
  if (!s.has("nft") || !s.has("rules") || !s.has("sysctl")) {
    throw new Error(`unexpected output from the ConnmarkReturnPath read script:\n${stdout.slice(0, 500)}`);
  }
  return {
    nft: parseNftTableJson(s.get("nft")!.lines.join("\n")),
    // A rule at our priority and table with fields natgate never sets is someone else's: left alone.
    rules: parseRules(s.get("rules")!.lines.join("\n"), scope.priorities, scope.tables).filter((r) => !r.extra),
    sysctls: parseSysctlShow(s.get("sysctl")!.lines),
  };
}

interface Plan {
  drift: string[];
  nftChange: boolean;
  batch: string[];
  hold: SysctlSetting[];
  release: string[];
}

export function planConnmark(i: ConnmarkReturnPathInputs, live: CmarkLive): Plan {
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

function observation(i: ConnmarkReturnPathInputs, live: CmarkLive): Observation {
  const plan = planConnmark(i, live);
  const previous: Record<string, string> = {};
  for (const s of live.sysctls) if (s.held && s.prev !== undefined) previous[sysctlName(s.path)] = s.prev;
  const wanted = new Set(cmarkSysctls(i).map((s) => s.path));
  return {
    rendered: [
      ...live.nft,
      ...live.rules.map(ruleLine),
      ...live.sysctls.filter((s) => wanted.has(s.path)).map(sysctlLine),
    ],
    drift: plan.drift,
    facts: { sysctlPrevious: previous },
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
  const out = await host.run(`reading ConnmarkReturnPath ${i.name}`, CMARK_READ_SH, [cmarkTableName(i.name), cmarkOwner(i.name), scope.sysctlPaths.join("\n")]);
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
    const live = await readLive(host, i, scope);
    const plan = planConnmark(i, live);
    if (plan.drift.length === 0) return observation(i, live);
    const token = deadmanToken(cmarkOwner(i.name));
    const out = await runGuarded(plan.batch.length > 0, () => host.run(
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
      ],
      { writes: true },
    ));
    if (plan.batch.length) await confirmFreshLogin(host, `ConnmarkReturnPath ${i.name}`, token);
    const after = parseCmarkShow(out.stdout, scope);
    const obs = observation(i, after);
    if (obs.drift.length) {
      throw new Error(`ConnmarkReturnPath ${i.name} on ${host.label} does not read back as applied:\n  ${obs.drift.join("\n  ")}`);
    }
    return obs;
  },

  async observe(host, i) {
    return observation(i, await readLive(host, i, scopeOf([i])));
  },

  async remove(host, i) {
    const scope = scopeOf([i]);
    const live = await readLive(host, i, scope);
    if (live.nft.length === 0 && live.rules.length === 0 && !live.sysctls.some((s) => s.held)) return;
    const batch = live.rules.map((r) => `rule del ${ruleSpec(r)}`).join("\n");
    const out = await host.run(
      `deleting ConnmarkReturnPath ${i.name}`,
      CMARK_DELETE_SH,
      [cmarkTableName(i.name), cmarkOwner(i.name), scope.sysctlPaths.join("\n"), batch],
      { writes: true },
    );
    const after = parseCmarkShow(out.stdout, scope);
    const left = [...after.nft, ...after.rules.map(ruleLine), ...after.sysctls.filter((s) => s.held).map((s) => `${sysctlName(s.path)} holder file`)];
    if (left.length) throw new Error(`ConnmarkReturnPath ${i.name} on ${host.label}: still present after delete:\n  ${left.join("\n  ")}`);
  },
};

export const connmarkReturnPathProvider = makeProvider(ConnmarkReturnPathKind);
