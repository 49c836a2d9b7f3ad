// The seed example (examples/seed, the real file) through a whole stack lifecycle against the lab,
// driven like the Pulumi CLI (stack.ts: the real dynamic-provider server, natgate's dist):
// up → traffic with the client's real address → change the port range (preview shows the rendered
// lines, an update not a replace) → up → a rule flushed by hand → refresh shows drift → up repairs
// → destroy leaves both hosts exactly as before. Once on the real hosts (Debian 12 with systemd as
// the VPS, OpenWrt's fw4 on the router), once on the lab's namespace hosts.
// Run: node_modules/.bin/tsx test/lab/cli.ts run -- node_modules/.bin/mocha test/engine/seed.test.ts
import { strict as assert } from "assert";
import { getLab, Lab, LabProcess } from "../lab";
import { realHosts } from "../lab/realHosts";
import { lineDiff, Stack, Step } from "./stack";
import { askBanner, askTcp, askUdp, Probe, seedProgram, seedStack, snapshotDiff, snapshotHost, startLanServices, stopAll } from "./seedLab";

const CLIENT = "203.0.113.10";
const DATA_PATH = ["home-tunnel", "home-routes", "home-return", "home-router-0", "home-router-local-0", "home-vps-0", "home-vps-1"];

const ops = (steps: Step[]) => Object.fromEntries(steps.map((s) => [s.name, s.op]));
const saw = (p: Probe) => {
  assert.ok(p.answer, `${p.what}: no answer from the LAN service (${p.error})`);
  return p.answer;
};

for (const hosts of ["real", "namespace"] as const) {
  describe(`the seed example on the lab (${hosts === "real" ? "Debian 12 VPS with systemd, OpenWrt fw4 router" : "namespace hosts"}): up, traffic, change, drift, repair, destroy`, function () {
    this.timeout(120_000);
    let lab: Lab;
    let stack: Stack;
    let services: LabProcess[] = [];
    let undoHosts: (() => Promise<void>) | undefined;
    const initial: Record<string, string> = {};

    before(async () => {
      lab = getLab();
      if (hosts === "real") undoHosts = await realHosts(lab);
      for (const h of ["vps", "router"] as const) initial[h] = await snapshotHost(lab.hosts[h]);
      services = await startLanServices(lab);
      stack = seedStack(lab);
    });

    after(async () => {
      await stopAll(services);
      // Leave no natgate state behind for the next test file, whatever failed above.
      if (stack?.state.length) await stack.destroy().catch((e) => console.error(`cleanup destroy failed: ${(e as Error).message}`));
      await stack?.close();
      await undoHosts?.();
    });

    it("preview from nothing lists every resource to create with its rendered lines", async () => {
      const r = await stack.preview(seedProgram);
      assert.deepEqual(ops(r.steps), { ...Object.fromEntries(DATA_PATH.map((n) => [n, "create"])), home: "create" });
      for (const s of r.steps.filter((x) => x.name !== "home")) {
        const rendered = s.changes.filter((c) => c.property.startsWith("rendered"));
        assert.ok(rendered.length > 0 && rendered.every((c) => Array.isArray(c.new) && (c.new as unknown[]).length > 0), `${s.name} shows its lines`);
      }
      assert.deepEqual(stack.state, []);
      assert.equal((await lab.hosts.vps.run("nft list ruleset")).includes("natgate"), false, "preview changes nothing");
    });

    it("up from nothing creates the data path in order", async () => {
      const r = await stack.up(seedProgram);
      assert.deepEqual(ops(r.steps), { ...Object.fromEntries(DATA_PATH.map((n) => [n, "create"])), home: "create" });
      const created = r.steps.filter((s) => s.name !== "home").map((s) => s.name);
      assert.deepEqual(created.slice(0, 3), DATA_PATH.slice(0, 3), "tunnel → routes → return path");
      // The router's two rules depend only on the return path, so they are created side by side.
      assert.deepEqual(created.slice(3, 5).sort(), DATA_PATH.slice(3, 5).sort(), "then the router's DNAT rules, then the VPS's");
      console.log(`      apply from nothing: ${r.durationMs} ms`);
    });

    it("up again changes nothing", async () => {
      const r = await stack.up(seedProgram);
      assert.deepEqual(ops(r.steps), { ...Object.fromEntries(DATA_PATH.map((n) => [n, "same"])), home: "same" });
      console.log(`      no-change re-apply: ${r.durationMs} ms`);
    });

    it("the LAN services see the internet client's real address (tcp and udp), and VPS:2222 is the router's sshd", async () => {
      assert.equal(saw(await askTcp(lab, 5000)), `tcp/5000 saw ${CLIENT}`);
      assert.equal(saw(await askUdp(lab, 6000)), `udp/6000 saw ${CLIENT}`);
      assert.match(saw(await askBanner(lab, 2222)), /^SSH-2\.0-OpenSSH/);
    });

    it("preview of a narrower port range: the two DnatRules update (no replace), rendered lines shown", async () => {
      stack.setConfig("ports", "5000-5500");
      const r = await stack.preview(seedProgram);
      assert.deepEqual(ops(r.steps), {
        ...Object.fromEntries(DATA_PATH.map((n) => [n, "same"])),
        "home-router-0": "update",
        "home-vps-0": "update",
        home: "same",
      });
      for (const name of ["home-router-0", "home-vps-0"]) {
        const s = r.steps.find((x) => x.name === name)!;
        assert.deepEqual(s.replaces, []);
        assert.deepEqual(s.changes.map((c) => c.property).sort(), ["ports", "rendered"]);
        const rendered = s.changes.find((c) => c.property === "rendered")!;
        const lines = lineDiff(rendered.old, rendered.new);
        assert.ok(lines.some((l) => l.startsWith("- ") && l.includes("5000-6000")), lines.join("\n"));
        assert.ok(lines.some((l) => l.startsWith("+ ") && l.includes("5000-5500")), lines.join("\n"));
        assert.ok(lines.every((l) => /5000-(6000|5500)/.test(l)), `only the port lines change:\n${lines.join("\n")}`);
      }
      assert.match(await lab.hosts.router.run("nft list ruleset"), /5000-6000/, "preview applied nothing");
    });

    it("up applies the new range: 5000 still forwarded, 6000 no longer", async () => {
      const r = await stack.up(seedProgram);
      assert.equal(ops(r.steps)["home-router-0"], "update");
      assert.equal(ops(r.steps)["home-vps-0"], "update");
      assert.deepEqual(r.steps.filter((s) => s.op !== "same" && s.op !== "update"), []);
      const router = await lab.hosts.router.run("nft list ruleset");
      assert.match(router, /5000-5500/);
      assert.doesNotMatch(router, /5000-6000/);
      assert.equal(saw(await askTcp(lab, 5000)), `tcp/5000 saw ${CLIENT}`);
      assert.equal(saw(await askUdp(lab, 5000)), `udp/5000 saw ${CLIENT}`);
      assert.equal((await askUdp(lab, 6000)).answer, "", "6000 is outside the range now");
    });

    it("refresh after the router's DNAT table is flushed by hand reports the drift", async () => {
      const name = stack.get("home-router-0").outputs.name;
      assert.equal(typeof name, "string");
      await lab.hosts.router.run(`nft flush table ip natgate_dnat_${name}`);
      assert.equal((await askTcp(lab, 5000)).answer, "", "the flushed rule breaks the path");

      const steps = await stack.refresh();
      const changed = steps.filter((s) => s.op !== "same");
      assert.deepEqual(changed.map((s) => [s.name, s.op]), [["home-router-0", "update"]]);
      const drift = changed[0].changes.find((c) => c.property === "drift");
      assert.ok(Array.isArray(drift?.new) && (drift!.new as string[]).length > 0, "drift lists what is missing");
      assert.ok((drift!.new as string[]).some((l) => l.includes("dnat to 192.168.1.99")), (drift!.new as string[]).join("\n"));
      const rendered = changed[0].changes.find((c) => c.property === "rendered")!;
      assert.ok(lineDiff(rendered.old, rendered.new).some((l) => l.startsWith("- ") && l.includes("dnat to 192.168.1.99")));
    });

    it("up repairs the drift, and traffic flows again", async () => {
      const r = await stack.up(seedProgram);
      assert.deepEqual(
        r.steps.filter((s) => s.op !== "same").map((s) => [s.name, s.op]),
        [["home-router-0", "update"]],
      );
      assert.deepEqual(stack.get("home-router-0").outputs.drift, []);
      assert.equal(saw(await askTcp(lab, 5000)), `tcp/5000 saw ${CLIENT}`);
      assert.equal(saw(await askUdp(lab, 5000)), `udp/5000 saw ${CLIENT}`);
      const again = await stack.refresh();
      assert.deepEqual(again.filter((s) => s.op !== "same").map((s) => s.name), [], "a refresh right after finds nothing");
    });

    it("destroy deletes in reverse data-path order and leaves both hosts as they were", async () => {
      const steps = await stack.destroy();
      const order = steps.map((s) => s.name);
      const pos = (n: string) => order.indexOf(n);
      assert.ok(pos("home-vps-0") < pos("home-router-0") && pos("home-vps-1") < pos("home-router-local-0"), order.join(" "));
      assert.deepEqual([...order].sort(), [...DATA_PATH, "home"].sort());
      assert.ok(pos("home-router-0") < pos("home-return") && pos("home-return") < pos("home-routes") && pos("home-routes") < pos("home-tunnel"), order.join(" "));
      assert.equal(order[order.length - 1], "home");
      assert.deepEqual(stack.state, []);
      for (const h of ["vps", "router"] as const) {
        const after = await snapshotHost(lab.hosts[h]);
        const diff = snapshotDiff(initial[h], after);
        assert.deepEqual(diff, [], `${h} differs from before up:\n${diff.join("\n")}`);
      }
      assert.equal((await askTcp(lab, 5000)).answer, "");
    });
  });
}
