import type * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import type { Connection } from "../../ssh";
import { Host } from "./host";

import { containsUnknown, UNKNOWN } from "./unknown";
import { NATGATE_VERSION } from "./version";

export { containsUnknown, UNKNOWN };
const PROVIDER_KEY = "__provider";

export interface Failure {
  property: string;
  reason: string;
}

export interface BaseInputs {
  connection: Connection;
  name: string;
}

/** What a resource reports about the host besides its rendered lines. */
export interface Observation {
  /** Live state in the same notation as `rendered`. */
  rendered: string[];
  /** Differences between the live state and what the resource's inputs ask for; [] = in sync. */
  drift: string[];
  /** Live facts kept in outputs (previous sysctl values, iptables rules added where a drop was...). */
  facts: Record<string, unknown>;
  /** The lines the resource's render gives for the backend the host was found to use. */
  desired?: string[];
}

/**
 * One resource kind: a schema (pure), a render (pure), and three host operations. `converge`
 * must read first, write only when the live state differs, and return what it read back (the
 * provider refuses a result that still differs); `remove` must treat "not there" as success.
 */
export interface ResourceKind<I extends BaseInputs> {
  kind: string;
  /** The object schema, strict: unknown fields are errors. */
  schema: z.ZodObject<any>;
  /** Checks across fields, on parsed inputs. */
  crossCheck(i: I): Failure[];
  render(i: I): string[];
  /** The render for the backend a previous operation found (the `activeBackend` output); default render(i). */
  renderFor?(i: I, backend: unknown): string[];
  /** Fields (besides connection host/port and name) whose change replaces the resource. */
  identityFields: (keyof I & string)[];
  /** Whether a replacement on the same host must delete first (the new object would collide with the old). */
  deleteBeforeReplace: boolean;
  converge(host: Host, i: I, olds: Record<string, unknown> | undefined): Promise<Observation>;
  observe(host: Host, i: I, props: Record<string, unknown>): Promise<Observation>;
  remove(host: Host, i: I, props: Record<string, unknown>): Promise<void>;
}

function pathText(path: ReadonlyArray<PropertyKey>): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else out += (out === "" ? "" : ".") + String(seg);
  }
  return out;
}

/** Zod issues as Pulumi check failures: the property path and what is wrong with it. */
export function failuresOf(err: z.ZodError): Failure[] {
  const out: Failure[] = [];
  for (const issue of err.issues) {
    if (issue.code === "unrecognized_keys") {
      const inConnection = issue.path[0] === "connection";
      for (const key of issue.keys) {
        out.push({
          property: pathText([...issue.path, key]),
          reason: inConnection ? "unknown field (not in @pulumi/command's ConnectionArgs, nor natgate's sudo)" : "unknown field",
        });
      }
      continue;
    }
    out.push({ property: pathText(issue.path), reason: issue.message });
  }
  return out;
}

function inputFields(kind: ResourceKind<any>, props: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(kind.schema.shape)) if (props[k] !== undefined) out[k] = props[k];
  return out;
}

/** Parse inputs (from check's output or from state) or throw listing every problem. */
export function parseInputs<I extends BaseInputs>(kind: ResourceKind<I>, props: Record<string, unknown>): I {
  const r = kind.schema.safeParse(inputFields(kind, props));
  const failures = r.success ? kind.crossCheck(r.data as I) : failuresOf(r.error);
  if (!r.success || failures.length) {
    throw new Error(`invalid ${kind.kind} inputs:\n` + failures.map((f) => `  ${f.property}: ${f.reason}`).join("\n"));
  }
  return r.data as I;
}

export function resourceId(kind: string, i: BaseInputs): string {
  return `${i.connection.host}/${kind}/${i.name}`;
}

function stable(v: unknown): string {
  return JSON.stringify(v, (_k, x) =>
    x && typeof x === "object" && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : 1))) : x,
  );
}

function hostOf(v: unknown): string {
  const c = (v && typeof v === "object" ? (v as Record<string, unknown>).connection : undefined) as Record<string, unknown> | undefined;
  if (!c || typeof c !== "object") return "";
  return `${String(c.host)}:${String(c.port ?? 22)}`;
}

/**
 * The lines `news` render to on the backend the old outputs say the host uses: an `auto`
 * resource previews as nftables but may run as iptables, which is no change by itself.
 */
function renderedOf(kind: ResourceKind<any>, olds: Record<string, unknown>, news: Record<string, unknown>): unknown {
  if (!kind.renderFor || olds.activeBackend === undefined || containsUnknown(news)) return news.rendered;
  const r = kind.schema.safeParse(inputFields(kind, news));
  return r.success ? kind.renderFor(r.data, olds.activeBackend) : news.rendered;
}

export function diffInputs(kind: ResourceKind<any>, olds: Record<string, unknown>, news: Record<string, unknown>): pulumi.dynamic.DiffResult {
  const changed: string[] = [];
  for (const k of Object.keys(kind.schema.shape)) {
    if (stable(olds[k]) !== stable(news[k])) changed.push(k);
  }
  if (stable(olds.rendered) !== stable(renderedOf(kind, olds, news))) changed.push("rendered");
  // A state an older release wrote is brought up to date in place (counter rules, boot entries).
  if (olds.natgateVersion !== NATGATE_VERSION) changed.push("natgateVersion");
  const drift = Array.isArray(olds.drift) && olds.drift.length > 0;
  const replaces: string[] = [];
  if (hostOf(olds) !== hostOf(news)) replaces.push("connection");
  for (const k of ["name", ...kind.identityFields]) {
    if (changed.includes(k)) replaces.push(k);
  }
  const sameHost = hostOf(olds) === hostOf(news);
  return {
    changes: changed.length > 0 || drift,
    ...(replaces.length ? { replaces } : {}),
    ...(replaces.length && sameHost && kind.deleteBeforeReplace ? { deleteBeforeReplace: true } : {}),
  };
}

/** Output fields a resource class may declare as inputs (as undefined, to get them back). */
const OUTPUT_KEYS = ["rendered", "drift", "hostKeyFingerprint", "sysctlPrevious", "forwardAccept", "boot", "bootNote", "activeBackend", "counters", "natgateVersion"];

function withoutProvider(v: Record<string, unknown>): Record<string, unknown> {
  const { [PROVIDER_KEY]: _p, ...rest } = v;
  return rest;
}

function userInputs(v: Record<string, unknown>): Record<string, unknown> {
  const rest = withoutProvider(v);
  for (const k of OUTPUT_KEYS) delete rest[k];
  return rest;
}

/** Converge, then refuse a host that does not read back as applied (something else undid it, or a bug). */
async function convergeChecked<I extends BaseInputs>(
  kind: ResourceKind<I>,
  host: Host,
  i: I,
  olds: Record<string, unknown> | undefined,
): Promise<Observation> {
  const obs = await kind.converge(host, i, olds);
  if (obs.drift.length) {
    throw new Error(`${kind.kind} ${i.name} on ${host.label} does not read back as applied:\n  ${obs.drift.join("\n  ")}`);
  }
  return obs;
}

/** The pulumi.dynamic.ResourceProvider of one resource kind. */
export function makeProvider<I extends BaseInputs>(kind: ResourceKind<I>): pulumi.dynamic.ResourceProvider {
  const outputsOf = (i: I, host: Host, obs: Observation, rendered: string[]): Record<string, unknown> =>
    plain({
      ...(i as Record<string, unknown>),
      ...obs.facts,
      rendered,
      drift: obs.drift,
      hostKeyFingerprint: host.fingerprint,
      natgateVersion: NATGATE_VERSION,
    });
  const knownFingerprint = (props: Record<string, unknown> | undefined): string | undefined =>
    typeof props?.hostKeyFingerprint === "string" ? props.hostKeyFingerprint : undefined;

  return {
    async check(_olds, news) {
      const raw = userInputs(news ?? {});
      const r = kind.schema.safeParse(raw);
      if (!r.success) {
        // A field that is not known yet cannot be judged; report only what is wrong for sure.
        const failures = failuresOf(r.error).filter((f) => !containsUnknown(lookup(raw, f.property)));
        return { inputs: plain({ ...raw, rendered: UNKNOWN }), failures };
      }
      const i = r.data as I;
      if (containsUnknown(i)) return { inputs: plain({ ...i, rendered: UNKNOWN }) };
      const failures = kind.crossCheck(i);
      if (failures.length) return { inputs: plain(raw), failures };
      return { inputs: plain({ ...i, rendered: kind.render(i) }) };
    },

    async diff(_id, olds, news) {
      return diffInputs(kind, withoutProvider(olds), withoutProvider(news));
    },

    async create(inputs) {
      const i = parseInputs(kind, inputs);
      const host = new Host(i.connection, undefined);
      const obs = await convergeChecked(kind, host, i, undefined);
      return { id: resourceId(kind.kind, i), outs: outputsOf(i, host, obs, obs.desired ?? kind.render(i)) };
    },

    async update(_id, olds, news) {
      const i = parseInputs(kind, news);
      const host = new Host(i.connection, hostOf(olds) === hostOf(news) ? knownFingerprint(olds) : undefined);
      const obs = await convergeChecked(kind, host, i, olds);
      return { outs: outputsOf(i, host, obs, obs.desired ?? kind.render(i)) };
    },

    async read(id, props) {
      if (!props || props.connection === undefined) {
        throw new Error(
          `cannot read ${kind.kind} ${id}: the state has no SSH connection (natgate resources cannot be imported by id alone; declare them in the program instead)`,
        );
      }
      const i = parseInputs(kind, props);
      const host = new Host(i.connection, knownFingerprint(props));
      const obs = await kind.observe(host, i, props);
      // A refresh reads the host; it writes nothing, so the release that wrote it stays recorded
      // (and the next up still rewrites what an older one wrote).
      const { natgateVersion: _current, ...outs } = outputsOf(i, host, obs, obs.rendered);
      return { id, props: { ...withoutProvider(props), ...outs } };
    },

    async delete(_id, props) {
      const i = parseInputs(kind, props);
      const host = new Host(i.connection, knownFingerprint(props));
      await kind.remove(host, i, props);
    },
  };
}

/** Without undefined values: the engine's Struct conversion rejects them. */
function plain(v: object): Record<string, unknown> {
  return JSON.parse(JSON.stringify(v));
}

function lookup(obj: Record<string, unknown>, path: string): unknown {
  let cur: unknown = obj;
  for (const seg of path.split(/\.|\[(\d+)\]/).filter((s) => s !== undefined && s !== "")) {
    if (!cur || typeof cur !== "object") return undefined;
    cur = (cur as Record<string, unknown>)[seg];
  }
  return cur;
}

/** Line-level differences, in order-insensitive multiset form plus an order check. */
export function lineDrift(what: string, desired: string[], live: string[]): string[] {
  const out: string[] = [];
  const remaining = [...live];
  for (const d of desired) {
    const k = remaining.indexOf(d);
    if (k >= 0) remaining.splice(k, 1);
    else out.push(`missing ${what}: ${d}`);
  }
  for (const l of remaining) out.push(`unexpected ${what}: ${l}`);
  if (out.length === 0 && desired.join("\n") !== live.join("\n")) out.push(`${what} out of order`);
  return out;
}
