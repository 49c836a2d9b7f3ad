import { NatgateError } from "../../ssh/errors";
import { backendOfLinkKind, type WireGuardBackend } from "../../backends/wireguard";
import { parseCidr } from "../common/addresses";
import { compareText, sortPeers, type PeerState, type Role, type SideState } from "../../plan/wireguard";

/**
 * Parsers for what the read script prints: `wg show IF dump`, `ip -j addr`, `ip -d -j link`.
 * The dump's first field (the private key) is replaced on the host before it is sent, so
 * it never reaches this process.
 */

export interface WgDump {
  publicKey?: string;
  listenPort?: number;
  fwmark?: string;
  peers: (PeerState & { latestHandshake: number; rxBytes: number; txBytes: number })[];
}

/**
 * Why `text` is not a WireGuard public key as `wg pubkey` prints it, or undefined when it is one:
 * 44 characters of base64 ending in '=' that decode to 32 bytes, with the unused low bits of the
 * last character zero (wg itself refuses a key whose re-encoding differs). Only the length and
 * the kinds of character are told back, never the text: it came from a host.
 */
export function wireGuardKeyProblem(text: string): string | undefined {
  const like = "a WireGuard public key is 44 characters of base64 ending in '=' (32 bytes), like wOisl+YgHvQpAojqyZpFbbu+7lLuUcrupnrtFKhMTTg=";
  if (text.length !== 44) return `is ${text.length} characters long: ${like}`;
  if (!/^[A-Za-z0-9+/]{43}=$/.test(text)) return `has characters that are not base64 or does not end in '=': ${like}`;
  const bytes = Buffer.from(text, "base64");
  if (bytes.length !== 32 || bytes.toString("base64") !== text) return `does not decode to 32 bytes the way wg encodes them: ${like}`;
  return undefined;
}

const none = (v: string | undefined): string | undefined => (v === undefined || v === "(none)" || v === "" ? undefined : v);

/** `wg show IF dump`: one interface line (4 fields), then one line per peer (8 fields). */
export function parseWgDump(text: string): WgDump {
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  if (lines.length === 0) return { peers: [] };
  const head = lines[0]!.split("\t");
  if (head.length !== 4) throw new NatgateError("unexpected-output", `unexpected first line of "wg show dump" (${head.length} fields, expected 4)`);
  const dump: WgDump = { publicKey: none(head[1]), listenPort: Number(head[2]) || undefined, fwmark: head[3], peers: [] };
  for (const line of lines.slice(1)) {
    const f = line.split("\t");
    if (f.length !== 8) throw new NatgateError("unexpected-output", `unexpected peer line of "wg show dump" (${f.length} fields, expected 8)`);
    const endpoint = none(f[2]);
    const allowed = none(f[3]);
    dump.peers.push({
      publicKey: f[0]!,
      ...(endpoint !== undefined ? { endpoint } : {}),
      allowedIps: allowed ? allowed.split(",").sort(compareText) : [],
      latestHandshake: Number(f[4]) || 0,
      rxBytes: Number(f[5]) || 0,
      txBytes: Number(f[6]) || 0,
      keepalive: f[7] === "off" ? 0 : Number(f[7]) || 0,
    });
  }
  return dump;
}

export interface IpLink {
  kind?: string;
  mtu: number;
  up: boolean;
}

/** `ip -d -j link show dev IF` → kind (wireguard / tun / ...), MTU and admin state. */
export function parseIpLink(json: string): IpLink | undefined {
  if (json.trim() === "") return undefined;
  const arr = JSON.parse(json) as { mtu?: number; flags?: string[]; linkinfo?: { info_kind?: string } }[];
  const l = arr[0];
  if (!l) return undefined;
  return {
    ...(l.linkinfo?.info_kind ? { kind: l.linkinfo.info_kind } : {}),
    mtu: l.mtu ?? 0,
    up: (l.flags ?? []).includes("UP"),
  };
}

/** `ip -j addr show dev IF` → `address/prefix` list, without link-local v6 (the kernel adds those). */
export function parseIpAddr(json: string): string[] {
  if (json.trim() === "") return [];
  const arr = JSON.parse(json) as { addr_info?: { family?: string; local?: string; prefixlen?: number; scope?: string }[] }[];
  const out: string[] = [];
  for (const a of arr[0]?.addr_info ?? []) {
    if (a.family !== "inet" && a.family !== "inet6") continue;
    if (a.family === "inet6" && a.scope === "link") continue;
    const c = parseCidr(`${a.local}/${a.prefixlen}`);
    out.push(typeof c === "string" ? `${a.local}/${a.prefixlen}` : c.text);
  }
  return out.sort(compareText);
}

/** Splits the read script's output (`@@name` header lines) into sections. */
export function splitSections(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let name: string | undefined;
  let body: string[] = [];
  for (const line of text.split("\n")) {
    const m = /^@@([a-z-]+)$/.exec(line);
    if (m) {
      if (name !== undefined) out.set(name, body.join("\n"));
      name = m[1];
      body = [];
    } else if (name !== undefined) {
      body.push(line);
    }
  }
  if (name !== undefined) out.set(name, body.join("\n"));
  return out;
}

/** A side as read from its host, plus what the model does not compare. */
export interface LiveSide {
  state: SideState;
  /** public key derived from the natgate key file, when it exists */
  keyFilePublicKey?: string;
  backend?: WireGuardBackend;
  /** set when an interface of that name exists but is not a WireGuard interface */
  notWireGuard?: string;
}

/** Builds the live model of a side from the read script's sections. */
export function liveSideFromSections(role: Role, interfaceName: string, keyFile: string, sections: Map<string, string>): LiveSide {
  if (!sections.has("end")) throw new NatgateError("unexpected-output", "the read script's output is incomplete (no @@end): the connection may have dropped; run again");
  const keyPub = (sections.get("key") ?? "").trim() || undefined;
  const link = parseIpLink(sections.get("link") ?? "");
  const state: SideState = { role, interfaceName, ...(keyPub ? { keyFile } : {}) };
  const live: LiveSide = { state, ...(keyPub ? { keyFilePublicKey: keyPub } : {}) };
  if (!link) return live;
  const backend = backendOfLinkKind(link.kind);
  if (!backend) {
    live.notWireGuard = link.kind ?? "unknown kind";
    return live;
  }
  live.backend = backend;
  const dump = parseWgDump(sections.get("wg") ?? "");
  state.link = {
    mtu: link.mtu,
    up: link.up,
    usesKeyFile: keyPub !== undefined && dump.publicKey === keyPub,
    ...(dump.listenPort !== undefined ? { listenPort: dump.listenPort } : {}),
    addresses: parseIpAddr(sections.get("addr") ?? ""),
    peers: sortPeers(dump.peers.map(({ publicKey, endpoint, keepalive, allowedIps }) => ({
      publicKey,
      ...(endpoint !== undefined ? { endpoint } : {}),
      keepalive,
      allowedIps,
    }))),
  };
  return live;
}
