import type * as pulumi from "@pulumi/pulumi";
import { NatgateError } from "../ssh/errors";
import { containsUnknown, UNKNOWN } from "./unknown";
import { NATGATE_VERSION } from "./version";
import { checkInputs, inputPart, inputsOf } from "./check";
import type { Kind, Outputs } from "./kind";
import { redact, secretsOf } from "./redact";

/** Runs a host operation; its error leaves with every secret of its inputs taken out of the message. */
async function guarded<T>(props: unknown, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (e) {
    if (e instanceof Error) e.message = redact(e.message, secretsOf(props));
    throw e;
  }
}

const PROVIDER_KEY = "__provider";
const VERSION_KEY = "natgateVersion";

/** Stable JSON (sorted keys, undefined members dropped), so equal values compare equal whatever their key order. */
export function stable(v: unknown): string {
  return JSON.stringify(v, (_k, x) =>
    x && typeof x === "object" && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : 1))) : x,
  );
}

/** Without undefined values: the engine's Struct conversion rejects them. */
export function plain<T extends object>(v: T): T {
  return JSON.parse(JSON.stringify(v));
}

function at(o: unknown, path: readonly string[]): unknown {
  let cur = o;
  for (const k of path) cur = cur !== null && typeof cur === "object" ? (cur as Outputs)[k] : undefined;
  return cur;
}

/** What the user gave: everything but the provider closure and the kind's outputs (so a misspelt field is still reported). */
function userPart(kind: Kind<unknown>, v: Outputs | undefined): Outputs {
  const out: Outputs = { ...(v ?? {}) };
  for (const k of [PROVIDER_KEY, VERSION_KEY, ...kind.outputKeys, ...kind.renderKeys]) delete out[k];
  for (const k of Object.keys(out)) if (out[k] === undefined) delete out[k];
  return out;
}

function unknownRender(kind: Kind<unknown>): Outputs {
  return Object.fromEntries(kind.renderKeys.map((k) => [k, UNKNOWN]));
}

function hostsOf(kind: Kind<unknown>, v: Outputs): string {
  return stable((kind.hostPaths ?? []).map((p) => [at(v, [...p, "host"]), at(v, [...p, "port"]) ?? 22]));
}

export function diffOf<I>(kind: Kind<I>, olds: Outputs, news: Outputs): pulumi.dynamic.DiffResult {
  const changed = Object.keys(kind.schema.shape).filter((k) => stable(olds[k]) !== stable(news[k]));
  // Same inputs can still render differently on this host (its backend, its keys), and a refresh
  // may have put the live lines in the old outputs: either is a change.
  const parsed = containsUnknown(news) ? undefined : checkInputs(kind, inputPart(kind, news)).inputs;
  const want = parsed && kind.expected ? kind.expected(parsed, olds) : news;
  for (const k of kind.renderKeys) if (stable(olds[k]) !== stable(want[k])) changed.push(k);
  if (kind.versioned && olds[VERSION_KEY] !== NATGATE_VERSION) changed.push(VERSION_KEY);
  const drift = Array.isArray(olds.drift) && olds.drift.length > 0;
  const replaces = kind.replacePaths.filter((p) => stable(at(olds, p)) !== stable(at(news, p))).map((p) => p.join("."));
  const deleteFirst =
    replaces.length > 0 && (kind.deleteBeforeReplace === "always" || (kind.deleteBeforeReplace === "same-host" && hostsOf(kind, olds) === hostsOf(kind, news)));
  return {
    changes: changed.length > 0 || drift || replaces.length > 0,
    ...(replaces.length ? { replaces } : {}),
    ...(deleteFirst ? { deleteBeforeReplace: true } : {}),
  };
}

/** The pulumi.dynamic.ResourceProvider of one kind. */
export function makeProvider<I>(kind: Kind<I>): pulumi.dynamic.ResourceProvider {
  const stamp = (outs: Outputs): Outputs => plain(kind.versioned ? { ...outs, [VERSION_KEY]: NATGATE_VERSION } : outs);
  return {
    async check(_olds, news) {
      const raw = userPart(kind, news);
      const r = checkInputs(kind, raw);
      if (r.failures.length) return { inputs: plain(raw), failures: r.failures };
      // What failed only on values not known yet is judged once they are known.
      if (!r.inputs) return { inputs: plain({ ...raw, ...unknownRender(kind) }) };
      const rendered = containsUnknown(r.inputs) ? unknownRender(kind) : kind.render(r.inputs);
      return { inputs: plain({ ...r.inputs, ...rendered }) };
    },

    async diff(_id, olds, news) {
      return diffOf(kind, olds ?? {}, news ?? {});
    },

    async create(inputs) {
      return guarded(inputs, async () => {
        const i = inputsOf(kind, inputs);
        return { id: kind.id(i), outs: stamp(await kind.apply(i, undefined)) };
      });
    },

    async update(_id, olds, news) {
      return guarded([olds, news], async () => {
        const i = inputsOf(kind, news);
        return { outs: stamp(await kind.apply(i, olds)) };
      });
    },

    async read(id, props) {
      if (!props || Object.keys(inputPart(kind, props)).length === 0) {
        throw new NatgateError(
          "config",
          `cannot read ${kind.kind} ${id}: the state has none of its inputs (natgate resources cannot be imported by id alone; declare them in the program instead)`,
        );
      }
      const live = await guarded(props, () => kind.read(inputsOf(kind, props), props));
      if (!live) return { id: "", props: {} }; // nothing of it is left: the resource no longer exists
      // A refresh writes nothing, so the release that wrote the state stays recorded (and the next
      // up still rewrites what an older one wrote).
      const { [VERSION_KEY]: _now, ...outs } = live;
      return { id, props: plain({ ...outs, ...(props[VERSION_KEY] !== undefined ? { [VERSION_KEY]: props[VERSION_KEY] } : {}) }) };
    },

    async delete(_id, props) {
      await guarded(props, () => kind.remove(inputsOf(kind, props), props));
    },
  };
}
