// `npm run demo` (through scripts/demo.sh, inside a fresh lab): what a user of natgate sees when
// they run the seed example with the Pulumi CLI, step by step, on the lab's hosts. The stack is
// driven by test/engine/stack.ts (the real dynamic-provider server, natgate's built dist), the same
// engine the seed test uses. Exits non-zero as soon as a step fails.
import { getLab, Lab, LabProcess } from "../test/lab";
import { fw4 } from "../test/lab/fw4";
import { realHosts } from "../test/lab/realHosts";
import { secondsUntilBack } from "../test/variants/variantLab";
import { lineDiff, PropertyChange, RefreshStep, Stack, Step, StepEvent } from "../test/engine/stack";
import {
  askBanner,
  askTcp,
  askUdp,
  Probe,
  PUBLIC,
  seedConfig,
  seedProgram,
  seedStack,
  snapshotDiff,
  snapshotHost,
  startLanServices,
  stopAll,
} from "../test/engine/seedLab";

const tty = process.stdout.isTTY;
const paint = (code: string) => (s: string) => (tty ? `\x1b[${code}m${s}\x1b[0m` : s);
const bold = paint("1");
const dim = paint("2");
const green = paint("32");
const red = paint("31");
const yellow = paint("33");
const OK = green("✔");
const BAD = red("✘");

const started = Date.now();
const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const out = (s = "") => process.stdout.write(s + "\n");
let stepNo = 0;
const heading = (title: string, what = "") => {
  out();
  out(bold(`[${++stepNo}] ${title}`) + (what ? dim(`  ${what}`) : ""));
};

class DemoFailure extends Error {}
function expect(ok: boolean, message: string): void {
  if (!ok) throw new DemoFailure(message);
}

const SYMBOL: Record<string, string> = { create: green("+"), update: yellow("~"), replace: yellow("+-"), delete: red("-"), same: dim("=") };
const VERB: Record<string, string> = { create: "created", update: "updated", replace: "replaced", delete: "deleted", same: "unchanged" };

function hostLabel(lab: Lab, addr: unknown): string {
  const host = Object.values(lab.hosts).find((h) => h.addr === addr);
  return host ? `${host.name} (${addr})` : String(addr);
}

/** The rendered lines of a step, per host: Tunnel renders one list per side. */
function renderedByHost(lab: Lab, s: Step, inputs: Record<string, unknown>): Array<[string, PropertyChange]> {
  const host = (v: unknown) => hostLabel(lab, (v as { connection?: { host?: string } } | undefined)?.connection?.host);
  // The listener (VPS) first: it is configured first, and it is the side the reader met first.
  const rank = (p: string) => ["renderedListener", "renderedDialer"].indexOf(p);
  const rendered = s.changes.filter((c) => c.property.startsWith("rendered")).sort((a, b) => rank(a.property) - rank(b.property));
  return rendered.map((c) => {
    if (c.property === "renderedListener") return [host(inputs.listener), c];
    if (c.property === "renderedDialer") return [host(inputs.dialer), c];
    return [host(inputs), c];
  });
}

function printPlan(lab: Lab, steps: Step[], inputsOf: (s: Step) => Record<string, unknown>): void {
  for (const s of steps) {
    if (s.op === "same") continue;
    const kind = s.kind ?? (s.name === "home" ? "PortForward (component)" : "");
    out(`  ${SYMBOL[s.op]} ${bold(s.name)} ${dim(kind)}`);
    for (const [host, c] of renderedByHost(lab, s, inputsOf(s))) {
      out(dim(`      on ${host}:`));
      for (const l of lineDiff(c.old, c.new)) out(`        ${l.startsWith("+") ? green(l) : red(l)}`);
    }
  }
  const counts = count(steps.map((s) => s.op));
  out(`  Resources: ${Object.entries(counts).map(([op, n]) => `${n} to ${op}`).join(", ")}`);
}

function count(ops: string[]): Record<string, number> {
  const c: Record<string, number> = {};
  for (const o of ops) c[o] = (c[o] ?? 0) + 1;
  return c;
}

function summary(steps: Array<{ op: string }>, durationMs: number): string {
  const counts = count(steps.map((s) => s.op));
  return `  Resources: ${Object.entries(counts).map(([op, n]) => `${n} ${VERB[op]}`).join(", ")}   Duration: ${secs(durationMs)}`;
}

function onStep(e: StepEvent): void {
  // Reads are summed up by the refresh step itself.
  if (e.phase === "start" || (e.step.op === "read" && e.phase === "done")) return;
  const name = e.step.name.padEnd(15);
  const kind = (e.step.kind ?? "").padEnd(19);
  if (e.phase === "failed") out(`  ${BAD} ${name} ${kind} ${e.step.op} failed: ${e.error}`);
  else out(`  ${SYMBOL[e.step.op]} ${name} ${dim(kind)} ${VERB[e.step.op] ?? e.step.op} ${dim(`(${secs(e.durationMs ?? 0)})`)}`);
}

function showProbe(p: Probe, expectAnswer: RegExp | null, note = ""): void {
  const got = p.answer ? `"${p.answer}"` : red(p.error);
  const ok = expectAnswer ? expectAnswer.test(p.answer) : p.answer === "";
  out(`  ${ok ? OK : BAD} ${p.what.padEnd(24)} → ${got} ${dim(`(${p.ms} ms)`)}${note ? dim(`  ${note}`) : ""}`);
  expect(ok, `${p.what}: expected ${expectAnswer ? `an answer matching ${expectAnswer}` : "no answer"}, got ${p.answer || p.error}`);
}

async function traffic(lab: Lab): Promise<void> {
  const client = lab.hosts.client.addr;
  showProbe(await askTcp(lab, 5000), new RegExp(`^tcp/5000 saw ${client}$`), "the LAN service saw the client's real address");
  showProbe(await askUdp(lab, 6000), new RegExp(`^udp/6000 saw ${client}$`));
  showProbe(await askBanner(lab, 2222), /^SSH-2\.0-/, "the router's own sshd (VPS:2222 → router:22)");
}

async function main(): Promise<void> {
  const lab = getLab();
  const h = lab.hosts;
  out(bold("natgate demo: the blog post's setup (examples/seed) on a lab of network namespaces"));
  out(dim("Each host is a network namespace with its own sshd, nftables and routing; natgate reaches them over SSH."));
  out(dim("The VPS is a real Debian 12 booted with systemd; the router runs OpenWrt's real firewall, fw4."));

  heading("The lab");
  let t = Date.now();
  const undoHosts = await realHosts(lab);
  out(dim(`  (fw4 installed on the router, Debian booted on the VPS: ${secs(Date.now() - t)})`));
  out(`  client   ${h.client.addr.padEnd(15)} somewhere on the internet`);
  out(`  vps      ${h.vps.addr.padEnd(15)} public address; Debian 12, systemd, nftables.service, sshd`);
  out(`  isp      ${String(lab.addresses.ispCgnat ?? "100.64.0.1").padEnd(15)} carrier-grade NAT: masquerades the router, drops every unsolicited inbound packet`);
  out(`  router   ${h.router.addr.padEnd(15)} br-lan; WAN ${lab.addresses.routerWan ?? "100.64.0.2"} behind the CGNAT; fw4 (OpenWrt's default zones: wan rejects), sshd`);
  out(`  lan      ${h.lan.addr.padEnd(15)} runs the services (they answer with the address they see)`);
  out(`  laptop   ${h.laptop.addr.padEnd(15)} on the LAN: runs pulumi (this demo)`);
  const snapshots: Record<string, string> = {};
  for (const name of ["vps", "router"] as const) snapshots[name] = await snapshotHost(h[name]);
  const services: LabProcess[] = await startLanServices(lab);
  // verifyPort: the seed's PortForward adds a PathCheck that proves the path during `up`.
  const config = seedConfig(lab, { verifyPort: "5000" });
  const stack: Stack = seedStack(lab, { onStep, config });
  try {
    out(dim("  Before natgate, the client cannot reach the LAN service:"));
    showProbe(await askTcp(lab, 5000), null, "nothing forwards yet");

    out();
    out(dim("  $ pulumi config"));
    for (const [k, v] of Object.entries(config)) {
      const shown = k.endsWith(":sshKey") ? "[secret]" : v.length > 60 ? v.slice(0, 57) + "..." : v;
      out(dim(`    ${k.padEnd(30)} ${shown}`));
    }

    heading("pulumi preview", "Check only: what each resource will put on each host");
    t = Date.now();
    const preview = await stack.preview(seedProgram);
    const checkedInputs = new Map<string, Record<string, unknown>>();
    for (const s of preview.steps) {
      const inputs: Record<string, unknown> = {};
      for (const c of s.changes) inputs[c.property] = c.new;
      checkedInputs.set(s.urn, inputs);
    }
    printPlan(lab, preview.steps, (s) => checkedInputs.get(s.urn) ?? {});
    out(dim(`  (${secs(Date.now() - t)})`));
    expect(preview.steps.every((s) => s.op === "create"), "the preview of a new stack must only create");

    heading("pulumi up", "tunnel → routing table → return path → router DNAT → VPS DNAT → path check");
    const up = await stack.up(seedProgram);
    out(summary(up.steps, up.durationMs));
    expect(up.steps.every((s) => s.op === "create"), "up must create every resource");
    const check = stack.get("home-check").outputs as { callerAddress?: string; hops?: Array<{ hop: string; ok: boolean; detail: string }> };
    out(dim(`  The PathCheck connected from this laptop to ${PUBLIC}:5000 (through the router's NAT and the CGNAT, as ${check.callerAddress})`));
    out(dim("  and followed the connection in both hosts' conntrack tables:"));
    for (const hop of check.hops ?? []) out(`  ${hop.ok ? OK : BAD} ${hop.hop.padEnd(12)} ${dim(hop.detail)}`);
    expect((check.hops ?? []).length === 4 && check.hops!.every((x) => x.ok), "the PathCheck must pass every hop");

    heading("Traffic from the internet", `client ${h.client.addr} → VPS ${PUBLIC} → tunnel → router → LAN ${h.lan.addr}`);
    await traffic(lab);

    heading("The hosts' own software does what it does", "natgate is not called: the hosts keep or restore its state");
    for (const [where, cmd, why] of [
      ["router", "fw4 reload", "LuCI's Save & Apply; rebuilds fw4's table, natgate's accepts come back from its include files"],
      ["vps", "systemctl restart nftables", "its /etc/nftables.conf starts with flush ruleset; natgate's drop-in runs natgate.service after it"],
    ] as const) {
      out(dim(`  ${where}# ${cmd}`) + dim(`   (${why})`));
      if (where === "router") await fw4(lab, "reload");
      else await h.vps.run(cmd);
      const back = await secondsUntilBack(lab, 10_000);
      out(`  ${Number.isFinite(back) ? OK : BAD} the path works ${Number.isFinite(back) ? `${back.toFixed(2)} s after the command` : "not within 10 s"}`);
      expect(Number.isFinite(back), `the path must come back after ${cmd}`);
    }
    await traffic(lab);

    heading("pulumi up again", "nothing changed, so nothing is touched");
    const again = await stack.up(seedProgram);
    out(summary(again.steps, again.durationMs));
    expect(again.steps.every((s) => s.op === "same"), "a second up must change nothing");

    const name = stack.get("home-router-0").outputs.name as string;
    const table = `natgate_dnat_${name}`;
    heading("Someone edits the router by hand");
    out(dim(`  router# nft flush table ip ${table}`));
    await h.router.run(`nft flush table ip ${table}`);
    showProbe(await askTcp(lab, 5000), null, "the path is broken");

    heading("pulumi refresh", "read every resource back from its host");
    t = Date.now();
    const refreshed: RefreshStep[] = await stack.refresh();
    for (const s of refreshed) {
      if (s.op === "same") {
        out(`  ${SYMBOL.same} ${s.name.padEnd(15)} ${dim((s.kind ?? "").padEnd(19))} in sync ${dim(`(${secs(s.durationMs)})`)}`);
        continue;
      }
      out(`  ${SYMBOL.update} ${s.name.padEnd(15)} ${dim((s.kind ?? "").padEnd(19))} ${yellow("drifted")} ${dim(`(${secs(s.durationMs)})`)}`);
      const drift = s.changes.find((c) => c.property === "drift");
      for (const l of (drift?.new as string[] | undefined) ?? []) out(`      ${yellow(l)}`);
    }
    const drifted = refreshed.filter((x) => x.op !== "same").length;
    out(`  Resources: ${refreshed.length - drifted} in sync, ${drifted} drifted   Duration: ${secs(Date.now() - t)}`);
    expect(
      refreshed.filter((x) => x.op !== "same").map((x) => x.name).join() === "home-router-0",
      "refresh must find the drift on home-router-0, and only there",
    );

    heading("pulumi up", "puts back what the refresh found missing");
    const repair = await stack.up(seedProgram);
    out(summary(repair.steps, repair.durationMs));
    expect(repair.steps.filter((s) => s.op !== "same").map((s) => `${s.name}:${s.op}`).join() === "home-router-0:update", "up must update exactly home-router-0");

    heading("Traffic again");
    await traffic(lab);

    heading("pulumi destroy", "dependents first: the VPS stops forwarding before the router's side goes");
    t = Date.now();
    const destroyed = await stack.destroy();
    out(summary(destroyed, Date.now() - t));
    expect(stack.state.length === 0, "destroy must empty the stack");

    heading("Hosts as before", "nft ruleset, ip rules, all routing tables, links, ip_forward, rp_filter");
    for (const host of ["vps", "router"] as const) {
      const diff = snapshotDiff(snapshots[host], await snapshotHost(h[host]));
      out(`  ${diff.length ? BAD : OK} ${host}: ${diff.length ? "differs from before up:" : "identical to before up"}`);
      for (const l of diff) out(`      ${l}`);
      expect(diff.length === 0, `${host} is not as before`);
    }
    showProbe(await askTcp(lab, 5000), null, "nothing is forwarded any more");
  } finally {
    await stopAll(services);
    // After a failure, remove what the stack still owns before the lab goes.
    if (stack.state.length) await stack.destroy().catch(() => undefined);
    await stack.close();
    await undoHosts().catch(() => undefined);
  }
  out();
  out(bold(`${OK} demo finished in ${secs(Date.now() - started)}`) + dim("  (the lab is torn down next)"));
}

main().catch((e) => {
  out();
  out(red(bold(`${BAD} demo failed after ${secs(Date.now() - started)}: `)) + (e instanceof DemoFailure ? e.message : (e as Error).message));
  if (!(e instanceof DemoFailure) && process.env.NATGATE_DEMO_DEBUG) console.error((e as Error).stack);
  process.exit(1);
});
