import { HOSTSTATE_SH } from "../../backends/hoststate";
import {
  IPTABLES_SH,
  assertSafeRule,
  forwardNeedsAccept,
  iptablesLine,
  parseForwardChain,
  type FilterChain,
  type IptablesForward,
} from "../../backends/iptables";
import {
  NFT_SH,
  chainId,
  foreignForwardState,
  parseNftJson,
  replaceTableTransaction,
  tableLines,
  tableLinesFromItems,
  type ChainRef,
  type ForeignRule,
} from "../../backends/nftables";
import { SYSCTL_SH, ipForward, parseSysctlShow, sysctlLine, sysctlName, type LiveSysctl } from "../../backends/sysctl";
import { BOOT_SH, bootEntry, bootEntryPath, observeBoot, parseBootShow, type BootEntry, type BootStatus } from "../../backends/persist";
import { NatgateError } from "../../ssh/errors";
import type { Host } from "../common/host";
import { shPrelude, splitSections, syncBoot } from "../common/host";
import { lineDrift, makeProvider, type Observation, type ResourceKind } from "../common/provider";
import { commentOf } from "../../backends/iptables";
import { dnatBootEntryName, dnatForwardAccepts, dnatNftAccepts, dnatOwner, dnatTable, dnatTableName, renderDnat } from "./render";
import { DnatRuleSchema, dnatCrossCheck, type DnatRuleInputs } from "./schema";

const FORWARD = ipForward();

// $1 table, $2 owner, $3 boot entry. The whole ruleset: other firewalls' forward chains matter too.
const SHOW_SH = `
dnat_show() {
  echo "@@nft"; nft_ruleset || exit 1
  ipt_show || exit 1
  echo "@@sysctl"; sysctl_show ${FORWARD.path} "$2"
  boot_show "$3"
}
# dnat_local ADDR...: whether the host takes each address as its own (the kernel's answer, so an
# address routed locally without being on an interface counts too), and the host's addresses.
dnat_local() {
  echo "@@local"
  for ng_a in "$@"; do
    case "$(ip route get "$ng_a" 2>/dev/null | head -n 1)" in
      "local "*) echo "$ng_a local" ;;
      *) echo "$ng_a remote" ;;
    esac
  done
  echo "@@addrs"
  ip -o -4 addr show | sed -n 's,.* inet \\([0-9.]*\\)/.*,\\1,p'
}
# dnat_accepts_replace LINES COMMENT (boot entries): LINES are "insert rule FAMILY TABLE CHAIN ..."
# for other firewalls' forward chains. One transaction deletes the rules carrying COMMENT there
# and inserts LINES, so a second run changes nothing, and a run after the firewall rebuilt its
# chain puts the accepts back. A chain that does not exist is skipped: its firewall is not
# running, so it drops nothing.
dnat_accepts_replace() {
  ng_chains=$(printf '%s\\n' "$1" | while IFS= read -r ng_l; do
    set -f; set -- $ng_l
    [ -n "$5" ] && nft list chain "$3" "$4" "$5" >/dev/null 2>&1 && echo "$3 $4 $5"
  done | sort -u)
  [ -n "$ng_chains" ] || return 0
  ng_txn=$(
    printf '%s\\n' "$ng_chains" | while read -r ng_f ng_t ng_c; do
      nft -a list chain "$ng_f" "$ng_t" "$ng_c" | grep -F "comment \\"$2\\" # handle " |
        sed 's/.* # handle \\([0-9]*\\)$/\\1/' | while read -r ng_h; do echo "delete rule $ng_f $ng_t $ng_c handle $ng_h"; done
    done
    printf '%s\\n' "$1" | while IFS= read -r ng_l; do
      ( set -f; set -- $ng_l; [ -n "$5" ] && printf '%s\\n' "$ng_chains" | grep -qxF "$3 $4 $5" ) && printf '%s\\n' "$ng_l"
    done
  )
  nft_apply "$ng_txn"
}
`;

const PRELUDE = HOSTSTATE_SH + NFT_SH + IPTABLES_SH + SYSCTL_SH + BOOT_SH + SHOW_SH + "need nft nftables nftables-json\n";

/** $1 table, $2 owner, $3 boot entry, then the addresses whose locality matters (dnat_local). */
export const DNAT_READ_SH = PRELUDE + `need ip iproute2 ip-full
dnat_show "$1" "$2" "$3"
shift 3
dnat_local "$@"
`;

/**
 * $1 table, $2 owner, $3 nft transaction (own table and accepts in other tables), $4 iptables
 * FORWARD rules to delete, $5 to add, $6 boot entry; boot entries only: $7 accepts for other
 * firewalls' chains, put in place of those carrying comment $8 (dnat_accepts_replace); $9 and $10
 * iptables INPUT rules to delete and add (a DNAT to the host itself).
 */
export const DNAT_APPLY_SH =
  PRELUDE +
  `ng_lock
ipt_sync "$4" "$5" || exit 1
ipt_sync "$9" "\${10}" INPUT || exit 1
sysctl_hold ${FORWARD.path} ${FORWARD.value} "$2" || exit 1
[ -z "$3" ] || nft_apply "$3" || exit 1
[ -z "$7" ] || dnat_accepts_replace "$7" "$8" || exit 1
dnat_show "$1" "$2" "$6"
`;

/**
 * $1 table, $2 owner, $3 iptables FORWARD rules to delete, $4 nft transaction deleting the table
 * and accepts in other tables, $5 boot entry, $6 iptables INPUT rules to delete
 */
export const DNAT_DELETE_SH =
  PRELUDE +
  `ng_lock
nft_apply "$4" || exit 1
ipt_sync "$3" "" || exit 1
ipt_sync "$6" "" INPUT || exit 1
sysctl_release ${FORWARD.path} "$2" || exit 1
boot_remove "$5" || exit 1
dnat_show "$1" "$2" "$5"
`;

/** The host's view of addresses: which of those asked about it takes as its own, and its IPv4 addresses. */
export interface Locality {
  local: Map<string, boolean>;
  addresses: string[];
}

export function parseLocality(stdout: string): Locality {
  const s = splitSections(stdout);
  const local = new Map<string, boolean>();
  for (const l of s.get("local")?.lines ?? []) {
    const m = /^(\S+) (local|remote)$/.exec(l.trim());
    if (m) local.set(m[1]!, m[2] === "local");
  }
  const addresses = (s.get("addrs")?.lines ?? []).map((l) => l.trim()).filter((a) => a !== "" && !a.startsWith("127."));
  return { local, addresses: [...new Set(addresses)] };
}

/**
 * Why a rule cannot work on this host, or undefined. A destination the host does not take as its
 * own never appears in prerouting: behind a cloud's 1:1 NAT (EC2, GCP, Azure) the public address
 * is on no interface and packets arrive for the host's private address.
 */
export function localityProblem(i: DnatRuleInputs, where: string, loc: Locality): string | undefined {
  if (i.destination === undefined || loc.local.get(i.destination) !== false) return undefined;
  const addrs = loc.addresses.length ? loc.addresses.join(", ") : "none found";
  return (
    `destination ${i.destination} is not an address of host ${where} (its addresses: ${addrs}): ` +
    `behind a cloud's 1:1 NAT packets arrive for the host's own address: match that (PortForward: vps.localAddress)`
  );
}

export interface DnatLive {
  /** This rule's own table. */
  nft: string[];
  /** Forward chains of other nftables firewalls that may drop, and this rule's accepts in them. */
  foreign: { dropChains: ChainRef[]; owned: ForeignRule[] };
  iptables: IptablesForward;
  /**
   * Where the accepts go instead when toAddress is an address of the host (the DNATed packet is
   * delivered locally, through INPUT, not FORWARD): filter INPUT and other firewalls' input chains.
   */
  iptablesInput?: IptablesForward;
  foreignInput?: ChainRef[];
  forward: LiveSysctl;
  boot: BootStatus;
  /** From the read script only; apply carries it over. */
  locality?: Locality;
}

export function parseDnatShow(stdout: string, name: string): DnatLive {
  const s = splitSections(stdout);
  const ipt = s.get("iptables");
  const forward = parseSysctlShow(s.get("sysctl")?.lines ?? [])[0];
  const boot = s.get("boot");
  if (!s.has("nft") || !ipt || !forward || !boot) throw new Error(`unexpected output from the DnatRule read script:\n${stdout.slice(0, 500)}`);
  const items = parseNftJson(s.get("nft")!.lines.join("\n"));
  const iptInput = s.get("iptinput");
  return {
    nft: tableLinesFromItems(items, "ip", dnatTableName(name)),
    foreign: foreignForwardState(items, commentOf(name)),
    foreignInput: foreignForwardState(items, commentOf(name), "input").dropChains,
    iptables: parseForwardChain(ipt.lines.join("\n"), ipt.arg === "present", name),
    iptablesInput: parseForwardChain(iptInput?.lines.join("\n") ?? "", ipt.arg === "present" && iptInput !== undefined, name, "INPUT"),
    ...(s.has("local") ? { locality: parseLocality(stdout) } : {}),
    forward,
    boot: parseBootShow(boot.lines),
  };
}

interface Plan {
  drift: string[];
  nftChange: boolean;
  /** nft commands (without "nft ") for accepts in other tables: deletes by handle, then inserts. */
  foreignOps: string[];
  iptDelete: string[];
  iptAdd: string[];
  /** The same for filter INPUT (a DNAT to the host itself). */
  iptInDelete: string[];
  iptInAdd: string[];
  hold: boolean;
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

export function planDnat(i: DnatRuleInputs, live: Omit<DnatLive, "boot">): Plan {
  const nftDrift = lineDrift("nft", tableLines(dnatTable(i)), live.nft);
  const wanted = wantedAccepts(i, live);
  const want = wanted.FORWARD;
  const iptDelete = live.iptables.owned.filter((r) => !want.includes(r));
  const iptAdd = want.filter((r) => !live.iptables.owned.includes(r));
  const inOwned = live.iptablesInput?.owned ?? [];
  const iptInDelete = inOwned.filter((r) => !wanted.INPUT.includes(r));
  const iptInAdd = wanted.INPUT.filter((r) => !inOwned.includes(r));
  const local = acceptChain(i, live) === "INPUT";
  const wantForeign = dropChainsFor(i, live).flatMap((c) => dnatNftAccepts(i, c));
  const ownedLines = live.foreign.owned.map((o) => o.line);
  const foreignDelete = live.foreign.owned.filter((o) => !wantForeign.some((w) => w.line === o.line));
  const foreignAdd = wantForeign.filter((w) => !ownedLines.includes(w.line));
  const drift = [
    ...nftDrift,
    ...iptAdd.map((r) => `missing iptables accept (filter FORWARD drops forwarded packets): ${iptablesLine(r)}`),
    ...iptDelete.map((r) => `unexpected iptables rule: ${iptablesLine(r)}`),
    ...iptInAdd.map((r) => `missing iptables accept (filter INPUT drops packets to this host, the DNAT target): ${iptablesLine(r, "INPUT")}`),
    ...iptInDelete.map((r) => `unexpected iptables rule: ${iptablesLine(r, "INPUT")}`),
    ...foreignAdd.map((w) => `missing accept in ${chainId(w)} (it drops ${local ? "packets to this host, the DNAT target" : "forwarded packets"}): ${w.line}`),
    ...foreignDelete.map((o) => `unexpected rule: ${o.line}`),
  ];
  // Each insert goes to the top of its chain: reversed, they end up in the rendered order.
  const foreignOps = [
    ...foreignDelete.map((o) => `delete rule ${chainId(o)} handle ${o.handle}`),
    ...[...foreignAdd].reverse().map((w) => w.line.replace(/^nft /, "")),
  ];
  const hold = live.forward.value !== FORWARD.value || !live.forward.held;
  if (live.forward.value !== FORWARD.value) drift.push(`${sysctlName(FORWARD.path)} is ${live.forward.value ?? "missing"}, forwarding needs ${FORWARD.value}`);
  else if (!live.forward.held) drift.push(`${sysctlName(FORWARD.path)} is not recorded as needed by this rule (it would not be restored on delete)`);
  return { drift, nftChange: nftDrift.length > 0, foreignOps, iptDelete, iptAdd, iptInDelete, iptInAdd, hold };
}

/**
 * What rebuilds this rule at boot: the apply script with the arguments that make it from nothing,
 * on this host as it is now (the accepts go where something drops, as converge puts them).
 */
export function dnatBootEntry(i: DnatRuleInputs, live: DnatLive): BootEntry {
  const wanted = wantedAccepts(i, live);
  const foreign = dropChainsFor(i, live).flatMap((c) => dnatNftAccepts(i, c));
  const args = [
    dnatTableName(i.name),
    dnatOwner(i.name),
    replaceTableTransaction(dnatTable(i)),
    "",
    // Each add is inserted at the top: reversed, they end up in the chain in this order.
    [...wanted.FORWARD].reverse().join("\n"),
    dnatBootEntryName(i.name),
    [...foreign].reverse().map((w) => w.line.replace(/^nft /, "")).join("\n"),
    commentOf(i.name),
    "",
    [...wanted.INPUT].reverse().join("\n"),
  ];
  return bootEntry("dnat", i.name, `DnatRule ${i.name}`, args, shPrelude() + DNAT_APPLY_SH);
}

function observation(i: DnatRuleInputs, live: DnatLive): Observation {
  const plan = planDnat(i, live);
  const boot = observeBoot(dnatBootEntryName(i.name), i.persist ? dnatBootEntry(i, live) : undefined, live.boot);
  return {
    rendered: [...live.nft, sysctlLine(live.forward), ...boot.rendered],
    drift: [...plan.drift, ...boot.drift],
    facts: {
      forwardAccept: [
        ...live.iptables.owned.map((r) => iptablesLine(r)),
        ...(live.iptablesInput?.owned ?? []).map((r) => iptablesLine(r, "INPUT")),
        ...live.foreign.owned.map((o) => o.line),
      ].sort(),
      sysctlPrevious: live.forward.prev === undefined ? {} : { [sysctlName(FORWARD.path)]: live.forward.prev },
      ...boot.facts,
    },
  };
}

async function readLive(host: Host, i: DnatRuleInputs): Promise<DnatLive & { locality: Locality }> {
  const out = await host.run(`reading DnatRule ${i.name}`, DNAT_READ_SH, [
    dnatTableName(i.name),
    dnatOwner(i.name),
    dnatBootEntryName(i.name),
    ...(i.destination !== undefined ? [i.destination] : []),
    i.toAddress,
  ]);
  return { ...parseDnatShow(out.stdout, i.name), locality: parseLocality(out.stdout) };
}

export const DnatRuleKind: ResourceKind<DnatRuleInputs> = {
  kind: "DnatRule",
  schema: DnatRuleSchema,
  crossCheck: dnatCrossCheck,
  render: renderDnat,
  identityFields: [],
  // A renamed rule gets a new table next to the old one; both DNAT the same packets the same way
  // until the old one goes, so creating first is safe.
  deleteBeforeReplace: false,

  async converge(host, i) {
    const live = await readLive(host, i);
    const problem = localityProblem(i, host.connection.host, live.locality);
    if (problem) throw new NatgateError("config", `DnatRule ${i.name}: ${problem}`);
    let after: DnatLive = live;
    const plan = planDnat(i, after);
    if (plan.drift.length > 0) after = { ...(await apply(host, i, plan)), locality: live.locality };
    after.boot = await syncBoot(host, `DnatRule ${i.name}`, dnatBootEntryName(i.name), i.persist ? dnatBootEntry(i, after) : undefined, after.boot);
    return observation(i, after);
  },

  async observe(host, i) {
    return observation(i, await readLive(host, i));
  },

  async remove(host, i) {
    const live = await readLive(host, i);
    const entry = bootEntryPath(dnatBootEntryName(i.name));
    const hasEntry = (live.boot.files.get(entry) ?? "-") !== "-";
    const inOwned = live.iptablesInput?.owned ?? [];
    if (live.nft.length === 0 && live.foreign.owned.length === 0 && live.iptables.owned.length === 0 && inOwned.length === 0 && !live.forward.held && !hasEntry) return;
    live.iptables.owned.forEach(assertSafeRule);
    inOwned.forEach(assertSafeRule);
    const table = dnatTableName(i.name);
    const txn = [`add table ip ${table}`, `delete table ip ${table}`, ...live.foreign.owned.map((o) => `delete rule ${chainId(o)} handle ${o.handle}`)];
    const out = await host.run(
      `deleting DnatRule ${i.name}`,
      DNAT_DELETE_SH,
      [table, dnatOwner(i.name), live.iptables.owned.join("\n"), txn.join("\n") + "\n", dnatBootEntryName(i.name), inOwned.join("\n")],
      { writes: true },
    );
    const after = parseDnatShow(out.stdout, i.name);
    const left = [
      ...after.nft,
      ...after.foreign.owned.map((o) => o.line),
      ...after.iptables.owned.map((r) => iptablesLine(r)),
      ...(after.iptablesInput?.owned ?? []).map((r) => iptablesLine(r, "INPUT")),
      ...(after.forward.held ? ["ip_forward holder file"] : []),
      ...((after.boot.files.get(entry) ?? "-") !== "-" ? [entry] : []),
    ];
    if (left.length) throw new Error(`DnatRule ${i.name} on ${host.label}: still present after delete:\n  ${left.join("\n  ")}`);
  },
};

/** Runs the plan (non-empty); returns the state read back (its check is converge's). */
async function apply(host: Host, i: DnatRuleInputs, plan: Plan): Promise<DnatLive> {
  plan.iptDelete.forEach(assertSafeRule);
  plan.iptInDelete.forEach(assertSafeRule);
  const out = await host.run(
    `applying DnatRule ${i.name}`,
    DNAT_APPLY_SH,
    [
      dnatTableName(i.name),
      dnatOwner(i.name),
      (plan.nftChange ? replaceTableTransaction(dnatTable(i)) : "") + plan.foreignOps.map((l) => l + "\n").join(""),
      plan.iptDelete.join("\n"),
      // Each add is inserted at the top: reversed, they end up in the chain in this order.
      [...plan.iptAdd].reverse().join("\n"),
      dnatBootEntryName(i.name),
      "",
      "",
      plan.iptInDelete.join("\n"),
      [...plan.iptInAdd].reverse().join("\n"),
    ],
    { writes: true },
  );
  return parseDnatShow(out.stdout, i.name);
}

export const dnatRuleProvider = makeProvider(DnatRuleKind);
