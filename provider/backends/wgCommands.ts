import { shQuote } from "../ssh/quote";
import { KEY_DIR, publicKeyPlaceholder, sortPeers, type LinkState, type PeerState, type SideState } from "../plan/wireguard";
import { renderLinkAdd as renderLinkAddShown } from "./wireguard";

/**
 * A tunnel side as the wg and ip commands that build it: preview shows them, apply runs the ones
 * that differ (see resources/tunnel/plan.ts), a boot entry runs the ones that build it from
 * nothing; built by these functions, so what a user previews is what runs.
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
  lines.push(renderLinkAddShown(word(s.interfaceName)));
  const keyPort = renderInterfaceKeyPort(s.interfaceName, link, s.keyFile);
  if (keyPort) lines.push(keyPort);
  for (const p of sortPeers(link.peers)) lines.push(renderPeer(s.interfaceName, p));
  for (const a of [...link.addresses].sort()) lines.push(renderAddressAdd(s.interfaceName, a));
  lines.push(renderLinkSet(s.interfaceName, link));
  return lines;
}


/** Shell function that creates the interface (kernel or wireguard-go); see wireguard.ts. */
export const LINK_ADD_FUNCTION = "natgate_wg_link_add";

/** Creates the interface, on a host where it is missing. */
export function applyLinkAdd(ifname: string): string {
  return cmd(LINK_ADD_FUNCTION, ifname);
}

/** Creates the interface only if it is missing: a boot entry also runs when an interface comes up. */
export function renderLinkAddIfMissing(ifname: string): string {
  return `${cmd("ip", "link", "show", "dev", ifname)} >/dev/null 2>&1 || ${applyLinkAdd(ifname)}`;
}

/** A peer set to `d`; `l` is the live peer: an existing one has to be told to clear what `d` leaves out. */
export function renderPeerChange(ifname: string, d: PeerState, l: PeerState | undefined): string {
  let line = renderPeer(ifname, d);
  // renderPeer leaves zero/empty values out (they are wg's defaults on a new peer)
  if (l && d.keepalive === 0 && l.keepalive !== 0) line += " " + cmd("persistent-keepalive", "off");
  if (l && d.allowedIps.length === 0 && l.allowedIps.length > 0) line += " allowed-ips ''";
  return line;
}

/** Dials the peers' endpoints kept at shutdown (see natgate_wg_recall in wireguard.ts). */
export function renderEndpointRecall(ifname: string, file: string): string {
  return cmd("natgate_wg_recall", ifname, file);
}
