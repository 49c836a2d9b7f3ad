// Captures the backend fixtures in test/resources/fixtures: each golden case's own objects applied
// with the real tools in a throwaway network namespace, then read back as natgate reads them
// (nft -j list table; iptables -S -v for iptables-legacy and iptables-nft). The unit tests then
// prove that the read-back parses into exactly the rendered lines. Run as root after a render
// change: node_modules/.bin/tsx scripts/capture-fixtures.ts
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { IPT_TABLES, iptDnatChains, iptRestoreText, iptReturnPathChains } from "../provider/backends/iptablesFirewall";
import { replaceTableTransaction } from "../provider/backends/nftables";
import { cmarkFirewall, cmarkTable } from "../provider/resources/connmark/render";
import { ConnmarkReturnPathSchema } from "../provider/resources/connmark/schema";
import { dnatFirewall, dnatTable } from "../provider/resources/dnat/render";
import { DnatRuleSchema } from "../provider/resources/dnat/schema";
import { DNAT_CASES, RET_CASES } from "../test/golden/cases";

const ns = `ngfix-${process.pid}`;
const dir = path.join(__dirname, "..", "test", "resources", "fixtures");
const conn = { host: "198.51.100.1", password: "x" };
const sh = (script: string, input?: string) => execFileSync("ip", ["netns", "exec", ns, "sh", "-c", script], { input, encoding: "utf8" });

execFileSync("ip", ["netns", "add", ns]);
try {
  sh("ip link set lo up");
  const jumps = (chains: { table: string; name: string; from: string[] }[], ipt: string) =>
    chains.flatMap((c) => c.from.map((b) => `${ipt} -w -t ${c.table} -I ${b} 1 -j ${c.name}`)).join("\n");
  const cases: [string, object, "dnat" | "ret"][] = [
    ...Object.entries(DNAT_CASES).map(([k, v]): [string, object, "dnat"] => [k, v, "dnat"]),
    ...Object.entries(RET_CASES).map(([k, v]): [string, object, "ret"] => [k, v, "ret"]),
  ];
  for (const [k, v, kind] of cases) {
    const i = kind === "dnat" ? DnatRuleSchema.parse({ connection: conn, ...v }) : ConnmarkReturnPathSchema.parse({ connection: conn, ...v });
    const table = kind === "dnat" ? dnatTable(i as never) : cmarkTable(i as never);
    sh("nft -f -", replaceTableTransaction(table));
    fs.writeFileSync(path.join(dir, `nft-${kind}-${k}.json`), sh(`nft -j list table ${table.family} ${table.name}`));
    sh(`nft delete table ${table.family} ${table.name}`);
    const chains = kind === "dnat" ? iptDnatChains(dnatFirewall(i as never)) : iptReturnPathChains(cmarkFirewall(i as never));
    for (const variant of ["legacy", "nft"]) {
      const ipt = `${table.family === "ip6" ? "ip6tables" : "iptables"}-${variant}`;
      sh(`${ipt}-restore -w --noflush`, iptRestoreText(chains));
      sh(jumps(chains, ipt));
      const text = IPT_TABLES.map((t) => `@@iptfw_${t}\n` + sh(`${ipt} -w -t ${t} -S -v`)).join("");
      fs.writeFileSync(path.join(dir, `ipt-${variant}-${kind}-${k}.txt`), text);
      sh(`for t in nat mangle filter; do ${ipt} -w -t $t -F; ${ipt} -w -t $t -X; done`);
    }
  }
} finally {
  execFileSync("ip", ["netns", "del", ns]);
}
console.log(`fixtures written to ${dir}`);
