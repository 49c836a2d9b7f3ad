import { ruleLine, type IpRule } from "../../backends/iproute";
import { PRIORITY, ct, mangle, maskedMatch, maskedSet, match, meta, tableLines, type NftChain, type NftStmt, type NftTable } from "../../backends/nftables";
import { bootEntryName, bootRenderedLine } from "../../backends/persist";
import { rpFilter, sysctlLine, type SysctlSetting } from "../../backends/sysctl";
import { effectiveLocalSourcePriority, effectiveMask, type ConnmarkReturnPathInputs } from "./schema";

export const CMARK_TABLE_PREFIX = "natgate_ret_";

export function cmarkTableName(name: string): string {
  return CMARK_TABLE_PREFIX + name;
}

/** Its entry in /etc/natgate/boot.d. */
export function cmarkBootEntryName(name: string): string {
  return bootEntryName("ret", name);
}

export function cmarkOwner(name: string): string {
  return `ret_${name}`;
}

/**
 * Copy our bits of the connection mark onto the packet. nft cannot compute
 * `(meta mark & ~M) | (ct mark & M)` (one runtime source per expression), but natgate only ever
 * puts one value under its mask, so "if the connection has our value, give the packet our value"
 * is the same thing, for any mask.
 */
function restoreRule(i: ConnmarkReturnPathInputs): NftStmt[] {
  const mask = effectiveMask(i);
  return [maskedMatch(ct("mark"), mask, i.mark), mangle(meta("mark"), maskedSet(meta("mark"), mask, i.mark))];
}

/**
 * Mangle priority (-150): before DNAT (-100) so the first packet of a connection already carries
 * the mark when it is routed towards the LAN host, and the OUTPUT chain is a `route` chain so a
 * changed mark makes the kernel route a local reply again.
 */
export function cmarkTable(i: ConnmarkReturnPathInputs): NftTable {
  const mask = effectiveMask(i);
  const chains: NftChain[] = [
    {
      name: "prerouting",
      type: "filter",
      hook: "prerouting",
      priority: PRIORITY.mangle,
      policy: "accept",
      rules: [[match(meta("iifname"), i.tunnelInterface), mangle(ct("mark"), maskedSet(ct("mark"), mask, i.mark))], restoreRule(i)],
    },
  ];
  if (i.restoreInOutput) {
    chains.push({ name: "output", type: "route", hook: "output", priority: PRIORITY.mangle, policy: "accept", rules: [restoreRule(i)] });
  }
  return { family: "ip", name: cmarkTableName(i.name), chains };
}

export function cmarkRules(i: ConnmarkReturnPathInputs): IpRule[] {
  const rules: IpRule[] = [{ priority: i.priority, fwmark: i.mark, fwmask: effectiveMask(i), table: i.table }];
  if (i.localSource !== undefined) rules.push({ priority: effectiveLocalSourcePriority(i), from: i.localSource, table: i.table });
  return rules;
}

export function cmarkSysctls(i: ConnmarkReturnPathInputs): SysctlSetting[] {
  return i.looseRpFilter ? [rpFilter(i.tunnelInterface, "2")] : [];
}

export function renderConnmark(i: ConnmarkReturnPathInputs): string[] {
  return [
    ...tableLines(cmarkTable(i)),
    ...cmarkRules(i).map(ruleLine),
    ...cmarkSysctls(i).map(sysctlLine),
    ...(i.persist ? [bootRenderedLine(cmarkBootEntryName(i.name))] : []),
  ];
}
