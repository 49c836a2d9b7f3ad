import { HOSTSTATE_SH } from "../../backends/hoststate";
import {
  IPTABLES_SH,
  assertSafeRule,
  forwardNeedsAccept,
  iptablesLine,
  parseForwardChain,
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
import type { Host } from "../common/host";
import { splitSections } from "../common/host";
import { lineDrift, makeProvider, type Observation, type ResourceKind } from "../common/provider";
import { commentOf } from "../../backends/iptables";
import { dnatForwardAccepts, dnatNftAccepts, dnatOwner, dnatTable, dnatTableName, renderDnat } from "./render";
import { DnatRuleSchema, dnatCrossCheck, type DnatRuleInputs } from "./schema";

const FORWARD = ipForward();

// $1 table, $2 owner. The whole ruleset: other firewalls' forward chains matter too.
const SHOW_SH = `
dnat_show() {
  echo "@@nft"; nft_ruleset || exit 1
  ipt_show || exit 1
  echo "@@sysctl"; sysctl_show ${FORWARD.path} "$2"
}
`;

const PRELUDE = HOSTSTATE_SH + NFT_SH + IPTABLES_SH + SYSCTL_SH + SHOW_SH + "need nft nftables nftables-json\n";

/** $1 table, $2 owner */
export const DNAT_READ_SH = PRELUDE + `dnat_show "$1" "$2"\n`;

/** $1 table, $2 owner, $3 nft transaction (own table and accepts in other tables), $4 iptables rules to delete, $5 to add */
export const DNAT_APPLY_SH =
  PRELUDE +
  `ng_lock
ipt_sync "$4" "$5" || exit 1
sysctl_hold ${FORWARD.path} ${FORWARD.value} "$2" || exit 1
[ -z "$3" ] || nft_apply "$3" || exit 1
dnat_show "$1" "$2"
`;

/** $1 table, $2 owner, $3 iptables rules to delete, $4 nft transaction deleting the table and accepts in other tables */
export const DNAT_DELETE_SH =
  PRELUDE +
  `ng_lock
nft_apply "$4" || exit 1
ipt_sync "$3" "" || exit 1
sysctl_release ${FORWARD.path} "$2" || exit 1
dnat_show "$1" "$2"
`;

export interface DnatLive {
  /** This rule's own table. */
  nft: string[];
  /** Forward chains of other nftables firewalls that may drop, and this rule's accepts in them. */
  foreign: { dropChains: ChainRef[]; owned: ForeignRule[] };
  iptables: IptablesForward;
  forward: LiveSysctl;
}

export function parseDnatShow(stdout: string, name: string): DnatLive {
  const s = splitSections(stdout);
  const ipt = s.get("iptables");
  const forward = parseSysctlShow(s.get("sysctl")?.lines ?? [])[0];
  if (!s.has("nft") || !ipt || !forward) throw new Error(`unexpected output from the DnatRule read script:\n${stdout.slice(0, 500)}`);
  const items = parseNftJson(s.get("nft")!.lines.join("\n"));
  return {
    nft: tableLinesFromItems(items, "ip", dnatTableName(name)),
    foreign: foreignForwardState(items, commentOf(name)),
    iptables: parseForwardChain(ipt.lines.join("\n"), ipt.arg === "present", name),
    forward,
  };
}

interface Plan {
  drift: string[];
  nftChange: boolean;
  /** nft commands (without "nft ") for accepts in other tables: deletes by handle, then inserts. */
  foreignOps: string[];
  iptDelete: string[];
  iptAdd: string[];
  hold: boolean;
}

export function planDnat(i: DnatRuleInputs, live: DnatLive): Plan {
  const nftDrift = lineDrift("nft", tableLines(dnatTable(i)), live.nft);
  const want = forwardNeedsAccept(live.iptables) ? dnatForwardAccepts(i) : [];
  const iptDelete = live.iptables.owned.filter((r) => !want.includes(r));
  const iptAdd = want.filter((r) => !live.iptables.owned.includes(r));
  const wantForeign = live.foreign.dropChains.flatMap((c) => dnatNftAccepts(i, c));
  const ownedLines = live.foreign.owned.map((o) => o.line);
  const foreignDelete = live.foreign.owned.filter((o) => !wantForeign.some((w) => w.line === o.line));
  const foreignAdd = wantForeign.filter((w) => !ownedLines.includes(w.line));
  const drift = [
    ...nftDrift,
    ...iptAdd.map((r) => `missing iptables accept (filter FORWARD drops forwarded packets): ${iptablesLine(r)}`),
    ...iptDelete.map((r) => `unexpected iptables rule: ${iptablesLine(r)}`),
    ...foreignAdd.map((w) => `missing accept in ${chainId(w)} (it drops forwarded packets): ${w.line}`),
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
  return { drift, nftChange: nftDrift.length > 0, foreignOps, iptDelete, iptAdd, hold };
}

function observation(i: DnatRuleInputs, live: DnatLive): Observation {
  const plan = planDnat(i, live);
  return {
    rendered: [...live.nft, sysctlLine(live.forward)],
    drift: plan.drift,
    facts: {
      forwardAccept: [...live.iptables.owned.map(iptablesLine), ...live.foreign.owned.map((o) => o.line)].sort(),
      sysctlPrevious: live.forward.prev === undefined ? {} : { [sysctlName(FORWARD.path)]: live.forward.prev },
    },
  };
}

async function readLive(host: Host, i: DnatRuleInputs): Promise<DnatLive> {
  const out = await host.run(`reading DnatRule ${i.name}`, DNAT_READ_SH, [dnatTableName(i.name), dnatOwner(i.name)]);
  return parseDnatShow(out.stdout, i.name);
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
    const plan = planDnat(i, live);
    if (plan.drift.length === 0) return observation(i, live);
    plan.iptDelete.forEach(assertSafeRule);
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
      ],
      { writes: true },
    );
    const after = parseDnatShow(out.stdout, i.name);
    const obs = observation(i, after);
    if (obs.drift.length) {
      throw new Error(`DnatRule ${i.name} on ${host.label} does not read back as applied:\n  ${obs.drift.join("\n  ")}`);
    }
    return obs;
  },

  async observe(host, i) {
    return observation(i, await readLive(host, i));
  },

  async remove(host, i) {
    const live = await readLive(host, i);
    if (live.nft.length === 0 && live.foreign.owned.length === 0 && live.iptables.owned.length === 0 && !live.forward.held) return;
    live.iptables.owned.forEach(assertSafeRule);
    const table = dnatTableName(i.name);
    const txn = [`add table ip ${table}`, `delete table ip ${table}`, ...live.foreign.owned.map((o) => `delete rule ${chainId(o)} handle ${o.handle}`)];
    const out = await host.run(
      `deleting DnatRule ${i.name}`,
      DNAT_DELETE_SH,
      [table, dnatOwner(i.name), live.iptables.owned.join("\n"), txn.join("\n") + "\n"],
      { writes: true },
    );
    const after = parseDnatShow(out.stdout, i.name);
    const left = [
      ...after.nft,
      ...after.foreign.owned.map((o) => o.line),
      ...after.iptables.owned.map(iptablesLine),
      ...(after.forward.held ? ["ip_forward holder file"] : []),
    ];
    if (left.length) throw new Error(`DnatRule ${i.name} on ${host.label}: still present after delete:\n  ${left.join("\n  ")}`);
  },
};

export const dnatRuleProvider = makeProvider(DnatRuleKind);
