import { NatgateError } from "../../ssh/errors";
import { encodeArgs, type ScriptArgs } from "../../backends/args";
import { CMARK_APPLY_SH, CMARK_DELETE_SH, CMARK_READ_SH } from "../../backends/cmarkSh";
import { DEADMAN_SECONDS, inverseBatch, parseRules, ruleLine, ruleSpec, type LiveRule } from "../../backends/iproute";
import { NO_IPT_CHANGE, iptChange, iptReturnPathChains, liveIptLines, parseIptTable, type IptChange, type LiveIptChain } from "../../backends/iptablesFirewall";
import { parseNftTableJson, replaceTableTransaction } from "../../backends/nftables";
import { bootEntry, bootEntryPath, observeBoot, parseBootShow, type BootEntry, type BootStatus } from "../../backends/persist";
import { parseSysctlShow, sysctlLine, sysctlName, type LiveSysctl, type SysctlSetting } from "../../backends/sysctl";
import { parseFirewallFacts, type Backend, type FirewallFacts } from "../../plan/firewall";
import { observedBackend, requireBackend } from "../common/backend";
import type { Host } from "../common/host";
import { confirmFreshLogin, deadmanToken, runGuarded, shPrelude, splitSections, syncBoot } from "../common/host";
import { hostProvider, lineDrift, type Observation, type ResourceKind } from "../common/hostKind";
import { isLegacyState } from "../common/version";
import { cmarkBootEntryName, cmarkChainNames, cmarkFirewall, cmarkFirewallLines, cmarkOwner, cmarkRules, cmarkSysctls, cmarkTable, cmarkTableName, renderConnmark } from "./render";
import { ConnmarkReturnPathSchema, connmarkCrossCheck, effectiveLocalSourcePriority, type ConnmarkReturnPathInputs } from "./schema";

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
  facts: FirewallFacts;
  nft: string[];
  ipt: LiveIptChain[];
  rules: LiveRule[];
  sysctls: LiveSysctl[];
  boot: BootStatus;
}

export function parseCmarkShow(stdout: string, scope: Scope, name: string): CmarkLive {
  const s = splitSections(stdout);
  if (!s.has("fwfacts") || !s.has("rules") || !s.has("sysctl") || !s.has("boot")) {
    throw new NatgateError("unexpected-output", `unexpected output from the ConnmarkReturnPath read script:\n${stdout.slice(0, 500)}`);
  }
  return {
    facts: parseFirewallFacts(s.get("fwfacts")!.lines),
    nft: parseNftTableJson(s.get("nft")?.lines.join("\n") ?? ""),
    ipt: parseIptTable("mangle", s.get("iptfw_mangle")?.lines.join("\n") ?? "", cmarkChainNames(name)),
    // A rule at our priority and table with fields natgate never sets is someone else's: left alone.
    rules: parseRules(s.get("rules")!.lines.join("\n"), scope.priorities, scope.tables).filter((r) => !r.extra),
    sysctls: parseSysctlShow(s.get("sysctl")!.lines),
    boot: parseBootShow(s.get("boot")!.lines),
  };
}

interface Plan {
  drift: string[];
  nft: string;
  ipt: IptChange;
  batch: string[];
  hold: SysctlSetting[];
  release: string[];
}

const liveLines = (live: Pick<CmarkLive, "ipt">, name: string) => liveIptLines(live.ipt, cmarkChainNames(name));

export function planConnmark(i: ConnmarkReturnPathInputs, live: Omit<CmarkLive, "boot">, backend: Backend): Plan {
  const nftDrift = lineDrift("nft", backend === "nftables" ? cmarkFirewallLines(i, "nftables") : [], live.nft);
  const iptDrift = lineDrift("iptables", backend === "iptables" ? cmarkFirewallLines(i, "iptables") : [], liveLines(live, i.name));
  const table = cmarkTableName(i.name);
  const remaining = [...live.rules];
  const add: string[] = [];
  for (const r of cmarkRules(i)) {
    const k = remaining.findIndex((l) => ruleLine(l) === ruleLine(r));
    if (k >= 0) remaining.splice(k, 1);
    else add.push(ruleSpec(r));
  }
  const del = remaining.map(ruleSpec);
  const drift = [...nftDrift, ...iptDrift];
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
    nft: nftDrift.length === 0 ? "" : backend === "nftables" ? replaceTableTransaction(cmarkTable(i)) : `add table ip ${table}\ndelete table ip ${table}\n`,
    ipt: iptDrift.length ? iptChange(backend === "iptables" ? iptReturnPathChains(cmarkFirewall(i)) : [], live.ipt) : NO_IPT_CHANGE,
    // Deletes first: an old rule identical in priority and table to a new one would be matched by `del`.
    batch: [...del.map((d) => `rule del ${d}`), ...add.map((a) => `rule add ${a}`)],
    hold,
    release,
  };
}

/** The apply script's record for a plan. */
function applyArgs(i: ConnmarkReturnPathInputs, scope: Scope, p: Plan, extra: ScriptArgs): string[] {
  return encodeArgs({
    table: cmarkTableName(i.name),
    owner: cmarkOwner(i.name),
    entry: cmarkBootEntryName(i.name),
    sysctls: scope.sysctlPaths.join("\n"),
    nft: p.nft,
    ...p.ipt,
    batch: p.batch.join("\n"),
    hold: p.hold.map((h) => `${h.path} ${h.value}`).join("\n"),
    release: p.release.join("\n"),
    ...extra,
  });
}

/**
 * What rebuilds the return path at boot: its plan against an empty host, through the same apply
 * script, with the ip rules ensured (an existing one counts as added) instead of a batch, and no
 * dead-man switch (there is no SSH session to lose).
 */
export function cmarkBootEntry(i: ConnmarkReturnPathInputs, facts: FirewallFacts, backend: Backend): BootEntry {
  const p = planConnmark(i, { facts, nft: [], ipt: [], rules: [], sysctls: [] }, backend);
  const args = applyArgs(i, scopeOf([i]), { ...p, batch: [], release: [] }, { rules_ensure: cmarkRules(i).map(ruleSpec).join("\n") });
  return bootEntry("ret", i.name, `ConnmarkReturnPath ${i.name}`, args, shPrelude() + CMARK_APPLY_SH);
}

function observation(i: ConnmarkReturnPathInputs, live: CmarkLive, backend: Backend, legacy = false): Observation {
  const plan = planConnmark(i, live, backend);
  const previous: Record<string, string> = {};
  for (const s of live.sysctls) if (s.held && s.prev !== undefined) previous[sysctlName(s.path)] = s.prev;
  const wanted = new Set(cmarkSysctls(i).map((s) => s.path));
  const boot = observeBoot(cmarkBootEntryName(i.name), i.persist ? cmarkBootEntry(i, live.facts, backend) : undefined, live.boot, legacy);
  const drift = [...plan.drift, ...boot.drift];
  return {
    rendered: [
      ...live.nft,
      ...liveLines(live, i.name),
      ...live.rules.map(ruleLine),
      ...live.sysctls.filter((s) => wanted.has(s.path)).map(sysctlLine),
      ...boot.rendered,
    ],
    desired: renderConnmark(i, backend),
    drift,
    facts: { activeBackend: backend, sysctlPrevious: previous, ...boot.facts },
  };
}

function oldInputs(olds: Record<string, unknown> | undefined): ConnmarkReturnPathInputs[] {
  if (!olds) return [];
  const r = ConnmarkReturnPathSchema.safeParse(
    Object.fromEntries(Object.keys(ConnmarkReturnPathSchema.shape).filter((k) => olds[k] !== undefined).map((k) => [k, olds[k]])),
  );
  return r.success ? [r.data] : [];
}

const showArgs = (i: ConnmarkReturnPathInputs, scope: Scope): ScriptArgs => ({
  table: cmarkTableName(i.name),
  owner: cmarkOwner(i.name),
  entry: cmarkBootEntryName(i.name),
  sysctls: scope.sysctlPaths.join("\n"),
});

async function readLive(host: Host, i: ConnmarkReturnPathInputs, scope: Scope): Promise<CmarkLive> {
  const out = await host.run(`reading ConnmarkReturnPath ${i.name}`, CMARK_READ_SH, encodeArgs(showArgs(i, scope)));
  return parseCmarkShow(out.stdout, scope, i.name);
}



export const ConnmarkReturnPathKind: ResourceKind<ConnmarkReturnPathInputs> = {
  kind: "ConnmarkReturnPath",
  schema: ConnmarkReturnPathSchema,
  crossCheck: connmarkCrossCheck,
  render: renderConnmark,
  renderFor: (i, backend) => renderConnmark(i, backend === "iptables" ? "iptables" : "nftables"),
  identityFields: [],
  // A renamed resource would add the same ip rules (same priority, mark, table) that the old
  // one's delete then removes: delete first.
  deleteBeforeReplace: true,

  async converge(host, i, olds) {
    const scope = scopeOf([i, ...oldInputs(olds)]);
    let after = await readLive(host, i, scope);
    const backend = requireBackend(`ConnmarkReturnPath ${i.name} on ${host.label}`, i.backend, after.facts);
    const plan = planConnmark(i, after, backend);
    if (plan.drift.length > 0) after = await apply(host, i, scope, plan);
    after.boot = await syncBoot(host, `ConnmarkReturnPath ${i.name}`, cmarkBootEntryName(i.name), i.persist ? cmarkBootEntry(i, after.facts, backend) : undefined, after.boot);
    return observation(i, after, backend);
  },

  async observe(host, i, props) {
    const live = await readLive(host, i, scopeOf([i]));
    const { backend, problem } = observedBackend(i.backend, live.facts, props.activeBackend);
    const obs = observation(i, live, backend, !problem && isLegacyState(props));
    return problem ? { ...obs, drift: [problem, ...obs.drift] } : obs;
  },

  async remove(host, i) {
    const scope = scopeOf([i]);
    const live = await readLive(host, i, scope);
    const entry = bootEntryPath(cmarkBootEntryName(i.name));
    const hasEntry = (s: CmarkLive) => (s.boot.files.get(entry) ?? "-") !== "-";
    if (live.nft.length === 0 && live.ipt.length === 0 && live.rules.length === 0 && !live.sysctls.some((s) => s.held) && !hasEntry(live)) return;
    const batch = live.rules.map((r) => `rule del ${ruleSpec(r)}`).join("\n");
    const out = await host.run(
      `deleting ConnmarkReturnPath ${i.name}`,
      CMARK_DELETE_SH,
      encodeArgs({ ...showArgs(i, scope), batch, ...iptChange([], live.ipt) }),
      { writes: true },
    );
    const after = parseCmarkShow(out.stdout, scope, i.name);
    const left = [
      ...after.nft,
      ...liveLines(after, i.name),
      ...after.rules.map(ruleLine),
      ...after.sysctls.filter((s) => s.held).map((s) => `${sysctlName(s.path)} holder file`),
      ...(hasEntry(after) ? [entry] : []),
    ];
    if (left.length) throw new NatgateError("remote", `ConnmarkReturnPath ${i.name} on ${host.label}: still present after delete:\n  ${left.join("\n  ")}`);
  },
};

/** Runs the plan (non-empty) behind the dead-man switch; returns the state read back. */
async function apply(host: Host, i: ConnmarkReturnPathInputs, scope: Scope, plan: Plan): Promise<CmarkLive> {
  const token = deadmanToken(cmarkOwner(i.name));
  const args = applyArgs(i, scope, plan, { token, seconds: DEADMAN_SECONDS, undo: inverseBatch(plan.batch).join("\n") });
  const out = await runGuarded(plan.batch.length > 0, () => host.run(`applying ConnmarkReturnPath ${i.name}`, CMARK_APPLY_SH, args, { writes: true }));
  if (plan.batch.length) await confirmFreshLogin(host, `ConnmarkReturnPath ${i.name}`, token);
  return parseCmarkShow(out.stdout, scope, i.name);
}

export const connmarkReturnPathProvider = hostProvider(ConnmarkReturnPathKind);
