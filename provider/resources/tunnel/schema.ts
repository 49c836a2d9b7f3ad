import { z } from "zod";
import { ConnectionSchema } from "../../ssh";
import { isHostName, isNetworkOrBroadcast, parseCidr, parseIp, type Cidr } from "../common/addresses";
import { interfaceName, resourceName } from "../common/fields";
import { containsUnknown, UNKNOWN } from "../../engine/unknown";
import { checkInputs } from "../../engine/check";
import type { Failure } from "../../engine/failures";

/**
 * Tunnel inputs. One point-to-point WireGuard link: the `listener` has a public
 * endpoint and waits on `listenPort`; the `dialer` (behind NAT) dials it and keeps the
 * NAT mapping alive with `persistentKeepalive`.
 */
export const TUNNEL_DEFAULTS = {
  interfaceName: "wg0",
  mtu: 1420, // 1500 minus WireGuard's worst-case (IPv6) overhead of 80 bytes
  listenPort: 51820,
  persistentKeepalive: 25, // below the shortest common NAT UDP timeout (30 s)
} as const;

// One interface-name rule for every resource: the other resources' tunnelInterface/dev fields name
// this interface too, and its key file is named after it.

const int = (what: string, min: number, max: number) =>
  z
    .number({ error: `must be a number (${what}, ${min}-${max})` })
    .int({ error: `must be a whole number (${what}, ${min}-${max})` })
    .min(min, { error: `must be ${min}-${max} (${what})` })
    .max(max, { error: `must be ${min}-${max} (${what})` });

const tunnelAddress = z.string({ error: "must be a string in CIDR form, e.g. 10.10.10.1/24" }).superRefine((v, ctx) => {
  if (v === UNKNOWN) return;
  const c = parseCidr(v);
  if (typeof c === "string") return void ctx.addIssue({ code: "custom", message: c });
  if (c.prefix === (c.family === 4 ? 32 : 128)) {
    ctx.addIssue({ code: "custom", message: `"${v}" is a single address: give the tunnel subnet's prefix, e.g. ${c.address}/${c.family === 4 ? 24 : 64}` });
  } else if (isNetworkOrBroadcast(c)) {
    ctx.addIssue({ code: "custom", message: `"${v}" is the ${c.network === c.text ? "network" : "broadcast"} address of its subnet: pick a host address` });
  }
});

const allowedIp = z.string({ error: "must be a string in CIDR form, e.g. 192.168.0.0/16" }).superRefine((v, ctx) => {
  if (v === UNKNOWN) return;
  const c = parseCidr(v);
  if (typeof c === "string") return void ctx.addIssue({ code: "custom", message: c });
  if (c.network !== c.text) {
    ctx.addIssue({ code: "custom", message: `"${v}" has host bits set: did you mean ${c.network}?` });
  }
});

const endpointHost = z.string({ error: "must be a string (hostname or IP address, without port)" }).superRefine((v, ctx) => {
  if (v === UNKNOWN) return;
  if (parseIp(v) || isHostName(v)) return;
  const why = /:\d+$/.test(v) && !v.includes("::")
    ? "give the host only: the port is listenPort"
    : "is not a hostname or an IP address";
  ctx.addIssue({ code: "custom", message: `"${v}" ${why}` });
});

const sideFields = {
  connection: ConnectionSchema,
  /** this side's tunnel address with the tunnel's prefix, e.g. 10.10.10.1/24 */
  address: tunnelAddress,
  /** overrides the top-level interfaceName on this side */
  interfaceName: interfaceName.optional(),
};

export const TunnelArgsSchema = z.strictObject({
  /** Host-side name: who holds the interface in natgate's claims on both hosts (a-z, 0-9, _). */
  name: resourceName.optional(),
  interfaceName: interfaceName.default(TUNNEL_DEFAULTS.interfaceName),
  mtu: int("interface MTU", 576, 9000).default(TUNNEL_DEFAULTS.mtu),
  listenPort: int("the listener's UDP port", 1, 65535).default(TUNNEL_DEFAULTS.listenPort),
  persistentKeepalive: int("seconds between the dialer's keepalives, 0 = off", 0, 65535).default(TUNNEL_DEFAULTS.persistentKeepalive),
  /** restore both sides at boot: an entry in /etc/natgate/boot.d on each host, run by its init system */
  persist: z.boolean({ error: "must be true or false" }).default(true),
  listener: z.strictObject({
    ...sideFields,
    /** host the dialer dials; defaults to the listener connection's host */
    endpoint: endpointHost.optional(),
    /** sources the listener accepts from the dialer besides the dialer's tunnel address */
    allowedIps: z.array(allowedIp).default([]),
  }),
  dialer: z.strictObject({
    ...sideFields,
    /** sources the dialer accepts from the listener; default everything (forwarded packets keep their internet source) */
    allowedIps: z.array(allowedIp).optional(),
  }),
});

export type TunnelArgs = z.input<typeof TunnelArgsSchema>;
type ParsedArgs = z.output<typeof TunnelArgsSchema>;

/** Checked inputs: every default filled in and every address canonical. */
export interface TunnelInputs {
  name?: string;
  interfaceName: string;
  mtu: number;
  listenPort: number;
  persistentKeepalive: number;
  persist: boolean;
  listener: {
    connection: ParsedArgs["listener"]["connection"];
    address: string;
    interfaceName: string;
    endpoint: string;
    allowedIps: string[];
  };
  dialer: {
    connection: ParsedArgs["dialer"]["connection"];
    address: string;
    interfaceName: string;
    allowedIps: string[];
  };
}

/** Checks across fields; values not known yet (preview) are left for later. */
export function tunnelCrossCheck(a: TunnelInputs): Failure[] {
  const l = parseCidr(a.listener.address);
  const d = parseCidr(a.dialer.address);
  if (typeof l === "string" || typeof d === "string") return []; // unknown (preview)
  const out: Failure[] = [];
  if (l.family !== d.family) {
    out.push({ property: "dialer.address", reason: `${d.text} is IPv${d.family} but listener.address ${l.text} is IPv${l.family}: both ends of the tunnel need the same family` });
  } else if (l.network !== d.network) {
    out.push({ property: "dialer.address", reason: `${d.text} is not in the listener's subnet ${l.network} (listener.address ${l.text}): give both ends addresses in one subnet, e.g. ${l.network}` });
  } else if (l.address === d.address) {
    out.push({ property: "dialer.address", reason: `${d.address} is also listener.address: the two ends need different addresses` });
  }
  if (l.family === 6 && a.mtu < 1280) {
    out.push({ property: "mtu", reason: `${a.mtu} is below 1280, the IPv6 minimum, and the tunnel addresses are IPv6` });
  }
  const li = a.listener.interfaceName ?? a.interfaceName;
  const di = a.dialer.interfaceName ?? a.interfaceName;
  const lh = a.listener.connection.host, dh = a.dialer.connection.host;
  if (lh === dh && a.listener.connection.port === a.dialer.connection.port && li === di && lh !== UNKNOWN && li !== UNKNOWN) {
    out.push({ property: "dialer.connection", reason: `the listener and the dialer are the same host (${lh}) with the same interface ${li}: a tunnel joins two hosts` });
  }
  return out;
}

function canonicalCidr(text: string, pick: (c: Cidr) => string): string {
  const c = parseCidr(text);
  return typeof c === "string" ? text : pick(c);
}

function uniqueSorted(items: string[]): string[] {
  return [...new Set(items)].sort();
}

/** Family of the tunnel: it decides the dialer's default allowed IPs (everything of that family). */
function defaultDialerAllowedIps(address: string): string[] {
  const c = parseCidr(address);
  return typeof c !== "string" && c.family === 6 ? ["::/0"] : ["0.0.0.0/0"];
}

/** Defaults that depend on other fields, and every address in canonical form. */
export function normalizeTunnel(a: ParsedArgs): TunnelInputs {
  return {
    ...(a.name !== undefined ? { name: a.name } : {}),
    interfaceName: a.interfaceName,
    mtu: a.mtu,
    listenPort: a.listenPort,
    persistentKeepalive: a.persistentKeepalive,
    persist: a.persist,
    listener: {
      connection: a.listener.connection,
      address: canonicalCidr(a.listener.address, (c) => c.text),
      interfaceName: a.listener.interfaceName ?? a.interfaceName,
      endpoint: canonicalEndpointHost(a.listener.endpoint ?? a.listener.connection.host),
      allowedIps: uniqueSorted(a.listener.allowedIps.map((x) => canonicalCidr(x, (c) => c.network))),
    },
    dialer: {
      connection: a.dialer.connection,
      address: canonicalCidr(a.dialer.address, (c) => c.text),
      interfaceName: a.dialer.interfaceName ?? a.interfaceName,
      allowedIps: uniqueSorted((a.dialer.allowedIps ?? defaultDialerAllowedIps(a.dialer.address)).map((x) => canonicalCidr(x, (c) => c.network))),
    },
  };
}

function canonicalEndpointHost(host: string): string {
  return parseIp(host)?.address ?? host.replace(/\.$/, "").toLowerCase();
}

/** What checking a Tunnel's inputs takes, for the engine and for parseTunnelArgs. */
export const TUNNEL_INPUTS = {
  kind: "Tunnel",
  schema: TunnelArgsSchema,
  normalize: normalizeTunnel,
  crossCheck: tunnelCrossCheck,
  crossCheckUnknown: true,
} as const;

/** Validates raw inputs; on success returns them normalised. Pure. */
export function parseTunnelArgs(raw: unknown): { inputs: TunnelInputs; failures: [] } | { inputs?: undefined; failures: Failure[] } {
  const r = checkInputs(TUNNEL_INPUTS, (raw ?? {}) as Record<string, unknown>);
  return r.inputs && r.failures.length === 0 ? { inputs: r.inputs, failures: [] } : { failures: r.failures };
}

export { containsUnknown, UNKNOWN };
