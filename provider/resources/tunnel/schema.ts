import ipaddr from "ipaddr.js";
import { z } from "zod";
import { ConnectionSchema } from "../../ssh";
import { isHostName, isNetworkOrBroadcast, nonHostProblem, parseCidr, parseIp, type Cidr } from "../common/addresses";
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

/** Why `c` cannot be one end's address on a tunnel subnet, or undefined. */
function subnetHostProblem(v: string, c: Cidr): string | undefined {
  if (c.prefix === (c.family === 4 ? 32 : 128)) {
    return `"${v}" is a single address: give the tunnel subnet's prefix, e.g. ${c.address}/${c.family === 4 ? 24 : 64}`;
  }
  if (isNetworkOrBroadcast(c)) return `"${v}" is the ${c.network === c.text ? "network" : "broadcast"} address of its subnet: pick a host address`;
  return undefined;
}

/** parseCidr's reason, with an example when it has none ("prefix /33 is longer than /32"). */
function withExample(reason: string, example: string): string {
  return /e\.g\./.test(reason) ? reason : `${reason}: give address/prefix, e.g. ${example}`;
}

export const tunnelAddress = z.string({ error: "must be a string in CIDR form, e.g. 10.10.10.1/24" }).superRefine((v, ctx) => {
  if (v === UNKNOWN) return;
  const c = parseCidr(v);
  if (typeof c === "string") return void ctx.addIssue({ code: "custom", message: withExample(c, "10.10.10.1/24") });
  const why = subnetHostProblem(v, c);
  if (why) ctx.addIssue({ code: "custom", message: why });
});

/** IPv6 ranges that cannot be a tunnel end's address (ipaddr.js's range names). */
const NOT_TUNNEL_RANGES6: Record<string, string> = {
  linkLocal: "link-local (fe80::/10): the kernel gives every interface one of its own; give a unique local (fd00::/8) or global address",
  multicast: "a multicast address (ff00::/8): give a unicast one",
  ipv4Mapped: "an IPv4-mapped address: the IPv4 address goes in address",
  loopback: "the loopback address",
  unspecified: "the unspecified address",
};

/** The second address of a dual-stack tunnel end: always IPv6 (address is the IPv4 one). */
export const tunnelAddress6 = z.string({ error: "must be a string in CIDR form, e.g. fd00:4e47::1/64" }).superRefine((v, ctx) => {
  if (v === UNKNOWN) return;
  const c = parseCidr(v);
  if (typeof c === "string") return void ctx.addIssue({ code: "custom", message: withExample(c.replace("e.g. 10.10.10.1/24", "e.g. fd00:4e47::1/64"), "fd00:4e47::1/64") });
  if (c.family !== 6) return void ctx.addIssue({ code: "custom", message: `"${v}" is IPv4: address6 is this end's IPv6 tunnel address, e.g. fd00:4e47::1/64 (the IPv4 one is address)` });
  const range = NOT_TUNNEL_RANGES6[ipaddr.IPv6.parse(c.address).range()];
  if (range) return void ctx.addIssue({ code: "custom", message: `"${v}" is ${range}` });
  const why = subnetHostProblem(v, c);
  if (why) ctx.addIssue({ code: "custom", message: why });
});

const allowedIp = z.string({ error: "must be a string in CIDR form, e.g. 192.168.0.0/16" }).superRefine((v, ctx) => {
  if (v === UNKNOWN) return;
  const c = parseCidr(v);
  if (typeof c === "string") return void ctx.addIssue({ code: "custom", message: withExample(c.replace("e.g. 10.10.10.1/24", "e.g. 192.168.0.0/16"), "192.168.0.0/16") });
  if (c.network !== c.text) {
    ctx.addIssue({ code: "custom", message: `"${v}" has host bits set: did you mean ${c.network}?` });
  }
});

const endpointHost = z.string({ error: "must be a string (hostname or IP address, without port)" }).superRefine((v, ctx) => {
  if (v === UNKNOWN) return;
  if (parseIp(v)) {
    const why = nonHostProblem(v, "the VPS's public address 198.51.100.1");
    if (why) ctx.addIssue({ code: "custom", message: why });
    return;
  }
  if (isHostName(v)) return;
  const why = /:\d+$/.test(v) && !v.includes("::")
    ? "give the host only: the port is listenPort"
    : "is not a hostname or an IP address: give the listener's public address or DNS name, e.g. 198.51.100.1 or vps.example.com";
  ctx.addIssue({ code: "custom", message: `"${v}" ${why}` });
});

const ALLOWED_IPS_ERROR = 'must be a list of networks, e.g. ["192.168.0.0/16"]';

const sideFields = {
  connection: ConnectionSchema,
  /** this side's tunnel address with the tunnel's prefix, e.g. 10.10.10.1/24 */
  address: tunnelAddress,
  /** dual stack: this side's IPv6 tunnel address besides the IPv4 `address`, e.g. fd00:4e47::1/64 (both sides or neither) */
  address6: tunnelAddress6.optional(),
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
    allowedIps: z.array(allowedIp, { error: ALLOWED_IPS_ERROR }).default([]),
  }),
  dialer: z.strictObject({
    ...sideFields,
    /** sources the dialer accepts from the listener; default everything (forwarded packets keep their internet source) */
    allowedIps: z.array(allowedIp, { error: ALLOWED_IPS_ERROR }).optional(),
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
    /** absent on a single-stack tunnel */
    address6?: string;
    interfaceName: string;
    endpoint: string;
    allowedIps: string[];
  };
  dialer: {
    connection: ParsedArgs["dialer"]["connection"];
    address: string;
    address6?: string;
    interfaceName: string;
    allowedIps: string[];
  };
}

/** Checks across fields; values not known yet (preview) are left for later. */
export function tunnelCrossCheck(a: TunnelInputs): Failure[] {
  const out = dualStackCheck(a);
  const l = parseCidr(a.listener.address);
  const d = parseCidr(a.dialer.address);
  if (typeof l === "string" || typeof d === "string") return out; // unknown (preview)
  if (l.family !== d.family) {
    out.push({ property: "dialer.address", reason: `${d.text} is IPv${d.family} but listener.address ${l.text} is IPv${l.family}: both ends of the tunnel need the same family: give dialer.address an IPv${l.family} address of the listener's subnet ${l.network}` });
  } else if (l.network !== d.network) {
    out.push({ property: "dialer.address", reason: `${d.text} is not in the listener's subnet ${l.network} (listener.address ${l.text}): give both ends addresses in one subnet, e.g. ${l.network}` });
  } else if (l.address === d.address) {
    out.push({ property: "dialer.address", reason: `${d.address} is also listener.address: the two ends need different addresses: give the dialer another address of ${l.network}` });
  }
  if (l.family === 6 && a.mtu < 1280) {
    out.push({ property: "mtu", reason: `${a.mtu} is below 1280, the IPv6 minimum, and the tunnel addresses are IPv6: give an mtu of at least 1280 (default ${TUNNEL_DEFAULTS.mtu})` });
  }
  const li = a.listener.interfaceName ?? a.interfaceName;
  const di = a.dialer.interfaceName ?? a.interfaceName;
  const lh = a.listener.connection.host, dh = a.dialer.connection.host;
  if (lh === dh && a.listener.connection.port === a.dialer.connection.port && li === di && lh !== UNKNOWN && li !== UNKNOWN) {
    out.push({ property: "dialer.connection", reason: `the listener and the dialer are the same host (${lh}) with the same interface ${li}: a tunnel joins two hosts; give each end its own host's connection` });
  }
  return out;
}

/** The second (IPv6) addresses: both ends or neither, one subnet, two addresses, on an IPv4 tunnel. */
function dualStackCheck(a: TunnelInputs): Failure[] {
  const out: Failure[] = [];
  const l6 = a.listener.address6, d6 = a.dialer.address6;
  if (l6 === undefined && d6 === undefined) return out;
  if (l6 === undefined || d6 === undefined) {
    const [given, missing] = l6 === undefined ? ["dialer", "listener"] : ["listener", "dialer"];
    out.push({
      property: `${missing}.address6`,
      reason: `${given}.address6 ${l6 ?? d6} is given but ${missing}.address6 is not: the tunnel carries IPv6 only with an IPv6 address on both ends (give both, or neither)`,
    });
  }
  for (const role of ["listener", "dialer"] as const) {
    const c = parseCidr(a[role].address);
    if (a[role].address6 !== undefined && typeof c !== "string" && c.family === 6) {
      out.push({
        property: `${role}.address6`,
        reason: `${role}.address ${c.text} is already IPv6: address6 adds an IPv6 address to an IPv4 tunnel; leave it out, or give ${role}.address the IPv4 address`,
      });
    }
  }
  const primary = parseCidr(a.listener.address);
  if (l6 !== undefined && a.mtu < 1280 && (typeof primary === "string" || primary.family === 4)) {
    out.push({ property: "mtu", reason: `${a.mtu} is below 1280, the IPv6 minimum, and the tunnel carries IPv6 (address6): give an mtu of at least 1280 (default ${TUNNEL_DEFAULTS.mtu})` });
  }
  const l = l6 === undefined ? "" : parseCidr(l6), d = d6 === undefined ? "" : parseCidr(d6);
  if (typeof l === "string" || typeof d === "string") return out; // absent, or unknown (preview)
  if (l.network !== d.network) {
    out.push({ property: "dialer.address6", reason: `${d.text} is not in the listener's IPv6 subnet ${l.network} (listener.address6 ${l.text}): give both ends addresses in one subnet, e.g. ${l.network}` });
  } else if (l.address === d.address) {
    out.push({ property: "dialer.address6", reason: `${d.address} is also listener.address6: the two ends need different addresses: give the dialer another address of ${l.network}` });
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

/**
 * Family of the tunnel: it decides the dialer's default allowed IPs (everything of that family;
 * both families for a dual-stack tunnel, whose replies to clients of either go into it).
 */
function defaultDialerAllowedIps(address: string, address6: string | undefined): string[] {
  if (address6 !== undefined) return ["0.0.0.0/0", "::/0"];
  const c = parseCidr(address);
  return typeof c !== "string" && c.family === 6 ? ["::/0"] : ["0.0.0.0/0"];
}

/** `{ address6 }` in canonical form when it is given, else nothing (single-stack state stays as it was). */
function address6Of(address6: string | undefined): { address6?: string } {
  return address6 === undefined ? {} : { address6: canonicalCidr(address6, (c) => c.text) };
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
      ...address6Of(a.listener.address6),
      interfaceName: a.listener.interfaceName ?? a.interfaceName,
      endpoint: canonicalEndpointHost(a.listener.endpoint ?? a.listener.connection.host),
      allowedIps: uniqueSorted(a.listener.allowedIps.map((x) => canonicalCidr(x, (c) => c.network))),
    },
    dialer: {
      connection: a.dialer.connection,
      address: canonicalCidr(a.dialer.address, (c) => c.text),
      ...address6Of(a.dialer.address6),
      interfaceName: a.dialer.interfaceName ?? a.interfaceName,
      allowedIps: uniqueSorted((a.dialer.allowedIps ?? defaultDialerAllowedIps(a.dialer.address, a.dialer.address6)).map((x) => canonicalCidr(x, (c) => c.network))),
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
