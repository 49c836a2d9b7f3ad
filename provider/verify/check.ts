// The check itself: watch conntrack on both hosts, connect from this process, judge each hop.
import { isIP } from "net";
import { analyzePath, PathCheckError, type PathCheckReport } from "./analyze";
import { startCapture, stopCapture, type Capture, type CaptureResult } from "./capture";
import { loginsOf, type Logins } from "./hostKeys";
import { probeTcp, type OpenProbe } from "./probe";
import type { PathCheckInputs } from "./schema";

// The captures end on their own this long after the probe's timeout, if natgate never stops them.
const CAPTURE_GRACE_SECONDS = 60;

function addrPort(a: string, p: number): string {
  return isIP(a) === 6 ? `[${a}]:${p}` : `${a}:${p}`;
}

async function settle<T>(ps: Promise<T>[]): Promise<T[]> {
  const rs = await Promise.allSettled(ps);
  const failed = rs.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
  return rs.map((r) => (r as PromiseFulfilledResult<T>).value);
}

/**
 * Run the check once and return the report; throws PathCheckError naming the first broken hop
 * (with the report attached) when a hop fails. `logins` carry the host keys each host must
 * present (from the previous run's outputs) and, after the run, those they presented.
 */
export async function runPathCheck(i: PathCheckInputs, logins: Logins = loginsOf(i)): Promise<PathCheckReport> {
  const { vps: vpsLogin, router: routerLogin } = logins;
  const family = isIP(i.publicAddress) === 6 ? ["-f", "ipv6"] : [];
  const routerFamily = isIP(i.routerTunnelAddress) === 6 ? ["-f", "ipv6"] : [];
  const limit = Math.ceil(i.timeoutSeconds) + CAPTURE_GRACE_SECONDS;
  const vpsAddress = i.vpsAddress ?? i.publicAddress;
  const vpsFilter = [...family, "-p", "tcp", "--orig-dst", vpsAddress, "--dport", String(i.port)];
  // The VPS may remap the port (2222 → 22), so the router's side is filtered on the address only.
  const routerFilter = [...routerFamily, "-p", "tcp", "--orig-dst", i.routerTunnelAddress];

  const starts = [startCapture(vpsLogin, vpsFilter, limit), startCapture(routerLogin, routerFilter, limit)];
  const started = await Promise.allSettled(starts);
  const caps = started.map((r) => (r.status === "fulfilled" ? r.value : undefined));
  const failedStart = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failedStart) {
    // stop whichever capture did start, then report why the other did not
    await Promise.allSettled([
      caps[0] && stopCapture(vpsLogin, caps[0]),
      caps[1] && stopCapture(routerLogin, caps[1]),
    ]);
    throw failedStart.reason;
  }
  const [vpsCap, routerCap] = caps as [Capture, Capture];

  let probe: OpenProbe | undefined;
  let results: CaptureResult[];
  try {
    probe = await probeTcp(i.publicAddress, i.port, i.timeoutSeconds * 1000);
  } finally {
    // stopped while the probe's connection is still open, so its entries are still live
    try {
      results = await settle([stopCapture(vpsLogin, vpsCap), stopCapture(routerLogin, routerCap, i.tunnelInterface)]);
    } finally {
      probe?.close();
    }
  }
  const [vps, router] = results;
  const report = analyzePath({
    publicAddress: i.publicAddress,
    vpsAddress,
    port: i.port,
    routerTunnelAddress: i.routerTunnelAddress,
    tunnelInterface: i.tunnelInterface,
    ...(i.mark !== undefined ? { mark: i.mark, mask: i.mask ?? i.mark } : {}),
    routerLocal: i.routerLocal,
    probe: probe.result,
    vpsEvents: vps.text,
    routerEvents: router.text,
    ...(router.link ? { routerLink: router.link } : {}),
  });
  if (!report.ok) throw new PathCheckError(report, addrPort(i.publicAddress, i.port));
  return report;
}
