import { encodeArgs } from "../../backends/args";
import { DNAT_APPLY_SH, DNAT_DELETE_SH, DNAT_READ_SH } from "../../backends/dnatSh";
import { assertSafeRule, commentOf, forwardNeedsAccept, iptablesLine, type FilterChain } from "../../backends/iptables";
import { NO_FW4, fw4Change, fw4IncludeLines, fw4Includes, fw4PutRecords, fw4TableInclude, isFw4ChainInclude, type Fw4Include } from "../../backends/fw4Include";
import { NO_IPT_CHANGE, iptChange, iptDnatChains, type IptChange } from "../../backends/iptablesFirewall";
import { chainId, deleteTableTransaction, foreignRuleOps, replaceTableTransaction, type ChainRef } from "../../backends/nftables";
import { bootEntry, bootEntryPath, observeBoot, type BootEntry } from "../../backends/persist";
import { sysctlLine, sysctlName } from "../../backends/sysctl";
import { nftFamily } from "../../backends/nftFirewall";
import type { Backend } from "../../plan/firewall";
import { observedBackend, requireBackend } from "../common/backend";
import { NatgateError } from "../../ssh/errors";
import type { ScriptPart } from "../../backends/chain";
import type { Host } from "../common/host";
import { bootFirst, shPrelude } from "../common/host";
import { hostProvider, inputsFromState, lineDrift, type Observation, type ResourceKind } from "../common/hostKind";
import { isLegacyState, withoutUpgradeDrift } from "../../engine/version";
import { dnatLiveIptLines, localityProblem, parseDnatShow, parseLocality, type DnatLive, type Locality } from "./live";
import { dnatBootEntryName, dnatFamily, dnatFirewall, dnatFirewallLines, dnatForwardAccepts, dnatForwarding, dnatNftAccepts, dnatOwner, dnatTable, dnatTableName, renderDnat } from "./render";
import { DnatRuleSchema, dnatCrossCheck, type DnatRuleInputs } from "./schema";

export { parseDnatShow, parseLocality, localityProblem, type DnatLive, type Locality };

/** What an apply must change: the difference between the render for `backend` and the live state. */
export interface DnatPlan {
  drift: string[];
  backend: Backend;
  /** nft transaction: own table (replaced or deleted) and accepts in other tables. */
  nft: string;
  /** iptables chains to (re)write, with their jumps; chains and jumps to remove. */
  ipt: IptChange;
  fwdDel: string[];
  fwdAdd: string[];
  inDel: string[];
  inAdd: string[];
  /** fw4 include files to remove and to write (OpenWrt: what keeps the accepts across fw4 reloads). */
  fw4Del: string[];
  fw4Put: Fw4Include[];
}

/** Whether the DNAT target is the host itself: its packets then meet INPUT, not FORWARD. */
export function acceptChain(i: DnatRuleInputs, live: Pick<DnatLive, "locality">): FilterChain {
  return live.locality?.local.get(i.toAddress) === true ? "INPUT" : "FORWARD";
}

/** The iptables accepts wanted in each filter chain, on this host as it is now. */
function wantedAccepts(i: DnatRuleInputs, live: Omit<DnatLive, "boot">): Record<FilterChain, string[]> {
  const chain = acceptChain(i, live);
  const liveChain = chain === "INPUT" ? live.iptablesInput : live.iptables;
  const want = liveChain && forwardNeedsAccept(liveChain) ? dnatForwardAccepts(i) : [];
  return { FORWARD: chain === "FORWARD" ? want : [], INPUT: chain === "INPUT" ? want : [] };
}

/** Other nftables firewalls' chains where this rule's packets may be dropped. */
function dropChainsFor(i: DnatRuleInputs, live: Omit<DnatLive, "boot">): ChainRef[] {
  return acceptChain(i, live) === "INPUT" ? (live.foreignInput ?? []) : live.foreign.dropChains;
}

export function planDnat(i: DnatRuleInputs, live: Omit<DnatLive, "boot">, backend: Backend): DnatPlan {
  const fam = dnatFamily(i);
  const FORWARD = dnatForwarding(i);
  const iptLine = (r: string, chain?: FilterChain) => iptablesLine(r, chain, fam);
  const nftDrift = lineDrift("nft", backend === "nftables" ? dnatFirewallLines(i, "nftables") : [], live.nft);
  const iptDrift = lineDrift("iptables", backend === "iptables" ? dnatFirewallLines(i, "iptables") : [], dnatLiveIptLines(live, i.name, fam));
  const wanted = wantedAccepts(i, live);
  const inOwned = live.iptablesInput?.owned ?? [];
  const fwdDel = live.iptables.owned.filter((r) => !wanted.FORWARD.includes(r));
  const fwdAdd = wanted.FORWARD.filter((r) => !live.iptables.owned.includes(r));
  const inDel = inOwned.filter((r) => !wanted.INPUT.includes(r));
  const inAdd = wanted.INPUT.filter((r) => !inOwned.includes(r));
  const local = acceptChain(i, live) === "INPUT";
  const wantForeign = dropChainsFor(i, live).flatMap((c) => dnatNftAccepts(i, c));
  const ownedLines = live.foreign.owned.map((o) => o.line);
  const foreignDel = live.foreign.owned.filter((o) => !wantForeign.some((w) => w.line === o.line));
  const foreignAdd = wantForeign.filter((w) => !ownedLines.includes(w.line));
  const table = dnatTableName(i.name);
  // The table as one nft transaction: what the apply sends, and on fw4 what its include holds.
  const transaction = replaceTableTransaction(dnatTable(i));
  const fw4Want = live.fw4?.available
    ? [...fw4Includes(i.name, wantForeign), ...(backend === "nftables" ? [fw4TableInclude(table, transaction)] : [])]
    : [];
  const fw4 = fw4Change(fw4Want, live.fw4 ?? NO_FW4);
  const drift = [
    ...nftDrift,
    ...iptDrift,
    ...fwdAdd.map((r) => `missing iptables accept (filter FORWARD drops forwarded packets): ${iptLine(r)}`),
    ...fwdDel.map((r) => `unexpected iptables rule: ${iptLine(r)}`),
    ...inAdd.map((r) => `missing iptables accept (filter INPUT drops packets to this host, the DNAT target): ${iptLine(r, "INPUT")}`),
    ...inDel.map((r) => `unexpected iptables rule: ${iptLine(r, "INPUT")}`),
    ...foreignAdd.map((w) => `missing accept in ${chainId(w)} (it drops ${local ? "packets to this host, the DNAT target" : "forwarded packets"}): ${w.line}`),
    ...foreignDel.map((o) => `unexpected rule: ${o.line}`),
    ...fw4.drift,
  ];
  if (live.forward.value !== FORWARD.value) drift.push(`${sysctlName(FORWARD.path)} is ${live.forward.value ?? "missing"}, forwarding needs ${FORWARD.value}`);
  else if (!live.forward.held) drift.push(`${sysctlName(FORWARD.path)} is not recorded as needed by this rule (it would not be restored on delete)`);
  for (const ra of live.acceptRa ?? []) {
    if (ra.value === "1") drift.push(`${sysctlName(ra.path)} is 1: with IPv6 forwarding on, the kernel ignores router advertisements there (the host's own IPv6 default route may come from one); natgate sets 2`);
  }

  const nftOps = nftDrift.length === 0 ? "" : backend === "nftables" ? transaction : deleteTableTransaction(nftFamily(fam), table);
  return {
    drift,
    backend,
    nft: nftOps + foreignRuleOps(foreignDel, foreignAdd),
    ipt: iptDrift.length ? iptChange(backend === "iptables" ? iptDnatChains(dnatFirewall(i)) : [], live.ipt) : NO_IPT_CHANGE,
    fwdDel,
    fwdAdd,
    inDel,
    inAdd,
    fw4Del: fw4.del,
    fw4Put: fw4.put,
  };
}

/** What every script of the rule is told first: which rule, of which IP version. */
function scriptIdentity(i: DnatRuleInputs) {
  return { name: i.name, family: String(dnatFamily(i)), fwd: dnatForwarding(i).path, table: dnatTableName(i.name), owner: dnatOwner(i.name), entry: dnatBootEntryName(i.name) };
}

/** The apply script's record for a plan. Each accept is inserted at the top: reversed, they end up in this order. */
function applyArgs(i: DnatRuleInputs, p: DnatPlan, boot: { accepts?: string; fwdIfDrop?: string[]; inIfDrop?: string[] } = {}): string[] {
  [...p.fwdDel, ...p.inDel].forEach(assertSafeRule);
  return encodeArgs({
    ...scriptIdentity(i),
    comment: commentOf(i.name),
    nft: p.nft,
    ...p.ipt,
    fwd_del: p.fwdDel.join("\n"),
    fwd_add: [...p.fwdAdd].reverse().join("\n"),
    in_del: p.inDel.join("\n"),
    in_add: [...p.inAdd].reverse().join("\n"),
    fw4_del: p.fw4Del.join(" "),
    fw4_put: fw4PutRecords(p.fw4Put),
    boot_accepts: boot.accepts,
    fwd_if_drop: boot.fwdIfDrop ? [...boot.fwdIfDrop].reverse().join("\n") : undefined,
    in_if_drop: boot.inIfDrop ? [...boot.inIfDrop].reverse().join("\n") : undefined,
  });
}

/**
 * What rebuilds this rule at boot: its plan against an empty host (nothing of natgate's there,
 * the other firewalls as they are now), through the same apply script. Accepts in other nft
 * firewalls' chains replace those carrying the rule's comment, since their handles are unknown then.
 * fw4 include files are files: they are still there at boot, and fw4 has loaded them already.
 * The iptables accepts travel also as "add where the chain drops when this runs", so a firewall
 * enabled after up (ufw, Docker) gets them at the next boot or start of its service.
 */
export function dnatBootEntry(i: DnatRuleInputs, live: DnatLive, backend: Backend): BootEntry {
  const empty: Omit<DnatLive, "boot"> = {
    ...live,
    nft: [],
    ipt: [],
    foreign: { dropChains: [], owned: [] },
    foreignInput: [],
    fw4: NO_FW4,
    iptables: { ...live.iptables, owned: [] },
    ...(live.iptablesInput ? { iptablesInput: { ...live.iptablesInput, owned: [] } } : {}),
  };
  const p = planDnat(i, empty, backend);
  const foreign = dropChainsFor(i, live).flatMap((c) => dnatNftAccepts(i, c));
  const accepts = [...foreign].reverse().map((w) => w.line.replace(/^nft /, "")).join("\n");
  // The iptables accept also where the chain drops only at boot time: a firewall enabled after up.
  const local = acceptChain(i, live) === "INPUT";
  const ifDrop = live.facts.iptables ? dnatForwardAccepts(i) : [];
  ifDrop.forEach(assertSafeRule);
  const boot = local ? { accepts, inIfDrop: ifDrop } : { accepts, fwdIfDrop: ifDrop };
  // Those replace the plan's own adds, so the entry does not change with the chain's state at up.
  const plan = ifDrop.length ? { ...p, fwdAdd: [], inAdd: [] } : p;
  return bootEntry("dnat", i.name, `DnatRule ${i.name}`, applyArgs(i, plan, boot), shPrelude() + DNAT_APPLY_SH);
}

/** The accepts' include files as lines (the table's file is the table again: not listed among the accepts). */
function fw4Lines(live: Pick<DnatLive, "fw4">): string[] {
  return [...(live.fw4 ?? NO_FW4).files].filter(([path]) => isFw4ChainInclude(path)).flatMap(([path, rules]) => fw4IncludeLines(path, rules));
}

function observation(i: DnatRuleInputs, live: DnatLive, backend: Backend, legacy = false): Observation {
  const fam = dnatFamily(i);
  const FORWARD = dnatForwarding(i);
  const plan = planDnat(i, live, backend);
  const boot = observeBoot(dnatBootEntryName(i.name), i.persist ? dnatBootEntry(i, live, backend) : undefined, live.boot, legacy);
  const drift = [...plan.drift, ...boot.drift];
  return {
    rendered: [...live.nft, ...dnatLiveIptLines(live, i.name, fam), sysctlLine(live.forward), ...boot.rendered],
    desired: renderDnat(i, backend),
    drift: legacy ? withoutUpgradeDrift(drift, [`natgate_dnat_${i.name} count`]) : drift,
    facts: {
      activeBackend: backend,
      counters: live.counters,
      forwardAccept: [
        ...live.iptables.owned.map((r) => iptablesLine(r, "FORWARD", fam)),
        ...(live.iptablesInput?.owned ?? []).map((r) => iptablesLine(r, "INPUT", fam)),
        ...live.foreign.owned.map((o) => o.line),
        ...fw4Lines(live),
      ].sort(),
      sysctlPrevious: Object.fromEntries([
        ...(live.forward.prev === undefined ? [] : [[sysctlName(FORWARD.path), live.forward.prev]]),
        ...(live.acceptRa ?? []).filter((r) => r.held).map((r) => [sysctlName(r.path), "1"]),
      ]),
      ...boot.facts,
    },
  };
}

async function readLive(host: Host, i: DnatRuleInputs): Promise<DnatLive & { locality: Locality }> {
  const addrs = [...(i.destination !== undefined ? [i.destination] : []), i.toAddress].join("\n");
  const out = await host.run(
    `reading DnatRule ${i.name}`,
    DNAT_READ_SH,
    encodeArgs({ ...scriptIdentity(i), addrs }),
  );
  return { ...parseDnatShow(out.stdout, i.name, dnatFamily(i)), locality: parseLocality(out.stdout) };
}

export const DnatRuleKind: ResourceKind<DnatRuleInputs> = {
  kind: "DnatRule",
  schema: DnatRuleSchema,
  crossCheck: dnatCrossCheck,
  render: renderDnat,
  renderFor: (i, backend) => renderDnat(i, backend === "iptables" ? "iptables" : "nftables"),
  identityFields: [],
  // A renamed rule gets a new table next to the old one; both DNAT the same packets the same way
  // until the old one goes, so creating first is safe.
  deleteBeforeReplace: false,

  async converge(host, i, olds) {
    // A rule whose toAddress changed family keeps its name, but its objects are the other
    // family's (ip vs ip6 table, iptables vs ip6tables, the other forwarding sysctl): those go first.
    const before = previousOfOtherFamily(i, olds);
    if (before) await DnatRuleKind.remove(host, before, olds ?? {});
    const live = await readLive(host, i);
    const backend = requireBackend(`DnatRule ${i.name} on ${host.label}`, i.backend, live.facts);
    const problem = localityProblem(i, host.connection.host, live.locality);
    if (problem) throw new NatgateError("config", `DnatRule ${i.name}: ${problem}`);
    const plan = planDnat(i, live, backend);
    // The entry from the host as read: what it depends on (the other firewalls' chains, the
    // locality) is not what the apply changes.
    const entry = i.persist ? dnatBootEntry(i, live, backend) : undefined;
    const after: DnatLive = await bootFirst(host, `DnatRule ${i.name}`, dnatBootEntryName(i.name), entry, live as DnatLive,
      plan.drift.length > 0 ? async (before) => ({ ...(await apply(host, i, plan, before)), locality: live.locality }) : undefined);
    return observation(i, after, backend);
  },

  async observe(host, i, props) {
    const live = await readLive(host, i);
    const { backend, problem } = observedBackend(i.backend, live.facts, props.activeBackend);
    const obs = observation(i, live, backend, !problem && isLegacyState(props));
    return problem ? { ...obs, drift: [problem, ...obs.drift] } : obs;
  },

  async remove(host, i) {
    const live = await readLive(host, i);
    const entry = bootEntryPath(dnatBootEntryName(i.name));
    const hasEntry = (s: DnatLive) => (s.boot.files.get(entry) ?? "-") !== "-";
    const inOwned = live.iptablesInput?.owned ?? [];
    const raHeld = (s: DnatLive) => (s.acceptRa ?? []).some((r) => r.held);
    if (live.nft.length === 0 && live.ipt.length === 0 && live.foreign.owned.length === 0 && live.iptables.owned.length === 0 && inOwned.length === 0 && !live.forward.held && !raHeld(live) && !hasEntry(live) && (live.fw4?.files.size ?? 0) === 0) return;
    live.iptables.owned.forEach(assertSafeRule);
    inOwned.forEach(assertSafeRule);
    const table = dnatTableName(i.name);
    const fam = dnatFamily(i);
    const nft = (live.nft.length ? deleteTableTransaction(nftFamily(fam), table) : "") + foreignRuleOps(live.foreign.owned, []);
    const out = await host.run(
      `deleting DnatRule ${i.name}`,
      DNAT_DELETE_SH,
      encodeArgs({
        ...scriptIdentity(i),
        nft,
        ...iptChange([], live.ipt),
        fwd_del: live.iptables.owned.join("\n"),
        in_del: inOwned.join("\n"),
        fw4_del: [...(live.fw4 ?? NO_FW4).files.keys()].join(" "),
      }),
      { writes: true },
    );
    const after = parseDnatShow(out.stdout, i.name, fam);
    const left = [
      ...after.nft,
      ...dnatLiveIptLines(after, i.name, fam),
      ...after.foreign.owned.map((o) => o.line),
      ...after.iptables.owned.map((r) => iptablesLine(r, "FORWARD", fam)),
      ...(after.iptablesInput?.owned ?? []).map((r) => iptablesLine(r, "INPUT", fam)),
      ...(after.forward.held ? [`${sysctlName(dnatForwarding(i).path)} holder file`] : []),
      ...(after.acceptRa ?? []).filter((r) => r.held).map((r) => `${sysctlName(r.path)} holder file`),
      ...[...(after.fw4 ?? NO_FW4).files.keys()].map((f) => `fw4 include ${f}`),
      ...(hasEntry(after) ? [entry] : []),
    ];
    if (left.length) throw new NatgateError("remote", `DnatRule ${i.name} on ${host.label}: still present after delete:\n  ${left.join("\n  ")}`);
  },
};

/** The previous inputs (from state) when they were of the other IP version than `i`. */
function previousOfOtherFamily(i: DnatRuleInputs, olds: Record<string, unknown> | undefined): DnatRuleInputs | undefined {
  const before = inputsFromState(DnatRuleSchema, olds);
  return before && before.name === i.name && dnatFamily(before) !== dnatFamily(i) ? before : undefined;
}

/** Runs the plan (non-empty); returns the state read back (its check is converge's). */
async function apply(host: Host, i: DnatRuleInputs, plan: DnatPlan, before?: ScriptPart): Promise<DnatLive> {
  const out = await host.run(`applying DnatRule ${i.name}`, DNAT_APPLY_SH, applyArgs(i, plan), { writes: true, before });
  return parseDnatShow(out.stdout, i.name, dnatFamily(i));
}

export const dnatRuleProvider = hostProvider(DnatRuleKind);
