import { NatgateError } from "../../ssh/errors";
import { z } from "zod";
import { typeError } from "../../ssh/schema";
import ipaddr from "ipaddr.js";
import { nonHostProblem, parseCidr, parseIp, parseSourceCidr } from "./addresses";

/**
 * A resource's own name: it becomes part of an nft table name (natgate_dnat_<name>), an iptables
 * comment (natgate:<name>) and a state file name, so it is kept to characters every one of those
 * accepts without quoting, and short enough to read in `nft list ruleset`.
 */
export const NAME_MAX = 32;
export const resourceName = z
  .string({ error: typeError("must be a string of a-z, 0-9 and _") })
  .regex(/^[a-z][a-z0-9_]*$/, {
    error: "must start with a-z and contain only a-z, 0-9 and _ (it becomes part of an nft table name), like web or home_vps",
  })
  .max(NAME_MAX, { error: `must be at most ${NAME_MAX} characters, like web or home_vps` });

/**
 * Names the kernel or the tools read as something other than one interface, with what is wrong.
 * `all` and `default` are the /proc/sys/net/ipv{4,6}/conf/ entries that set every interface and
 * the template for new ones (ConnmarkReturnPath's rp_filter on "all" would loosen the whole host);
 * `lo` is loopback, which nothing natgate builds may route or forward through; "." and ".." are
 * directories in those paths.
 */
const RESERVED_INTERFACE_NAMES: Record<string, string> = {
  all: '"all" is not an interface: sysctl\'s net.ipv4.conf.all would set every interface of the host; give one interface\'s name, like wg0',
  default: '"default" is not an interface: sysctl\'s net.ipv4.conf.default is the template for new interfaces; give one interface\'s name, like wg0',
  lo: '"lo" is the loopback interface: nothing routed or forwarded there leaves the host; give the tunnel\'s or the LAN\'s interface, like wg0',
  ".": '"." is not an interface name (it is a directory in /proc/sys/net/ipv4/conf): give a name like wg0',
  "..": '".." is not an interface name (it is a directory in /proc/sys/net/ipv4/conf): give a name like wg0',
};

/** Why `name` cannot be an interface natgate acts on, or undefined when it can. */
export function interfaceNameProblem(name: string): string | undefined {
  const r = interfaceName.safeParse(name);
  return r.success ? undefined : r.error.issues.map((i) => i.message).join("; ");
}

/**
 * Linux interface names: at most IFNAMSIZ-1 = 15 bytes, no '/', no whitespace. natgate accepts the
 * subset that needs no quoting in nft, ip and sysctl paths (':' would be an alias label, '*' a wildcard),
 * without the names that mean more than one interface (all, default), loopback (lo), and names
 * starting with '-' (wireguard-go, ip and wg would read them as an option: `wireguard-go -h`).
 * The Tunnel uses it too (not wg-quick's wider set with '=' and '+'), so a name it accepts is one
 * every other resource's tunnelInterface/dev accepts, and safe as the name of its key file.
 */
export const interfaceName = z
  .string({ error: typeError("must be a string (an interface name like wg0)") })
  .min(1, { error: "must not be empty: give an interface name like wg0" })
  .max(15, { error: "must be at most 15 characters (Linux IFNAMSIZ)" })
  .regex(/^[A-Za-z0-9_.-]+$/, { error: "may contain only A-Z, a-z, 0-9, '_', '.' and '-' (an interface name like wg0)" })
  .superRefine((s, ctx) => {
    if (s.startsWith("-")) {
      ctx.addIssue({ code: "custom", message: "must not start with '-' (wireguard-go, ip and wg would read it as an option): give a name like wg0" });
    } else if (Object.prototype.hasOwnProperty.call(RESERVED_INTERFACE_NAMES, s)) {
      ctx.addIssue({ code: "custom", message: RESERVED_INTERFACE_NAMES[s]! });
    }
  });

export const ipv4 = z.ipv4({ error: typeError("must be an IPv4 address like 10.10.10.2") });

/**
 * Why an IPv4 address cannot be one host's own (a DNAT target, a LAN host): the kernel would drop
 * or misroute packets DNATed to it, silently. undefined: a unicast address.
 */
export function unicastProblem(address: string): string | undefined {
  const o = address.split(".").map(Number);
  if (o.length !== 4 || o.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) return undefined; // the format rule reports it
  const [a, b] = o as [number, number, number, number];
  const kind =
    address === "255.255.255.255" ? "the broadcast address"
    : a === 0 ? "in 0.0.0.0/8 (\"this network\", never a destination)"
    : a === 127 ? "a loopback address (the host's own lo: not reachable as a forward's target)"
    : a >= 224 && a <= 239 ? "a multicast address"
    : a >= 240 ? "in the reserved 240.0.0.0/4"
    : a === 169 && b === 254 ? "a link-local address (not routed)"
    : undefined;
  return kind && `${address} is ${kind}: give one host's own address, e.g. 192.168.1.10`;
}

export { nonHostProblem };

/** nonHostProblem as a refinement of a string field. */
export function refuseNonHost(v: string, ctx: z.RefinementCtx): void {
  const why = nonHostProblem(v);
  if (why) ctx.addIssue({ code: "custom", message: why });
}

/** An IPv6 address (any spelling; rendered canonical, RFC 5952, the way `ip -j` and nft print it). */
export const ipv6 = z.string({ error: typeError("must be an IPv6 address like fd00::1") }).refine((v) => parseIp(v)?.family === 6, {
  error: "must be an IPv6 address like fd00::1",
});

const ADDR_ERROR = "must be an IPv4 address like 10.10.10.2 or an IPv6 address like fd00::1";
/**
 * An address of either family; one with a ":" is judged as IPv6, so each family keeps its own
 * message. IPv6 comes out canonical (RFC 5952), the spelling nft, ip6tables and `ip -j` print, so
 * what is rendered compares with what is read back however the user wrote it.
 */
export const ipAddress = z
  .string({ error: typeError(ADDR_ERROR) })
  .superRefine((v, ctx) => {
    const ok = v.includes(":") ? ipv6.safeParse(v).success : ipv4.safeParse(v).success;
    if (!ok) ctx.addIssue({ code: "custom", message: ADDR_ERROR });
  })
  .transform((v) => (v.includes(":") ? (parseIp(v)?.address ?? v) : v));

/** An address's family, by its spelling (the schema has checked it is one). */
export function addressFamily(address: string): 4 | 6 {
  return address.includes(":") ? 6 : 4;
}

/** What an IPv6 range is, for the kinds that cannot be one host's own address (ipaddr.js's range names). */
const NOT_HOST_RANGES6: Record<string, string> = {
  unspecified: "the unspecified address (never a destination)",
  loopback: "the loopback address (the host's own lo: not reachable as a forward's target)",
  linkLocal: "a link-local address (fe80::/10, not routed: use the host's ULA or global address)",
  multicast: "a multicast address",
  ipv4Mapped: "an IPv4-mapped address: write the IPv4 address itself in an IPv4 rule",
};

/** unicastProblem for IPv6 addresses. */
export function unicastProblem6(address: string): string | undefined {
  const ip = parseIp(address);
  if (!ip || ip.family !== 6) return undefined; // the format rule reports it
  const kind = NOT_HOST_RANGES6[ipaddr.IPv6.parse(ip.address).range()];
  return kind && `${address} is ${kind}: give one host's own address, e.g. fd00:1::10`;
}

/** An address (IPv4 or IPv6) of one host: what a DNAT sends packets to. */
export const hostAddress = ipAddress.superRefine((v, ctx) => {
  const why = v.includes(":") ? unicastProblem6(v) : unicastProblem(v);
  if (why) ctx.addIssue({ code: "custom", message: why });
});

/** A network in CIDR form whose host bits are zero (the kernel would silently clear them). */
export const networkCidr = z
  .cidrv4({ error: typeError("must be an IPv4 network like 192.168.1.0/24") })
  .superRefine((v, ctx) => {
    const c = parseCidr(v);
    if (typeof c !== "string" && c.network !== c.text) {
      ctx.addIssue({ code: "custom", message: `has host bits set: write ${c.network}` });
    }
  });

/** An IPv6 network in CIDR form whose host bits are zero ("::/0" is the IPv6 default route). */
export const networkCidr6 = z.string({ error: typeError("must be an IPv6 network like fd00:1::/64") }).superRefine((v, ctx) => {
  const c = parseCidr(v);
  if (typeof c === "string" || c.family !== 6) {
    ctx.addIssue({ code: "custom", message: "must be an IPv6 network like fd00:1::/64" });
  } else if (c.network !== c.text) {
    ctx.addIssue({ code: "custom", message: `has host bits set: write ${c.network}` });
  }
});

export const portNumber = z
  .number({ error: typeError("must be a port number 1-65535") })
  .int({ error: "must be an integer 1-65535" })
  .min(1, { error: "must be 1-65535" })
  .max(65535, { error: "must be 1-65535" });

export interface PortRange {
  lo: number;
  hi: number;
}

/** "5000", 5000 or "5000-6000" → { lo, hi }; a message saying what is wrong otherwise. */
export function parsePortSpec(v: unknown): PortRange | string {
  if (typeof v === "number") {
    if (!Number.isInteger(v) || v < 1 || v > 65535) return "must be a port 1-65535 or a range like \"5000-6000\"";
    return { lo: v, hi: v };
  }
  if (typeof v !== "string") return "must be a port number or a range like \"5000-6000\"";
  const m = /^([0-9]{1,5})(?:-([0-9]{1,5}))?$/.exec(v);
  if (!m) return "must be a port 1-65535 or a range like \"5000-6000\"";
  const lo = Number(m[1]);
  const hi = m[2] === undefined ? lo : Number(m[2]);
  if (lo < 1 || lo > 65535 || hi < 1 || hi > 65535) return "ports must be 1-65535";
  if (lo > hi) return `range ${lo}-${hi} is backwards: write ${hi}-${lo}`;
  return { lo, hi };
}

export const portSpec = z
  .union([z.number(), z.string()], { error: typeError("must be a port number or a range like \"5000-6000\"") })
  .superRefine((v, ctx) => {
    const r = parsePortSpec(v);
    if (typeof r === "string") ctx.addIssue({ code: "custom", message: r });
  });

export function portRangeOf(v: number | string): PortRange {
  const r = parsePortSpec(v);
  if (typeof r === "string") throw new NatgateError("config", `invalid port spec ${JSON.stringify(v)}: ${r}`);
  return r;
}

export function formatPortRange(r: PortRange, sep = "-"): string {
  return r.lo === r.hi ? String(r.lo) : `${r.lo}${sep}${r.hi}`;
}

/** A 32-bit mark: a number (0x1234 in TypeScript is one) or a string "0x1234" / "4660" from YAML. */
export const mark32 = z
  .union([z.number(), z.string()], { error: typeError("must be a 32-bit number like 0x10000000") })
  .transform((v, ctx) => {
    const n = typeof v === "number" ? v : /^0x[0-9a-fA-F]{1,8}$|^[0-9]{1,10}$/.test(v) ? Number(v) : NaN;
    if (!Number.isInteger(n) || n < 1 || n > 0xffffffff) {
      ctx.addIssue({ code: "custom", message: "must be a number 1-0xffffffff like 0x10000000" });
      return z.NEVER;
    }
    return n;
  });

/** Linux routing table ids: 1-2^32-1 without the reserved ones (unspec 0, default 253, main 254, local 255). */
export const tableId = z
  .number({ error: typeError("must be a routing table number") })
  .int({ error: "must be an integer" })
  .min(1, { error: "must be 1-4294967295" })
  .max(0xffffffff, { error: "must be 1-4294967295" })
  .refine((n) => n < 253 || n > 255, { error: "253-255 are the kernel's default, main and local tables: choose another id" });

/** `ip rule` priorities; 0 is the local table and 32766/32767 main/default, so natgate stays strictly between. */
export const rulePriority = z
  .number({ error: typeError("must be an ip rule priority") })
  .int({ error: "must be an integer" })
  .min(1, { error: "must be 1-32765 (0 is the local table's rule)" })
  .max(32765, { error: "must be 1-32765 (rules at 32766 and later come after the main table)" });

export function hex(n: number): string {
  return "0x" + (n >>> 0).toString(16);
}

/**
 * A source network a forward admits: an address (one host) or a network in CIDR form, IPv4 or
 * IPv6, without host bits (the kernel would clear them silently, admitting more than written).
 */
export const sourceNetwork = z
  .string({ error: typeError("must be an address or network like 203.0.113.0/24 or 2001:db8::/32") })
  .superRefine((v, ctx) => {
    const c = parseSourceCidr(v);
    if (typeof c === "string") {
      ctx.addIssue({ code: "custom", message: `${c.replace(/ \(address\/prefix.*\)$/, "")}: give an address or network like 203.0.113.0/24 or 2001:db8::/32` });
    } else if (c.prefix === 0) {
      ctx.addIssue({ code: "custom", message: `${v} admits every source: omit allowFrom to admit everyone` });
    } else if (c.network !== c.text) {
      ctx.addIssue({ code: "custom", message: `has host bits set: write ${c.network} (or ${c.address} for that one host)` });
    }
  });
