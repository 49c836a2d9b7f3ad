/**
 * nftables backend: a table natgate owns is data (nft's own JSON schema, as `nft -j` prints it),
 * printed to nft text by one printer, applied as one `nft -f -` transaction that replaces the whole
 * table (kube-proxy style), and read back with `nft -j list table` into the same data, printed by
 * the same printer. Desired and live state are therefore compared as the same text lines.
 *
 * Builders below produce exactly the JSON nft prints for each statement (its canonical form: e.g.
 * nft drops `meta l4proto tcp` before `tcp dport`, and folds `& ~M | V` into one mask), so a
 * correct table reads back line for line; anything else shows up as drift.
 */
import { NatgateError } from "../ssh/errors";

/** One statement of a rule, in nft's JSON schema (`nft -j`, libnftables-json(5)). */
export type NftStmt = Record<string, unknown>;
export type NftExpr = unknown;

export interface NftChain {
  name: string;
  type: "filter" | "nat" | "route";
  hook: "prerouting" | "input" | "forward" | "output" | "postrouting";
  priority: number;
  policy: "accept" | "drop";
  rules: NftStmt[][];
}

export interface NftTable {
  family: "ip" | "ip6" | "inet";
  name: string;
  chains: NftChain[];
}

/** Standard priorities by name (nft(8) "PRIORITY"), so callers say why, not a number. */
export const PRIORITY = { raw: -300, mangle: -150, dstnat: -100, filter: 0, security: 50, srcnat: 100 } as const;

// ---------- builders (nft JSON as nft prints it) ----------

export const meta = (key: string): NftExpr => ({ meta: { key } });
export const payload = (protocol: string, field: string): NftExpr => ({ payload: { protocol, field } });
export const ct = (key: string, dir?: "original" | "reply"): NftExpr => ({ ct: dir ? { key, dir } : { key } });
export const range = (lo: number, hi: number): NftExpr => (lo === hi ? lo : { range: [lo, hi] });
export const set = (items: NftExpr[]): NftExpr => ({ set: items });
export const and = (a: NftExpr, b: NftExpr): NftExpr => ({ "&": [a, b] });
export const or = (a: NftExpr, b: NftExpr): NftExpr => ({ "|": [a, b] });

export const match = (left: NftExpr, right: NftExpr, op: "==" | "!=" | "in" = "=="): NftStmt => ({
  match: { op, left, right },
});
export const mangle = (key: NftExpr, value: NftExpr): NftStmt => ({ mangle: { key, value } });
export const accept = (): NftStmt => ({ accept: null });

/**
 * `(x & ~mask) | value` as nft stores it: nft folds the value's bits into the AND mask, and drops
 * the AND when it keeps every bit.
 */
export function maskedSet(current: NftExpr, mask: number, value: number): NftExpr {
  const keep = (~mask | value) >>> 0;
  return keep === 0xffffffff ? or(current, value) : or(and(current, keep), value);
}

/** `x & mask == value`, or plain `x value` when the mask is all ones (nft drops a full mask). */
export function maskedMatch(current: NftExpr, mask: number, value: number): NftStmt {
  return mask >>> 0 === 0xffffffff ? match(current, value) : match(and(current, mask >>> 0), value);
}

// ---------- printer (JSON → nft text) ----------

const MARK_KEYS = new Set(["mark"]);
const QUOTED_META = new Set(["iifname", "oifname", "iifgroup", "oifgroup"]);

interface Ctx {
  hex?: boolean;
  quote?: boolean;
}

function involvesMark(e: NftExpr): boolean {
  if (!e || typeof e !== "object") return false;
  const o = e as Record<string, unknown>;
  if (o.meta && MARK_KEYS.has((o.meta as { key: string }).key)) return true;
  if (o.ct && MARK_KEYS.has((o.ct as { key: string }).key)) return true;
  for (const op of ["&", "|", "^"]) if (Array.isArray(o[op])) return (o[op] as NftExpr[]).some(involvesMark);
  return false;
}

function quotesRight(e: NftExpr): boolean {
  if (!e || typeof e !== "object") return false;
  const m = (e as Record<string, unknown>).meta as { key?: string } | undefined;
  return !!m && QUOTED_META.has(m.key ?? "");
}

function printNumber(n: number, ctx: Ctx): string {
  return ctx.hex ? "0x" + (n >>> 0).toString(16).padStart(8, "0") : String(n);
}

function unsupported(x: unknown): string {
  return `<unsupported ${JSON.stringify(x)}>`;
}

export function printExpr(e: NftExpr, ctx: Ctx = {}): string {
  if (typeof e === "number") return printNumber(e, ctx);
  if (typeof e === "string") return ctx.quote ? JSON.stringify(e) : e;
  if (Array.isArray(e)) return "(" + e.map((x) => printExpr(x, ctx)).join(" | ") + ")";
  if (!e || typeof e !== "object") return unsupported(e);
  const o = e as Record<string, any>;
  const keys = Object.keys(o);
  if (keys.length !== 1) return unsupported(e);
  const k = keys[0]!;
  const v = o[k];
  switch (k) {
    case "set":
      return "{ " + (v as NftExpr[]).map((x) => (Array.isArray(x) && x.length === 2 ? `${printExpr(x[0], ctx)} : ${printExpr(x[1], ctx)}` : printExpr(x, ctx))).join(", ") + " }";
    case "range":
      return `${printExpr(v[0], ctx)}-${printExpr(v[1], ctx)}`;
    case "prefix":
      return `${printExpr(v.addr, ctx)}/${v.len}`;
    case "concat":
      return (v as NftExpr[]).map((x) => printExpr(x, ctx)).join(" . ");
    case "payload":
      return typeof v.protocol === "string" && typeof v.field === "string" ? `${v.protocol} ${v.field}` : unsupported(e);
    case "meta":
      return QUOTED_META.has(v.key) ? v.key : `meta ${v.key}`;
    case "ct":
      return `ct ${v.dir ? v.dir + " " : ""}${v.key}`;
    case "rt":
      return `rt ${v.key}`;
    case "tcp option":
      return `tcp option ${v.name} ${v.field}`;
    case "&":
    case "|":
    case "^": {
      const inner = { ...ctx, hex: ctx.hex || involvesMark(e) };
      return (v as NftExpr[]).map((x) => printExpr(x, inner)).join(` ${k} `);
    }
    case "map":
      return `${printExpr(v.key, ctx)} map ${printExpr(v.data, ctx)}`;
    default:
      return unsupported(e);
  }
}

export function printStmt(s: NftStmt): string {
  const keys = Object.keys(s);
  if (keys.length !== 1) return unsupported(s);
  const k = keys[0]!;
  const v = (s as Record<string, any>)[k];
  switch (k) {
    case "match": {
      const ctx: Ctx = { hex: involvesMark(v.left), quote: quotesRight(v.left) };
      const left = printExpr(v.left, ctx);
      const right = printExpr(v.right, ctx);
      const binary = v.left && typeof v.left === "object" && ("&" in v.left || "|" in v.left);
      if (v.op === "==" || v.op === "in") return binary ? `${left} == ${right}` : `${left} ${right}`;
      return `${left} ${v.op} ${right}`;
    }
    case "mangle": {
      const ctx: Ctx = { hex: involvesMark(v.key), quote: quotesRight(v.key) };
      return `${printExpr(v.key, ctx)} set ${printExpr(v.value, ctx)}`;
    }
    case "dnat":
    case "snat": {
      if (!v || typeof v !== "object") return k;
      const fam = v.family ? `${v.family} ` : "";
      const addr = v.addr !== undefined ? printExpr(v.addr) : "";
      const port = v.port !== undefined ? `:${printExpr(v.port)}` : "";
      // An IPv6 address before a port is bracketed, as nft lists it: `dnat to [fd00::99]:22`.
      const to = port && typeof v.addr === "string" && v.addr.includes(":") ? `[${addr}]` : addr;
      return `${k} ${fam}to ${to}${port}`;
    }
    case "reject":
      // nft lists the default (ICMP port unreachable) as a bare `reject`
      return v?.type === "tcp reset" ? "reject with tcp reset" : v === null || ((v?.type === "icmp" || v?.type === "icmpv6") && v?.expr === "port-unreachable") ? "reject" : unsupported(s);
    case "accept":
    case "drop":
    case "return":
      return k;
    case "counter":
      return "counter";
    default:
      return unsupported(s);
  }
}

export function printRule(stmts: NftStmt[]): string {
  return stmts.map(printStmt).join(" ");
}

/**
 * The table as self-contained `nft` commands, one object per line: what a user would type, what
 * `pulumi preview --diff` shows, and (without the leading "nft ") the body of the transaction.
 */
export function tableLines(t: NftTable): string[] {
  const id = `${t.family} ${t.name}`;
  const out = [`nft add table ${id}`];
  for (const c of t.chains) {
    out.push(`nft add chain ${id} ${c.name} { type ${c.type} hook ${c.hook} priority ${c.priority}; policy ${c.policy}; }`);
    for (const r of c.rules) out.push(`nft add rule ${id} ${c.name} ${printRule(r)}`);
  }
  return out;
}

/**
 * One atomic transaction that leaves exactly `t`: `add table` makes the `delete` valid whether
 * or not the table exists, then the table is rebuilt from nothing (kube-proxy's pattern).
 */
/** The transaction that removes an owned table, present or not (add first: delete of a missing table fails). */
export function deleteTableTransaction(family: string, name: string): string {
  return `add table ${family} ${name}\ndelete table ${family} ${name}\n`;
}

/**
 * Rules natgate owns in other firewalls' chains: deletes by handle, then inserts at each chain's
 * top; reversed, the inserts end up in the order given. One transaction line each.
 */
export function foreignRuleOps(del: (ChainRef & { handle: number | string })[], add: { line: string }[]): string {
  const ops = [...del.map((o) => `delete rule ${chainId(o)} handle ${o.handle}`), ...[...add].reverse().map((w) => w.line.replace(/^nft /, ""))];
  return ops.map((l) => l + "\n").join("");
}

export function replaceTableTransaction(t: NftTable): string {
  const id = `${t.family} ${t.name}`;
  const body = tableLines(t).map((l) => l.replace(/^nft /, ""));
  return [`add table ${id}`, `delete table ${id}`, ...body].join("\n") + "\n";
}

// ---------- parser (`nft -j list table` → the same lines) ----------

type NftItem = Record<string, any>;

/** The objects of `nft -j list ...` output; [] for empty output (a table that does not exist). */
export function parseNftJson(text: string): NftItem[] {
  const doc = (t: string) => (JSON.parse(t) as { nftables?: NftItem[] }).nftables ?? [];
  const trimmed = text.trim();
  if (trimmed === "") return [];
  try {
    return doc(trimmed);
  } catch {
    // One document per line: nft_visible lists table by table, and nft -j prints each on one line.
  }
  return trimmed.split("\n").flatMap((line) => {
    if (line.trim() === "") return [];
    try {
      return doc(line);
    } catch {
      throw new NatgateError("unexpected-output", `could not parse the output of nft -j: ${line.trim().slice(0, 200)}`);
    }
  });
}

function ruleText(r: NftItem): string {
  const comment = r.comment !== undefined ? ` comment ${JSON.stringify(r.comment)}` : "";
  return `${printRule(r.expr ?? [])}${comment}`;
}

/**
 * Lines of one table from `nft -j list table|ruleset` output, in the notation of tableLines().
 * Rules and chains appear in nft's order, which is the order they were added in.
 */
export function tableLinesFromItems(items: NftItem[], family: string, name: string): string[] {
  const out: string[] = [];
  const chains = new Map<string, { head: string; rules: string[] }>();
  let tableLine: string | undefined;
  const ours = (o: NftItem) => o.family === family && (o.table ?? o.name) === name;
  for (const it of items) {
    if (it.table && ours(it.table)) {
      tableLine = `nft add table ${family} ${name}`;
    } else if (it.chain && ours(it.chain)) {
      const c = it.chain;
      const head =
        c.hook !== undefined
          ? `nft add chain ${family} ${name} ${c.name} { type ${c.type} hook ${c.hook} priority ${c.prio}; policy ${c.policy}; }`
          : `nft add chain ${family} ${name} ${c.name}`;
      chains.set(c.name, { head, rules: [] });
    } else if (it.rule && ours(it.rule)) {
      const r = it.rule;
      const line = `nft add rule ${family} ${name} ${r.chain} ${ruleText(r)}`;
      const chain = chains.get(r.chain);
      if (chain) chain.rules.push(line);
      else out.push(line);
    } else if (!it.metainfo && !it.table && !it.chain && !it.rule) {
      const v = Object.values(it)[0] as NftItem | undefined;
      // sets, maps, flowtables...: natgate creates none, so any in its table is drift worth seeing
      if (v && v.family === family && v.table === name) out.push(`<unsupported ${JSON.stringify(it)}>`);
    }
  }
  const result: string[] = tableLine ? [tableLine] : [];
  for (const c of chains.values()) result.push(c.head, ...c.rules);
  return result.concat(out);
}

/** Lines of a live table from `nft -j list table <family> <name>` output; [] when it does not exist. */
export function parseNftTableJson(text: string): string[] {
  const items = parseNftJson(text);
  const t = items.find((i) => i.table)?.table;
  return t ? tableLinesFromItems(items, t.family, t.name) : [];
}

// ---------- accepts in other tables' forward chains ----------

export interface ChainRef {
  family: string;
  table: string;
  chain: string;
}

export interface ForeignRule extends ChainRef {
  handle: number;
  /** `nft insert rule <family> <table> <chain> <rule>` */
  line: string;
}

export function chainId(c: ChainRef): string {
  return `${c.family} ${c.table} ${c.chain}`;
}

export function insertRuleLine(c: ChainRef, stmts: NftStmt[], comment: string): string {
  return `nft insert rule ${chainId(c)} ${printRule(stmts)} comment ${JSON.stringify(comment)}`;
}

// iptables-nft's tables: the iptables backend handles their chains (nft rules there confuse iptables).
const XTABLES = new Set(["filter", "nat", "mangle", "raw", "security"]);
const XCHAINS = new Set(["INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"]);

/**
 * Whether a rule can end a packet's way: a drop or reject, or a jump, goto or verdict map that can
 * lead to one. fw4's mangle_forward (MSS clamping only) cannot, and an accept there would only
 * skip fw4's clamp.
 */
function mayDrop(r: NftItem): boolean {
  const text = JSON.stringify(r.expr ?? []);
  return /"(drop|reject|jump|goto|vmap|queue)"/.test(text);
}

/**
 * Forward base chains of other nftables firewalls (OpenWrt's fw4, firewalld, a hand-written
 * `policy drop`) where a DNATed packet may be dropped, and the rules carrying `comment` anywhere
 * outside natgate's own tables. A chain counts when its policy is drop or it has a rule that may
 * drop (fw4 and firewalld end in jumps to reject chains), like forwardNeedsAccept for iptables.
 * With hook "input", the same for a DNAT to the host itself, whose packets meet input chains.
 * `family` is the rule's ("ip6" for IPv6): chains of the other family never see its packets.
 */
export function foreignForwardState(
  items: NftItem[],
  comment: string,
  hook: "forward" | "input" = "forward",
  family: "ip" | "ip6" = "ip",
): { dropChains: ChainRef[]; owned: ForeignRule[] } {
  const dropChains: ChainRef[] = [];
  const owned: ForeignRule[] = [];
  const counts = new Map<string, number>();
  // The tables a packet of this IP version passes: its family's and inet's.
  const foreign = (o: NftItem) => (o.family === family || o.family === "inet") && !String(o.table).startsWith("natgate_");
  for (const it of items) {
    const r = it.rule;
    if (!r || !foreign(r)) continue;
    const ref = { family: r.family, table: r.table, chain: r.chain };
    if (r.comment === comment) {
      owned.push({ ...ref, handle: r.handle, line: `nft insert rule ${chainId(ref)} ${ruleText(r)}` });
    } else if (mayDrop(r)) {
      counts.set(chainId(ref), (counts.get(chainId(ref)) ?? 0) + 1);
    }
  }
  for (const it of items) {
    const c = it.chain;
    if (!c || !foreign(c) || c.hook !== hook || c.type !== "filter") continue;
    if (c.family === family && XTABLES.has(c.table) && XCHAINS.has(c.name)) continue;
    const ref = { family: c.family, table: c.table, chain: c.name };
    if (c.policy === "drop" || (counts.get(chainId(ref)) ?? 0) > 0) dropChains.push(ref);
  }
  return { dropChains, owned };
}

// The remote scripts live in nftSh.ts.
export { NFT_SH } from "./nftSh";
