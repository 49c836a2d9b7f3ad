// The toy provider below manages one file in a temp directory: pure local, so these tests prove
// the engine path (serialization, the real dynamic-provider server, gRPC) and nothing else.
import { strict as assert } from "assert";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import { DYNAMIC_TYPE, ProviderCallError, ProviderServer, Props, providerTextOf, startProviderServer, urnOf } from "./harness";
import { runProgram } from "./mocks";

interface ToyFileInputs {
  dir: string;
  name: string;
  content: string;
}

const toyFileProvider: pulumi.dynamic.ResourceProvider = {
  async configure(req) {
    // The revived provider lives in the server process; a global is the simplest place to keep
    // configuration across its methods.
    (globalThis as Record<string, unknown>).toyGreeting = req.config.get("greeting") ?? "unset";
  },
  async check(_olds, news) {
    const failures = [];
    if (typeof news.name !== "string" || news.name.includes("/")) {
      failures.push({ property: "name", reason: "name must be a file name without '/'" });
    }
    return { inputs: { ...news, content: news.content ?? "" }, failures };
  },
  async diff(_id, olds, news) {
    const replaces = ["dir", "name"].filter((k) => olds[k] !== news[k]);
    return { changes: replaces.length > 0 || olds.content !== news.content, replaces, deleteBeforeReplace: replaces.length > 0 };
  },
  async create(inputs: ToyFileInputs) {
    if (inputs.content === "explode") throw new Error(`toy refuses to write ${inputs.name}: content says explode`);
    const file = path.join(inputs.dir, inputs.name);
    fs.writeFileSync(file, inputs.content);
    return {
      id: file,
      outs: { ...inputs, size: inputs.content.length, greeting: (globalThis as Record<string, unknown>).toyGreeting },
    };
  },
  async read(id, props) {
    const content = fs.readFileSync(id, "utf8");
    return { id, props: { ...props, content, size: content.length } };
  },
  async update(id, olds, news) {
    fs.writeFileSync(id, news.content);
    return { outs: { ...olds, ...news, size: news.content.length } };
  },
  async delete(id) {
    fs.rmSync(id, { force: true });
  },
};

class ToyFile extends pulumi.dynamic.Resource {
  declare public readonly size: pulumi.Output<number>;
  declare public readonly content: pulumi.Output<string>;
  constructor(name: string, args: { [K in keyof ToyFileInputs]: pulumi.Input<ToyFileInputs[K]> }, opts?: pulumi.CustomResourceOptions) {
    super(toyFileProvider, name, { size: undefined, greeting: undefined, ...args }, opts);
  }
}

class ToyPair extends pulumi.ComponentResource {
  constructor(name: string, dir: string, opts?: pulumi.ComponentResourceOptions) {
    super("test:engine:ToyPair", name, {}, opts);
    const first = new ToyFile(`${name}-first`, { dir, name: "first.txt", content: pulumi.secret("first") }, { parent: this });
    new ToyFile(`${name}-second`, { dir, name: "second.txt", content: pulumi.interpolate`after ${first.size} bytes` }, { parent: this });
  }
}

describe("engine harness: the real dynamic-provider server", () => {
  let dir: string;
  let server: ProviderServer;
  let providerText: string;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "natgate-engine-"));
    // Taken from a real dynamic.Resource subclass, as the engine would receive it.
    providerText = await providerTextOf(() => new ToyFile("probe", { dir, name: "probe", content: "" }));
    server = await startProviderServer({ env: { PULUMI_NODEJS_PROJECT: "toyproject" } });
    await server.configure({ "toyproject:greeting": "hello from config" });
  });

  after(async () => {
    await server?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("takes the provider text from the resource class, capturing only what the toy uses", () => {
    assert.match(providerText, /exports\.handler/);
    assert.match(providerText, /require\("fs"\)/);
    assert.ok(!providerText.includes("grpc"), "the provider must not drag the Pulumi runtime along");
  });

  it("runs a full lifecycle: check, create, diff, read with drift, update, delete", async () => {
    const urn = urnOf("notes");
    const news: Props = { dir, name: "notes.txt", content: "v1", __provider: providerText };

    const checked = await server.check(urn, {}, news);
    assert.deepEqual(checked.failures, []);
    assert.equal(checked.inputs.__provider, providerText, "check keeps __provider for create");

    const created = await server.create(urn, checked.inputs);
    const file = path.join(dir, "notes.txt");
    assert.equal(created.id, file);
    assert.equal(fs.readFileSync(file, "utf8"), "v1");
    assert.equal(created.properties.size, 2);
    assert.equal(created.properties.greeting, "hello from config", "configure ran with project-scoped config");
    assert.equal(created.properties.__provider, providerText, "outputs carry __provider for later operations");

    const same = await server.diff(created.id, urn, created.properties, checked.inputs);
    assert.equal(same.changes, "none");

    const edited = (await server.check(urn, checked.inputs, { ...news, content: "v2" })).inputs;
    const update = await server.diff(created.id, urn, created.properties, edited);
    assert.deepEqual(
      { changes: update.changes, replaces: update.replaces, dbr: update.deleteBeforeReplace },
      { changes: "some", replaces: [], dbr: false },
    );
    const renamed = (await server.check(urn, checked.inputs, { ...news, name: "other.txt" })).inputs;
    const replace = await server.diff(created.id, urn, created.properties, renamed);
    assert.deepEqual(
      { changes: replace.changes, replaces: replace.replaces, dbr: replace.deleteBeforeReplace },
      { changes: "some", replaces: ["name"], dbr: true },
    );

    fs.writeFileSync(file, "changed by hand");
    const refreshed = await server.read(created.id, urn, created.properties);
    assert.equal(refreshed.id, file);
    assert.equal(refreshed.properties.content, "changed by hand", "refresh shows drift");
    assert.equal(refreshed.properties.size, 15);
    assert.equal(refreshed.properties.__provider, providerText);
    const drift = await server.diff(created.id, urn, refreshed.properties, checked.inputs);
    assert.equal(drift.changes, "some", "the next up wants to undo the drift");

    const updated = await server.update(created.id, urn, refreshed.properties, edited);
    assert.equal(fs.readFileSync(file, "utf8"), "v2");
    assert.equal(updated.properties.content, "v2");
    assert.equal(updated.properties.__provider, providerText);

    await server.delete(created.id, urn, updated.properties);
    assert.equal(fs.existsSync(file), false);
  });

  it("returns check failures as property + reason", async () => {
    const checked = await server.check(urnOf("bad"), {}, { dir, name: "a/b", content: "x", __provider: providerText });
    assert.deepEqual(checked.failures, [{ property: "name", reason: "name must be a file name without '/'" }]);
  });

  it("surfaces a provider exception's message", async () => {
    const urn = urnOf("boom");
    const checked = await server.check(urn, {}, { dir, name: "boom.txt", content: "explode", __provider: providerText });
    await assert.rejects(server.create(urn, checked.inputs), (e: unknown) => {
      assert.ok(e instanceof ProviderCallError);
      assert.equal(e.grpcCode, 2);
      assert.equal(e.message, "toy refuses to write boom.txt: content says explode");
      return true;
    });
    // Read goes through a different error path in the server (a plain callback(err)).
    await assert.rejects(server.read(path.join(dir, "missing"), urn, checked.inputs), /ENOENT/);
  });

  it("runs a program's dynamic resources through the server under setMocks", async () => {
    const run = await runProgram(
      () => {
        const pair = new ToyPair("pair", dir);
        const cmd = new command.remote.Command("touch", {
          connection: { host: "198.51.100.1", privateKey: pulumi.secret("KEY") },
          create: "true",
        }, { dependsOn: [pair] });
        return { urn: pair.urn, cmdStdout: cmd.stdout };
      },
      { server },
    );

    assert.equal(fs.readFileSync(path.join(dir, "first.txt"), "utf8"), "first");
    assert.equal(fs.readFileSync(path.join(dir, "second.txt"), "utf8"), "after 5 bytes");

    const pair = run.get("pair");
    const first = run.get("pair-first");
    const second = run.get("pair-second");
    assert.equal(first.type, DYNAMIC_TYPE);
    assert.equal(first.parent, pair.urn);
    assert.equal(second.parent, pair.urn);
    assert.deepEqual(second.dependencies, [first.urn]);
    assert.deepEqual(second.propertyDependencies.content, [first.urn]);
    assert.deepEqual(first.secretInputs, ["content"]);
    assert.equal(first.inputs.content, "first");
    assert.equal(first.id, path.join(dir, "first.txt"));
    assert.equal(first.outputs?.size, 5);
    assert.equal(first.provider, providerText, "the program sent the same serialized provider");

    const cmd = run.get("touch", "command:remote:Command");
    assert.equal(cmd.provider, undefined);
    assert.deepEqual(cmd.secretInputs, ["connection"]);
    assert.equal((cmd.inputs.connection as Props).host, "198.51.100.1");
    // dependsOn a component means depending on its children, as with the real engine.
    assert.deepEqual([...cmd.dependencies].sort(), [first.urn, second.urn].sort());
    assert.deepEqual(run.exports, { urn: pair.urn, cmdStdout: undefined });
  });

  it("fails a program run with the provider's message, naming the resource", async () => {
    await assert.rejects(
      runProgram(() => {
        const bad = new ToyFile("bad", { dir, name: "bad.txt", content: "explode" });
        new ToyFile("after-bad", { dir, name: "after.txt", content: bad.content });
      }, { server }),
      (e: Error) => {
        assert.match(e.message, /pulumi-nodejs:dynamic:Resource "bad": toy refuses to write bad\.txt/);
        return true;
      },
    );
    assert.equal(fs.existsSync(path.join(dir, "after.txt")), false, "a dependent of a failed resource is not created");
  });
});
