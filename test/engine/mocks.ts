// Runs a real Pulumi program under `pulumi.runtime.setMocks`, with every dynamic resource sent
// through the spawned dynamic-provider server (Check → Create), so the program's resources take
// effect for real, and records what the program registered for shape assertions.
import * as pulumi from "@pulumi/pulumi";
import { PROVIDER_KEY, ProviderServer, Props, UNKNOWN } from "./harness";

export interface RecordedResource {
  type: string;
  name: string;
  urn: string;
  custom: boolean;
  /** URN of the parent resource, if any. */
  parent?: string;
  /** URNs of every resource this one depends on (dependsOn and resources its inputs came from). */
  dependencies: string[];
  /** Per input: URNs of the resources that input came from. */
  propertyDependencies: Record<string, string[]>;
  /** Inputs as the program sent them, secrets unwrapped, without `__provider`. */
  inputs: Props;
  /** Top-level inputs the program marked secret. */
  secretInputs: string[];
  /** The serialized provider (dynamic resources only). */
  provider?: string;
  /** The id and outputs (without `__provider`) the resource got: from the provider for dynamic resources. */
  id?: string;
  outputs?: Props;
}

export interface EngineMocksOptions {
  /** Receives every dynamic resource. Without it, dynamic resources are only recorded. */
  server?: ProviderServer;
  /**
   * Handles every dynamic resource instead of `server`'s check → create (an engine that diffs
   * against its own state, a preview...). Gets the record and the inputs with `__provider`,
   * secrets unwrapped and unknowns as UNKNOWN; returns the id and outputs the program sees.
   */
  dynamic?: (record: RecordedResource, inputs: Props) => Promise<{ id: string | undefined; state: Props }>;
  /** Run as `pulumi preview` does (setMocks' preview flag): values not known yet stay unknown. */
  preview?: boolean;
  project?: string;
  stack?: string;
  /** Result for a non-dynamic resource (e.g. @pulumi/command's remote.Command); default: its inputs. */
  otherResource?: (args: pulumi.runtime.MockResourceArgs) => pulumi.runtime.MockResourceResult;
  /** Result for an invoke; default: its inputs. */
  call?: (args: pulumi.runtime.MockCallArgs) => pulumi.runtime.MockCallResult;
}

export interface ProgramRun {
  resources: RecordedResource[];
  /** What the program returned (e.g. its module exports) with every Output resolved. */
  exports: unknown;
  /** Look a resource up by name (and type, when names repeat); throws when absent. */
  get(name: string, type?: string): RecordedResource;
}

const SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d";
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

function isSecret(v: unknown): v is { value: unknown } {
  return typeof v === "object" && v !== null && (v as Record<string, unknown>)[SECRET_SIG_KEY] === SECRET_SIG;
}

/** The engine removes secret envelopes before it calls a provider; so do we. */
export function stripSecrets(value: unknown): unknown {
  if (isSecret(value)) return stripSecrets(value.value);
  if (Array.isArray(value)) return value.map(stripSecrets);
  if (value !== null && typeof value === "object" && !pulumi.asset.Asset.isInstance(value)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, stripSecrets(v)]));
  }
  return value;
}

/** The engine sends a value not known yet (preview) as the UNKNOWN string; so do we. */
function unknownsAsWire(value: unknown): unknown {
  if (pulumi.isUnknown(value)) return UNKNOWN;
  if (Array.isArray(value)) return value.map(unknownsAsWire);
  if (value !== null && typeof value === "object" && !pulumi.asset.Asset.isInstance(value) && !pulumi.asset.Archive.isInstance(value)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, unknownsAsWire(v)]));
  }
  return value;
}

function isDynamic(type: string): boolean {
  // pulumi.dynamic.Resource registers `pulumi-nodejs:dynamic[/<module>]:<type>`.
  return type.startsWith("pulumi-nodejs:dynamic");
}

// Same scheme as @pulumi/pulumi's MockMonitor, so recorded URNs match what outputs resolve to.
function urnFor(parent: string, type: string, name: string): string {
  if (parent) {
    const parentType = parent.split("::")[2].split("$").pop();
    type = `${parentType}$${type}`;
  }
  return `urn:pulumi:${pulumi.getStack()}::${pulumi.getProject()}::${type}::${name}`;
}

interface RequestMeta {
  parent: string;
  dependencies: string[];
  propertyDependencies: Record<string, string[]>;
}

interface RegisterRequest {
  getParent(): string;
  getDependenciesList(): string[];
  getPropertydependenciesMap(): { forEach(cb: (deps: { getUrnsList(): string[] }, key: string) => void): void };
}

type MonitorMethod = (req: RegisterRequest, cb: (...a: unknown[]) => void) => unknown;

/**
 * Mocks that forward dynamic resources to `server` and record everything. Call `attach()` right
 * after `pulumi.runtime.setMocks(mocks)`: it hooks the mock monitor to learn parents and
 * dependencies, which `newResource` is not told.
 */
export function engineMocks(opts: EngineMocksOptions = {}) {
  const resources: RecordedResource[] = [];
  const errors: Error[] = [];
  let configured: Promise<void> | undefined;
  // MockMonitor.registerResource calls mocks.newResource synchronously, so the request being
  // registered is handed over through this variable.
  let current: RequestMeta | undefined;

  async function forward(args: pulumi.runtime.MockResourceArgs, record: RecordedResource, plain: Props) {
    const server = opts.server!;
    configured ??= server.configure();
    await configured;
    const checked = await server.check(record.urn, {}, plain);
    if (checked.failures.length) {
      const list = checked.failures.map((f) => `${f.property}: ${f.reason}`).join("; ");
      throw new Error(`${args.type} "${args.name}" failed its check: ${list}`);
    }
    return server.create(record.urn, checked.inputs);
  }

  const mocks: pulumi.runtime.Mocks = {
    async newResource(args) {
      const meta = current ?? { parent: "", dependencies: [], propertyDependencies: {} };
      current = undefined;
      const raw = unknownsAsWire(args.inputs) as Props;
      const plain = stripSecrets(raw) as Props;
      const { [PROVIDER_KEY]: provider, ...inputs } = plain;
      const record: RecordedResource = {
        type: args.type,
        name: args.name,
        urn: urnFor(meta.parent, args.type, args.name),
        custom: args.custom ?? true,
        ...(meta.parent ? { parent: meta.parent } : {}),
        dependencies: meta.dependencies,
        propertyDependencies: meta.propertyDependencies,
        inputs,
        secretInputs: Object.keys(raw).filter((k) => isSecret(raw[k])),
        ...(typeof provider === "string" ? { provider } : {}),
      };
      resources.push(record);
      try {
        let result: pulumi.runtime.MockResourceResult;
        if (isDynamic(args.type) && opts.dynamic) {
          result = await opts.dynamic(record, plain);
        } else if (isDynamic(args.type) && opts.server) {
          const created = await forward(args, record, plain);
          result = { id: created.id, state: created.properties };
        } else if (!record.custom) {
          result = { id: undefined, state: {} };
        } else {
          result = opts.otherResource?.(args) ?? { id: `${args.name}-id`, state: raw };
        }
        record.id = result.id;
        const { [PROVIDER_KEY]: _, ...outputs } = stripSecrets(result.state) as Props;
        record.outputs = outputs;
        // The engine marks an output secret when the input of the same name was.
        const state: Props = { ...result.state };
        for (const k of record.secretInputs) {
          if (k in state && !isSecret(state[k])) state[k] = { [SECRET_SIG_KEY]: SECRET_SIG, value: state[k] };
        }
        return { id: result.id, state };
      } catch (e) {
        const err = e instanceof Error ? e : new Error(String(e));
        errors.push(new Error(`${args.type} "${args.name}": ${err.message}`));
        throw err;
      }
    },
    call: (args) => opts.call?.(args) ?? args.inputs,
  };

  function attach() {
    const monitor = pulumi.runtime.getMonitor() as unknown as Record<string, MonitorMethod> | undefined;
    if (!monitor || typeof monitor.registerResource !== "function") {
      throw new Error("engineMocks.attach() must run right after pulumi.runtime.setMocks(mocks)");
    }
    const register = monitor.registerResource;
    monitor.registerResource = function (req, cb) {
      const propertyDependencies: Record<string, string[]> = {};
      req.getPropertydependenciesMap().forEach((deps, key) => (propertyDependencies[key] = deps.getUrnsList()));
      current = { parent: req.getParent(), dependencies: req.getDependenciesList(), propertyDependencies };
      try {
        return register.call(this, req, cb);
      } finally {
        current = undefined;
      }
    };
  }

  return { mocks, resources, errors, attach };
}

/** Waits until every resource registration the program started has finished. */
export async function settleRegistrations(): Promise<void> {
  // Internal to @pulumi/pulumi (absent from its typings) but what `disconnect` waits on: every
  // resource takes an rpcKeepAlive token synchronously when constructed and releases it when its
  // registration, and so its outputs, have resolved.
  const wait = (pulumi.runtime as unknown as { waitForRPCs?: () => Promise<void> }).waitForRPCs;
  if (typeof wait !== "function") {
    throw new Error("this @pulumi/pulumi has no runtime.waitForRPCs; update test/engine/mocks.ts for its API");
  }
  await wait();
}

async function resolveOutputs(value: unknown, preview: boolean): Promise<unknown> {
  if (value === undefined) return undefined;
  if (preview) {
    // apply never runs on an unknown value; the Output's own promise reports it instead.
    const out = pulumi.output(value) as unknown as { promise(withUnknowns?: boolean): Promise<unknown> };
    return stripSecrets(unknownsAsWire(await out.promise(true)));
  }
  return new Promise((resolve) => pulumi.output(value).apply((v) => resolve(stripSecrets(v))));
}

/**
 * Runs `program` (e.g. `() => require("../../examples/x")`) under engine mocks and waits until
 * every resource has settled. Throws the resources' errors (provider exceptions, check failures).
 */
export async function runProgram(program: () => unknown, opts: EngineMocksOptions = {}): Promise<ProgramRun> {
  const engine = engineMocks(opts);
  await pulumi.runtime.setMocks(engine.mocks, opts.project, opts.stack, opts.preview ?? false);
  engine.attach();
  // A failed registration rejects promises nobody awaits, on purpose (the Pulumi language host
  // reports them). Collect them here instead of letting them crash the process or fail whichever
  // mocha test runs next; they are reported below, never dropped.
  const unhandled: unknown[] = [];
  const previous = process.listeners("unhandledRejection");
  process.removeAllListeners("unhandledRejection");
  const collect = (reason: unknown) => unhandled.push(reason);
  process.on("unhandledRejection", collect);
  let exported: unknown;
  try {
    exported = await program();
    await settleRegistrations();
    // Node reports unhandled rejections between macrotasks.
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.off("unhandledRejection", collect);
    for (const l of previous) process.on("unhandledRejection", l);
  }
  // The runtime raises one rejection per output read of a failed resource: the same message many times.
  const counts = new Map<string, number>();
  for (const r of unhandled) {
    const m = r instanceof Error ? r.message : String(r);
    counts.set(m, (counts.get(m) ?? 0) + 1);
  }
  const followOns = [...counts].map(([m, n]) => (n > 1 ? `${m} (×${n})` : m));
  if (engine.errors.length || followOns.length) {
    const lines = [
      "the program's resources failed:",
      ...engine.errors.map((e) => `  ${e.message}`),
      ...(followOns.length ? ["rejections the Pulumi runtime raised (follow-on failures included):"] : []),
      ...followOns.map((m) => `  ${m}`),
    ];
    throw new Error(lines.join("\n"));
  }
  return {
    resources: engine.resources,
    exports: await resolveOutputs(exported, opts.preview ?? false),
    get(name, type) {
      const found = engine.resources.filter((r) => r.name === name && (type === undefined || r.type === type));
      if (found.length !== 1) {
        throw new Error(`expected one resource named "${name}"${type ? ` of type ${type}` : ""}, found ${found.length}`);
      }
      return found[0];
    },
  };
}

/** Requires a program file afresh (a second `require` of a cached module would register nothing). */
export function loadProgram(file: string): unknown {
  const resolved = require.resolve(file);
  delete require.cache[resolved];
  return require(resolved);
}
