import type * as pulumi from "@pulumi/pulumi";
import { converge, deleteTunnel, expectedRendering, inputsFromProps, readTunnel, ROLES, tunnelId, DERIVED_KEYS, type TunnelOutputs } from "./lifecycle";
import { renderTunnel } from "./render";
import { containsUnknown, parseTunnelArgs, UNKNOWN, type TunnelInputs } from "./schema";

export { TUNNEL_DEFAULTS, TunnelArgsSchema, type TunnelArgs, type TunnelInputs } from "./schema";
export type { TunnelOutputs } from "./lifecycle";
export { converge, readTunnel, deleteTunnel } from "./lifecycle";

type Props = Record<string, unknown>;

/** Stable JSON (sorted keys) so equal values compare equal whatever their key order. */
function stable(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stable).join(",")}]`;
  if (v !== null && typeof v === "object") {
    return `{${Object.keys(v as Props).sort().filter((k) => (v as Props)[k] !== undefined).map((k) => `${JSON.stringify(k)}:${stable((v as Props)[k])}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

function inputPart(props: Props | undefined): Props {
  const out: Props = { ...(props ?? {}) };
  for (const k of DERIVED_KEYS) delete out[k];
  return out;
}

function get(o: unknown, path: string[]): unknown {
  let cur = o;
  for (const k of path) cur = cur !== null && typeof cur === "object" ? (cur as Props)[k] : undefined;
  return cur;
}

/** Changing any of these means a different interface on a (possibly) different host. */
const REPLACE_PATHS = ROLES.flatMap((r) => [[r, "connection", "host"], [r, "connection", "port"], [r, "interfaceName"]]);

export const tunnelProvider: pulumi.dynamic.ResourceProvider = {
  async check(_olds: Props, news: Props) {
    const raw = inputPart(news);
    const r = parseTunnelArgs(raw);
    if (r.failures.length > 0) return { inputs: news, failures: r.failures };
    if (!r.inputs) {
      // only values the engine does not know yet failed: they are checked once known
      return { inputs: { ...news, renderedListener: UNKNOWN, renderedDialer: UNKNOWN } };
    }
    const rendered = containsUnknown(r.inputs) ? { renderedListener: UNKNOWN, renderedDialer: UNKNOWN } : renderTunnel(r.inputs);
    return { inputs: JSON.parse(JSON.stringify({ ...r.inputs, ...rendered })) };
  },

  async diff(_id: string, olds: Props, news: Props) {
    const replaces = REPLACE_PATHS.filter((p) => stable(get(olds, p)) !== stable(get(news, p))).map((p) => p.join("."));
    let changes = stable(inputPart(olds)) !== stable(inputPart(news));
    if (!changes && !containsUnknown(news)) {
      // same inputs: the host may still have drifted (refresh put its live rendering in olds)
      const parsed = parseTunnelArgs(inputPart(news));
      if (parsed.inputs) {
        const want = expectedRendering(parsed.inputs, olds as Partial<TunnelOutputs>);
        changes = stable(want.renderedListener) !== stable(olds.renderedListener) || stable(want.renderedDialer) !== stable(olds.renderedDialer);
      }
    }
    // the replacement may use the same host and interface: the old one has to go first
    return { changes: changes || replaces.length > 0, replaces, deleteBeforeReplace: replaces.length > 0 };
  },

  async create(inputs: Props) {
    const a: TunnelInputs = inputsFromProps(inputs);
    const { outputs } = await converge(a, "create");
    return { id: tunnelId(a), outs: outputs };
  },

  async read(id: string, props?: Props) {
    const live = await readTunnel((props ?? {}) as Partial<TunnelOutputs>);
    if (!live) return { id: "", props: {} }; // both sides gone: the resource no longer exists
    return { id, props: live };
  },

  async update(_id: string, olds: Props, news: Props) {
    const { outputs } = await converge(inputsFromProps(news), "update", olds as Partial<TunnelOutputs>);
    return { outs: outputs };
  },

  async delete(_id: string, props: Props) {
    await deleteTunnel(props as Partial<TunnelOutputs>);
  },
};
