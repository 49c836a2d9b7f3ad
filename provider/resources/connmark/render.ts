import { ruleLine, type IpRule } from "../../backends/iproute";
import { iptChainName, iptLines, iptReturnPathChains } from "../../backends/iptablesFirewall";
import { RET_TABLE_PREFIX, nftReturnPathTable } from "../../backends/nftFirewall";
import { tableLines, type NftTable } from "../../backends/nftables";
import type { Backend, Family, ReturnPathFirewall } from "../../plan/firewall";
import { AUTO_NOTE } from "../dnat/render";
import { bootEntryName, bootRenderedLine } from "../../backends/persist";
import { rpFilter, sysctlLine, type SysctlSetting } from "../../backends/sysctl";
import { effectiveLocalSourcePriority, effectiveMask, type ConnmarkReturnPathInputs } from "./schema";

export const CMARK_TABLE_PREFIX = RET_TABLE_PREFIX;

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

/** The return path's packet-filter plan: the same data for both backends. */
export function cmarkFirewall(i: ConnmarkReturnPathInputs): ReturnPathFirewall {
  return { name: i.name, tunnelInterface: i.tunnelInterface, mark: i.mark, mask: effectiveMask(i), restoreInOutput: i.restoreInOutput };
}

/** The nft table this return path owns (nftables backend); family 6: its IPv6 twin (with ipv6). */
export function cmarkTable(i: ConnmarkReturnPathInputs, family: Family = 4): NftTable {
  return nftReturnPathTable(cmarkFirewall(i), family);
}

/** The IP versions this return path serves. */
export function cmarkFamilies(i: Pick<ConnmarkReturnPathInputs, "ipv6">): Family[] {
  return i.ipv6 ? [4, 6] : [4];
}

/** Names of the iptables chains this return path may own, whatever its inputs. */
export function cmarkChainNames(name: string): string[] {
  return ["ret", "out"].map((t) => iptChainName(t, name));
}

/** The tables (or chains) of each family, IPv4's first: the marks are the same in both. */
export function cmarkFirewallLines(i: ConnmarkReturnPathInputs, backend: Backend): string[] {
  return cmarkFamilies(i).flatMap((f) => (backend === "nftables" ? tableLines(cmarkTable(i, f)) : iptLines(iptReturnPathChains(cmarkFirewall(i)), f)));
}

export function cmarkRules(i: ConnmarkReturnPathInputs): IpRule[] {
  const mark = { fwmark: i.mark, fwmask: effectiveMask(i), table: i.table };
  const rules: IpRule[] = [{ priority: i.priority, ...mark }];
  if (i.localSource !== undefined) rules.push({ priority: effectiveLocalSourcePriority(i), from: i.localSource, table: i.table });
  if (i.ipv6) rules.push({ family: 6, priority: i.priority, ...mark });
  if (i.localSource6 !== undefined) rules.push({ family: 6, priority: effectiveLocalSourcePriority(i), from: i.localSource6, table: i.table });
  return rules;
}

export function cmarkSysctls(i: ConnmarkReturnPathInputs): SysctlSetting[] {
  return i.looseRpFilter ? [rpFilter(i.tunnelInterface, "2")] : [];
}

/** What this resource owns, as commands (pure); `auto` previews as nftables, with a note saying so. */
export function renderConnmark(i: ConnmarkReturnPathInputs, backend?: Backend): string[] {
  const b = backend ?? (i.backend === "iptables" ? "iptables" : "nftables");
  return [
    ...(backend === undefined && i.backend === "auto" ? [AUTO_NOTE] : []),
    ...cmarkFirewallLines(i, b),
    ...cmarkRules(i).map(ruleLine),
    ...cmarkSysctls(i).map(sysctlLine),
    ...(i.persist ? [bootRenderedLine(cmarkBootEntryName(i.name))] : []),
  ];
}
