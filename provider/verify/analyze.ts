// Which hop of the path worked, judged from the conntrack events both hosts saw during one probe.
// Pure: the unit tests feed it events captured in the lab.
import { NatgateError } from "../ssh/errors";
import { flowsOf, parseConntrack, type ConntrackEntry, type ConntrackFlow } from "./conntrack";
import type { LinkState } from "./capture";
import type { ProbeResult } from "./probe";
import { HOPS, type Hop, type HopName, type PathCheckReport, type ReportEntry } from "./report";

export { HOPS, type Hop, type HopName, type PathCheckReport, type ReportEntry } from "./report";

export interface AnalyzeInput {
  publicAddress: string;
  /** what the VPS sees as the destination (its own address behind a 1:1 NAT); default publicAddress */
  vpsAddress?: string;
  port: number;
  routerTunnelAddress: string;
  tunnelInterface: string;
  mark?: number;
  mask?: number;
  routerLocal?: boolean;
  probe: ProbeResult;
  /** `conntrack -E -o id` text from the VPS, filtered to the public address and port */
  vpsEvents: string;
  /** same from the router, filtered to the router's tunnel address */
  routerEvents: string;
  /** the router's tunnel interface as the router saw it after the probe */
  routerLink?: LinkState;
}

/** More than one new connection could be the probe's: the check cannot tell which. */
export class AmbiguousProbeError extends NatgateError {
  constructor(message: string) {
    super("path-ambiguous", message);
    this.name = "AmbiguousProbeError";
  }
}

const hex = (n: number) => "0x" + (n >>> 0).toString(16);
const addrPort = (a: string, p?: number) => (p === undefined ? a : a.includes(":") ? `[${a}]:${p}` : `${a}:${p}`);

function reportEntry(f: ConntrackFlow): ReportEntry {
  const e: ConntrackEntry = f.last;
  const tuple = (t: ConntrackEntry["orig"]) => ({
    src: t.src,
    dst: t.dst,
    ...(t.sport !== undefined ? { sport: t.sport } : {}),
    ...(t.dport !== undefined ? { dport: t.dport } : {}),
  });
  return {
    ...(e.state ? { state: e.state } : {}),
    orig: tuple(e.orig),
    reply: tuple(e.reply),
    flags: e.flags,
    ...(e.mark !== undefined ? { mark: e.mark } : {}),
    events: f.events,
    replied: f.replied,
  };
}

/** The VPS connection that is the probe's: begun during the check, for the public address and port. */
function findVpsFlow(input: AnalyzeInput): ConntrackFlow | undefined {
  const flows = flowsOf(parseConntrack(input.vpsEvents)).filter(
    (f) => f.began && f.first.protocol === "tcp" && f.first.orig.dst === (input.vpsAddress ?? input.publicAddress) && f.first.orig.dport === input.port,
  );
  if (flows.length <= 1) return flows[0];
  // NATs on the way often keep the source port: that tells the probe from other clients.
  const samePort = flows.filter((f) => f.first.orig.sport === input.probe.localPort);
  if (samePort.length === 1) return samePort[0];
  const from = flows.map((f) => addrPort(f.first.orig.src, f.first.orig.sport)).join(", ");
  throw new AmbiguousProbeError(
    `PathCheck: ${flows.length} connections to ${addrPort(input.publicAddress, input.port)} began on the VPS during the check ` +
      `(from ${from}) and none can be told apart as this machine's; run the check again when the port is quiet.`,
  );
}

function probeText(p: ProbeResult): string {
  switch (p.outcome) {
    case "connected":
      return `the connection was established in ${p.ms} ms`;
    case "refused":
      return `the connection was refused (a reset came back) after ${p.ms} ms`;
    case "timeout":
      return `nothing came back within ${p.ms} ms`;
    default:
      return `the connection failed (${p.errorCode ?? p.outcome}) after ${p.ms} ms`;
  }
}

/** Judge each hop in the order packets take them; the first failure decides what the others can say. */
export function analyzePath(input: AnalyzeInput): PathCheckReport {
  const hops: Hop[] = [];
  const target = addrPort(input.publicAddress, input.port);
  const routerIf = input.tunnelInterface;
  const skipped = (hop: HopName, why: string) => hops.push({ hop, ok: false, skipped: true, detail: `not checked: ${why}` });
  const finish = (vps?: ConntrackFlow, router?: ConntrackFlow): PathCheckReport => {
    for (const h of HOPS) if (!hops.some((x) => x.hop === h)) skipped(h, "an earlier hop failed");
    return {
      callerAddress: vps?.first.orig.src ?? "",
      probe: input.probe,
      ...(vps ? { vpsEntry: reportEntry(vps) } : {}),
      ...(router ? { routerEntry: reportEntry(router) } : {}),
      hops,
      ok: hops.every((h) => h.ok),
    };
  };

  // 1. VPS DNAT: the VPS confirmed a connection from the caller and sent it to the router's tunnel address.
  const vps = findVpsFlow(input);
  if (!vps) {
    hops.push({
      hop: "VPS DNAT",
      ok: false,
      detail:
        `no connection reached ${target} on the VPS, or the VPS dropped it before forwarding (${probeText(input.probe)}). ` +
        (input.probe.outcome === "refused"
          ? `A reset came back without the VPS forwarding anything: most likely the VPS answered itself because no DNAT rule matched ` +
            `(a host without NAT rules does not even track connections). `
          : "") +
        `Look at: the address is the VPS's public one, the provider's firewall/security group lets tcp ${input.port} in, ` +
        `the VPS's DNAT rule for tcp ${input.port}, net.ipv4.ip_forward=1, and the VPS's FORWARD chain (ufw/Docker drop policies).`,
    });
    return finish();
  }
  const caller = vps.first.orig.src;
  const v = vps.first;
  if (v.reply.src !== input.routerTunnelAddress) {
    const answeredItself = v.reply.src === (input.vpsAddress ?? input.publicAddress) || v.reply.src === v.orig.dst;
    hops.push({
      hop: "VPS DNAT",
      ok: false,
      detail: answeredItself
        ? `a connection from ${caller} reached ${target} on the VPS but was not DNATed: the VPS ${vps.replied ? "answered it itself" : "kept it for itself"}. ` +
          `Look at the VPS's DNAT rule for tcp ${input.port} to ${input.routerTunnelAddress} (nat PREROUTING).`
        : `a connection from ${caller} reached ${target} on the VPS but was DNATed to ${addrPort(v.reply.src, v.reply.sport)}, ` +
          `not to the router's tunnel address ${input.routerTunnelAddress}. Look at the VPS's nat PREROUTING rules for tcp ${input.port}.`,
    });
    return finish(vps);
  }
  if (v.reply.dst !== caller) {
    hops.push({
      hop: "VPS DNAT",
      ok: false,
      detail:
        `the VPS DNATed the connection from ${caller} to ${input.routerTunnelAddress} but also rewrote its source to ${v.reply.dst} ` +
        `(SNAT/masquerade): the router and the LAN host would not see the caller's address. Remove the masquerade on the VPS's tunnel interface.`,
    });
    return finish(vps);
  }
  hops.push({
    hop: "VPS DNAT",
    ok: true,
    detail: `${addrPort(caller, v.orig.sport)} → ${target} DNATed to ${addrPort(v.reply.src, v.reply.sport)}`,
  });

  // 2. Tunnel: the router confirmed the same connection (the VPS keeps source address and port).
  const routerFlows = flowsOf(parseConntrack(input.routerEvents)).filter(
    (f) =>
      f.first.protocol === "tcp" &&
      f.first.orig.src === caller &&
      f.first.orig.sport === v.orig.sport &&
      f.first.orig.dst === v.reply.src &&
      f.first.orig.dport === v.reply.sport,
  );
  const router = routerFlows.find((f) => f.began) ?? routerFlows[0];
  if (!router) {
    const link = input.routerLink;
    const linkText = !link
      ? ""
      : !link.exists
        ? ` The router has no interface ${routerIf}.`
        : !link.up
          ? ` ${routerIf} is down on the router (ip link set ${routerIf} up).`
          : ` ${routerIf} is up on the router (operstate ${link.operstate}).`;
    hops.push({
      hop: "tunnel",
      ok: false,
      detail:
        `the VPS forwarded the connection from ${caller} to ${addrPort(v.reply.src, v.reply.sport)}, but the router never confirmed it: ` +
        `it did not arrive through the tunnel, or the router dropped it.${linkText} Look at: the tunnel on both hosts ` +
        `(interface up, WireGuard handshake: wg show ${routerIf}), the VPS's route to ${input.routerTunnelAddress}, ` +
        `rp_filter on the router's ${routerIf} (strict mode drops internet sources; use 2), and the router's forward policy towards the LAN.`,
    });
    return finish(vps);
  }
  const r = router.first;
  hops.push({
    hop: "tunnel",
    ok: true,
    detail: `the router saw ${addrPort(caller, r.orig.sport)} → ${addrPort(r.orig.dst, r.orig.dport)} arrive with the caller's address`,
  });

  // 3. Router DNAT: towards the LAN host, unless the service runs on the router itself.
  const dnated = r.reply.src !== r.orig.dst;
  if (input.routerLocal) {
    hops.push({
      hop: "router DNAT",
      ok: !dnated,
      detail: !dnated
        ? `the forward targets the router itself: it answered on ${addrPort(r.reply.src, r.reply.sport)}`
        : `routerLocal is set but the router DNATed the connection to ${addrPort(r.reply.src, r.reply.sport)}: unset routerLocal, or remove that DNAT.`,
    });
  } else if (!dnated) {
    hops.push({
      hop: "router DNAT",
      ok: false,
      detail:
        `the connection reached the router through ${routerIf} but was not DNATed to the LAN host: the router ` +
        `${router.replied ? "answered it itself" : "kept it for itself"}. Look at the router's DNAT rule for tcp ${r.orig.dport} ` +
        `arriving on ${routerIf} (or set routerLocal when the service runs on the router).`,
    });
    return finish(vps, router);
  } else if (r.reply.dst !== caller) {
    hops.push({
      hop: "router DNAT",
      ok: false,
      detail:
        `the router DNATed the connection to ${addrPort(r.reply.src, r.reply.sport)} but also rewrote its source to ${r.reply.dst} ` +
        `(SNAT/masquerade): the LAN host sees ${r.reply.dst}, not the caller. Remove the masquerade towards the LAN for tunnel traffic.`,
    });
    return finish(vps, router);
  } else {
    hops.push({ hop: "router DNAT", ok: true, detail: `DNATed to ${addrPort(r.reply.src, r.reply.sport)}` });
  }
  if (!hops[hops.length - 1].ok) return finish(vps, router);

  // 4. Return path: the service answered, the router marked the connection, the answer reached the VPS.
  const answerer = input.routerLocal ? "the router's service" : `the LAN host ${r.reply.src}`;
  const problems: string[] = [];
  if (!router.replied) {
    problems.push(
      `${answerer} never answered (the router's entry stays [UNREPLIED]): is the service listening on ${addrPort(r.reply.src, r.reply.sport)}, ` +
        `and does the ${input.routerLocal ? "router's input" : "LAN host's"} firewall let it in?`,
    );
  }
  if (input.mark !== undefined) {
    const mask = input.mask ?? 0xffffffff;
    const want = (input.mark & mask) >>> 0;
    const have = router.last.mark ?? r.mark ?? 0;
    // the mark is set in PREROUTING before the entry is confirmed, so its first event carries it already
    if (((have & mask) >>> 0) !== want && (((r.mark ?? 0) & mask) >>> 0) !== want) {
      problems.push(
        `the router's connection carries mark ${hex(have)}, not ${hex(input.mark)} under mask ${hex(mask)}: ` +
          `the rule that sets the conntrack mark on ${routerIf} ingress is missing or another manager overwrote the mark.`,
      );
    }
  }
  if (router.replied && !vps.replied) {
    problems.push(
      `${answerer} answered (the router saw the reply) but the reply never reached the VPS: the router sent it out of its WAN ` +
        `instead of the tunnel. Look at the router's \`ip rule\` (fwmark${input.mark !== undefined ? ` ${hex(input.mark)}${input.mask !== undefined ? "/" + hex(input.mask) : ""}` : ""} ` +
        `lookup <table>${input.routerLocal ? `, from ${input.routerTunnelAddress} lookup <table>` : ""}), that table's default route via the VPS's tunnel address ` +
        `dev ${routerIf}, and the mark restore in PREROUTING${input.routerLocal ? "/OUTPUT" : ""}.`,
    );
  }
  if (problems.length) {
    hops.push({ hop: "return path", ok: false, detail: problems.join(" ") });
  } else {
    hops.push({
      hop: "return path",
      ok: true,
      detail:
        `${answerer} ${router.resetOnly ? "answered with a reset" : "answered"}, ` +
        `${input.mark !== undefined ? `the connection carries mark ${hex(router.last.mark ?? 0)}, ` : ""}` +
        `and the reply went back through the tunnel to the VPS (${probeText(input.probe)})`,
    });
  }
  return finish(vps, router);
}

/** The message of a failed check: the first broken hop, what to look at, then every hop. */
export function failureMessage(report: PathCheckReport, target: string): string {
  const broken = report.hops.find((h) => !h.ok);
  if (!broken) return "";
  const lines = [
    `PathCheck ${target}: the path is broken at the ${broken.hop} hop: ${broken.detail}`,
    ...(report.callerAddress ? [`  caller address seen by the VPS: ${report.callerAddress}`] : []),
    ...report.hops.map((h) => `  ${h.ok ? "ok     " : h.skipped ? "skipped" : "FAILED "} ${h.hop}: ${h.detail}`),
  ];
  return lines.join("\n");
}

export class PathCheckError extends NatgateError {
  readonly hop: HopName;
  readonly report: PathCheckReport;

  constructor(report: PathCheckReport, target: string) {
    super("path-broken", failureMessage(report, target));
    this.name = "PathCheckError";
    this.report = report;
    this.hop = report.hops.find((h) => !h.ok)?.hop ?? "VPS DNAT";
  }
}
