// fw4 include files: which accepts go into files, what a host's files count as, and the script
// that writes them. The behaviour with the real fw4 is in test/variants/fw4-router.test.ts.
import { strict as assert } from "assert";
import { execFileSync } from "child_process";
import { FW4_SH, NO_FW4, fw4Change, fw4IncludePath, fw4Includes, fw4PutRecords, parseFw4Show } from "../../provider/backends/fw4Include";
import { DNAT_APPLY_SH, DNAT_DELETE_SH, DNAT_READ_SH } from "../../provider/backends/dnatSh";

const RULE = 'meta l4proto tcp ct status dnat ct reply ip saddr 192.168.1.99 ct reply proto-src 5000 accept comment "natgate:web"';
const accept = (family: string, table: string, chain: string, rule = RULE) => ({ family, table, chain, line: `nft insert rule ${family} ${table} ${chain} ${rule}` });

describe("fw4 include files", () => {
  it("one file per fw4 chain, rules in order; other firewalls' chains get none", () => {
    const udp = RULE.replace("tcp", "udp");
    const files = fw4Includes("web", [accept("inet", "fw4", "forward"), accept("inet", "fw4", "forward", udp), accept("inet", "fw4", "input"), accept("inet", "firewalld", "filter_FORWARD")]);
    assert.deepEqual(files, [
      { path: "/usr/share/nftables.d/chain-pre/forward/natgate-web.nft", rules: [RULE, udp] },
      { path: "/usr/share/nftables.d/chain-pre/input/natgate-web.nft", rules: [RULE] },
    ]);
  });

  it("refuses paths with characters natgate does not write", () => {
    assert.throws(() => fw4IncludePath("forward;x", "web"), /characters natgate does not write/);
    assert.throws(() => fw4IncludePath("forward", "../web"), /characters natgate does not write/);
  });

  it("a missing, a different and an unexpected file are drift; matching files are not", () => {
    const want = fw4Includes("web", [accept("inet", "fw4", "forward")]);
    assert.deepEqual(fw4Change(want, { available: true, files: new Map([[want[0]!.path, [RULE]]]) }), { drift: [], del: [], put: [] });
    const missing = fw4Change(want, { available: true, files: new Map() });
    assert.match(missing.drift[0]!, /^missing fw4 include \/usr\/share\/nftables.d\/chain-pre\/forward\/natgate-web.nft \(fw4 re-applies it on every reload/);
    assert.deepEqual(missing.put, want);
    const other = fw4Change(want, { available: true, files: new Map([[want[0]!.path, ["accept"]]]) });
    assert.match(other.drift[0]!, /differs/);
    const stale = fw4Change([], { available: true, files: new Map([["/usr/share/nftables.d/chain-pre/input/natgate-web.nft", [RULE]]]) });
    assert.deepEqual(stale.del, ["/usr/share/nftables.d/chain-pre/input/natgate-web.nft"]);
    assert.match(stale.drift[0]!, /^unexpected fw4 include/);
    assert.deepEqual(fw4Change([], NO_FW4), { drift: [], del: [], put: [] });
  });

  it("reads fw4_show's section: availability, files, rules without the header comment", () => {
    const live = parseFw4Show({ arg: "yes", lines: ["file /usr/share/nftables.d/chain-pre/forward/natgate-web.nft", "| # natgate: written by pulumi up", `| ${RULE}`, ""] });
    assert.equal(live.available, true);
    assert.deepEqual([...live.files], [["/usr/share/nftables.d/chain-pre/forward/natgate-web.nft", [RULE]]]);
    assert.equal(parseFw4Show({ arg: "no", lines: [] }).available, false);
    assert.equal(parseFw4Show(undefined).available, false);
  });

  it("fw4_sync writes the records, marks the directories it made and removes them with the last file", () => {
    const root = execFileSync("mktemp", ["-d"]).toString().trim();
    try {
      const sh = FW4_SH.replaceAll("/usr/share/nftables.d", `${root}/nftables.d`);
      const path = `${root}/nftables.d/chain-pre/forward/natgate-web.nft`;
      const input = `${root}/nftables.d/chain-pre/input/natgate-web.nft`;
      // Two files: the last record belongs to the second, which the first's loop must not trip on.
      const put = fw4PutRecords([{ path, rules: [RULE, RULE.replace("tcp", "udp")] }, { path: input, rules: [RULE] }]);
      execFileSync("sh", ["-c", `${sh}\nmkdir -p ${root}/nftables.d\nfw4_sync "" "$1"`, "sh", put]);
      const text = execFileSync("cat", [path]).toString();
      assert.deepEqual(text.split("\n").slice(1), [RULE, RULE.replace("tcp", "udp"), ""]);
      assert.deepEqual(execFileSync("cat", [input]).toString().split("\n").slice(1), [RULE, ""]);
      execFileSync("sh", ["-c", `${sh}\nfw4_sync "$1 $2" ""`, "sh", path, input]);
      assert.equal(execFileSync("ls", ["-A", `${root}/nftables.d`]).toString(), "", "chain-pre/ and forward/ were natgate's: removed");
    } finally {
      execFileSync("rm", ["-rf", root]);
    }
  });

  it("the DnatRule scripts that carry it are valid POSIX sh (dash -n)", () => {
    for (const s of [DNAT_READ_SH, DNAT_APPLY_SH, DNAT_DELETE_SH]) execFileSync("dash", ["-n"], { input: s });
  });
});
