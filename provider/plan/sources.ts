/**
 * The sources a forward admits (DnatRule `allowFrom`), as the kernel will hold them. nft keeps an
 * interval set: it sorts the elements, merges overlapping and adjacent ones, and lists a merged
 * run that is not one prefix as a range. natgate renders the same canonical form, so the table it
 * writes reads back line for line; iptables takes CIDRs only, so there the runs are cut into the
 * fewest prefixes that cover them exactly.
 */
import ipaddr from "ipaddr.js";
import { parseSourceCidr } from "../resources/common/addresses";

export interface SourceRun {
  family: 4 | 6;
  lo: bigint;
  hi: bigint;
}

const bits = (family: 4 | 6) => (family === 4 ? 32 : 128);

function toBig(address: string): bigint {
  return ipaddr.parse(address).toByteArray().reduce((n, b) => (n << 8n) | BigInt(b), 0n);
}

function toAddress(n: bigint, family: 4 | 6): string {
  const bytes: number[] = [];
  for (let i = 0; i < bits(family) / 8; i++) bytes.unshift(Number((n >> BigInt(8 * i)) & 0xffn));
  const a = ipaddr.fromByteArray(bytes);
  return a.kind() === "ipv6" ? (a as ipaddr.IPv6).toRFC5952String() : a.toString();
}

/** "203.0.113.10" or "203.0.113.0/25" → the addresses it covers. */
export function sourceRun(entry: string): SourceRun {
  const c = parseSourceCidr(entry);
  if (typeof c === "string") throw new Error(`not a network: ${entry}: ${c}`);
  const lo = toBig(c.network.split("/")[0]!);
  const size = 2n ** BigInt(bits(c.family) - c.prefix);
  return { family: c.family, lo, hi: lo + size - 1n };
}

/** The entries of one family as nft stores them: sorted, overlapping and adjacent runs merged. */
export function mergedRuns(entries: string[]): SourceRun[] {
  const runs = entries.map(sourceRun).sort((a, b) => (a.family - b.family) || (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0));
  const out: SourceRun[] = [];
  for (const r of runs) {
    const last = out[out.length - 1];
    if (last && last.family === r.family && r.lo <= last.hi + 1n) {
      if (r.hi > last.hi) last.hi = r.hi;
    } else {
      out.push({ ...r });
    }
  }
  return out;
}

/** The prefix length of a run that is exactly one aligned prefix, else undefined. */
function prefixOf(r: SourceRun): number | undefined {
  const size = r.hi - r.lo + 1n;
  if ((size & (size - 1n)) !== 0n || r.lo % size !== 0n) return undefined;
  return bits(r.family) - (size.toString(2).length - 1);
}

/** One run as nft's JSON prints it: an address, a prefix, or a range. */
export function nftRunElement(r: SourceRun): unknown {
  const p = prefixOf(r);
  if (p === bits(r.family)) return toAddress(r.lo, r.family);
  if (p !== undefined) return { prefix: { addr: toAddress(r.lo, r.family), len: p } };
  return { range: [toAddress(r.lo, r.family), toAddress(r.hi, r.family)] };
}

/**
 * The right side of `ip saddr` as nft stores it: nft turns a set of one element into a plain
 * comparison (address, prefix or range), so one run is sent as one.
 */
export function nftSourceMatch(entries: string[]): unknown {
  const runs = mergedRuns(entries);
  return runs.length === 1 ? nftRunElement(runs[0]!) : { set: runs.map(nftRunElement) };
}

/** The fewest CIDRs that cover the runs exactly (iptables' -s takes one prefix per rule). */
export function runCidrs(entries: string[]): string[] {
  const out: string[] = [];
  for (const r of mergedRuns(entries)) {
    const width = bits(r.family);
    let lo = r.lo;
    while (lo <= r.hi) {
      let len = width;
      // The largest aligned block starting at lo that stays inside the run.
      while (len > 0) {
        const size = 2n ** BigInt(width - len + 1);
        if (lo % size !== 0n || lo + size - 1n > r.hi) break;
        len--;
      }
      out.push(`${toAddress(lo, r.family)}/${len}`);
      lo += 2n ** BigInt(width - len);
    }
  }
  return out;
}
