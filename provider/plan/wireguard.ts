import { WG_KEY_DIR } from "../backends/bootPaths";
/**
 * One side of a tunnel as data. The desired state (from inputs) and the live state
 * (read back from a host) use this same shape, so "in sync" is one comparison and
 * rendering either gives the same lines when they agree.
 */
export type Role = "listener" | "dialer";

export interface PeerState {
  publicKey: string;
  /** `host:port` (v6 host in brackets); the listener leaves its peer's endpoint to roaming */
  endpoint?: string;
  /** seconds; 0 = off */
  keepalive: number;
  /** canonical network CIDRs, sorted */
  allowedIps: string[];
}

export interface LinkState {
  mtu: number;
  up: boolean;
  /** the interface's private key is the one in the natgate key file */
  usesKeyFile: boolean;
  /** the listener's fixed port; undefined on the dialer (the kernel picks one) */
  listenPort?: number;
  /** `address/prefix`, canonical, sorted; link-local v6 addresses are not ours and not listed */
  addresses: string[];
  /** sorted by public key */
  peers: PeerState[];
}

export interface SideState {
  role: Role;
  interfaceName: string;
  /** path of the natgate key file when it exists (desired: always) */
  keyFile?: string;
  /** undefined when the interface does not exist */
  link?: LinkState;
}

/** Where natgate keeps a side's private key: root-only, one file per interface. */
export const KEY_DIR = WG_KEY_DIR;
export function keyFileFor(interfaceName: string): string {
  return `${KEY_DIR}/${interfaceName}.key`;
}

/**
 * Where natgate.service, when it stops (a shutdown), keeps the interface's peer endpoints: the
 * listener cannot otherwise reach a dialer behind NAT after its own reboot (see natgate_wg_recall).
 */
export function endpointsFileFor(interfaceName: string): string {
  return `${KEY_DIR}/${interfaceName}.endpoints`;
}

/** Shown instead of a peer's public key before both hosts have generated theirs (preview). */
export function publicKeyPlaceholder(of: Role): string {
  return `<${of} public key>`;
}

export function otherRole(role: Role): Role {
  return role === "listener" ? "dialer" : "listener";
}

export function sortPeers(peers: PeerState[]): PeerState[] {
  return [...peers]
    .map((p) => ({ ...p, allowedIps: [...p.allowedIps].sort(compareText) }))
    .sort((a, b) => compareText(a.publicKey, b.publicKey));
}

/** Code-unit order, independent of locale, so rendering is deterministic everywhere. */
export function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
