// Pure parsing of conntrack-tools' text output (`conntrack -L` and `conntrack -E`, with or
// without `-o id,extended`), as conntrack 1.4.x prints it on Debian and OpenWrt.

/** One direction of a connection as conntrack prints it. */
export interface ConntrackTuple {
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
  /** icmp tuples have these instead of ports */
  type?: number;
  code?: number;
  icmpId?: number;
  /** only with net.netfilter.nf_conntrack_acct=1 */
  packets?: number;
  bytes?: number;
}

export type ConntrackEvent = "NEW" | "UPDATE" | "DESTROY";

export interface ConntrackEntry {
  /** set for `conntrack -E` lines */
  event?: ConntrackEvent;
  /** `-o extended` only: ipv4 / ipv6 */
  family?: string;
  protocol: string;
  protonum: number;
  /** seconds left before the kernel forgets the entry */
  timeout?: number;
  /** TCP state (SYN_SENT, ESTABLISHED, CLOSE...); absent for udp/icmp */
  state?: string;
  orig: ConntrackTuple;
  reply: ConntrackTuple;
  /** no packet was seen in the reply direction */
  unreplied: boolean;
  /** replies seen and the kernel will keep the entry under pressure */
  assured: boolean;
  /** every bracketed flag, e.g. ["UNREPLIED"], ["ASSURED"], ["OFFLOAD"] */
  flags: string[];
  /** the conntrack mark (conntrack prints it in decimal) */
  mark?: number;
  zone?: number;
  use?: number;
  /** `-o id` only: the kernel's id of the entry, stable across its events */
  id?: number;
  /** everything else printed as key=value (secctx, helper, delta-time, labels...) */
  extra: Record<string, string>;
}

const EVENT = /^\[(NEW|UPDATE|DESTROY)\]$/;
const TUPLE_NUMBERS: Record<string, keyof ConntrackTuple> = {
  sport: "sport",
  dport: "dport",
  type: "type",
  code: "code",
  packets: "packets",
  bytes: "bytes",
};

function toNumber(v: string): number | undefined {
  if (!/^(0x[0-9a-f]+|\d+)$/i.test(v)) return undefined;
  return Number(v);
}

/**
 * One line of `conntrack -L` / `-E` output, or undefined for what is not an entry (the
 * "N flow entries have been shown." summary, blank lines, errors).
 */
export function parseConntrackLine(line: string): ConntrackEntry | undefined {
  const tokens = line.trim().split(/\s+/).filter((t) => t !== "");
  let i = 0;
  let event: ConntrackEvent | undefined;
  const ev = EVENT.exec(tokens[0] ?? "");
  if (ev) {
    event = ev[1] as ConntrackEvent;
    i++;
  }
  let family: string | undefined;
  if ((tokens[i] === "ipv4" || tokens[i] === "ipv6") && /^\d+$/.test(tokens[i + 1] ?? "")) {
    family = tokens[i];
    i += 2;
  }
  const protocol = tokens[i];
  const protonum = toNumber(tokens[i + 1] ?? "");
  if (!protocol || !/^[a-z][a-z0-9-]*$/.test(protocol) || protonum === undefined) return undefined;
  i += 2;
  let timeout: number | undefined;
  if (/^\d+$/.test(tokens[i] ?? "")) timeout = Number(tokens[i++]);
  let state: string | undefined;
  if (/^[A-Z][A-Z0-9_]*$/.test(tokens[i] ?? "")) state = tokens[i++];

  // The first src= opens the original tuple, the second the reply tuple.
  const tuples: Partial<ConntrackTuple>[] = [];
  let afterTuples = false; // once a non-tuple key follows the reply tuple, id= is the entry's id
  const flags: string[] = [];
  const entry: Omit<ConntrackEntry, "orig" | "reply"> = {
    protocol,
    protonum,
    unreplied: false,
    assured: false,
    flags,
    extra: {},
  };
  for (; i < tokens.length; i++) {
    const t = tokens[i];
    const flag = /^\[([A-Z_]+)\]$/.exec(t);
    if (flag) {
      flags.push(flag[1]);
      continue;
    }
    const eq = t.indexOf("=");
    if (eq <= 0) {
      entry.extra[`token${i}`] = t;
      continue;
    }
    const key = t.slice(0, eq);
    const value = t.slice(eq + 1);
    const cur = tuples[tuples.length - 1];
    if (key === "src" && tuples.length < 2 && !afterTuples) {
      tuples.push({ src: value });
    } else if (key === "dst" && cur && cur.dst === undefined && !afterTuples) {
      cur.dst = value;
    } else if (key in TUPLE_NUMBERS && cur && !afterTuples && toNumber(value) !== undefined) {
      (cur as Record<string, unknown>)[TUPLE_NUMBERS[key]] = toNumber(value);
    } else if (key === "id" && cur && !afterTuples && cur.code !== undefined && cur.icmpId === undefined) {
      cur.icmpId = toNumber(value);
    } else {
      if (tuples.length === 2) afterTuples = true;
      const n = toNumber(value);
      if (key === "mark" && n !== undefined) entry.mark = n;
      else if (key === "zone" && n !== undefined) entry.zone = n;
      else if (key === "use" && n !== undefined) entry.use = n;
      else if (key === "id" && n !== undefined) entry.id = n;
      else entry.extra[key] = value;
    }
  }
  const [orig, reply] = tuples;
  if (!orig?.dst || !reply?.dst || orig.src === undefined || reply.src === undefined) return undefined;
  const out: ConntrackEntry = {
    ...(event ? { event } : {}),
    ...(family ? { family } : {}),
    protocol: entry.protocol,
    protonum: entry.protonum,
    ...(timeout !== undefined ? { timeout } : {}),
    ...(state ? { state } : {}),
    orig: orig as ConntrackTuple,
    reply: reply as ConntrackTuple,
    unreplied: flags.includes("UNREPLIED"),
    assured: flags.includes("ASSURED"),
    flags,
    ...(entry.mark !== undefined ? { mark: entry.mark } : {}),
    ...(entry.zone !== undefined ? { zone: entry.zone } : {}),
    ...(entry.use !== undefined ? { use: entry.use } : {}),
    ...(entry.id !== undefined ? { id: entry.id } : {}),
    extra: entry.extra,
  };
  return out;
}

/** Every entry in a block of `conntrack -L` / `-E` output; other lines are skipped. */
export function parseConntrack(text: string): ConntrackEntry[] {
  const out: ConntrackEntry[] = [];
  for (const line of text.split("\n")) {
    const e = parseConntrackLine(line);
    if (e) out.push(e);
  }
  return out;
}

/** One connection followed through its events (`conntrack -E`), or one listed entry. */
export interface ConntrackFlow {
  /** the entry as first seen (its NEW event, when the capture saw it begin) */
  first: ConntrackEntry;
  /** the entry as last seen */
  last: ConntrackEntry;
  /** the capture saw the connection begin */
  began: boolean;
  /** the capture saw the kernel drop the entry */
  destroyed: boolean;
  /**
   * A packet came back in the reply direction. A connection whose only reply was a TCP reset is
   * deleted at once and its DESTROY event still says [UNREPLIED]; its state is CLOSE then.
   */
  replied: boolean;
  /** the reply was that lone reset */
  resetOnly: boolean;
  events: ConntrackEvent[];
}

function flowKey(e: ConntrackEntry): string {
  if (e.id !== undefined) return `id:${e.id}`;
  const o = e.orig;
  return `${e.protocol} ${o.src}:${o.sport ?? ""} ${o.dst}:${o.dport ?? ""} zone ${e.zone ?? 0}`;
}

/** Group entries (events in the order printed) into connections, in order of first appearance. */
export function flowsOf(entries: ConntrackEntry[]): ConntrackFlow[] {
  const all: ConntrackFlow[] = [];
  const current = new Map<string, ConntrackFlow>();
  for (const e of entries) {
    const key = flowKey(e);
    let f = current.get(key);
    // a NEW after a DESTROY on the same key (no ids): the tuple reused by a new connection
    if (!f || (e.event === "NEW" && f.destroyed)) {
      f = { first: e, last: e, began: e.event === "NEW", destroyed: false, replied: false, resetOnly: false, events: [] };
      current.set(key, f);
      all.push(f);
    }
    f.last = e;
    if (e.event) f.events.push(e.event);
    if (e.event === "DESTROY") f.destroyed = true;
    if (!e.unreplied) f.replied = true;
  }
  for (const f of all) {
    if (!f.replied && f.destroyed && f.last.protocol === "tcp" && f.last.state === "CLOSE") {
      f.replied = true;
      f.resetOnly = true;
    }
  }
  return all;
}
