import type { Kind } from "../../engine/kind";
import { makeProvider } from "../../engine/provider";
import { converge, deleteTunnel, expectedRendering, OUTPUT_KEYS, readTunnel, RENDER_KEYS, ROLES, tunnelId, type TunnelOutputs } from "./lifecycle";
import { renderTunnel } from "./render";
import { TUNNEL_INPUTS, type TunnelInputs } from "./schema";

export { TUNNEL_DEFAULTS, TunnelArgsSchema, type TunnelArgs, type TunnelInputs } from "./schema";
export type { TunnelOutputs } from "./lifecycle";
export { converge, readTunnel, deleteTunnel } from "./lifecycle";

/**
 * The Tunnel: one kind on two hosts. Its hosts and interface names are its identity; a replacement
 * deletes first because the new one may use the same host and interface as the old.
 */
export const TunnelKind: Kind<TunnelInputs> = {
  ...TUNNEL_INPUTS,
  outputKeys: OUTPUT_KEYS,
  renderKeys: RENDER_KEYS,
  render: (i) => ({ ...renderTunnel(i) }),
  // Each side's lines hold the other's public key, known from the old outputs.
  expected: (i, olds) => ({ ...expectedRendering(i, olds as Partial<TunnelOutputs>) }),
  replacePaths: ROLES.flatMap((r) => [[r, "connection", "host"], [r, "connection", "port"], [r, "interfaceName"]]),
  deleteBeforeReplace: "always",
  hostPaths: ROLES.map((r) => [r, "connection"]),
  versioned: true,
  id: tunnelId,
  apply: async (i, olds) => ({ ...(await converge(i, olds ? "update" : "create", olds as Partial<TunnelOutputs> | undefined)).outputs }),
  read: async (i, props) => {
    const live = await readTunnel(i, props as Partial<TunnelOutputs>);
    return live && { ...live };
  },
  remove: (i, props) => deleteTunnel(i, props as Partial<TunnelOutputs>),
};

export const tunnelProvider = makeProvider(TunnelKind);
