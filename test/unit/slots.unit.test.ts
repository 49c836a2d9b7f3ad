// Slots and claims, the pure parts: every slot's numbers differ from every other's, slot 0 is the
// defaults natgate always had, and a claim held by another resource is an error that names it
// and the fix. The lab test test/variants/multipath.test.ts runs them on hosts.
import { strict as assert } from "assert";
import { SLOTS, slotDefaults, slotProblem } from "../../provider/plan/slots";
import { claimConflict, claimKeys, claimPlan, CLAIMED_EXIT } from "../../provider/backends/claims";
import { DEFAULT_MARK, DEFAULT_PRIORITY, DEFAULT_TABLE } from "../../provider/resources/connmark/schema";
import { TUNNEL_DEFAULTS } from "../../provider/resources/tunnel/schema";

describe("slots: one number per path on a router", () => {
  const all = Array.from({ length: SLOTS }, (_, k) => slotDefaults(k));

  it("slot 0 is the defaults from before slots (an existing stack keeps its numbers)", () => {
    assert.deepEqual(all[0], {
      interfaceName: TUNNEL_DEFAULTS.interfaceName,
      vpsAddress: "10.10.10.1/24",
      routerAddress: "10.10.10.2/24",
      vpsAddress6: "fd00:4e47::1/64",
      routerAddress6: "fd00:4e47::2/64",
      listenPort: TUNNEL_DEFAULTS.listenPort,
      mark: DEFAULT_MARK,
      table: DEFAULT_TABLE,
      priority: DEFAULT_PRIORITY,
    });
  });

  it("no two slots share an interface, subnet, port, table, rule priority or mark bit", () => {
    const distinct = (what: string, values: unknown[]) => assert.equal(new Set(values.map(String)).size, values.length, `${what}: ${values.join(", ")}`);
    distinct("interface", all.map((d) => d.interfaceName));
    distinct("subnet", all.map((d) => d.vpsAddress.split(".").slice(0, 3).join(".")));
    distinct("IPv6 subnet", all.map((d) => d.vpsAddress6.replace(/::1\/64$/, "")));
    distinct("listen port", all.map((d) => d.listenPort));
    distinct("table", all.map((d) => d.table));
    distinct("priorities", all.flatMap((d) => [d.priority, d.priority + 1]));
    for (const [a, d] of all.entries()) {
      assert.equal(d.mark.toString(2).replace(/0/g, ""), "1", `slot ${a}'s mark is one bit`);
      assert.equal((d.mark & 0x00ffffff) >>> 0, 0, `slot ${a}'s mark is in 0xFF000000 (mwan3 and pbr use the lower bytes)`);
      for (const [b, e] of all.entries()) if (a !== b) assert.equal((d.mark & e.mark) >>> 0, 0, `slots ${a} and ${b} share a mark bit`);
      assert.ok(d.priority + 1 < 1001, `slot ${a}'s rules come before mwan3's (1001)`);
    }
  });

  it("refuses a slot outside 0-7, saying what a valid one is", () => {
    for (const bad of [-1, 8, 1.5, "1", NaN]) assert.match(slotProblem(bad) ?? "", /must be a whole number 0-7, or left out for the lowest free one, got /);
    assert.equal(slotProblem(7), undefined);
  });
});

describe("claims: who holds a table, a priority, a mark bit, an interface", () => {
  it("a return path claims its table, both priorities and each bit of its mask", () => {
    assert.deepEqual(claimKeys.returnPath(8765, [952, 953], 0x20000000), ["table-8765.ret", "priority-952", "priority-953", "markbit-29"]);
    assert.deepEqual(claimKeys.returnPath(8764, [950], 0xff000000).filter((k) => k.startsWith("markbit")).length, 8);
  });

  it("missing and stale claims are changes for the apply (not drift); another owner's is an error naming it and the fix", () => {
    const live = new Map([
      ["table-8764.ret", "ret_home_return"],
      ["priority-960", "ret_games_return"],
    ]);
    const mine = claimPlan("ret_home_return", ["table-8764.ret", "priority-950"], live, "root@router");
    assert.deepEqual(mine.changes, ["missing claim: /etc/natgate/claims/priority-950"]);
    assert.equal(mine.conflict, undefined);
    const stale = claimPlan("ret_games_return", ["priority-962"], live, "root@router");
    assert.deepEqual(stale.changes, ["missing claim: /etc/natgate/claims/priority-962", "stale claim: /etc/natgate/claims/priority-960"]);
    const clash = claimPlan("ret_other_return", ["table-8764.ret"], live, "root@router");
    assert.match(
      clash.conflict?.message ?? "",
      /^routing table 8764 \(for a return path\) on root@router is already used by another natgate resource \(ConnmarkReturnPath home_return; see \/etc\/natgate\/claims\/table-8764\.ret\): nothing was changed\. .*`slot: 1`/,
    );
  });

  it("reads a refusal from the host script's exit code and stderr, and nothing else", () => {
    const e = claimConflict(CLAIMED_EXIT, "natgate-claimed wireguard-wg0 tunnel_web_tunnel\n", "the dialer (root@router)");
    assert.match(e?.message ?? "", /^WireGuard interface wg0 on the dialer \(root@router\) is already used by another natgate resource \(Tunnel web_tunnel;/);
    assert.equal(claimConflict(1, "natgate-claimed wireguard-wg0 x", "h"), undefined, "another exit code is another failure");
    assert.equal(claimConflict(CLAIMED_EXIT, "something else", "h"), undefined);
    assert.match(claimConflict(CLAIMED_EXIT, "natgate-claimed markbit-28 ret_a", "h")?.message ?? "", /^mark bit 0x10000000 on h/);
  });
});
