// Any string in any string field (issue 11): arbitrary text, arbitrary code points and strings of
// shell metacharacters, sent through each resource's check as the engine sends it. Each is either
// refused with a failure naming the field, or, accepted, reaches the text natgate renders for a
// host only as data: inside a single-quoted shell word, or made only of characters no shell reads
// as syntax.
import { strict as assert } from "assert";
import fc from "fast-check";
import { providers } from "../../provider";
import { replaceTableTransaction } from "../../provider/backends/nftables";
import { cmarkFamilies, cmarkTable, renderConnmark } from "../../provider/resources/connmark/render";
import { ConnmarkReturnPathSchema } from "../../provider/resources/connmark/schema";
import { dnatForwardAccepts, dnatTable, renderDnat } from "../../provider/resources/dnat/render";
import { DnatRuleSchema } from "../../provider/resources/dnat/schema";
import { renderRouteTable } from "../../provider/resources/routetable/render";
import { PolicyRouteTableSchema } from "../../provider/resources/routetable/schema";
import { bootPlan } from "../../provider/resources/tunnel/plan";
import { desiredSide, renderBoot } from "../../provider/resources/tunnel/render";
import { parseTunnelArgs } from "../../provider/resources/tunnel/schema";

const SEED = 20261202;
const RUNS = 150;

const vps = { host: "198.51.100.1", password: "x" };
const router = { host: "192.168.1.1", password: "x" };
const LISTENER_KEY = "SZpcNltCYhCjRvtIDSUP6n8GwZokVcsnxNL1QgRlxkI=";
const DIALER_KEY = "ctTSF0QS6WZHPg9Qbw1xlBbs4HNWJ4zECOiQ8FdT8Rk=";

type Kind = "DnatRule" | "ConnmarkReturnPath" | "PolicyRouteTable" | "Tunnel" | "PathCheck";
type Raw = Record<string, unknown>;

const BASE: Record<Kind, Raw> = {
  DnatRule: { connection: vps, name: "web", protocol: "tcp", ports: 80, inInterface: "wg0", toAddress: "192.168.1.99" },
  ConnmarkReturnPath: { connection: router, name: "home", tunnelInterface: "wg0", ipv6: true },
  PolicyRouteTable: { connection: router, name: "home", routes: [{ to: "default", via: "10.10.10.1", dev: "wg0" }, { to: "192.168.1.0/24", dev: "br-lan" }] },
  Tunnel: {
    listener: { connection: vps, address: "10.10.10.1/24", address6: "fd00:4e47::1/64" },
    dialer: { connection: router, address: "10.10.10.2/24", address6: "fd00:4e47::2/64" },
  },
  PathCheck: { vpsConnection: vps, routerConnection: router, publicAddress: "198.51.100.1", port: 5000, routerTunnelAddress: "10.10.10.2", tunnelInterface: "wg0" },
};

const CONNECTION_FIELDS = ["host", "user", "password", "privateKey", "privateKeyPassword", "agentSocketPath", "hostKey", "knownHosts", "proxy.host", "proxy.user", "proxy.password", "proxy.hostKey"];
const CONNECTIONS: Record<Kind, string[]> = {
  DnatRule: ["connection"],
  ConnmarkReturnPath: ["connection"],
  PolicyRouteTable: ["connection"],
  Tunnel: ["listener.connection", "dialer.connection"],
  PathCheck: ["vpsConnection", "routerConnection"],
};

/** Every string field of every resource (fields that also take a number, like ports and mark, are in: YAML gives them as text). */
const FIELDS: Record<Kind, string[]> = {
  DnatRule: ["name", "protocol", "ports", "toPorts", "inInterface", "destination", "toAddress", "allowFrom[0]", "refuse", "backend"],
  ConnmarkReturnPath: ["name", "tunnelInterface", "mark", "mask", "localSource", "localSource6", "backend"],
  PolicyRouteTable: ["name", "routes[0].to", "routes[0].via", "routes[0].dev", "routes[1].src"],
  Tunnel: [
    "name", "interfaceName", "listener.address", "listener.address6", "listener.interfaceName", "listener.endpoint", "listener.allowedIps[0]",
    "dialer.address", "dialer.address6", "dialer.interfaceName", "dialer.allowedIps[0]",
  ],
  PathCheck: ["publicAddress", "vpsAddress", "routerTunnelAddress", "tunnelInterface", "mark", "mask"],
};

function withAt(base: Raw, path: string, value: unknown): Raw {
  const root: any = structuredClone(base);
  const segs = [...path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)].map((m) => (m[2] !== undefined ? Number(m[2]) : m[1]!));
  let cur = root;
  segs.slice(0, -1).forEach((s, k) => {
    if (cur[s] === null || typeof cur[s] !== "object") cur[s] = typeof segs[k + 1] === "number" ? [] : { ...(String(s) === "proxy" ? { host: "jump.example.com", password: "x" } : {}) };
    cur = cur[s];
  });
  cur[segs.at(-1)!] = value;
  return root;
}

/**
 * Everything natgate would write to a host for these inputs, as far as it is pure: the check's
 * rendered lines, the other backend's lines, the nft transaction, the boot plans. PathCheck renders
 * nothing: its values go to a host only as argument words (run.ts quotes each), so its text is the
 * values themselves, which must then be inert unquoted too.
 */
function hostText(kind: Kind, raw: Raw, checked: Raw): string {
  const rendered = Object.entries(checked).filter(([k]) => /^rendered/.test(k)).flatMap(([, v]) => v as string[]);
  const more: string[] = [];
  if (kind === "DnatRule") {
    const i = DnatRuleSchema.parse(raw);
    more.push(...renderDnat(i, "iptables"), replaceTableTransaction(dnatTable(i)), ...dnatForwardAccepts(i));
  } else if (kind === "ConnmarkReturnPath") {
    const i = ConnmarkReturnPathSchema.parse(raw);
    more.push(...renderConnmark(i, "iptables"), ...cmarkFamilies(i).map((f) => replaceTableTransaction(cmarkTable(i, f))));
  } else if (kind === "PolicyRouteTable") {
    more.push(...renderRouteTable(PolicyRouteTableSchema.parse(raw)));
  } else if (kind === "Tunnel") {
    const i = parseTunnelArgs(raw).inputs!;
    const keys = { listener: LISTENER_KEY, dialer: DIALER_KEY };
    for (const role of ["listener", "dialer"] as const) more.push(...renderBoot(i, role), ...bootPlan(desiredSide(i, role, keys)));
  } else {
    more.push(...["publicAddress", "vpsAddress", "routerTunnelAddress", "tunnelInterface"].map((k) => String(raw[k] ?? "")));
  }
  return [...rendered, ...more].join("\n");
}

// Characters no POSIX shell gives a meaning to in an unquoted word (no glob, expansion, split or operator).
const INERT = /^[A-Za-z0-9_.,:/@%+=-]*$/;

/**
 * Each index of `text` that sits inside a single-quoted shell word. Double quotes and backslashes
 * are followed so that a quote inside them is not taken for the start of one.
 */
function singleQuoted(text: string): boolean[] {
  const inside = new Array<boolean>(text.length).fill(false);
  let mode: "plain" | "single" | "double" = "plain";
  for (let k = 0; k < text.length; k++) {
    const c = text[k];
    if (mode === "single") {
      if (c === "'") mode = "plain";
      else inside[k] = true;
    } else if (c === "\\") {
      k++;
    } else if (mode === "double") {
      if (c === '"') mode = "plain";
    } else if (c === "'") {
      mode = "single";
    } else if (c === '"') {
      mode = "double";
    }
  }
  return inside;
}

/** Where `value` appears in `text` as something other than data; empty when nowhere. */
export function codeOccurrences(text: string, value: string): string[] {
  if (value === "" || INERT.test(value)) return [];
  const inside = singleQuoted(text);
  const out: string[] = [];
  for (let at = text.indexOf(value); at >= 0; at = text.indexOf(value, at + 1)) {
    let quoted = true;
    for (let k = at; k < at + value.length; k++) if (!inside[k]) quoted = false;
    if (!quoted) out.push(JSON.stringify(text.slice(Math.max(0, at - 30), at + value.length + 30)));
  }
  return out;
}

const META = ";|&$`'\"\\\n(){}<>*?[]!#~ ".split("");
const FRAGMENTS = ["wg0", "10.10.10.1", "/24", "fd00::1", "$(reboot)", "`id`", "' ; reboot ; '", "\0", "web", "0x10", "80", "default"];
// Valid-looking text with metacharacters around it: the shapes that get furthest into a schema.
const hostile = fc.array(fc.oneof(fc.constantFrom(...META), fc.constantFrom(...FRAGMENTS)), { maxLength: 8 }).map((parts) => parts.join(""));
const anyString = fc.oneof(fc.string(), fc.string({ unit: "binary" }), hostile);

/**
 * Whether a failure is about `field`: it is the field, an object holding it (`dialer.connection`
 * for two ends on one host), or a cross-field failure whose reason names it (`mark` has bits
 * outside `mask`). "name" is too common a word to count as named in prose.
 */
function names(f: { property: string; reason: string }, field: string): boolean {
  if (f.property === field || field.startsWith(`${f.property}.`) || field.startsWith(`${f.property}[`)) return true;
  const esc = field.replace(/[.[\]]/g, "\\$&");
  return field !== "name" && new RegExp(`(^|[^\\w.])${esc}(?![\\w[])`).test(f.reason);
}

async function check(kind: Kind, raw: Raw): Promise<{ failures: { property: string; reason: string }[]; inputs: Raw }> {
  const r = await providers[kind]!.check!({}, { __provider: "serialized", ...raw });
  return { failures: r.failures ?? [], inputs: r.inputs as Raw };
}

describe("any string in any string field: refused naming the field, or rendered only as data (property, fast-check)", function () {
  this.timeout(60_000);

  it("the scanner tells a quoted value from an unquoted one (so the property below can fail)", () => {
    assert.deepEqual(codeOccurrences("wg set 'a;b' x", "a;b"), []);
    assert.equal(codeOccurrences("nft add rule a;b", "a;b").length, 1);
    assert.equal(codeOccurrences(`echo "a;b" 'c'`, "a;b").length, 1, "double quotes expand $ and `: not data");
    assert.equal(codeOccurrences("x 'a' ;b' y", "a' ;b").length, 1, "a value that closes the quote is code");
    assert.deepEqual(codeOccurrences("ip link add wg0", "wg0"), [], "an inert word is data unquoted");
  });

  for (const kind of Object.keys(BASE) as Kind[]) {
    const fields = [...FIELDS[kind], ...CONNECTIONS[kind].flatMap((c) => CONNECTION_FIELDS.map((f) => `${c}.${f}`))];
    it(`${kind}: ${fields.length} fields × ${RUNS} strings`, async () => {
      const base = await check(kind, BASE[kind]);
      assert.deepEqual(base.failures, [], "the base input is accepted");
      const baseText = hostText(kind, BASE[kind], base.inputs);
      let refused = 0;
      let accepted = 0;
      for (const field of fields) {
        await fc.assert(
          fc.asyncProperty(anyString, async (s) => {
            const raw = withAt(BASE[kind], field, s);
            const r = await check(kind, raw);
            if (r.failures.length) {
              refused++;
              assert.ok(
                r.failures.some((f) => names(f, field)),
                `${kind} ${field}=${JSON.stringify(s)} refused without naming ${field}: ${JSON.stringify(r.failures)}`,
              );
              return;
            }
            accepted++;
            const text = hostText(kind, raw, r.inputs);
            assert.ok(text.length > 0, "something is rendered");
            // Text like " || " is natgate's own script too: only what the value adds to it counts.
            const added = codeOccurrences(text, s).length - codeOccurrences(baseText, s).length;
            assert.ok(added <= 0, `${kind} ${field}=${JSON.stringify(s)} reaches host text as code: ${codeOccurrences(text, s).join(", ")}`);
          }),
          { seed: SEED, numRuns: RUNS },
        );
      }
      if (process.env.ANYSTRING_STATS) console.log(`${kind}: ${fields.length} fields, ${refused} refused, ${accepted} accepted`);
      assert.ok(refused > 0, `${kind}: nothing refused`);
      assert.equal(refused + accepted, fields.length * RUNS);
    });
  }
});
