import ipaddr from "ipaddr.js";

/** An interface address in CIDR form, canonicalised the way `ip` and `wg` print it. */
export interface Cidr {
  family: 4 | 6;
  /** the address part, canonical (RFC 5952 for v6) */
  address: string;
  prefix: number;
  /** `<address>/<prefix>`, canonical */
  text: string;
  /** `<network>/<prefix>`: the form `wg` stores allowed IPs in */
  network: string;
}

/** Parses an IP literal strictly (ipaddr.js alone would also take "10.1" or octal forms). */
export function parseIp(text: string): { family: 4 | 6; address: string } | undefined {
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) {
    return { family: 4, address: ipaddr.IPv4.parse(text).toString() };
  }
  if (text.includes(":") && !text.includes("%") && ipaddr.IPv6.isValid(text)) {
    const v6 = ipaddr.IPv6.parse(text);
    return { family: 6, address: v6.toRFC5952String() };
  }
  return undefined;
}

/** Parses `address/prefix`; returns a reason string when it is not one. */
export function parseCidr(text: string): Cidr | string {
  const m = /^([^/\s]+)\/(\d{1,3})$/.exec(text);
  if (!m) return `"${text}" is not in CIDR form (address/prefix, e.g. 10.10.10.1/24)`;
  const ip = parseIp(m[1]!);
  if (!ip) return `"${m[1]}" is not an IPv4 or IPv6 address`;
  const prefix = Number(m[2]);
  const max = ip.family === 4 ? 32 : 128;
  if (prefix > max) return `prefix /${prefix} is longer than /${max}`;
  const network = ip.family === 4
    ? ipaddr.IPv4.networkAddressFromCIDR(`${ip.address}/${prefix}`).toString()
    : ipaddr.IPv6.networkAddressFromCIDR(`${ip.address}/${prefix}`).toRFC5952String();
  return {
    family: ip.family,
    address: ip.address,
    prefix,
    text: `${ip.address}/${prefix}`,
    network: `${network}/${prefix}`,
  };
}

/** A source as allowFrom takes it: an address is its own host network (/32, /128). */
export function parseSourceCidr(text: string): Cidr | string {
  return parseCidr(text.includes("/") ? text : `${text}/${text.includes(":") ? 128 : 32}`);
}

/** Whether `cidr`'s address is the network or (v4) broadcast address of its own subnet. */
export function isNetworkOrBroadcast(cidr: Cidr): boolean {
  if (cidr.family === 4) {
    if (cidr.prefix >= 31) return false; // RFC 3021: both addresses of a /31 are hosts
    const bcast = ipaddr.IPv4.broadcastAddressFromCIDR(cidr.text).toString();
    return cidr.network === `${cidr.address}/${cidr.prefix}` || bcast === cidr.address;
  }
  return cidr.prefix < 127 && cidr.network === `${cidr.address}/${cidr.prefix}`;
}

/** Host name per RFC 1123 (letters, digits, hyphens; dot-separated labels). */
export function isHostName(text: string): boolean {
  if (text.length === 0 || text.length > 253) return false;
  return text.replace(/\.$/, "").split(".").every((label) => /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(label));
}

/** `host:port` as wg prints endpoints: v6 in brackets. */
export function formatEndpoint(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Why an address is no single host's at all (the unspecified address, broadcast, multicast, the
 * reserved 240.0.0.0/4), for fields that name a host or a gateway: a rule or a probe with it
 * would match or reach nothing. Loopback and link-local are hosts, so fields that allow them keep them.
 */
export function nonHostProblem(address: string, example?: string): string | undefined {
  const ip = parseIp(address);
  if (!ip) return undefined; // the format rule reports it
  const first = Number(ip.address.split(".")[0]);
  const kind = ip.family === 6
    ? ({ unspecified: "the unspecified address", multicast: "a multicast address" } as Record<string, string>)[ipaddr.IPv6.parse(ip.address).range()]
    : ip.address === "255.255.255.255" ? "the broadcast address"
    : ip.address.startsWith("0.") ? "in 0.0.0.0/8 (\"this network\", never a destination)"
    : first >= 240 ? "in the reserved 240.0.0.0/4"
    : first >= 224 ? "a multicast address"
    : undefined;
  return kind && `${address} is ${kind}, no one host's address: give a host's own address, e.g. ${example ?? (ip.family === 6 ? "fd00:1::10" : "192.168.1.10")}`;
}
