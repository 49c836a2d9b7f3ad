// Parser tests on conntrack 1.4.7 output captured in the lab (test/verify/samples).
import * as assert from "assert";
import * as fs from "fs";
import * as path from "path";
import { flowsOf, parseConntrack, parseConntrackLine } from "../../provider/verify/conntrack";

const sample = (name: string) => fs.readFileSync(path.join(__dirname, "samples", name), "utf8");
const events = (name: string) => JSON.parse(sample(`events-${name}.json`)) as { vps: string; router: string };

describe("conntrack parser", () => {
  it("reads every line of a real `conntrack -L` (tcp, udp, icmp, unknown protocol, accounting, timestamps)", () => {
    const text = sample("list-router.txt");
    const lines = text.split("\n").filter((l) => l.trim() !== "");
    const entries = parseConntrack(text);
    assert.strictEqual(entries.length, lines.length);
    for (const e of entries) {
      assert.ok(e.orig.src && e.orig.dst && e.reply.src && e.reply.dst, JSON.stringify(e));
      assert.strictEqual(e.mark !== undefined, true);
      assert.strictEqual(e.use, 1);
    }
    assert.deepStrictEqual(
      [...new Set(entries.map((e) => e.protocol))].sort(),
      ["icmp", "tcp", "udp", "unknown"],
    );
  });

  it("splits the original and reply tuples of a DNATed, marked tcp entry", () => {
    const e = parseConntrackLine(
      "tcp      6 55 TIME_WAIT src=203.0.113.130 dst=10.10.10.2 sport=33436 dport=5000 src=192.168.1.99 dst=203.0.113.130 sport=5000 dport=33436 [ASSURED] mark=4660 use=1",
    );
    assert.deepStrictEqual(e, {
      protocol: "tcp",
      protonum: 6,
      timeout: 55,
      state: "TIME_WAIT",
      orig: { src: "203.0.113.130", dst: "10.10.10.2", sport: 33436, dport: 5000 },
      reply: { src: "192.168.1.99", dst: "203.0.113.130", sport: 5000, dport: 33436 },
      unreplied: false,
      assured: true,
      flags: ["ASSURED"],
      mark: 0x1234,
      use: 1,
      extra: {},
    });
  });

  it("keeps per-direction counters with their tuple and the delta-time aside", () => {
    const line = sample("list-router.txt").split("\n").find((l) => l.includes("CLOSE_WAIT src=203.0.113.130"))!;
    const e = parseConntrackLine(line)!;
    assert.deepStrictEqual(e.orig, { src: "203.0.113.130", dst: "10.10.10.2", sport: 36112, dport: 5000, packets: 4, bytes: 216 });
    assert.deepStrictEqual(e.reply, { src: "192.168.1.99", dst: "203.0.113.130", sport: 5000, dport: 36112, packets: 3, bytes: 178 });
    assert.strictEqual(e.extra["delta-time"], "1");
  });

  it("tells an icmp tuple's id from the entry's id", () => {
    const e = parseConntrackLine(
      "icmp     1 29 src=192.168.1.50 dst=198.51.100.1 type=8 code=0 id=16258 src=198.51.100.1 dst=100.64.0.2 type=0 code=0 id=16258 mark=0 use=1 id=424242",
    )!;
    assert.deepStrictEqual(e.orig, { src: "192.168.1.50", dst: "198.51.100.1", type: 8, code: 0, icmpId: 16258 });
    assert.strictEqual(e.reply.icmpId, 16258);
    assert.strictEqual(e.id, 424242);
    assert.strictEqual(e.state, undefined);
  });

  it("reads an entry with no ports and [UNREPLIED] (IGMP shows as unknown)", () => {
    const e = parseConntrackLine("unknown  2 173 src=192.168.1.1 dst=224.0.0.22 [UNREPLIED] src=224.0.0.22 dst=192.168.1.1 mark=0 use=1")!;
    assert.strictEqual(e.protocol, "unknown");
    assert.strictEqual(e.protonum, 2);
    assert.strictEqual(e.unreplied, true);
    assert.deepStrictEqual(e.orig, { src: "192.168.1.1", dst: "224.0.0.22" });
  });

  it("reads `-o extended,id` (family prefix, entry id)", () => {
    const entries = parseConntrack(sample("list-router-extended-id.txt"));
    assert.strictEqual(entries.length, sample("list-router.txt").split("\n").filter((l) => l.trim()).length);
    for (const e of entries) {
      assert.strictEqual(e.family, "ipv4");
      assert.ok(Number.isInteger(e.id) && e.id! > 0);
    }
  });

  it("skips the summary line, blank lines and errors", () => {
    assert.deepStrictEqual(
      parseConntrack("\nconntrack v1.4.7 (conntrack-tools): 0 flow events have been shown.\nconntrack v1.4.7 (conntrack-tools): Operation not permitted\n"),
      [],
    );
  });

  it("reads `conntrack -E` events and follows one connection by id", () => {
    const flows = flowsOf(parseConntrack(events("ok").router));
    assert.strictEqual(flows.length, 1);
    const f = flows[0];
    assert.deepStrictEqual(f.events, ["NEW", "UPDATE", "UPDATE", "UPDATE", "UPDATE", "UPDATE"]);
    assert.strictEqual(f.began, true);
    assert.strictEqual(f.first.unreplied, true);
    assert.strictEqual(f.first.state, "SYN_SENT");
    assert.strictEqual(f.last.state, "TIME_WAIT");
    assert.strictEqual(f.replied, true);
    assert.strictEqual(f.resetOnly, false);
    assert.strictEqual(f.first.mark, 0x1234);
  });

  it("counts a connection the kernel deleted after a lone reset as answered", () => {
    // the kernel kills an entry whose only reply is a RST; its DESTROY still says [UNREPLIED]
    const [f] = flowsOf(parseConntrack(events("lan-refused").router));
    assert.deepStrictEqual(f.events, ["NEW", "DESTROY"]);
    assert.strictEqual(f.last.unreplied, true);
    assert.strictEqual(f.last.state, "CLOSE");
    assert.strictEqual(f.destroyed, true);
    assert.strictEqual(f.replied, true);
    assert.strictEqual(f.resetOnly, true);
  });

  it("leaves a connection nobody answered unreplied", () => {
    const [f] = flowsOf(parseConntrack(events("tunnel-down").vps));
    assert.deepStrictEqual(f.events, ["NEW"]);
    assert.strictEqual(f.replied, false);
  });

  it("tells two connections on the same tuple apart without ids (NEW after DESTROY)", () => {
    const strip = (t: string) => t.replace(/ id=\d+/g, "");
    const twice = strip(events("lan-refused").vps) + strip(events("lan-refused").vps);
    const flows = flowsOf(parseConntrack(twice));
    assert.strictEqual(flows.length, 2);
    for (const f of flows) assert.deepStrictEqual(f.events, ["NEW", "DESTROY"]);
  });
});
