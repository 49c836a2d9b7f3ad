// Drives the dynamic-provider server shipped in @pulumi/pulumi over gRPC, the way the Pulumi
// engine does, so tests exercise the serialized provider exactly as `pulumi up` would run it.
import { ChildProcess, spawn } from "child_process";
import * as path from "path";
import * as grpc from "@grpc/grpc-js";
import * as pulumi from "@pulumi/pulumi";
import { Struct } from "google-protobuf/google/protobuf/struct_pb";
import { ResourceProviderClient } from "@pulumi/pulumi/proto/provider_grpc_pb";
import * as proto from "@pulumi/pulumi/proto/provider_pb";

/** The engine's marker for a value not known yet (preview). */
export const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";
/** The input under which `pulumi.dynamic.Resource` stores the serialized provider. */
export const PROVIDER_KEY = "__provider";
/** The type token of a `pulumi.dynamic.Resource` declared without a module or type name. */
export const DYNAMIC_TYPE = "pulumi-nodejs:dynamic:Resource";

export const DYNAMIC_PROVIDER_SERVER = path.join(
  path.dirname(require.resolve("@pulumi/pulumi/package.json")),
  "cmd",
  "dynamic-provider",
  "index.js",
);

export type Props = Record<string, unknown>;

export interface CheckFailure {
  property: string;
  reason: string;
}
export interface CheckResponse {
  inputs: Props;
  failures: CheckFailure[];
}
export interface DiffResponse {
  changes: "unknown" | "none" | "some";
  replaces: string[];
  stables: string[];
  deleteBeforeReplace: boolean;
}
export interface CreateResponse {
  id: string;
  properties: Props;
}
export interface ReadResponse {
  id: string;
  properties: Props;
  /** Set only when the provider's read returned `inputs`. */
  inputs?: Props;
}
export interface UpdateResponse {
  properties: Props;
}

/** An error the provider threw (gRPC status UNKNOWN), or a transport failure. */
export class ProviderCallError extends Error {
  constructor(
    readonly method: string,
    readonly grpcCode: number,
    message: string,
  ) {
    super(message);
    this.name = "ProviderCallError";
  }
}

export interface ProviderServer {
  readonly port: number;
  readonly pid: number;
  /** Everything the server wrote to stderr so far (it logs provider exceptions there). */
  stderr(): string;
  /** Everything written to stdout so far: the port line, then whatever the provider logs. */
  stdout(): string;
  configure(config?: Record<string, string>): Promise<void>;
  check(urn: string, olds: Props, news: Props): Promise<CheckResponse>;
  diff(id: string, urn: string, olds: Props, news: Props): Promise<DiffResponse>;
  create(urn: string, props: Props): Promise<CreateResponse>;
  read(id: string, urn: string, props: Props, inputs?: Props): Promise<ReadResponse>;
  update(id: string, urn: string, olds: Props, news: Props): Promise<UpdateResponse>;
  delete(id: string, urn: string, props: Props): Promise<void>;
  close(): Promise<void>;
}

export interface StartOptions {
  /** The server's working directory: where the revived provider's `require` starts looking. */
  cwd?: string;
  /** Added to this process's environment (e.g. PULUMI_NODEJS_PROJECT scopes config keys). */
  env?: Record<string, string>;
  /** How long to wait for the port line. */
  startTimeoutMs?: number;
}

export function urnOf(name: string, type = DYNAMIC_TYPE, project = "project", stack = "stack"): string {
  return `urn:pulumi:${stack}::${project}::${type}::${name}`;
}

/**
 * Removes `undefined` the way JSON does (Struct.fromJavaScript throws on it): object keys go away,
 * array slots become null.
 */
export function dropUndefined(value: unknown): unknown {
  if (Array.isArray(value)) return value.map((v) => (v === undefined ? null : dropUndefined(v)));
  if (value !== null && typeof value === "object") {
    const out: Props = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = dropUndefined(v);
    return out;
  }
  return value;
}

function toStruct(props: Props): Struct {
  return Struct.fromJavaScript(dropUndefined(props) as Record<string, never>);
}

function fromStruct(s: Struct | undefined): Props {
  return (s?.toJavaScript() ?? {}) as Props;
}

/**
 * The `__provider` text for a provider object, produced exactly as `pulumi.dynamic.Resource`
 * produces it (@pulumi/pulumi dynamic/index.js).
 */
export async function serializeProvider(provider: pulumi.dynamic.ResourceProvider): Promise<string> {
  const sf = await pulumi.runtime.serializeFunction(() => provider, { allowSecrets: true });
  return sf.text;
}

/**
 * The `__provider` input a dynamic resource class really hands to the engine: constructs the
 * resource under throwaway mocks and captures what reaches the resource monitor. Replaces any
 * mocks set before; call `setMocks` again afterwards if a test needs its own.
 */
export async function providerTextOf(construct: () => pulumi.Resource): Promise<string> {
  let captured: ((text: string) => void) | undefined;
  const text = new Promise<string>((resolve) => (captured = resolve));
  await pulumi.runtime.setMocks({
    newResource: (args) => {
      const value = args.inputs[PROVIDER_KEY];
      if (typeof value === "string") captured?.(value);
      else if (pulumi.runtime.isRpcSecret(value)) captured?.(pulumi.runtime.unwrapRpcSecret(value) as string);
      return { id: `${args.name}-id`, state: args.inputs };
    },
    call: (args) => args.inputs,
  });
  construct();
  const timeout = new Promise<never>((_, reject) =>
    setTimeout(() => reject(new Error("the resource never registered a __provider input: is it a dynamic resource?")), 10_000).unref(),
  );
  return Promise.race([text, timeout]);
}

/** Spawns the real dynamic-provider server and connects to it like the engine. */
export async function startProviderServer(opts: StartOptions = {}): Promise<ProviderServer> {
  // The server needs an engine address argument but never dials it.
  const child = spawn(process.execPath, [DYNAMIC_PROVIDER_SERVER, "127.0.0.1:1"], {
    cwd: opts.cwd ?? process.cwd(),
    env: { ...process.env, ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  let stdout = "";
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  // Kept flowing for the server's whole life: a provider that logs must never block on a full pipe.
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  const port = await readPort(child, () => stdout, () => stderr, opts.startTimeoutMs ?? 30_000);
  const client = new ResourceProviderClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());

  const call = <Req, Res>(method: string, req: Req): Promise<Res> =>
    new Promise((resolve, reject) => {
      const fn = (client as unknown as Record<string, (...a: unknown[]) => unknown>)[method];
      fn.call(client, req, (err: grpc.ServiceError | null, res: Res) => {
        if (err) reject(new ProviderCallError(method, err.code, err.details || err.message));
        else resolve(res);
      });
    });

  return {
    port,
    pid: child.pid!,
    stderr: () => stderr,
    stdout: () => stdout,

    async configure(config = {}) {
      const req = new proto.ConfigureRequest();
      req.setArgs(Struct.fromJavaScript(config));
      const vars = req.getVariablesMap();
      for (const [k, v] of Object.entries(config)) vars.set(k, v);
      req.setAcceptsecrets(true);
      req.setAcceptresources(true);
      await call("configure", req);
    },

    async check(urn, olds, news) {
      const req = new proto.CheckRequest();
      req.setUrn(urn);
      req.setOlds(toStruct(olds));
      req.setNews(toStruct(news));
      const res = await call<proto.CheckRequest, proto.CheckResponse>("check", req);
      return {
        inputs: fromStruct(res.getInputs()),
        failures: res.getFailuresList().map((f) => ({ property: f.getProperty(), reason: f.getReason() })),
      };
    },

    async diff(id, urn, olds, news) {
      const req = new proto.DiffRequest();
      req.setId(id);
      req.setUrn(urn);
      req.setOlds(toStruct(olds));
      req.setNews(toStruct(news));
      const res = await call<proto.DiffRequest, proto.DiffResponse>("diff", req);
      const changes = { 0: "unknown", 1: "none", 2: "some" } as const;
      return {
        changes: changes[res.getChanges()],
        replaces: res.getReplacesList(),
        stables: res.getStablesList(),
        deleteBeforeReplace: res.getDeletebeforereplace(),
      };
    },

    async create(urn, props) {
      const req = new proto.CreateRequest();
      req.setUrn(urn);
      req.setProperties(toStruct(props));
      const res = await call<proto.CreateRequest, proto.CreateResponse>("create", req);
      return { id: res.getId(), properties: fromStruct(res.getProperties()) };
    },

    async read(id, urn, props, inputs) {
      const req = new proto.ReadRequest();
      req.setId(id);
      req.setUrn(urn);
      req.setProperties(toStruct(props));
      if (inputs) req.setInputs(toStruct(inputs));
      const res = await call<proto.ReadRequest, proto.ReadResponse>("read", req);
      return {
        id: res.getId(),
        properties: fromStruct(res.getProperties()),
        ...(res.hasInputs() ? { inputs: fromStruct(res.getInputs()) } : {}),
      };
    },

    async update(id, urn, olds, news) {
      const req = new proto.UpdateRequest();
      req.setId(id);
      req.setUrn(urn);
      req.setOlds(toStruct(olds));
      req.setNews(toStruct(news));
      const res = await call<proto.UpdateRequest, proto.UpdateResponse>("update", req);
      return { properties: fromStruct(res.getProperties()) };
    },

    async delete(id, urn, props) {
      const req = new proto.DeleteRequest();
      req.setId(id);
      req.setUrn(urn);
      req.setProperties(toStruct(props));
      await call("delete", req);
    },

    async close() {
      client.close();
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      process.kill(child.pid!, "SIGTERM");
      await exited;
    },
  };
}

function readPort(child: ChildProcess, stdout: () => string, stderr: () => string, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const fail = (why: string) => {
      cleanup();
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, "SIGTERM");
      reject(new Error(`dynamic-provider server ${why}; stderr:\n${stderr()}`));
    };
    const onData = () => {
      const out = stdout();
      const nl = out.indexOf("\n");
      if (nl < 0) return;
      const port = Number(out.slice(0, nl).trim());
      if (Number.isInteger(port) && port > 0) {
        cleanup();
        resolve(port);
      } else fail(`printed ${JSON.stringify(out.slice(0, nl))} instead of a port`);
    };
    const onExit = (code: number | null, signal: string | null) => fail(`exited (code ${code}, signal ${signal}) before printing its port`);
    const timer = setTimeout(() => fail(`printed no port within ${timeoutMs} ms`), timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      child.stdout!.off("data", onData);
      child.off("exit", onExit);
    };
    child.stdout!.on("data", onData);
    child.once("exit", onExit);
  });
}
