import { bootEntryName, bootRenderedLine } from "../../backends/persist";
import { renderSide } from "../../backends/wgCommands";
import { compareText, keyFileFor, otherRole, publicKeyPlaceholder, type PeerState, type Role, type SideState } from "../../plan/wireguard";
import type { TunnelInputs } from "./schema";
import { formatEndpoint } from "../common/addresses";

/** A side's desired state from the inputs, and the lines a preview shows for both sides. Pure. */
export { renderSide };

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

/** A side's tunnel addresses: `address`, and `address6` on a dual-stack tunnel. */
function tunnelAddresses(side: { address: string; address6?: string }): string[] {
  return side.address6 === undefined ? [side.address] : [side.address, side.address6].sort(compareText);
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
      // the dialer's own addresses (both, on a dual-stack tunnel); extra sources only if the user
      // forwards more through it
      allowedIps: [...new Set([...tunnelAddresses(inputs.dialer).map(hostAddress), ...inputs.listener.allowedIps])].sort(),
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
      addresses: tunnelAddresses(side),
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
