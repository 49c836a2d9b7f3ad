// The seed example against the lab, shared by test/engine/seed.test.ts and scripts/demo.ts: its
// config, a stack for it, the LAN services and the internet client's probes, and host snapshots
// that prove a destroy leaves a host as it was.
import * as path from "path";
import type { Lab, LabHost, LabProcess } from "../lab";
import { loadProgram } from "./mocks";
import { Stack, StackOptions } from "./stack";

const repoRoot = path.resolve(__dirname, "..", "..");
export const SEED = path.join(repoRoot, "examples", "seed", "index.ts");
/** The project of the repository's Pulumi.yaml, which runs examples/seed. */
export const PROJECT = "natgate-seed";
/** The VPS's public address in the lab, and what the internet client connects to. */
export const PUBLIC = "198.51.100.1";

export const seedProgram = () => loadProgram(SEED);

/** `pulumi config` for the seed pointing at the lab (the lab's root key, host keys pinned). */
export function seedConfig(lab: Lab, extra: Record<string, string> = {}): Record<string, string> {
  const { vps, router } = lab.hosts;
  return {
    [`${PROJECT}:vpsHost`]: vps.addr,
    [`${PROJECT}:vpsPublicAddress`]: PUBLIC,
    [`${PROJECT}:routerHost`]: router.addr,
    [`${PROJECT}:sshKey`]: vps.ssh!.privateKey,
    [`${PROJECT}:vpsHostKey`]: vps.ssh!.hostKey,
    [`${PROJECT}:routerHostKey`]: router.ssh!.hostKey,
    ...Object.fromEntries(Object.entries(extra).map(([k, v]) => [`${PROJECT}:${k}`, v])),
  };
}

export function seedStack(lab: Lab, opts: Partial<StackOptions> = {}): Stack {
  return new Stack({ project: PROJECT, config: seedConfig(lab), secretKeys: [`${PROJECT}:sshKey`], ...opts });
}

/** What a destroy must leave exactly as it found it. */
export const SNAPSHOT_COMMANDS = [
  "nft list ruleset",
  "ip rule",
  "ip route show table all",
  "ip -br link",
  "sysctl net.ipv4.ip_forward",
  "sysctl -a 2>/dev/null | grep '\\.rp_filter ' | sort",
  // boot entries, the runner and init hooks (and directories made for them), and natgate's /run state
  "find /run/natgate /etc/natgate /etc/systemd/system/natgate.service /etc/systemd/system/multi-user.target.wants/natgate.service /etc/init.d/natgate /etc/rc.d /etc/hotplug.d /lib/upgrade 2>/dev/null; true",
];

/**
 * A host's state, once its IPv6 duplicate address detection has finished: a freshly brought-up
 * link gets its fe80:: route in table local only after DAD, a second or two later, which would
 * otherwise show up as a difference nobody made.
 */
export async function snapshotHost(h: LabHost): Promise<string> {
  for (const deadline = Date.now() + 10_000; (await h.run("ip -6 addr show tentative")).trim() !== ""; ) {
    if (Date.now() > deadline) throw new Error(`${h.name}: IPv6 addresses still tentative after 10 s:\n${await h.run("ip -6 addr show tentative")}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const parts: string[] = [];
  for (const cmd of SNAPSHOT_COMMANDS) parts.push(`## ${cmd}\n${(await h.run(cmd)).trimEnd()}`);
  // Packet counters move with traffic and restart when a table is rebuilt (a boot run): not host state.
  return parts.join("\n").replace(/counter packets \d+ bytes \d+/g, "counter");
}

/** Lines only in `before` ("- ") or only in `after` ("+ "), each with its section. */
export function snapshotDiff(before: string, after: string): string[] {
  const sections = (s: string) => {
    const out: string[] = [];
    let head = "";
    for (const l of s.split("\n")) {
      if (l.startsWith("## ")) head = l.slice(3);
      else out.push(`[${head}] ${l}`);
    }
    return out;
  };
  const b = sections(before);
  const a = sections(after);
  return [...b.filter((l) => !a.includes(l)).map((l) => `- ${l}`), ...a.filter((l) => !b.includes(l)).map((l) => `+ ${l}`)];
}

/**
 * The LAN host's services: each answers with the address it saw the client come from.
 * tcp 5000, udp 5000 and udp 6000.
 */
export async function startLanServices(lab: Lab): Promise<LabProcess[]> {
  const lan = lab.hosts.lan;
  const started: LabProcess[] = [];
  try {
    started.push(await lan.start(`socat TCP-LISTEN:5000,reuseaddr,fork SYSTEM:'echo tcp/5000 saw \\$SOCAT_PEERADDR'`, { waitForTcpPort: 5000 }));
    started.push(await lan.start(`socat UDP-RECVFROM:5000,fork SYSTEM:'echo udp/5000 saw \\$SOCAT_PEERADDR'`, { waitForUdpPort: 5000 }));
    started.push(await lan.start(`socat UDP-RECVFROM:6000,fork SYSTEM:'echo udp/6000 saw \\$SOCAT_PEERADDR'`, { waitForUdpPort: 6000 }));
  } catch (e) {
    await stopAll(started);
    throw e;
  }
  return started;
}

export async function stopAll(procs: LabProcess[]): Promise<void> {
  for (const p of procs) await p.stop();
}

export interface Probe {
  /** What the client sent, e.g. "tcp 198.51.100.1:5000". */
  what: string;
  /** The first line the client got back ("" when nothing came back). */
  answer: string;
  /** Why nothing came back, when nothing did. */
  error: string;
  ms: number;
}

async function probe(client: LabHost, what: string, cmd: string): Promise<Probe> {
  const started = Date.now();
  const r = await client.exec(cmd, { timeoutMs: 10_000 });
  const answer = r.stdout.split("\n")[0].trim();
  // socat's last message ends in the reason ("...: Connection refused"); UDP just stays silent.
  const last = r.stderr.trim().split("\n").pop() ?? "";
  const error = answer ? "" : (/:\s*([^:]+)$/.exec(last)?.[1] ?? last) || "no answer";
  return { what, answer, error, ms: Date.now() - started };
}

/** The internet client (203.0.113.10) connects to the VPS's public address (or another) over TCP. */
export function askTcp(lab: Lab, port: number, address = PUBLIC): Promise<Probe> {
  return probe(lab.hosts.client, `tcp ${address}:${port}`, `socat -T3 - TCP:${address}:${port},connect-timeout=3 </dev/null`);
}

/**
 * Sends a UDP datagram from the internet client to the VPS and waits up to 2 s for a reply; once
 * more when none came, as a UDP client would (a datagram may be lost, e.g. while the tunnel
 * rekeys on a loaded machine). A broken path answers neither.
 */
export async function askUdp(lab: Lab, port: number, address = PUBLIC): Promise<Probe> {
  const ask = () => probe(lab.hosts.client, `udp ${address}:${port}`, `echo hello | socat -T2 - UDP:${address}:${port}`);
  const first = await ask();
  return first.answer ? first : ask();
}

/** Reads an SSH server's banner through the VPS (the router's sshd behind VPS:2222). */
export function askBanner(lab: Lab, port: number, address = PUBLIC): Promise<Probe> {
  return probe(lab.hosts.client, `tcp ${address}:${port}`, `timeout 5 socat -T3 - TCP:${address}:${port},connect-timeout=3 </dev/null`);
}
