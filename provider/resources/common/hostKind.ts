import type { z } from "zod";
import type { Connection } from "../../ssh";
import { NatgateError } from "../../ssh/errors";
import type { Failure } from "../../engine/failures";
import type { Kind, Outputs } from "../../engine/kind";
import { makeProvider } from "../../engine/provider";
import { Host, keptProxyFingerprint } from "./host";
import { SUSPECTS_SH, suspectsOf } from "../../backends/suspects";

export { containsUnknown, UNKNOWN } from "../../engine/unknown";
export type { Failure };

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
 * A kind that lives on one host: a schema (pure), a render (pure), and three host operations.
 * `converge` must read first, write only when the live state differs, and return what it read
 * back (it is refused if that still differs); `remove` must treat "not there" as success.
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

/** Output fields of a one-host kind (a resource class declares them as inputs, as undefined, to get them back). */
const OUTPUT_KEYS = ["drift", "hostKeyFingerprint", "proxyHostKeyFingerprint", "sysctlPrevious", "forwardAccept", "boot", "bootNote", "activeBackend", "counters", "appliedAt"];

const knownFingerprint = (props: Outputs | undefined): string | undefined =>
  typeof props?.hostKeyFingerprint === "string" ? props.hostKeyFingerprint : undefined;

const hostOf = (v: Outputs | undefined): string => {
  const c = v?.connection as Outputs | undefined;
  return c ? `${String(c.host)}:${String(c.port ?? 22)}` : "";
};

/**
 * The host, expecting the keys `props` (the state: olds of an update, props of a read or delete)
 * kept: its own while its host:port is the same, its jump host's while the jump host's is.
 */
export function hostFor(connection: Connection, props: Outputs | undefined): Host {
  const same = hostOf(props) === hostOf({ connection });
  return new Host(connection, same ? knownFingerprint(props) : undefined, keptProxyFingerprint(props?.connection, connection, props?.proxyHostKeyFingerprint));
}

/** The fingerprint outputs: the jump host's only where there is one, so a stack without a proxy keeps its outputs as they were. */
const fingerprintOutputs = (host: Host): Outputs => ({
  hostKeyFingerprint: host.fingerprint,
  ...(host.connection.proxy && host.proxyFingerprint ? { proxyHostKeyFingerprint: host.proxyFingerprint } : {}),
});

/** A one-host kind as the engine's Kind: its host is its connection; its state, what it read back. */
export function hostKind<I extends BaseInputs>(k: ResourceKind<I>): Kind<I> {
  const outputsOf = (i: I, host: Host, obs: Observation, rendered: string[]): Outputs => ({
    ...(i as Outputs),
    ...obs.facts,
    rendered,
    drift: obs.drift,
    ...fingerprintOutputs(host),
  });
  return {
    kind: k.kind,
    schema: k.schema,
    crossCheck: k.crossCheck,
    outputKeys: OUTPUT_KEYS,
    renderKeys: ["rendered"],
    render: (i) => ({ rendered: k.render(i) }),
    // An `auto` resource previews as nftables but may run as iptables, which is no change by itself.
    expected: (i, olds) => ({ rendered: k.renderFor && olds.activeBackend !== undefined ? k.renderFor(i, olds.activeBackend) : k.render(i) }),
    replacePaths: [["connection", "host"], ["connection", "port"], ["name"], ...k.identityFields.map((f) => [f])],
    deleteBeforeReplace: k.deleteBeforeReplace ? "same-host" : "never",
    hostPaths: [["connection"]],
    versioned: true,
    id: (i) => `${i.connection.host}/${k.kind}/${i.name}`,
    async apply(i, olds) {
      const host = hostFor(i.connection, olds);
      const obs = await k.converge(host, i, olds);
      if (obs.drift.length) {
        throw new NatgateError("remote", `${k.kind} ${i.name} on ${host.label} does not read back as applied:\n  ${obs.drift.join("\n  ")}`);
      }
      // When natgate last made the host match (the laptop's clock): a later refresh that finds
      // drift names what ran on the host since.
      return { ...outputsOf(i, host, obs, obs.desired ?? k.render(i)), appliedAt: new Date().toISOString() };
    },
    async read(i, props) {
      const host = hostFor(i.connection, props);
      const obs = await k.observe(host, i, props);
      if (obs.drift.length) obs.drift = [...obs.drift, ...(await byWhat(host, props, obs.drift))];
      const { __provider: _p, ...before } = props;
      return { ...before, ...outputsOf(i, host, obs, obs.rendered) };
    },
    async remove(i, props) {
      await k.remove(hostFor(i.connection, props), i, props);
    },
  };
}

/** "probably by: ..." for drift: what ran on the host after natgate last applied the resource, where it leaves a trace. */
async function byWhat(host: Host, props: Outputs, drift: string[]): Promise<string[]> {
  const at = typeof props.appliedAt === "string" ? Date.parse(props.appliedAt) : NaN;
  const out = await host.run("reading what ran on the host", SUSPECTS_SH, []).catch(() => undefined);
  const section = out?.stdout.split("\n").filter((l) => l.trim() && l !== "@@suspects") ?? [];
  const found = suspectsOf(section, Number.isFinite(at) ? (Date.now() - at) / 1000 : undefined, drift);
  return found.length ? [`probably by: ${found.join("; ")}`] : [];
}

/** The pulumi.dynamic.ResourceProvider of a one-host kind. */
export function hostProvider<I extends BaseInputs>(k: ResourceKind<I>) {
  return makeProvider(hostKind(k));
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

/**
 * A resource's inputs as its state (a previous run's outputs) holds them, checked by its schema
 * again; undefined when there is no state or it no longer parses.
 */
export function inputsFromState<S extends z.ZodObject>(schema: S, olds: Record<string, unknown> | undefined): z.output<S> | undefined {
  if (!olds) return undefined;
  const r = schema.safeParse(Object.fromEntries(Object.keys(schema.shape).filter((k) => olds[k] !== undefined).map((k) => [k, olds[k]])));
  return r.success ? r.data : undefined;
}
