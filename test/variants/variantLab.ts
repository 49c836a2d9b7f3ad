// What the variant tests share: a PortForward program written in the test (as a user would write
// it), a stack that runs it through the real dynamic-provider server, LAN services that answer
// with the address they saw, host snapshots wide enough to prove a destroy put everything back,
// and the timings of every up and destroy.
import { strict as assert } from "assert";
import * as fs from "fs";
import * as path from "path";
import { PortForward, type PortForwardArgs, type VpsArgs } from "natgate";
import type { Lab, LabHost, LabProcess } from "../lab";
import { Stack, type RefreshStep, type Step } from "../engine/stack";
import { askBanner, askTcp, askUdp, PUBLIC, snapshotDiff, snapshotHost, stopAll, type Probe } from "../engine/seedLab";

export { askTcp, askUdp, PUBLIC, stopAll };
export const PROJECT = "natgate-variants";
export const CLIENT = "203.0.113.10";

type ConnectionOf = VpsArgs["connection"];

/** root with the lab key (pinned host key), or `ops` through passwordless sudo. */
export function connectionTo(lab: Lab, host: "vps" | "router", as: "root" | "ops" = "root"): ConnectionOf {
  const h = lab.hosts[host];
  const hostKey = h.ssh!.hostKey;
  if (as === "root") return { host: h.addr, privateKey: h.ssh!.privateKey, hostKey };
  return { host: h.addr, user: "ops", sudo: true, privateKey: lab.users.ops.privateKey, hostKey };
}

/** The args every variant starts from: the lab's VPS and router, the LAN host, no forwards yet. */
export function baseArgs(lab: Lab): PortForwardArgs {
  return {
    vps: { connection: connectionTo(lab, "vps"), publicAddress: PUBLIC },
    router: { connection: connectionTo(lab, "router"), lanInterface: "br-lan", lanSubnet: lab.addresses.lanSubnet },
    lanHost: lab.hosts.lan.addr,
    forwards: [],
  };
}

/** What a LAN service answers when the internet client's real address reached it. */
export const saw = (proto: string, port: number) => `${proto}/${port} saw ${CLIENT}`;

/** The seed's shape: tcp and udp 5000-6000 to the LAN host, and VPS:2222 to the router's own sshd. */
export function seedLikeArgs(lab: Lab): PortForwardArgs {
  return {
    ...baseArgs(lab),
    forwards: [{ protocol: "both", ports: "5000-6000" }],
    routerForwards: [{ protocol: "tcp", ports: 2222, toPorts: 22 }],
  };
}

/** The seed shape's traffic: tcp and udp show the client's real address, VPS:2222 is the router's sshd. */
export async function seedTraffic({ lab }: { lab: Lab }): Promise<void> {
  assert.equal(answered(await askTcp(lab, 5000)), saw("tcp", 5000));
  assert.equal(answered(await askUdp(lab, 6000)), saw("udp", 6000));
  assert.match(answered(await askBanner(lab, 2222)), /^SSH-2\.0-OpenSSH/);
}

/** Seconds from now until a new tcp connection to 5000 shows the client's address; Infinity after `maxMs`. */
export async function secondsUntilBack(lab: Lab, maxMs = 15_000): Promise<number> {
  const t = Date.now();
  while (Date.now() - t < maxMs) {
    if ((await askTcp(lab, 5000)).answer === saw("tcp", 5000)) return (Date.now() - t) / 1000;
    await new Promise((r) => setTimeout(r, 200));
  }
  return Infinity;
}

/** What a refresh changed in the outputs, by resource name (empty: the hosts are as the state says). */
export async function refreshChanges(stack: Stack): Promise<Record<string, unknown>> {
  const steps = await stack.refresh();
  return Object.fromEntries(steps.filter((s) => s.op !== "same").map((s) => [s.name, s.changes]));
}

/**
 * Resources whose refresh found drift. Where a firewall came up after natgate, the new accept
 * shows in `forwardAccept` (and traffic in `counters`): that is a change of outputs, not drift.
 */
export async function driftAfterRefresh(stack: Stack): Promise<string[]> {
  return Object.entries(await refreshDrift(stack)).filter(([, lines]) => lines.length > 0).map(([name]) => name);
}

/** The drift lines a refresh step recorded (none when the output did not change). */
export function driftOf(step: RefreshStep): string[] {
  return (step.changes.find((c) => c.property === "drift")?.new as string[] | undefined) ?? [];
}

/** Drift found by a refresh, by resource name, for every resource whose outputs changed. */
export async function refreshDrift(stack: Stack): Promise<Record<string, string[]>> {
  const steps = await stack.refresh();
  return Object.fromEntries(steps.filter((s) => s.op !== "same").map((s) => [s.name, driftOf(s)]));
}

/** The smallest useful layout: the lab's hosts and one TCP forward of port 5000. */
export function oneForwardArgs(lab: Lab): PortForwardArgs {
  return { ...baseArgs(lab), forwards: [{ protocol: "tcp", ports: 5000 }] };
}

/** A cloud's 1:1 NAT in the lab's core: CLOUD_PUBLIC (the address users know) → the VPS's own address. */
export const CLOUD_PUBLIC = "198.51.100.77";
export const cloudNat = {
  add: (lab: Lab) =>
    lab.hosts.core.run("nft -f -", {
      input: `table ip variants_cloudnat {\n  chain pre { type nat hook prerouting priority dstnat; policy accept; ip daddr ${CLOUD_PUBLIC} dnat to ${PUBLIC}; }\n}\n`,
    }),
  remove: (lab: Lab) => lab.hosts.core.run("nft delete table ip variants_cloudnat"),
};

/** A program: one PortForward, exporting what a user would look at. */
export function portForwardProgram(name: string, args: PortForwardArgs): () => unknown {
  return () => {
    const pf = new PortForward(name, args);
    return { routerTunnelAddress: pf.routerTunnelAddress };
  };
}

export function variantStack(): Stack {
  return new Stack({ project: PROJECT });
}

/** What a destroy must leave as it found it: the seed's snapshot plus iptables, natgate's files and UDP listeners. */
const EXTRA = [
  "iptables -w -S",
  "iptables -w -t nat -S",
  "for d in /run/natgate /etc/natgate /var/run/wireguard; do [ -e $d ] && find $d; done; true",
  "ss -Hlnu | awk '{print $4}' | sort",
];

export async function hostState(h: LabHost): Promise<string> {
  const parts = [await snapshotHost(h)];
  for (const cmd of EXTRA) parts.push(`## ${cmd}\n${(await h.run(cmd)).trimEnd()}`);
  // Packet counts in other tools' rules (iptables-nft counts every rule) are traffic, not state.
  return parts.join("\n").replace(/counter packets \d+ bytes \d+/g, "counter");
}

export async function snapshotAll(lab: Lab): Promise<Record<"vps" | "router", string>> {
  return { vps: await hostState(lab.hosts.vps), router: await hostState(lab.hosts.router) };
}

export async function assertHostsAsBefore(lab: Lab, before: Record<"vps" | "router", string>, when = "destroy"): Promise<void> {
  for (const h of ["vps", "router"] as const) {
    const diff = snapshotDiff(before[h], await hostState(lab.hosts[h]));
    assert.deepEqual(diff, [], `${h} after ${when} differs from before:\n${diff.join("\n")}`);
  }
}

/**
 * A LAN service answering "<proto>/<port> saw <client address>". The sleep keeps the echo alive
 * until socat has written the request into it (an early exit can lose the answer).
 */
export function lanService(lab: Lab, proto: "tcp" | "udp", port: number): Promise<LabProcess> {
  const echo = `SYSTEM:'echo ${proto}/${port} saw \\$SOCAT_PEERADDR; sleep 0.3'`;
  return proto === "tcp"
    ? lab.hosts.lan.start(`socat TCP-LISTEN:${port},reuseaddr,fork ${echo}`, { waitForTcpPort: port })
    : lab.hosts.lan.start(`socat UDP-RECVFROM:${port},fork ${echo}`, { waitForUdpPort: port });
}

export async function lanServices(lab: Lab, list: Array<["tcp" | "udp", number]>): Promise<LabProcess[]> {
  const started: LabProcess[] = [];
  try {
    for (const [proto, port] of list) started.push(await lanService(lab, proto, port));
  } catch (e) {
    await stopAll(started);
    throw e;
  }
  return started;
}

/** The answer the client got; fails with the probe's reason when nothing came back. */
export function answered(p: Probe): string {
  assert.ok(p.answer, `${p.what}: no answer (${p.error})`);
  return p.answer;
}

export const opsOf = (steps: Step[]) => Object.fromEntries(steps.map((s) => [s.name, s.op]));

/** Timings of every up and destroy, printed per test and once more as a table at the end. */
export const timings: Array<{ variant: string; up: number; destroy?: number }> = [];

export async function timedUp(variant: string, stack: Stack, program: () => unknown) {
  const r = await stack.up(program);
  timings.push({ variant, up: r.durationMs });
  console.log(`      ${variant}: up ${r.durationMs} ms`);
  return r;
}

export async function timedDestroy(variant: string, stack: Stack) {
  const started = Date.now();
  const steps = await stack.destroy();
  const ms = Date.now() - started;
  const t = [...timings].reverse().find((x) => x.variant === variant && x.destroy === undefined);
  if (t) t.destroy = ms;
  else timings.push({ variant, up: NaN, destroy: ms });
  console.log(`      ${variant}: destroy ${ms} ms`);
  return steps;
}

export function printTimings(title: string): void {
  if (!timings.length) return;
  console.log(`\n      ${title} (ms):`);
  const ms = (n: number | undefined) => (n === undefined || Number.isNaN(n) ? "-" : String(n)).padStart(6);
  for (const t of timings) console.log(`        ${t.variant.padEnd(32)} up ${ms(t.up)}   destroy ${ms(t.destroy)}`);
  timings.length = 0;
}

/** Destroys whatever a failed test left in the stack, so the next test starts from clean hosts. */
export async function cleanup(stack: Stack | undefined): Promise<void> {
  if (!stack) return;
  if (stack.state.length) await stack.destroy().catch((e) => console.error(`      cleanup destroy failed: ${(e as Error).message}`));
  await stack.close();
}

/** Successful SSH logins recorded so far in a host's sshd log, by user. */
export function sshLogins(h: LabHost): Record<string, number> {
  const out: Record<string, number> = {};
  if (!h.sshdLog) return out;
  for (const m of fs.readFileSync(h.sshdLog, "utf8").matchAll(/^.*Accepted \S+ for (\S+) from /gm)) out[m[1]!] = (out[m[1]!] ?? 0) + 1;
  return out;
}

/** Remote commands (sessions) sshd has started so far on a host: LogLevel VERBOSE logs "Starting session: command for ..." for each. */
export function sshSessions(h: LabHost): number {
  if (!h.sshdLog) return 0;
  return fs.readFileSync(h.sshdLog, "utf8").match(/^.*Starting session: command for /gm)?.length ?? 0;
}

/** A scratch directory of this test run inside the lab's temp dir (removed with the lab). */
export function scratchDir(lab: Lab, name: string): string {
  const d = path.join(lab.dir, "variants", name);
  fs.mkdirSync(d, { recursive: true });
  return d;
}
