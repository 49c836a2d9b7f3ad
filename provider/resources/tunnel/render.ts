import { shQuote } from "../../ssh";
import { bootEntryName, bootRenderedLine } from "../../backends/persist";
import { renderLinkAdd } from "../../backends/wireguard";
import { KEY_DIR, keyFileFor, otherRole, publicKeyPlaceholder, sortPeers, type LinkState, type PeerState, type Role, type SideState } from "./model";
import type { TunnelInputs } from "./schema";
import { formatEndpoint } from "../common/addresses";

/**
 * A side's state as the shell commands that build it from nothing. Preview shows these
 * lines; apply runs the subset that differs (see plan.ts), built by the same functions,
 * so what a user previews is what runs.
 */

// Words made only of these characters need no quoting (none of them is special to sh in an
// argument); everything else goes through the ssh layer's quoting. '[' and ']' are not among
// them: they are glob characters, so an IPv6 endpoint "[2001:db8::1]:51820" is quoted (unquoted,
// a file named "1:51820" in the remote working directory would replace it). A public key is 44
// characters of base64, checked where it is read from its host (lifecycle.ts), so it is never
// more than such a word. Placeholders (<dialer public key>) are shown as they are: they only
// appear in previews; applyScript (scripts.ts) refuses a plan that still holds one.
const PLACEHOLDERS: ReadonlySet<string> = new Set([publicKeyPlaceholder("listener"), publicKeyPlaceholder("dialer")]);

/** Whether `text` holds a public key placeholder: it is preview text, not a command to run. */
export function hasPlaceholder(text: string): boolean {
  for (const p of PLACEHOLDERS) if (text.includes(p)) return true;
  return false;
}

function word(w: string): string {
  if (PLACEHOLDERS.has(w)) return w;
  return /^[A-Za-z0-9_./:,=+@%-]+$/.test(w) ? w : shQuote(w);
}

export function cmd(...words: (string | number)[]): string {
  return words.map((w) => word(String(w))).join(" ");
}

export function renderKeyFile(keyFile: string): string {
  const dir = keyFile.slice(0, keyFile.lastIndexOf("/")) || KEY_DIR;
  return `umask 077; mkdir -p ${word(dir)}; [ -s ${word(keyFile)} ] || wg genkey > ${word(keyFile)}`;
}

/** `wg set IF [listen-port P] [private-key FILE]`, or undefined when there is nothing to set. */
export function renderInterfaceKeyPort(ifname: string, link: LinkState, keyFile: string | undefined): string | undefined {
  const words: (string | number)[] = ["wg", "set", ifname];
  if (link.listenPort !== undefined) words.push("listen-port", link.listenPort);
  if (link.usesKeyFile && keyFile) words.push("private-key", keyFile);
  return words.length > 3 ? cmd(...words) : undefined;
}

export function renderPeer(ifname: string, p: PeerState): string {
  const words: (string | number)[] = ["wg", "set", ifname, "peer", p.publicKey];
  if (p.endpoint !== undefined) words.push("endpoint", p.endpoint);
  if (p.keepalive > 0) words.push("persistent-keepalive", p.keepalive);
  if (p.allowedIps.length > 0) words.push("allowed-ips", p.allowedIps.join(","));
  return cmd(...words);
}

export function renderPeerRemove(ifname: string, publicKey: string): string {
  return cmd("wg", "set", ifname, "peer", publicKey, "remove");
}

export function renderAddressAdd(ifname: string, address: string): string {
  return cmd("ip", "address", "add", address, "dev", ifname);
}

export function renderAddressReplace(ifname: string, address: string): string {
  return cmd("ip", "address", "replace", address, "dev", ifname);
}

export function renderAddressDel(ifname: string, address: string): string {
  return cmd("ip", "address", "del", address, "dev", ifname);
}

export function renderLinkSet(ifname: string, link: Pick<LinkState, "mtu" | "up">): string {
  return cmd("ip", "link", "set", "dev", ifname, "mtu", link.mtu, link.up ? "up" : "down");
}

export function renderSide(s: SideState): string[] {
  const lines: string[] = [];
  if (s.keyFile) lines.push(renderKeyFile(s.keyFile));
  const link = s.link;
  if (!link) return lines;
  lines.push(renderLinkAdd(word(s.interfaceName)));
  const keyPort = renderInterfaceKeyPort(s.interfaceName, link, s.keyFile);
  if (keyPort) lines.push(keyPort);
  for (const p of sortPeers(link.peers)) lines.push(renderPeer(s.interfaceName, p));
  for (const a of [...link.addresses].sort()) lines.push(renderAddressAdd(s.interfaceName, a));
  lines.push(renderLinkSet(s.interfaceName, link));
  return lines;
}

/** Public keys once both hosts have them; absent in check (preview). */
export interface PublicKeys {
  listener?: string;
  dialer?: string;
}

function hostAddress(cidr: string): string {
  const slash = cidr.indexOf("/");
  const addr = cidr.slice(0, slash);
  return `${addr}/${addr.includes(":") ? 128 : 32}`;
}

/** The desired state of one side, built from checked inputs. Pure. */
export function desiredSide(inputs: TunnelInputs, role: Role, keys: PublicKeys = {}): SideState {
  const peerRole = otherRole(role);
  const peerKey = keys[peerRole] ?? publicKeyPlaceholder(peerRole);
  const side = inputs[role];
  const peer: PeerState = role === "listener"
    ? {
      publicKey: peerKey,
      keepalive: 0,
      // the dialer's own address; extra sources only if the user forwards more through it
      allowedIps: [...new Set([hostAddress(inputs.dialer.address), ...inputs.listener.allowedIps])].sort(),
    }
    : {
      publicKey: peerKey,
      endpoint: formatEndpoint(inputs.listener.endpoint, inputs.listenPort),
      keepalive: inputs.persistentKeepalive,
      allowedIps: [...inputs.dialer.allowedIps].sort(),
    };
  return {
    role,
    interfaceName: side.interfaceName,
    keyFile: keyFileFor(side.interfaceName),
    link: {
      mtu: inputs.mtu,
      up: true,
      usesKeyFile: true,
      ...(role === "listener" ? { listenPort: inputs.listenPort } : {}),
      addresses: [side.address],
      peers: [peer],
    },
  };
}

/** The line saying the side is restored at boot (see backends/persist.ts), when it is. */
export function renderBoot(inputs: TunnelInputs, role: Role): string[] {
  return inputs.persist ? [bootRenderedLine(bootEntryName("tunnel", inputs[role].interfaceName))] : [];
}

export function renderTunnel(inputs: TunnelInputs, keys: PublicKeys = {}): { renderedListener: string[]; renderedDialer: string[] } {
  return {
    renderedListener: [...renderSide(desiredSide(inputs, "listener", keys)), ...renderBoot(inputs, "listener")],
    renderedDialer: [...renderSide(desiredSide(inputs, "dialer", keys)), ...renderBoot(inputs, "dialer")],
  };
}
