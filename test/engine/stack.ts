// A small engine over the harness: keeps a stack's state (resources by URN) and drives a Pulumi
// program's lifecycle the way `pulumi preview/up/refresh/destroy` do, through the real
// dynamic-provider server. What `pulumi preview --diff` would print is the diff of the checked
// inputs, which each step reports property by property.
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { PROVIDER_KEY, ProviderServer, Props, startProviderServer } from "./harness";
import { RecordedResource, runProgram } from "./mocks";


/** Outputs that follow traffic, not configuration (DnatRule counters). */
export const TRAFFIC_OUTPUTS = ["counters"];
export type Op = "create" | "update" | "replace" | "same" | "delete";

export interface StateResource {
  urn: string;
  type: string;
  name: string;
  custom: boolean;
  parent?: string;
  id?: string;
  /** Checked inputs (with `__provider` for dynamic resources), as the engine keeps them. */
  inputs: Props;
  /** Outputs (with `__provider`). */
  outputs: Props;
  dependencies: string[];
  /** Top-level inputs the program marked secret. */
  secretInputs: string[];
  /** The serialized provider (dynamic resources; also inside inputs and outputs as `__provider`). */
  provider?: string;
}

export interface PropertyChange {
  property: string;
  old?: unknown;
  new?: unknown;
  secret: boolean;
}

export interface Step {
  urn: string;
  type: string;
  name: string;
  /** The natgate resource kind (Tunnel, DnatRule...) when the provider text names one. */
  kind?: string;
  op: Op;
  /** Checked-input properties that differ between the state and the program (all of them for create/delete). */
  changes: PropertyChange[];
  /** Properties the provider said force a replacement. */
  replaces: string[];
  deleteBeforeReplace: boolean;
  durationMs: number;
}

export interface RunResult {
  steps: Step[];
  /** The program's exports, resolved. */
  exports: unknown;
  durationMs: number;
}

export interface RefreshStep {
  urn: string;
  name: string;
  kind?: string;
  /** `same`: outputs unchanged; `update`: the live state differs from the last known outputs; `delete`: gone from the host. */
  op: "same" | "update" | "delete";
  /** Output properties that changed. */
  changes: PropertyChange[];
  durationMs: number;
}

export interface StepEvent {
  phase: "start" | "done" | "failed";
  /** op `read` is a refresh's Read. */
  step: Pick<Step, "urn" | "name" | "kind"> & { op: Op | "read" };
  durationMs?: number;
  error?: string;
}

export interface StackOptions {
  /** Pulumi project name: scopes config keys (`<project>:<key>`) and URNs. */
  project: string;
  stack?: string;
  /** Config as `pulumi config` holds it: full keys, e.g. `natgate-seed:vpsHost`. */
  config?: Record<string, string>;
  /** Config keys that are secrets. */
  secretKeys?: string[];
  /** Keep the state in this JSON file too (read when it exists). */
  stateFile?: string;
  /** The dynamic-provider server; default: one started with the repository as working directory. */
  server?: ProviderServer;
  /** Progress of every provider operation. */
  onStep?: (e: StepEvent) => void;
}

const REPO_ROOT = path.resolve(__dirname, "..", "..");

/** Stable JSON (sorted keys), so equal values compare equal whatever their key order. */
function stable(v: unknown): string {
  return JSON.stringify(v ?? null, (_k, x) =>
    x && typeof x === "object" && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : 1))) : x,
  );
}

function withoutProvider(p: Props): Props {
  const { [PROVIDER_KEY]: _, ...rest } = p;
  return rest;
}

/** What differs between two property bags, top-level key by key, `__provider` left out. */
export function propertyChanges(olds: Props, news: Props, secret: string[] = []): PropertyChange[] {
  const o = withoutProvider(olds);
  const n = withoutProvider(news);
  const keys = [...new Set([...Object.keys(o), ...Object.keys(n)])];
  return keys
    .filter((k) => stable(o[k]) !== stable(n[k]))
    .map((k) => ({
      property: k,
      ...(k in o ? { old: o[k] } : {}),
      ...(k in n ? { new: n[k] } : {}),
      secret: secret.includes(k),
    }));
}

/** The natgate kind a serialized provider was made for (`providerFor("Tunnel")` captures `kind`). */
export function kindOf(providerText: unknown): string | undefined {
  if (typeof providerText !== "string") return undefined;
  return /\bkind\s*[:=]\s*"(\w+)"/.exec(providerText)?.[1];
}

/** Line-level view of a `rendered*` change: what a user sees in `pulumi preview --diff`. */
export function lineDiff(oldLines: unknown, newLines: unknown): string[] {
  const olds = Array.isArray(oldLines) ? oldLines.map(String) : [];
  const news = Array.isArray(newLines) ? newLines.map(String) : [];
  const removed = olds.filter((l) => !news.includes(l)).map((l) => `- ${l}`);
  const added = news.filter((l) => !olds.includes(l)).map((l) => `+ ${l}`);
  return [...removed, ...added];
}

/**
 * Deletion order: every resource before the resources it depends on (and children before their
 * parent), the reverse of the order the engine creates them in.
 */
export function deletionOrder(resources: StateResource[]): StateResource[] {
  const byUrn = new Map(resources.map((r) => [r.urn, r]));
  const created: StateResource[] = [];
  const seen = new Set<string>();
  const visit = (r: StateResource) => {
    if (seen.has(r.urn)) return;
    seen.add(r.urn);
    for (const d of [...r.dependencies, ...(r.parent ? [r.parent] : [])]) {
      const dep = byUrn.get(d);
      if (dep) visit(dep);
    }
    created.push(r);
  };
  resources.forEach(visit);
  return created.reverse();
}

/**
 * deletionOrder cut into the engine's antichains (ScheduleDeletes in Pulumi's step generator):
 * each wave holds the resources no remaining one depends on (or has as parent), deleted in
 * parallel; the next wave starts when the last one has finished.
 */
export function deletionWaves(resources: StateResource[]): StateResource[][] {
  const left = deletionOrder(resources);
  const waves: StateResource[][] = [];
  while (left.length) {
    const needed = new Set(left.flatMap((r) => [...r.dependencies, ...(r.parent ? [r.parent] : [])]));
    const wave = left.filter((r) => !needed.has(r.urn));
    waves.push(wave);
    for (const r of wave) left.splice(left.indexOf(r), 1);
  }
  return waves;
}

export class StepError extends Error {
  constructor(readonly step: Pick<Step, "urn" | "name" | "op">, message: string) {
    super(message);
    this.name = "StepError";
  }
}

/** A stack: state plus the operations of the Pulumi CLI. */
export class Stack {
  readonly project: string;
  readonly stackName: string;
  config: Record<string, string>;
  private readonly secretKeys: string[];
  private readonly stateFile?: string;
  private readonly onStep?: (e: StepEvent) => void;
  private server?: ProviderServer;
  private ownsServer = false;
  private configured?: Promise<void>;
  private resources = new Map<string, StateResource>();

  constructor(opts: StackOptions) {
    this.project = opts.project;
    this.stackName = opts.stack ?? "dev";
    this.config = { ...(opts.config ?? {}) };
    this.secretKeys = opts.secretKeys ?? [];
    this.stateFile = opts.stateFile;
    this.onStep = opts.onStep;
    this.server = opts.server;
    if (this.stateFile && fs.existsSync(this.stateFile)) {
      const saved = JSON.parse(fs.readFileSync(this.stateFile, "utf8")) as { resources: StateResource[] };
      for (const r of saved.resources) this.resources.set(r.urn, r);
    }
  }

  /** Resources in state, in the order they were created. */
  get state(): StateResource[] {
    return [...this.resources.values()];
  }

  /** The one resource in state with this name; throws when absent. */
  get(name: string): StateResource {
    const found = this.state.filter((r) => r.name === name);
    if (found.length !== 1) throw new Error(`expected one resource named "${name}" in the stack, found ${found.length}`);
    return found[0];
  }

  setConfig(key: string, value: string): void {
    this.config[key.includes(":") ? key : `${this.project}:${key}`] = value;
  }

  async close(): Promise<void> {
    if (this.ownsServer) await this.server?.close();
    this.server = undefined;
  }

  /** `pulumi preview`: Check (and Diff against the state) every resource; nothing is applied. */
  async preview(program: () => unknown): Promise<RunResult> {
    return this.run(program, true);
  }

  /** `pulumi up`: create, update, replace what the program declares; delete what it no longer does. */
  async up(program: () => unknown): Promise<RunResult> {
    return this.run(program, false);
  }

  /** `pulumi refresh`: Read every resource and take the live state into the stack's outputs. */
  async refresh(): Promise<RefreshStep[]> {
    const server = await this.provider();
    const steps: RefreshStep[] = [];
    const errors: string[] = [];
    await Promise.all(
      this.state.filter((r) => r.custom && r.id !== undefined && isDynamic(r)).map(async (r) => {
        const info = { urn: r.urn, name: r.name, kind: kindOf(r.inputs[PROVIDER_KEY]), op: "read" as const };
        const started = Date.now();
        this.onStep?.({ phase: "start", step: info });
        try {
          const read = await server.read(r.id!, r.urn, r.outputs, r.inputs);
          const durationMs = Date.now() - started;
          if (read.id === "") {
            this.resources.delete(r.urn);
            steps.push({ urn: r.urn, name: r.name, kind: info.kind, op: "delete", changes: propertyChanges(r.outputs, {}), durationMs });
          } else {
            const changes = propertyChanges(r.outputs, read.properties, r.secretInputs);
            r.id = read.id;
            r.outputs = read.properties;
            if (read.inputs) r.inputs = read.inputs;
            // Counters move with traffic: reported among the changes, but a refresh that changed
            // only them found the resource as it was (pulumi would list it as an output update).
            const stateChanges = changes.filter((c) => !TRAFFIC_OUTPUTS.includes(c.property));
            steps.push({ urn: r.urn, name: r.name, kind: info.kind, op: stateChanges.length ? "update" : "same", changes, durationMs });
          }
          this.onStep?.({ phase: "done", step: info, durationMs });
        } catch (e) {
          const message = (e as Error).message;
          this.onStep?.({ phase: "failed", step: info, error: message });
          errors.push(`${r.name}: ${message}`);
        }
      }),
    );
    this.save();
    if (errors.length) throw new Error(`refresh failed:\n  ${errors.join("\n  ")}`);
    const order = this.state.map((r) => r.urn);
    return steps.sort((a, b) => order.indexOf(a.urn) - order.indexOf(b.urn));
  }

  /** `pulumi destroy`: Delete every resource, dependents first, the rest in parallel as the engine does. */
  async destroy(): Promise<Step[]> {
    const steps: Step[] = [];
    return this.deleteAll(this.state);
  }

  private async provider(): Promise<ProviderServer> {
    if (!this.server) {
      this.server = await startProviderServer({ cwd: REPO_ROOT, env: { PULUMI_NODEJS_PROJECT: this.project } });
      this.ownsServer = true;
    }
    // The engine configures a provider once, with the stack's config.
    this.configured ??= this.server.configure(this.config);
    await this.configured;
    return this.server;
  }

  private save(): void {
    if (!this.stateFile) return;
    fs.mkdirSync(path.dirname(this.stateFile), { recursive: true });
    fs.writeFileSync(this.stateFile, JSON.stringify({ resources: this.state }, null, 2), { mode: 0o600 });
  }

  private async timed<T>(info: StepEvent["step"], work: () => Promise<T>): Promise<{ value: T; durationMs: number }> {
    const started = Date.now();
    this.onStep?.({ phase: "start", step: info });
    try {
      const value = await work();
      const durationMs = Date.now() - started;
      this.onStep?.({ phase: "done", step: info, durationMs });
      return { value, durationMs };
    } catch (e) {
      this.onStep?.({ phase: "failed", step: info, error: (e as Error).message });
      throw e;
    }
  }

  /** Delete `resources` wave by wave (deletionWaves); a wave that failed anywhere stops there, once all of it has settled. */
  private async deleteAll(resources: StateResource[]): Promise<Step[]> {
    const steps: Step[] = [];
    for (const wave of deletionWaves(resources)) {
      const done = await Promise.allSettled(wave.map((r) => this.deleteResource(r)));
      for (const d of done) if (d.status === "fulfilled") steps.push(d.value);
      const failed = done.find((d): d is PromiseRejectedResult => d.status === "rejected");
      if (failed) throw failed.reason;
    }
    return steps;
  }

  private async deleteResource(r: StateResource): Promise<Step> {
    const kind = kindOf(r.inputs[PROVIDER_KEY]);
    const info = { urn: r.urn, name: r.name, kind, op: "delete" as Op };
    let durationMs = 0;
    if (r.custom && r.id !== undefined && isDynamic(r)) {
      const server = await this.provider();
      ({ durationMs } = await this.timed(info, () => server.delete(r.id!, r.urn, r.outputs)));
    }
    if (this.resources.get(r.urn) === r) this.resources.delete(r.urn);
    this.save();
    return { ...info, type: r.type, changes: propertyChanges(r.inputs, {}, r.secretInputs), replaces: [], deleteBeforeReplace: false, durationMs };
  }

  private async run(program: () => unknown, preview: boolean): Promise<RunResult> {
    const started = Date.now();
    const server = await this.provider();
    pulumi.runtime.setAllConfig(this.config, this.secretKeys);
    const steps: Step[] = [];
    const registered = new Set<string>();
    // Replacements that create the new resource first delete the old one at the end, as the engine does.
    const pendingDeletes: StateResource[] = [];

    const dynamic = async (rec: RecordedResource, news: Props): Promise<{ id: string | undefined; state: Props }> => {
      registered.add(rec.urn);
      const old = this.resources.get(rec.urn);
      const kind = kindOf(news[PROVIDER_KEY]);
      const base = { urn: rec.urn, type: rec.type, name: rec.name, kind };
      const checked = await server.check(rec.urn, old?.inputs ?? {}, news);
      if (checked.failures.length) {
        const list = checked.failures.map((f) => `${f.property}: ${f.reason}`).join("; ");
        throw new StepError({ ...base, op: old ? "update" : "create" }, `failed its check: ${list}`);
      }
      const inputs = checked.inputs;
      const entry = (id: string | undefined, outputs: Props): StateResource => ({
        urn: rec.urn,
        type: rec.type,
        name: rec.name,
        custom: true,
        ...(rec.parent ? { parent: rec.parent } : {}),
        id,
        inputs,
        outputs,
        dependencies: rec.dependencies,
        secretInputs: rec.secretInputs,
        ...(typeof news[PROVIDER_KEY] === "string" ? { provider: news[PROVIDER_KEY] as string } : {}),
      });
      const record = (op: Op, extra: Partial<Step>, durationMs: number) =>
        steps.push({
          ...base,
          op,
          changes: propertyChanges(old?.inputs ?? {}, inputs, rec.secretInputs),
          replaces: [],
          deleteBeforeReplace: false,
          durationMs,
          ...extra,
        });

      if (!old || old.id === undefined) {
        if (preview) {
          record("create", {}, 0);
          return { id: undefined, state: inputs };
        }
        const { value, durationMs } = await this.timed({ ...base, op: "create" }, () => server.create(rec.urn, inputs));
        this.resources.set(rec.urn, entry(value.id, value.properties));
        this.save();
        record("create", {}, durationMs);
        return { id: value.id, state: value.properties };
      }

      const diff = await server.diff(old.id, rec.urn, old.outputs, inputs);
      // DIFF_UNKNOWN: the engine falls back to comparing old and new inputs.
      const changed = diff.changes === "some" || (diff.changes === "unknown" && stable(old.inputs) !== stable(inputs));
      if (!changed) {
        if (!preview) {
          this.resources.set(rec.urn, { ...entry(old.id, old.outputs) });
          this.save();
        }
        record("same", {}, 0);
        return { id: old.id, state: old.outputs };
      }
      if (diff.replaces.length) {
        const extra = { replaces: diff.replaces, deleteBeforeReplace: diff.deleteBeforeReplace };
        if (preview) {
          record("replace", extra, 0);
          return { id: undefined, state: inputs };
        }
        const { value, durationMs } = await this.timed({ ...base, op: "replace" }, async () => {
          if (diff.deleteBeforeReplace) {
            await server.delete(old.id!, rec.urn, old.outputs);
            this.resources.delete(rec.urn);
            this.save();
          } else {
            pendingDeletes.push(old);
          }
          return server.create(rec.urn, inputs);
        });
        this.resources.set(rec.urn, entry(value.id, value.properties));
        this.save();
        record("replace", extra, durationMs);
        return { id: value.id, state: value.properties };
      }
      if (preview) {
        record("update", {}, 0);
        return { id: old.id, state: { ...old.outputs, ...inputs } };
      }
      const { value, durationMs } = await this.timed({ ...base, op: "update" }, () => server.update(old.id!, rec.urn, old.outputs, inputs));
      this.resources.set(rec.urn, entry(old.id, value.properties));
      this.save();
      record("update", {}, durationMs);
      return { id: old.id, state: value.properties };
    };

    let ran;
    try {
      ran = await runProgram(program, {
      project: this.project,
      stack: this.stackName,
      preview,
      dynamic: (rec, news) =>
        dynamic(rec, news).catch((e: Error) => {
          throw e instanceof StepError ? e : new StepError({ urn: rec.urn, name: rec.name, op: "update" }, e.message);
        }),
      });
    } catch (e) {
      // What was done before the failure stays in the state (and is reported), as with the CLI.
      this.save();
      throw Object.assign(e as Error, { steps });
    }

    // Components and other non-dynamic resources are only recorded.
    for (const rec of ran.resources) {
      if (registered.has(rec.urn)) continue;
      registered.add(rec.urn);
      const old = this.resources.get(rec.urn);
      const inputs = rec.inputs;
      steps.push({
        urn: rec.urn,
        type: rec.type,
        name: rec.name,
        op: old ? "same" : "create",
        changes: old ? [] : propertyChanges({}, inputs, rec.secretInputs),
        replaces: [],
        deleteBeforeReplace: false,
        durationMs: 0,
      });
      if (!preview) {
        this.resources.set(rec.urn, {
          urn: rec.urn,
          type: rec.type,
          name: rec.name,
          custom: rec.custom,
          ...(rec.parent ? { parent: rec.parent } : {}),
          id: rec.id,
          inputs,
          outputs: rec.outputs ?? {},
          dependencies: rec.dependencies,
          secretInputs: rec.secretInputs,
        });
      }
    }

    const gone = this.state.filter((r) => !registered.has(r.urn));
    if (preview) {
      for (const r of deletionOrder(gone)) {
        steps.push({
          urn: r.urn,
          type: r.type,
          name: r.name,
          kind: kindOf(r.inputs[PROVIDER_KEY]),
          op: "delete",
          changes: propertyChanges(r.inputs, {}, r.secretInputs),
          replaces: [],
          deleteBeforeReplace: false,
          durationMs: 0,
        });
      }
    } else {
      steps.push(...(await this.deleteAll(gone)));
      for (const old of pendingDeletes) {
        const server = await this.provider();
        await this.timed({ urn: old.urn, name: old.name, kind: kindOf(old.inputs[PROVIDER_KEY]), op: "delete" }, () =>
          server.delete(old.id!, old.urn, old.outputs),
        );
      }
      this.save();
    }
    return { steps, exports: ran.exports, durationMs: Date.now() - started };
  }
}

function isDynamic(r: StateResource): boolean {
  return r.type.startsWith("pulumi-nodejs:dynamic");
}
