import { NatgateError } from "../../ssh/errors";
import { parseIp } from "../common/addresses";
import { endpointsFileFor, sortPeers, type LinkState, type PeerState, type SideState } from "../../plan/wireguard";
import { renderAddressAdd, renderAddressDel, renderAddressReplace, renderEndpointRecall, renderInterfaceKeyPort, applyLinkAdd, renderLinkAddIfMissing, renderLinkSet, renderPeer, renderPeerChange, renderPeerRemove, renderSide } from "../../backends/wgCommands";

/**
 * Compare a side's desired state with its live state and list the commands that take
 * the host from one to the other. Pure; an empty plan means nothing is written.
 */

function splitEndpoint(e: string): { host: string; port: string } | undefined {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(e) ?? /^([^:]+):(\d+)$/.exec(e);
  return m ? { host: m[1]!, port: m[2]! } : undefined;
}

/**
 * wg resolves a host name once, when it is set, and shows the address; so a name matches
 * any address with the right port, and an address must match exactly.
 */
export function endpointMatches(desired: string, live: string | undefined): boolean {
  if (live === undefined) return false;
  const d = splitEndpoint(desired), l = splitEndpoint(live);
  if (!d || !l || d.port !== l.port) return false;
  const dip = parseIp(d.host);
  if (!dip) return true;
  return dip.address === parseIp(l.host)?.address;
}

/**
 * The live state with what natgate does not manage taken out, so that rendering it gives
 * the desired lines exactly when the host is in sync: the dialer's listen port (the kernel
 * picks it), the listener's view of the dialer's endpoint (it roams behind NAT), and an
 * endpoint host name that wg shows resolved.
 */
export function normalizeLive(live: SideState, desired: SideState): SideState {
  if (!live.link) return live;
  const desiredPeers = new Map((desired.link?.peers ?? []).map((p) => [p.publicKey, p]));
  const link: LinkState = { ...live.link, peers: live.link.peers.map((p) => ({ ...p })) };
  if (desired.link?.listenPort === undefined) delete link.listenPort;
  for (const p of link.peers) {
    const d = desiredPeers.get(p.publicKey);
    if (d?.endpoint === undefined) delete p.endpoint;
    else if (endpointMatches(d.endpoint, p.endpoint)) p.endpoint = d.endpoint;
  }
  return { ...live, link };
}

function samePeer(d: PeerState, l: PeerState): boolean {
  return (
    d.keepalive === l.keepalive &&
    (d.endpoint === undefined || d.endpoint === l.endpoint) &&
    d.allowedIps.join(",") === l.allowedIps.join(",")
  );
}

/** Commands that make `liveRaw` equal `desired`. `desired.link` must be set. */
export function planSide(desired: SideState, liveRaw: SideState): string[] {
  const d = desired.link;
  if (!d) throw new NatgateError("internal", "planSide: the desired state has no interface");
  if (desired.keyFile && !liveRaw.keyFile) throw new NatgateError("remote", `the key file ${desired.keyFile} is missing after it was generated`);
  const ifname = desired.interfaceName;
  const live = normalizeLive(liveRaw, desired);
  const out: string[] = [];
  let l = live.link;
  if (!l) {
    out.push(applyLinkAdd(ifname));
    l = { mtu: 0, up: false, usesKeyFile: false, addresses: [], peers: [] };
  }
  if ((d.listenPort !== undefined && l.listenPort !== d.listenPort) || (d.usesKeyFile && !l.usesKeyFile)) {
    const line = renderInterfaceKeyPort(ifname, d, desired.keyFile);
    if (line) out.push(line);
  }
  const want = new Map(d.peers.map((p) => [p.publicKey, p]));
  for (const p of l.peers) if (!want.has(p.publicKey)) out.push(renderPeerRemove(ifname, p.publicKey));
  for (const p of d.peers) {
    const lp = l.peers.find((x) => x.publicKey === p.publicKey);
    if (!lp || !samePeer(p, lp)) out.push(renderPeerChange(ifname, p, lp));
  }
  const have = new Set(l.addresses);
  const wantAddr = new Set(d.addresses);
  for (const a of l.addresses) if (!wantAddr.has(a)) out.push(renderAddressDel(ifname, a));
  for (const a of d.addresses) if (!have.has(a)) out.push(renderAddressAdd(ifname, a));
  if (l.mtu !== d.mtu || l.up !== d.up) out.push(renderLinkSet(ifname, d));
  return out;
}

/**
 * The plan a boot entry runs: `desired` from nothing, and when run again (an interface came up)
 * changing nothing. So the link is made only when missing and addresses are replaced, not added;
 * `wg set` and `ip link set` set absolute values anyway. The peer comes last: an endpoint name
 * that does not resolve yet at boot then fails only that line, and the interface the other boot
 * entries route through is already up (the next run, when the WAN comes up, adds the peer).
 */
export function bootPlan(desired: SideState): string[] {
  const d = desired.link;
  if (!d) throw new NatgateError("internal", "bootPlan: the desired state has no interface");
  const ifname = desired.interfaceName;
  const out = [renderLinkAddIfMissing(ifname)];
  const keyPort = renderInterfaceKeyPort(ifname, d, desired.keyFile);
  if (keyPort) out.push(keyPort);
  for (const a of [...d.addresses].sort()) out.push(renderAddressReplace(ifname, a));
  out.push(renderLinkSet(ifname, d));
  for (const p of sortPeers(d.peers)) out.push(renderPeer(ifname, p));
  // A peer without an endpoint (the listener's dialer, behind NAT): after this host's reboot,
  // dial the endpoint it had at shutdown, whose NAT mapping the dialer's keepalives hold open,
  // instead of waiting up to two minutes for the dialer's session to age into a new handshake.
  if (d.peers.some((p) => p.endpoint === undefined)) out.push(renderEndpointRecall(ifname, endpointsFileFor(ifname)));
  return out;
}

/** Rendered live state, comparable line by line with the desired rendering. */
export function renderLive(live: SideState, desired: SideState): string[] {
  return renderSide(normalizeLive(live, desired));
}
