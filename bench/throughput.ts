// `npm run bench` (through bench/run.sh, inside a fresh lab): what natgate's claim — no userspace
// relay in the path — is worth on this machine. The seed example is applied with natgate (the real
// dynamic-provider server, as the demo does), then the internet client (203.0.113.10) measures bulk
// TCP throughput and connection setup rate to a service on the LAN host through:
//   natgate  client → VPS:5000 (DNAT) → tunnel → router DNAT → LAN host
//   relay    client → VPS:7001, a socat relay that reconnects to the router's tunnel address:5000,
//            then the same tunnel and router DNAT: the only difference is the userspace hop
//   plain    (the limit) client → the LAN host's own address, routed by the VPS into the same
//            tunnel (its route and the peer's allowed-ips widened for the bench), back by natgate's
//            return path: natgate's path without its two DNATs
//   ssh -R   client → VPS:7002, where the LAN host's `ssh -R 0.0.0.0:7002:127.0.0.1:5000` to the
//            VPS listens (over the ISP's CGNAT, not the tunnel): the usual way without natgate
//   link     natgate's path over a plain veth link between the VPS and the router instead of
//            WireGuard (a second PortForward, slot 1, existingTunnel, VPS:7100 → LAN:5000): what
//            DNAT + marks + policy routing cost without wireguard-go's, the fair match for ssh -R,
//            whose own crypto runs in the kernel's TCP over the CGNAT
//   tunnel   (reference) the VPS itself → the router's tunnel address, no DNAT at all
// Under load the lab's tunnel drops ~10 % of its packets (the router's wireguard-go UDP socket
// overflows its receive buffer: UdpRcvbufErrors), on every path alike; the bench reports it.
// Paths alternate within every round and each figure is a median over the rounds, since the
// machines are shared and noisy; the ratio natgate/relay is measured in the same run. The relay
// listens on 7001, not 5001: the seed forwards 5000-6000, so the VPS would DNAT 5001 before
// any relay saw it. Destroys what it applied; the lab wrapper tears the lab down.
import { execFileSync } from "child_process";
import * as os from "os";
import * as path from "path";
import { getLab, Lab, LabHost, LabProcess, shQuote } from "../test/lab";
import { Stack } from "../test/engine/stack";
import { PUBLIC, seedProgram, seedStack, stopAll } from "../test/engine/seedLab";
import { baseArgs } from "../test/variants/variantLab";
import { vpsSshOptions } from "./vpsSsh";
import { busyCpuSeconds } from "./cpu";
import { PortForward } from "natgate";

const ROUNDS = Number(process.env.NATGATE_BENCH_ROUNDS ?? 5);
/** Each bulk transfer is sized to last about this long on natgate's path. */
const BULK_TARGET_MS = 2000;
const CONNECT_MS = 2000;
/** Connections in flight at once during the setup-rate measurement. */
const PARALLEL = 4;
const SERVICE_PORT = 5000; // inside the seed's 5000-6000, on the LAN host
const RELAY_PORT = 7001; // outside it, on the VPS
const ROUTER_PORT = 7000; // a listener on the router itself, for the raw tunnel
const SSH_R_PORT = 7002; // ssh -R's listener on the VPS
const LINK_PORT = 7100; // the veth path's public port, outside the seed's 5000-6000
const LINK = { vps: "ngbench-vps", router: "ngbench-rt", vpsAddress: "10.20.0.1", routerAddress: "10.20.0.2" };

const PEER = path.join(__dirname, "peer.js");
const NODE = process.execPath;
const started = Date.now();
const out = (s = "") => process.stdout.write(s + "\n");

const PATHS = ["natgate", "plain", "relay", "sshR", "link", "tunnel"] as const;
type PathName = (typeof PATHS)[number];
/** Paths whose bytes do not cross the WireGuard tunnel: no tunnel loss to report. */
const OFF_TUNNEL: PathName[] = ["sshR", "link"];
/** ssh -R forwards TCP only. */
const NO_UDP: PathName[] = ["sshR"];
const UDP_MS = 2000;
const perPath = <T>(f: () => T) => Object.fromEntries(PATHS.map((p) => [p, f()])) as Record<PathName, T>;
interface Route {
  name: PathName;
  from: LabHost;
  host: string;
  port: number;
  what: string;
}

interface BulkResult {
  ms: number;
  bytes: number;
  saw: string;
}
interface RrResult {
  ms: number;
  transactions: number;
  saw: string;
}
interface UdpResult {
  ms: number;
  sent: number;
  received: number;
  saw: string;
}
interface ConnectResult {
  ms: number;
  connections: number;
  failed: number;
  saw: string;
}

async function peer<T>(from: LabHost, args: Array<string | number>): Promise<T> {
  const cmd = [NODE, PEER, ...args.map(String)].map(shQuote).join(" ");
  const line = (await from.run(cmd, { timeoutMs: 60_000 })).trim().split("\n").pop() ?? "";
  return JSON.parse(line) as T;
}

const mbits = (r: BulkResult) => (r.bytes * 8) / (r.ms / 1000) / 1e6;
const rate = (r: ConnectResult) => r.connections / (r.ms / 1000);
const tps = (r: RrResult) => r.transactions / (r.ms / 1000);
const pps = (r: UdpResult) => r.received / (r.ms / 1000);

const RR_MS = 2000;
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
const f0 = (x: number) => x.toFixed(0);

/** Packets the VPS sent into the tunnel and packets the router got out of it (either direction's data, ACKs aside). */
async function tunnelPackets(vps: LabHost, router: LabHost, dev: string): Promise<{ sent: number; received: number }> {
  const stats = async (hst: LabHost, dir: "tx" | "rx") => {
    const j = JSON.parse(await hst.run(`ip -s -j link show dev ${shQuote(dev)}`)) as Array<{ stats64: Record<string, { packets: number }> }>;
    return j[0].stats64[dir].packets;
  };
  return { sent: await stats(vps, "tx"), received: await stats(router, "rx") };
}

class BenchFailure extends Error {}

/** Whether this path's service saw the address it should: the functional half of the comparison. */
function checkSaw(route: Route, saw: string, expected: string): void {
  if (saw !== expected) throw new BenchFailure(`${route.name}: the service saw "${saw}", expected ${expected}`);
}

/**
 * The plain-routing path: core routes the LAN subnet to the VPS, the VPS routes it into the tunnel
 * and its peer accepts it; the router's return path (natgate's, from the seed) sends the replies
 * back. Returns what puts the three back as they were.
 */
async function plainRouting(lab: Lab, dev: string, routerTunnel: string): Promise<{ undo: () => Promise<void> }> {
  const { core, vps } = lab.hosts;
  const lan = lab.addresses.lanSubnet;
  const peers = (await vps.run(`wg show ${shQuote(dev)} allowed-ips`)).trim().split("\n").map((l) => l.split("\t"));
  const peer = peers.find(([, ips]) => (ips ?? "").split(" ").includes(`${routerTunnel}/32`));
  if (!peer) throw new BenchFailure(`no peer of ${dev} on the VPS allows ${routerTunnel}/32`);
  const [key, ips] = peer as [string, string];
  await vps.run(`wg set ${shQuote(dev)} peer ${shQuote(key)} allowed-ips ${shQuote([...ips.split(" "), lan].join(","))}`);
  await vps.run(`ip route add ${lan} dev ${shQuote(dev)}`);
  await core.run(`ip route add ${lan} via ${PUBLIC}`);
  return {
    undo: async () => {
      await core.run(`ip route del ${lan} via ${PUBLIC}`);
      await vps.run(`ip route del ${lan} dev ${shQuote(dev)}`);
      await vps.run(`wg set ${shQuote(dev)} peer ${shQuote(key)} allowed-ips ${shQuote(ips.split(" ").join(","))}`);
    },
  };
}

/** `ssh -R` from the LAN host to the VPS's public address, with the lab's root key; up once its port listens. */
async function sshReverse(lab: Lab): Promise<LabProcess> {
  const cmd = ["ssh", "-N", ...vpsSshOptions(lab, PUBLIC), "-o", "ExitOnForwardFailure=yes",
    "-R", `0.0.0.0:${SSH_R_PORT}:127.0.0.1:${SERVICE_PORT}`, `root@${PUBLIC}`].map(shQuote).join(" ");
  const p = await lab.hosts.lan.start(cmd);
  for (let k = 0; k < 100; k++) {
    if ((await lab.hosts.vps.exec(`ss -Hltn 'sport = :${SSH_R_PORT}'`)).stdout.trim()) return p;
    await new Promise((r) => setTimeout(r, 100));
  }
  await p.stop();
  throw new BenchFailure(`ssh -R from the LAN host did not listen on the VPS's port ${SSH_R_PORT} within 10 s`);
}

/** A veth pair between the VPS and the router: the no-crypto "tunnel". Returns what removes it. */
async function plainLink(lab: Lab): Promise<() => Promise<void>> {
  const { vps, router } = lab.hosts;
  // From this process (the lab's laptop), as the lab makes its links: inside a lab host the
  // other hosts' namespace names are not visible.
  execFileSync("ip", ["link", "add", "name", LINK.vps, "netns", vps.netns, "type", "veth", "peer", "name", LINK.router, "netns", router.netns]);
  await vps.run(`ip addr add ${LINK.vpsAddress}/30 dev ${LINK.vps} && ip link set ${LINK.vps} up`);
  await router.run(`ip addr add ${LINK.routerAddress}/30 dev ${LINK.router} && ip link set ${LINK.router} up`);
  return async () => {
    await vps.run(`ip link del ${LINK.vps}`);
  };
}

/** natgate's path over that link: the component as a user with an existing tunnel writes it. */
function linkProgram(lab: Lab): () => unknown {
  return () => {
    new PortForward("benchlink", {
      ...baseArgs(lab),
      slot: 1,
      existingTunnel: { interfaceName: LINK.router, vpsInterfaceName: LINK.vps, vpsAddress: LINK.vpsAddress, routerAddress: LINK.routerAddress },
      forwards: [{ protocol: "both", ports: LINK_PORT, toPorts: SERVICE_PORT }],
    });
    return {};
  };
}

async function main(): Promise<void> {
  const lab: Lab = getLab();
  const h = lab.hosts;
  out(`natgate bench: throughput and connection setup rate, natgate's kernel path vs plain routing, a userspace relay and ssh -R`);
  out(`  ${os.cpus().length} CPUs shared by every lab host (load average ${os.loadavg()[0].toFixed(2)} at start); ${ROUNDS} rounds, paths alternating`);

  const stack: Stack = seedStack(lab);
  const procs: LabProcess[] = [];
  const undo: Array<() => Promise<unknown>> = [];
  const linkStack = new Stack({ project: "natgate-bench-link" });
  try {
    const t = Date.now();
    const up = await stack.up(seedProgram);
    if (!up.steps.every((s) => s.op === "create")) throw new BenchFailure("up of the seed did not create every resource");
    const tunnel = stack.get("home-tunnel");
    const tin = tunnel.inputs as { listener: { address: string }; dialer: { address: string } };
    const vpsTunnel = tin.listener.address.split("/")[0];
    const routerTunnel = tin.dialer.address.split("/")[0];
    const dev = String(tunnel.outputs.interfaceName ?? "wg0");
    const backends = [tunnel.outputs.listenerBackend, tunnel.outputs.dialerBackend].map(String);
    out(`  seed applied with natgate in ${((Date.now() - t) / 1000).toFixed(1)} s; WireGuard: ${backends.join(" (VPS), ")} (router)`);

    procs.push(await h.lan.start(`${shQuote(NODE)} ${shQuote(PEER)} serve ${SERVICE_PORT}`, { waitForTcpPort: SERVICE_PORT }));
    procs.push(await h.router.start(`${shQuote(NODE)} ${shQuote(PEER)} serve ${ROUTER_PORT}`, { waitForTcpPort: ROUTER_PORT }));
    // -t 5: after one side's EOF socat keeps the other direction open 0.5 s by default, less than
    // the service may need to drain what is still in flight before it answers.
    procs.push(await h.vps.start(`socat -t 5 TCP-LISTEN:${RELAY_PORT},fork,reuseaddr TCP:${routerTunnel}:${SERVICE_PORT}`, { waitForTcpPort: RELAY_PORT }));
    // and for UDP: a child per client flow, as a UDP relay (frp's, rathole's) keeps one per peer
    procs.push(await h.vps.start(`socat -T 10 UDP4-LISTEN:${RELAY_PORT},fork,reuseaddr UDP4:${routerTunnel}:${SERVICE_PORT}`, { waitForUdpPort: RELAY_PORT }));
    const plain = await plainRouting(lab, dev, routerTunnel);
    undo.push(plain.undo);
    procs.push(await sshReverse(lab));
    undo.push(await plainLink(lab));
    const linkUp = await linkStack.up(linkProgram(lab));
    if (!linkUp.steps.every((x) => x.op === "create")) throw new BenchFailure("up of the veth path did not create every resource");

    const routes: Route[] = [
      { name: "natgate", from: h.client, host: PUBLIC, port: SERVICE_PORT, what: `client → ${PUBLIC}:${SERVICE_PORT} (DNAT) → tunnel → router DNAT → ${h.lan.addr}` },
      { name: "plain", from: h.client, host: h.lan.addr, port: SERVICE_PORT, what: `client → ${h.lan.addr}:${SERVICE_PORT}, routed by the VPS into the tunnel, no DNAT (the limit)` },
      { name: "sshR", from: h.client, host: PUBLIC, port: SSH_R_PORT, what: `client → VPS:${SSH_R_PORT}, ssh -R from the LAN host over the CGNAT → 127.0.0.1:${SERVICE_PORT}` },
      { name: "link", from: h.client, host: PUBLIC, port: LINK_PORT, what: `client → ${PUBLIC}:${LINK_PORT} (DNAT) → veth, no WireGuard → router DNAT → ${h.lan.addr}:${SERVICE_PORT}` },
      { name: "relay", from: h.client, host: PUBLIC, port: RELAY_PORT, what: `client → socat on VPS:${RELAY_PORT} → ${routerTunnel}:${SERVICE_PORT} → tunnel → router DNAT → ${h.lan.addr}` },
      { name: "tunnel", from: h.vps, host: routerTunnel, port: ROUTER_PORT, what: `VPS → ${routerTunnel}:${ROUTER_PORT} on the router, no DNAT (reference)` },
    ];
    const expectedSaw: Record<PathName, string> = { natgate: h.client.addr, plain: h.client.addr, relay: vpsTunnel, sshR: "127.0.0.1", link: h.client.addr, tunnel: vpsTunnel };

    // Warm-up (first connections, ARP, wireguard-go's first handshake) and sizing: the same byte
    // count on every path, about BULK_TARGET_MS on natgate's.
    const probe = await peer<BulkResult>(h.client, ["bulk", PUBLIC, SERVICE_PORT, 32 << 20]);
    const bytes = Math.max(16, Math.round((((mbits(probe) * 1e6) / 8) * (BULK_TARGET_MS / 1000)) / (1 << 20))) << 20;
    for (const r of routes) await peer<BulkResult>(r.from, ["bulk", r.host, r.port, 8 << 20]);
    out(`  bulk transfer: ${bytes >> 20} MiB per measurement; setup rate: ${CONNECT_MS / 1000} s of connections, ${PARALLEL} in flight;`);
    out(`  request/response: ${RR_MS / 1000} s of 1-byte requests, each answered before the next, on one connection;`);
    out(`  UDP: ${UDP_MS / 1000} s of 64-byte datagrams, as fast as one sender sends them; CPU: the machine's busy seconds per GB of the bulk transfers`);

    const bulk = perPath<number[]>(() => []);
    const conns = perPath<number[]>(() => []);
    const rrs = perPath<number[]>(() => []);
    const udps = perPath<number[]>(() => []);
    const udpLoss = perPath<number[]>(() => []);
    const cpu = perPath<number[]>(() => []);
    const saw = perPath(() => "");
    const lost = perPath(() => ({ sent: 0, lost: 0 }));
    let failedConnections = 0;
    for (let round = 0; round < ROUNDS; round++) {
      // Alternate the order so a drift in the machine's load does not favour one path.
      const order = round % 2 ? [...routes].reverse() : routes;
      const cells: string[] = [];
      for (const r of order) {
        const before = await tunnelPackets(h.vps, h.router, dev);
        const cpu0 = busyCpuSeconds();
        const b = await peer<BulkResult>(r.from, ["bulk", r.host, r.port, bytes]);
        cpu[r.name].push((busyCpuSeconds() - cpu0) / (b.bytes / 1e9));
        const after = await tunnelPackets(h.vps, h.router, dev);
        lost[r.name].sent += after.sent - before.sent;
        lost[r.name].lost += after.sent - before.sent - (after.received - before.received);
        checkSaw(r, b.saw, expectedSaw[r.name]);
        bulk[r.name].push(mbits(b));
        const c = await peer<ConnectResult>(r.from, ["connect", r.host, r.port, CONNECT_MS, PARALLEL]);
        checkSaw(r, c.saw, expectedSaw[r.name]);
        conns[r.name].push(rate(c));
        failedConnections += c.failed;
        const q = await peer<RrResult>(r.from, ["rr", r.host, r.port, RR_MS]);
        checkSaw(r, q.saw, expectedSaw[r.name]);
        rrs[r.name].push(tps(q));
        let udpCell = "";
        if (!NO_UDP.includes(r.name)) {
          const u = await peer<UdpResult>(r.from, ["udp", r.host, r.port, UDP_MS]);
          checkSaw(r, u.saw, expectedSaw[r.name]);
          udps[r.name].push(pps(u));
          udpLoss[r.name].push((100 * (u.sent - u.received)) / Math.max(1, u.sent));
          udpCell = ` ${f0(pps(u))} pps`;
        }
        saw[r.name] = b.saw;
        cells.push(`${r.name} ${f0(mbits(b))} Mbit/s ${f0(rate(c))} conn/s ${f0(tps(q))} rr/s${udpCell} ${cpu[r.name].at(-1)!.toFixed(1)} CPU s/GB`);
      }
      out(`  round ${round + 1}: ${cells.join(" | ")}`);
    }

    out();
    out(`  ${"path".padEnd(8)} ${"Mbit/s".padStart(8)} ${"conn/s".padStart(8)} ${"rr/s".padStart(8)} ${"UDP pps".padStart(8)} ${"UDP lost".padStart(8)} ${"CPU s/GB".padStart(8)}  ${"tunnel loss".padStart(11)}  the LAN service saw  route`);
    for (const r of routes) {
      const loss = OFF_TUNNEL.includes(r.name) ? "-" : `${((100 * lost[r.name].lost) / Math.max(1, lost[r.name].sent)).toFixed(1)} %`;
      const u = NO_UDP.includes(r.name) ? ["-", "-"] : [f0(median(udps[r.name])), `${median(udpLoss[r.name]).toFixed(0)} %`];
      out(
        `  ${r.name.padEnd(8)} ${f0(median(bulk[r.name])).padStart(8)} ${f0(median(conns[r.name])).padStart(8)} ${f0(median(rrs[r.name])).padStart(8)} ${u[0]!.padStart(8)} ${u[1]!.padStart(8)} ${median(cpu[r.name]).toFixed(1).padStart(8)}  ${loss.padStart(11)}  ${saw[r.name].padEnd(18)}  ${r.what}`,
      );
    }
    // Ratio of the medians, and the spread of the same ratio round by round (natgate and the relay
    // run back to back within a round, so each pair saw about the same machine load).
    const ratio = (xs: Record<PathName, number[]>, other: PathName = "relay") => {
      const paired = xs.natgate.map((x, i) => x / xs[other][i]).sort((a, b) => a - b);
      return `×${(median(xs.natgate) / median(xs[other])).toFixed(2)} (rounds ${paired[0].toFixed(2)}–${paired[paired.length - 1].toFixed(2)})`;
    };
    out(`  (medians over ${ROUNDS} rounds; tunnel loss: packets the VPS sent into ${dev} that the router never got, during`);
    out(`  the bulk transfers; UDP lost: datagrams sent that the service never counted; CPU s/GB: all lab hosts together, one`);
    out(`  kernel, client and service included; ssh -R carries no UDP; the tunnel's service runs on the router, so it saw the VPS's`);
    out(`  tunnel address too)`);
    out();
    out(`  natgate / plain: throughput ${ratio(bulk, "plain")}, connection setup rate ${ratio(conns, "plain")}, 1-byte request/response ${ratio(rrs, "plain")}, UDP pps ${ratio(udps, "plain")}, CPU s/GB ${ratio(cpu, "plain")}`);
    out(`  natgate / relay: throughput ${ratio(bulk)}, connection setup rate ${ratio(conns)}, 1-byte request/response ${ratio(rrs)}, UDP pps ${ratio(udps)}, CPU s/GB ${ratio(cpu)}`);
    out(`  natgate / ssh -R: throughput ${ratio(bulk, "sshR")}, connection setup rate ${ratio(conns, "sshR")}, 1-byte request/response ${ratio(rrs, "sshR")}, CPU s/GB ${ratio(cpu, "sshR")}`);
    const linkRatio = (xs: Record<PathName, number[]>) => `×${(median(xs.link) / median(xs.sshR)).toFixed(2)}`;
    out(`  natgate over the veth link / ssh -R: throughput ${linkRatio(bulk)}, connection setup rate ${linkRatio(conns)}, 1-byte request/response ${linkRatio(rrs)}, CPU s/GB ${linkRatio(cpu)}`);
    out(`  natgate's service sees the client (${saw.natgate}); behind the relay it sees only the VPS (${saw.relay}), behind ssh -R only ${saw.sshR}.`);
    if (failedConnections) out(`  ${failedConnections} connections failed during the setup-rate measurements`);
    if (backends.some((b) => b !== "kernel")) {
      out(`  Note: this machine has no WireGuard kernel module, so the lab's tunnel is wireguard-go (userspace) and`);
      out(`  every host shares ${os.cpus().length} CPUs: absolute figures understate a host with kernel WireGuard.`);
    }
  } finally {
    await stopAll(procs);
    if (linkStack.state.length) await linkStack.destroy().catch((e: Error) => out(`  destroying the veth path failed: ${e.message}`));
    await linkStack.close();
    for (const u of undo.reverse()) await u().catch((e: Error) => out(`  undoing a bench change failed: ${e.message}`));
    if (stack.state.length) {
      const t = Date.now();
      await stack.destroy();
      out(`  destroyed what natgate applied in ${((Date.now() - t) / 1000).toFixed(1)} s`);
    }
    await stack.close();
  }
  out(`bench finished in ${((Date.now() - started) / 1000).toFixed(1)} s (the lab is torn down next)`);
}

main().catch((e) => {
  out(`bench failed after ${((Date.now() - started) / 1000).toFixed(1)} s: ${(e as Error).message}`);
  if (!(e instanceof BenchFailure) && process.env.NATGATE_BENCH_DEBUG) console.error((e as Error).stack);
  process.exit(1);
});
