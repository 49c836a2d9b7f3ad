import { iptDnatChains, iptJumpSpecs, iptRestoreText, iptReturnPathChains } from "../../provider/backends/iptablesFirewall";
import { replaceTableTransaction } from "../../provider/backends/nftables";
import { cmarkFirewall, cmarkTable } from "../../provider/resources/connmark/render";
import { dnatFirewall, dnatTable, renderDnat } from "../../provider/resources/dnat/render";
import { DnatRuleSchema } from "../../provider/resources/dnat/schema";
import { renderConnmark } from "../../provider/resources/connmark/render";
import { ConnmarkReturnPathSchema } from "../../provider/resources/connmark/schema";

const conn = { host: "198.51.100.1", password: "x" };

export const DNAT_CASES: Record<string, object> = {
  vps: { name: "vps", protocol: "both", ports: "5000-6000", destination: "198.51.100.1", toAddress: "10.10.10.2" },
  ssh: { name: "ssh", ports: 2222, destination: "198.51.100.1", toAddress: "10.10.10.2", toPorts: 22 },
  router: { name: "router", protocol: "both", ports: "5000-6000", inInterface: "wg0", toAddress: "192.168.1.99" },
  shift: { name: "shift", protocol: "both", ports: "7000-7003", inInterface: "wg0", toAddress: "192.168.1.99", toPorts: "8000-8003" },
  udp: { name: "udp", protocol: "udp", ports: "53", inInterface: "wg0", toAddress: "192.168.1.99", toPorts: "5353" },
  noclamp: { name: "noclamp", ports: 443, destination: "198.51.100.1", toAddress: "10.10.10.2", clampMss: false, persist: false },
  long: { name: "a_rather_long_resource_name_32ch", ports: 80, inInterface: "wg0", toAddress: "192.168.1.99" },
  allow: { name: "allow", protocol: "both", ports: 8080, destination: "198.51.100.1", toAddress: "10.10.10.2", allowFrom: ["203.0.113.0/25", "10.0.2.0/24", "10.0.1.0/24", "198.51.100.7"], refuse: "reject" },
  allowone: { name: "allowone", ports: 443, destination: "198.51.100.1", toAddress: "10.10.10.2", allowFrom: ["203.0.113.10"] },
  // A router forward that keeps its port: the DNAT rewrites nothing, so no `ct status dnat` (identityMapping)
  local: { name: "local", protocol: "both", ports: 7000, inInterface: "wg0", destination: "10.10.10.2", toAddress: "10.10.10.2" },
  local6: { name: "local6", ports: 7000, inInterface: "wg0", destination: "fd00:4e47::2", toAddress: "fd00:4e47::2" },
  // IPv6 (spelled as users may write them: output is canonical)
  vps6: { name: "vps6", protocol: "both", ports: "5000-6000", destination: "2001:DB8:100:0::1", toAddress: "fd00:10::2" },
  ssh6: { name: "ssh6", ports: 2222, destination: "2001:db8:100::1", toAddress: "fd00:10::2", toPorts: 22 },
  shift6: { name: "shift6", protocol: "both", ports: "7000-7003", inInterface: "wg0", toAddress: "fd00:1::99", toPorts: "8000-8003" },
  allow6: { name: "allow6", protocol: "both", ports: 8080, destination: "2001:db8:100::1", toAddress: "fd00:10::2", allowFrom: ["2001:db8:113::/64", "2001:db8:114::/64", "2001:db8::7"], refuse: "reject" },
};

export const RET_CASES: Record<string, object> = {
  default: { name: "home", tunnelInterface: "wg0", localSource: "10.10.10.2" },
  seed: { name: "seed", tunnelInterface: "tun0", mark: 0x1234, table: 1234, priority: 960, restoreInOutput: false },
  masked: { name: "masked", tunnelInterface: "tun0", mark: 0x1000, mask: 0x3000, table: 1235, priority: 970, persist: false },
};

export interface GoldenCase {
  backend: string;
  file: string;
  text: string;
}

/** Every golden case: filled in per backend by the renders of each kind. */
export function goldenCases(): GoldenCase[] {
  const out: GoldenCase[] = [];
  // The preview lines, then what an apply sends: the nft transaction, or the iptables-restore text and the jumps.
  const text = (rendered: string[], apply: string) => rendered.join("\n") + "\n# apply:\n" + apply;
  for (const [k, v] of Object.entries(DNAT_CASES)) {
    const i = DnatRuleSchema.parse({ connection: conn, ...v });
    out.push({ backend: "nftables", file: `dnat-${k}.txt`, text: renderDnat(i).join("\n") + "\n" });
    out.push({ backend: "nftables", file: `dnat-${k}.apply.txt`, text: text(renderDnat(i, "nftables"), replaceTableTransaction(dnatTable(i))) });
    const chains = iptDnatChains(dnatFirewall(i));
    out.push({ backend: "iptables", file: `dnat-${k}.txt`, text: text(renderDnat({ ...i, backend: "iptables" }), iptRestoreText(chains) + iptJumpSpecs(chains) + "\n") });
  }
  for (const [k, v] of Object.entries(RET_CASES)) {
    const i = ConnmarkReturnPathSchema.parse({ connection: conn, ...v });
    out.push({ backend: "nftables", file: `ret-${k}.txt`, text: renderConnmark(i).join("\n") + "\n" });
    out.push({ backend: "nftables", file: `ret-${k}.apply.txt`, text: text(renderConnmark(i, "nftables"), replaceTableTransaction(cmarkTable(i))) });
    const chains = iptReturnPathChains(cmarkFirewall(i));
    out.push({ backend: "iptables", file: `ret-${k}.txt`, text: text(renderConnmark({ ...i, backend: "iptables" }), iptRestoreText(chains) + iptJumpSpecs(chains) + "\n") });
  }
  return out;
}
