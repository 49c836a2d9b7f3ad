// Hop analysis on conntrack events captured in the lab, one sample per broken hop.
import * as assert from "assert";
import * as fs from "fs";
import * as path from "path";
import { AmbiguousProbeError, analyzePath, failureMessage, PathCheckError, type AnalyzeInput } from "../../provider/verify/analyze";
import type { LinkState } from "../../provider/verify/capture";
import type { ProbeResult } from "../../provider/verify/probe";

interface Sample {
  probe: ProbeResult;
  vps: string;
  router: string;
  link?: LinkState;
}
const sample = (name: string) => JSON.parse(fs.readFileSync(path.join(__dirname, "samples", `events-${name}.json`), "utf8")) as Sample;

function input(name: string, over: Partial<AnalyzeInput> = {}): AnalyzeInput {
  const s = sample(name);
  return {
    publicAddress: "198.51.100.1",
    port: 5000,
    routerTunnelAddress: "10.10.10.2",
    tunnelInterface: "tun0",
    mark: 0x1234,
    mask: 0x1234,
    probe: s.probe,
    vpsEvents: s.vps,
    routerEvents: s.router,
    ...(s.link ? { routerLink: s.link } : {}),
    ...over,
  };
}

const firstBroken = (i: AnalyzeInput) => analyzePath(i).hops.find((h) => !h.ok);

describe("path analysis", () => {
  it("passes every hop of a working path and reports the caller's public address", () => {
    const r = analyzePath(input("ok"));
    assert.strictEqual(r.ok, true, JSON.stringify(r.hops, null, 1));
    assert.deepStrictEqual(r.hops.map((h) => h.hop), ["VPS DNAT", "tunnel", "router DNAT", "return path"]);
    assert.strictEqual(r.callerAddress, "203.0.113.130");
    assert.strictEqual(r.vpsEntry?.reply.src, "10.10.10.2");
    assert.strictEqual(r.routerEntry?.reply.src, "192.168.1.99");
    assert.strictEqual(r.routerEntry?.mark, 0x1234);
    assert.match(r.hops[3].detail, /mark 0x1234/);
  });

  it("takes a reset from the LAN host as a reply: the path works, nothing listens", () => {
    const r = analyzePath(input("lan-refused", { port: 5001 }));
    assert.strictEqual(r.ok, true, JSON.stringify(r.hops, null, 1));
    assert.match(r.hops[3].detail, /answered with a reset/);
    assert.strictEqual(r.probe.outcome, "refused");
  });

  it("VPS DNAT: the VPS answered a connection itself (no DNAT rule)", () => {
    const h = firstBroken(input("no-vps-dnat"))!;
    assert.strictEqual(h.hop, "VPS DNAT");
    assert.match(h.detail, /no connection reached 198\.51\.100\.1:5000 on the VPS/);
    assert.match(h.detail, /no DNAT rule matched/);
  });

  it("VPS DNAT: the VPS does not forward (ip_forward=0): nothing is confirmed there", () => {
    const h = firstBroken(input("vps-no-forward"))!;
    assert.strictEqual(h.hop, "VPS DNAT");
    assert.match(h.detail, /ip_forward=1/);
  });

  it("VPS DNAT: DNATed somewhere else, or the source rewritten", () => {
    const s = sample("ok");
    const elsewhere = input("ok", { vpsEvents: s.vps.replace(/src=10\.10\.10\.2/g, "src=10.10.10.9") });
    assert.match(firstBroken(elsewhere)!.detail, /DNATed to 10\.10\.10\.9:5000, not to the router's tunnel address 10\.10\.10\.2/);
    const masq = input("ok", { vpsEvents: s.vps.replace(/dst=203\.0\.113\.130 sport=5000/g, "dst=10.10.10.1 sport=5000") });
    const h = firstBroken(masq)!;
    assert.strictEqual(h.hop, "VPS DNAT");
    assert.match(h.detail, /rewrote its source to 10\.10\.10\.1/);
  });

  it("tunnel: the VPS forwarded, the router never saw it; says the interface is down", () => {
    const r = analyzePath(input("tunnel-down"));
    const h = r.hops.find((x) => !x.ok)!;
    assert.strictEqual(h.hop, "tunnel");
    assert.match(h.detail, /tun0 is down on the router/);
    assert.strictEqual(r.callerAddress, "203.0.113.130");
    assert.deepStrictEqual(r.hops.slice(2).map((x) => x.skipped), [true, true]);
  });

  it("router DNAT: the router answered the connection itself", () => {
    const h = firstBroken(input("no-router-dnat"))!;
    assert.strictEqual(h.hop, "router DNAT");
    assert.match(h.detail, /not DNATed to the LAN host: the router answered it itself/);
  });

  it("return path: the LAN host answered but the reply never reached the VPS", () => {
    const h = firstBroken(input("no-fwmark-rule"))!;
    assert.strictEqual(h.hop, "return path");
    assert.match(h.detail, /reply never reached the VPS/);
    assert.match(h.detail, /fwmark 0x1234\/0x1234/);
  });

  it("return path: the connection lacks the mark under the mask", () => {
    const h = firstBroken(input("ok", { mark: 0x10000000, mask: 0x10000000 }))!;
    assert.strictEqual(h.hop, "return path");
    assert.match(h.detail, /carries mark 0x1234, not 0x10000000 under mask 0x10000000/);
    // without a mark to compare, the same entry passes
    assert.strictEqual(analyzePath(input("ok", { mark: undefined, mask: undefined })).ok, true);
  });

  it("router-local forward (VPS 2222 → router's sshd on 22): ok only with routerLocal", () => {
    const i = input("router-local", { port: 2222 });
    assert.strictEqual(firstBroken(i)!.hop, "router DNAT");
    const r = analyzePath({ ...i, routerLocal: true });
    assert.strictEqual(r.ok, true, JSON.stringify(r.hops, null, 1));
    assert.match(r.hops[2].detail, /targets the router itself/);
    assert.match(r.hops[0].detail, /DNATed to 10\.10\.10\.2:22/);
  });

  it("refuses to guess between concurrent connections; the probe's own port settles it", () => {
    const s = sample("ok");
    const other = s.vps.replace(/sport=38520/g, "sport=40000").replace(/dport=38520/g, "dport=40000").replace(/id=(\d+)/g, "id=7$1");
    const both = input("ok", { vpsEvents: s.vps + other, probe: { ...s.probe, localPort: 1 } });
    assert.throws(() => analyzePath(both), (e: unknown) => e instanceof AmbiguousProbeError && /2 connections/.test((e as Error).message));
    assert.strictEqual(analyzePath({ ...both, probe: s.probe }).ok, true); // localPort 38520 survived both NATs
  });

  it("the error names the first broken hop and lists every hop", () => {
    const r = analyzePath(input("no-router-dnat"));
    const e = new PathCheckError(r, "198.51.100.1:5000");
    assert.strictEqual(e.hop, "router DNAT");
    assert.strictEqual(e.message, failureMessage(r, "198.51.100.1:5000"));
    const lines = e.message.split("\n");
    assert.match(lines[0], /^PathCheck 198\.51\.100\.1:5000: the path is broken at the router DNAT hop: /);
    assert.match(lines[1], /caller address seen by the VPS: 203\.0\.113\.130/);
    assert.deepStrictEqual(lines.slice(2).map((l) => l.trim().split(/\s+/)[0]), ["ok", "ok", "FAILED", "skipped"]);
  });
});
