import { NatgateError } from "../../ssh/errors";
import { encodeArgs, type ScriptArgs } from "../../backends/args";
import { CMARK_APPLY_SH, CMARK_DELETE_SH, CMARK_READ_SH } from "../../backends/cmarkSh";
import { DEADMAN_SECONDS, inverseBatch, ruleBatch, ruleLine, type IpRule } from "../../backends/iproute";
import { NO_IPT_CHANGE, iptChange, iptReturnPathChains, liveIptLines, type IptChange } from "../../backends/iptablesFirewall";
import { deleteTableTransaction, replaceTableTransaction } from "../../backends/nftables";
import { NO_FW4, fw4Change, fw4PutRecords, fw4TableInclude, type Fw4Include } from "../../backends/fw4Include";
import { bootEntry, bootEntryPath, observeBoot, type BootEntry } from "../../backends/persist";
import { sysctlLine, sysctlName, type SysctlSetting } from "../../backends/sysctl";
import { claimKeys, claimPlan, claimsHeldBy } from "../../backends/claims";
import type { Backend, FirewallFacts } from "../../plan/firewall";
import { observedBackend, requireBackend } from "../common/backend";
import type { ScriptPart } from "../../backends/chain";
import type { Host } from "../common/host";
import { bootFirst, confirmFreshLogin, deadmanToken, readSettled, runGuarded, shPrelude } from "../common/host";
import { hostProvider, inputsFromState, lineDrift, type Observation, type ResourceKind } from "../common/hostKind";
import { isLegacyState } from "../../engine/version";
import { cmarkBootEntryName, cmarkChainNames, cmarkFamilies, cmarkFirewall, cmarkFirewallLines, cmarkOwner, cmarkRules, cmarkSysctls, cmarkTable, cmarkTableName, renderConnmark } from "./render";
import { ConnmarkReturnPathSchema, connmarkCrossCheck, effectiveMask, type ConnmarkReturnPathInputs } from "./schema";
import { parseCmarkShow, scopeOf, type CmarkLive, type Scope } from "./live";

export { parseCmarkShow, scopeOf, type CmarkLive, type Scope };

interface Plan {
  drift: string[];
  /** fw4 include files to remove and to write: the table's, which fw4 re-creates after its flush. */
  fw4Del: string[];
  fw4Put: Fw4Include[];
  nft: string;
  ipt: IptChange;
  /** The same for the IPv6 twin's ip6tables chains. */
  ip6t: IptChange;
  batch: string[];
  hold: SysctlSetting[];
  release: string[];
  /** The claims this return path holds on the host, what the apply changes in them, and the error when another resource holds one. */
  claims: string[];
  claimChanges: string[];
  conflict?: Error;
}

/** What only this return path may use on its host: its table (as a return path's), rule priorities and mark bits. */
export function cmarkClaims(i: ConnmarkReturnPathInputs): string[] {
  return claimKeys.returnPath(i.table, [...new Set(cmarkRules(i).map((r) => r.priority))], effectiveMask(i));
}

const liveLines = (live: Pick<CmarkLive, "ipt" | "ipt6">, name: string) => [
  ...liveIptLines(live.ipt, cmarkChainNames(name)),
  ...liveIptLines(live.ipt6 ?? [], cmarkChainNames(name), 6),
];

/** The apply script's names for an ip6tables change. */
const ip6tArgs = (c: IptChange) => ({ ip6t_restore: c.ipt_restore, ip6t_jumps: c.ipt_jumps, ip6t_jumps_del: c.ipt_jumps_del, ip6t_chains_del: c.ipt_chains_del });

export function planConnmark(i: ConnmarkReturnPathInputs, live: Omit<CmarkLive, "boot">, backend: Backend, where = "the host"): Plan {
  const nftDrift = lineDrift("nft", backend === "nftables" ? cmarkFirewallLines(i, "nftables") : [], live.nft);
  const iptDrift = lineDrift("iptables", backend === "iptables" ? cmarkFirewallLines(i, "iptables") : [], liveLines(live, i.name));
  const table = cmarkTableName(i.name);
  const remaining = [...live.rules];
  const add: IpRule[] = [];
  for (const r of cmarkRules(i)) {
    const k = remaining.findIndex((l) => ruleLine(l) === ruleLine(r));
    if (k >= 0) remaining.splice(k, 1);
    else add.push(r);
  }
  const del = remaining;
  const drift = [...nftDrift, ...iptDrift];
  for (const a of add) drift.push(`missing ip rule: ${ruleLine(a)}`);
  for (const d of del) drift.push(`unexpected ip rule: ${ruleLine(d)}`);
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
  // The table as one nft transaction: what the apply sends, and on fw4 what its include holds.
  const six = cmarkFamilies(i).includes(6);
  const transaction = replaceTableTransaction(cmarkTable(i)) + (six ? replaceTableTransaction(cmarkTable(i, 6)) : "");
  // An IPv6 twin left from before ipv6 was turned off goes in the same transaction (not in fw4's include).
  const stale6 = !six && live.nft.includes(`nft add table ip6 ${table}`) ? deleteTableTransaction("ip6", table) : "";
  const fw4 = fw4Change(live.fw4?.available && backend === "nftables" ? [fw4TableInclude(table, transaction)] : [], live.fw4 ?? NO_FW4);
  drift.push(...fw4.drift);
  const claims = cmarkClaims(i);
  const claimed = claimPlan(cmarkOwner(i.name), claims, live.claims, where);
  return {
    drift,
    claims,
    claimChanges: claimed.changes,
    conflict: claimed.conflict,
    fw4Del: fw4.del,
    fw4Put: fw4.put,
    nft: nftDrift.length === 0 ? "" : backend === "nftables" ? transaction + stale6 : deleteTableTransaction("ip", table) + deleteTableTransaction("ip6", table),
    ipt: iptDrift.length ? iptChange(backend === "iptables" ? iptReturnPathChains(cmarkFirewall(i)) : [], live.ipt) : NO_IPT_CHANGE,
    ip6t: iptDrift.length ? iptChange(backend === "iptables" && six ? iptReturnPathChains(cmarkFirewall(i)) : [], live.ipt6 ?? []) : NO_IPT_CHANGE,
    // Deletes first: an old rule identical in priority and table to a new one would be matched by `del`.
    batch: [...del.map((d) => ruleBatch("del", d)), ...add.map((a) => ruleBatch("add", a))],
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
    ...ip6tArgs(p.ip6t),
    batch: p.batch.join("\n"),
    hold: p.hold.map((h) => `${h.path} ${h.value}`).join("\n"),
    release: p.release.join("\n"),
    fw4_del: p.fw4Del.join(" "),
    fw4_put: fw4PutRecords(p.fw4Put),
    ...extra,
  });
}

/**
 * What rebuilds the return path at boot: its plan against an empty host, through the same apply
 * script, with the ip rules ensured (an existing one counts as added) instead of a batch, and no
 * dead-man switch (there is no SSH session to lose).
 */
export function cmarkBootEntry(i: ConnmarkReturnPathInputs, facts: FirewallFacts, backend: Backend): BootEntry {
  const p = planConnmark(i, { facts, nft: [], ipt: [], rules: [], sysctls: [], claims: new Map() }, backend);
  const args = applyArgs(i, scopeOf([i]), { ...p, batch: [], release: [] }, { rules_ensure: cmarkRules(i).map((r) => ruleBatch("add", r)).join("\n") });
  return bootEntry("ret", i.name, `ConnmarkReturnPath ${i.name}`, args, shPrelude() + CMARK_APPLY_SH);
}

function observation(i: ConnmarkReturnPathInputs, live: CmarkLive, backend: Backend, legacy = false): Observation {
  const plan = planConnmark(i, live, backend);
  if (plan.conflict) plan.drift.push(plan.conflict.message);
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
  const before = inputsFromState(ConnmarkReturnPathSchema, olds);
  return before ? [before] : [];
}

const showArgs = (i: ConnmarkReturnPathInputs, scope: Scope): ScriptArgs => ({
  table: cmarkTableName(i.name),
  owner: cmarkOwner(i.name),
  entry: cmarkBootEntryName(i.name),
  sysctls: scope.sysctlPaths.join("\n"),
});

/** The host's state; `settle`: first settle rollbacks an interrupted apply left (before a change). */
async function readLive(host: Host, i: ConnmarkReturnPathInputs, scope: Scope, settle = false): Promise<CmarkLive> {
  const read = () => host.run(`reading ConnmarkReturnPath ${i.name}`, CMARK_READ_SH, encodeArgs(showArgs(i, scope)));
  const out = settle ? await readSettled(host, `ConnmarkReturnPath ${i.name}`, read) : await read();
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
    let after = await readLive(host, i, scope, true);
    const backend = requireBackend(`ConnmarkReturnPath ${i.name} on ${host.label}`, i.backend, after.facts);
    const plan = planConnmark(i, after, backend, host.label);
    if (plan.conflict) throw plan.conflict;
    const entry = i.persist ? cmarkBootEntry(i, after.facts, backend) : undefined;
    after = await bootFirst(host, `ConnmarkReturnPath ${i.name}`, cmarkBootEntryName(i.name), entry, after,
      plan.drift.length > 0 || plan.claimChanges.length > 0 ? (before) => apply(host, i, scope, plan, before) : undefined);
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
    const live = await readLive(host, i, scope, true);
    const entry = bootEntryPath(cmarkBootEntryName(i.name));
    const hasEntry = (s: CmarkLive) => (s.boot.files.get(entry) ?? "-") !== "-";
    const fw4Files = [...(live.fw4 ?? NO_FW4).files.keys()];
    const owned = (s: CmarkLive) => claimsHeldBy(s.claims, cmarkOwner(i.name));
    if (live.nft.length === 0 && live.ipt.length === 0 && (live.ipt6 ?? []).length === 0 && live.rules.length === 0 && !live.sysctls.some((s) => s.held) && !hasEntry(live) && fw4Files.length === 0 && owned(live).length === 0) return;
    const batch = live.rules.map((r) => ruleBatch("del", r)).join("\n");
    const out = await host.run(
      `deleting ConnmarkReturnPath ${i.name}`,
      CMARK_DELETE_SH,
      encodeArgs({ ...showArgs(i, scope), batch, ...iptChange([], live.ipt), ...ip6tArgs(iptChange([], live.ipt6 ?? [])), fw4_del: fw4Files.join(" ") }),
      { writes: true },
    );
    const after = parseCmarkShow(out.stdout, scope, i.name);
    const left = [
      ...after.nft,
      ...liveLines(after, i.name),
      ...after.rules.map(ruleLine),
      ...after.sysctls.filter((s) => s.held).map((s) => `${sysctlName(s.path)} holder file`),
      ...(hasEntry(after) ? [entry] : []),
      ...[...(after.fw4 ?? NO_FW4).files.keys()].map((f) => `fw4 include ${f}`),
      ...owned(after).map((k) => `claim ${k}`),
    ];
    if (left.length) throw new NatgateError("remote", `ConnmarkReturnPath ${i.name} on ${host.label}: still present after delete:\n  ${left.join("\n  ")}`);
  },
};

/** Runs the plan (non-empty) behind the dead-man switch; returns the state read back. */
async function apply(host: Host, i: ConnmarkReturnPathInputs, scope: Scope, plan: Plan, before?: ScriptPart): Promise<CmarkLive> {
  const token = deadmanToken(cmarkOwner(i.name));
  const args = applyArgs(i, scope, plan, {
    token,
    seconds: DEADMAN_SECONDS,
    undo: inverseBatch(plan.batch).join("\n"),
    claim_owner: cmarkOwner(i.name),
    claims: plan.claims.join(" "),
  });
  const out = await runGuarded(plan.batch.length > 0, () => host.run(`applying ConnmarkReturnPath ${i.name}`, CMARK_APPLY_SH, args, { writes: true, before }));
  if (plan.batch.length) await confirmFreshLogin(host, `ConnmarkReturnPath ${i.name}`, token);
  return parseCmarkShow(out.stdout, scope, i.name);
}

export const connmarkReturnPathProvider = hostProvider(ConnmarkReturnPathKind);
