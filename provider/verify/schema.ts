import { isIP } from "net";
import { z } from "zod";
import { interfaceName, mark32, nonHostProblem, portNumber } from "../resources/common/fields";
import { ConnectionSchema, typeError } from "../ssh/schema";

const ipAddress = (example: string) =>
  z
    .string({ error: typeError(`must be an IP address like ${example}`) })
    .refine((s) => isIP(s) !== 0, { error: `must be an IP address like ${example} (no prefix length, no hostname)` })
    .superRefine((s, ctx) => {
      const why = nonHostProblem(s, example);
      if (why) ctx.addIssue({ code: "custom", message: why });
    });

export const PathCheckSchema = z.strictObject({
  /** SSH to the VPS, where the probe must arrive. */
  vpsConnection: ConnectionSchema,
  /** SSH to the router at the other end of the tunnel. */
  routerConnection: ConnectionSchema,
  /** The VPS's public address: the probe connects to it. */
  publicAddress: ipAddress("198.51.100.1"),
  /**
   * The address the probe's packets arrive for on the VPS, when its cloud NATs the public address
   * 1:1 (EC2, GCP, Azure) and conntrack there sees the VPS's own address. Default: publicAddress.
   */
  vpsAddress: ipAddress("172.31.5.9").optional(),
  /** A forwarded TCP port with a service listening behind it. */
  port: portNumber,
  /** The router's address inside the tunnel (what the VPS DNATs to). */
  routerTunnelAddress: ipAddress("10.10.10.2"),
  /** The tunnel interface on the router. */
  tunnelInterface: interfaceName,
  /** The return path's conntrack mark: the router's entry must carry it (under mask). */
  mark: mark32.optional(),
  /** The bits of the mark natgate owns (default: the bits of mark). */
  mask: mark32.optional(),
  /** The port forwards to a service on the router itself, so the router does not DNAT it. */
  routerLocal: z.boolean({ error: typeError("must be true or false") }).default(false),
  /** How long the probe waits for the connection to be established or refused. */
  timeoutSeconds: z
    .number({ error: typeError("must be a number of seconds") })
    .positive({ error: "must be more than 0 seconds" })
    .max(120, { error: "must be at most 120 seconds" })
    .default(5),
});

export type PathCheckInput = z.input<typeof PathCheckSchema>;
export type PathCheckInputs = z.output<typeof PathCheckSchema>;

