// providerFor is what every natgate resource serializes into its state. These tests pin down that
// the serialized text stays tiny and only `require`s natgate/provider, in every form it is built
// (tsx from source, tsc's emit, a real dynamic.Resource subclass), and that the real
// dynamic-provider server revives it and finds the implementation from its working directory.
import { strict as assert } from "assert";
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import * as ts from "typescript";
import { z } from "zod";
import { providerFor } from "../../sdk/dynamic";
import { ProviderCallError, providerTextOf, serializeProvider, startProviderServer, urnOf } from "./harness";

const repoRoot = path.resolve(__dirname, "..", "..");
const MAX_PROVIDER_TEXT = 4096;

function requiredModules(text: string): string[] {
  return [...text.matchAll(/require\(\s*["'`]([^"'`]+)["'`]\s*\)/g)].map((m) => m[1]);
}

function assertTinyProvider(text: string, kind: string): void {
  assert.ok(text.length < MAX_PROVIDER_TEXT, `serialized provider is ${text.length} bytes, more than ${MAX_PROVIDER_TEXT}`);
  assert.deepEqual(requiredModules(text), ["natgate/provider"]);
  assert.ok(!/ssh2|zod/.test(text), "ssh2/zod must be loaded in the provider process, not copied into state");
  assert.ok(text.includes(JSON.stringify(kind)), `the kind ${kind} is captured`);
}

/** sdk/dynamic.ts as `tsc -p tsconfig.json` emits it, loaded from a temp file. */
function loadAsTscEmits(dir: string): typeof import("../../sdk/dynamic") {
  const config = ts.readConfigFile(path.join(repoRoot, "tsconfig.json"), ts.sys.readFile);
  const { options } = ts.parseJsonConfigFileContent(config.config, ts.sys, repoRoot);
  const source = fs.readFileSync(path.join(repoRoot, "sdk", "dynamic.ts"), "utf8");
  const out = ts.transpileModule(source, { compilerOptions: { ...options, sourceMap: false, declaration: false } });
  const file = path.join(dir, "dynamic.js");
  fs.writeFileSync(file, out.outputText);
  return require(file);
}

class TunnelLike extends pulumi.dynamic.Resource {
  declare public readonly name: pulumi.Output<string>;
  constructor(name: string) {
    super(providerFor("Tunnel"), name, { name });
  }
}

describe("providerFor: the serialized provider", () => {
  let tmp: string;
  before(() => (tmp = fs.mkdtempSync(path.join(os.tmpdir(), "natgate-serialize-"))));
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it("is small and only requires natgate/provider (source, as tsx runs it)", async () => {
    assertTinyProvider(await serializeProvider(providerFor("Tunnel")), "Tunnel");
  });

  it("is small and only requires natgate/provider (as tsc emits it)", async () => {
    const emitted = loadAsTscEmits(tmp);
    assertTinyProvider(await serializeProvider(emitted.providerFor("DnatRule")), "DnatRule");
  });

  it("is what a dynamic.Resource subclass hands to the engine", async () => {
    const text = await providerTextOf(() => new TunnelLike("t"));
    assertTinyProvider(text, "Tunnel");
    // Equal up to how the outer `() => provider` arrow was compiled (@pulumi/pulumi's vs tsx's).
    const squash = (t: string) => t.replace(/\s+/g, "");
    assert.equal(squash(text), squash(await serializeProvider(providerFor("Tunnel"))));
  });

  it("the size check catches a provider that captures a heavy import (control)", async () => {
    const heavy: pulumi.dynamic.ResourceProvider = {
      create: async (inputs) => ({ id: z.string().parse(inputs.name) }),
    };
    const text = await serializeProvider(heavy);
    assert.throws(() => assertTinyProvider(text, "x"));
    assert.ok(requiredModules(text).includes("zod"));
  });
});

describe("providerFor: revived by the real dynamic-provider server", () => {
  let project: string;

  // A stand-in for an installed natgate: the server's cwd is a project whose node_modules/natgate
  // exports ./provider, like a user's project with natgate installed.
  before(() => {
    project = fs.mkdtempSync(path.join(os.tmpdir(), "natgate-project-"));
    const pkg = path.join(project, "node_modules", "natgate");
    fs.mkdirSync(pkg, { recursive: true });
    fs.writeFileSync(
      path.join(pkg, "package.json"),
      JSON.stringify({ name: "natgate", version: "0.0.0-test", exports: { "./provider": "./provider.js" } }),
    );
    fs.writeFileSync(
      path.join(pkg, "provider.js"),
      `"use strict";
const fs = require("fs");
let greeting = "unconfigured";
exports.providers = {
  Toy: {
    async configure(req) { greeting = req.config.get("greeting") || "none"; },
    async check(olds, news) {
      return news.file ? { inputs: news } : { inputs: news, failures: [{ property: "file", reason: "file is required" }] };
    },
    async diff(id, olds, news) { return { changes: olds.text !== news.text, replaces: olds.file !== news.file ? ["file"] : [] }; },
    async create(inputs) { fs.writeFileSync(inputs.file, inputs.text); return { id: inputs.file, outs: { ...inputs, greeting } }; },
    async read(id, props) { return { id, props: { ...props, text: fs.readFileSync(id, "utf8") } }; },
    async update(id, olds, news) { fs.writeFileSync(id, news.text); return { outs: { ...olds, ...news } }; },
    async delete(id) { fs.rmSync(id); },
  },
  Minimal: {
    async create(inputs) { return { id: "minimal-" + inputs.n, outs: inputs }; },
  },
};
`,
    );
  });
  after(() => fs.rmSync(project, { recursive: true, force: true }));

  it("forwards every operation to providers[kind] of natgate/provider", async () => {
    const server = await startProviderServer({ cwd: project, env: { PULUMI_NODEJS_PROJECT: "p" } });
    try {
      await server.configure({ "p:greeting": "hi" });
      const __provider = await serializeProvider(providerFor("Toy"));
      const urn = urnOf("toy");
      const file = path.join(project, "state.txt");

      const bad = await server.check(urn, {}, { text: "a", __provider });
      assert.deepEqual(bad.failures, [{ property: "file", reason: "file is required" }]);

      const { inputs } = await server.check(urn, {}, { file, text: "one", __provider });
      const created = await server.create(urn, inputs);
      assert.equal(created.id, file);
      assert.equal(created.properties.greeting, "hi", "configure was forwarded");
      assert.equal(fs.readFileSync(file, "utf8"), "one");

      const diff = await server.diff(file, urn, created.properties, { ...inputs, file: "elsewhere" });
      assert.deepEqual([diff.changes, diff.replaces], ["none", ["file"]]);

      fs.writeFileSync(file, "drifted");
      const read = await server.read(file, urn, created.properties);
      assert.equal(read.properties.text, "drifted");

      const updated = await server.update(file, urn, read.properties, { ...inputs, text: "two" });
      assert.equal(updated.properties.text, "two");
      assert.equal(fs.readFileSync(file, "utf8"), "two");

      await server.delete(file, urn, updated.properties);
      assert.equal(fs.existsSync(file), false);
    } finally {
      await server.close();
    }
  });

  it("behaves like the server's defaults where the implementation leaves a method out", async () => {
    const server = await startProviderServer({ cwd: project });
    try {
      await server.configure();
      const __provider = await serializeProvider(providerFor("Minimal"));
      const urn = urnOf("m");
      const { inputs, failures } = await server.check(urn, {}, { n: 1, __provider });
      assert.deepEqual([inputs, failures], [{ n: 1, __provider }, []]);
      const created = await server.create(urn, inputs);
      assert.equal(created.id, "minimal-1");
      const diff = await server.diff(created.id, urn, created.properties, { n: 2, __provider });
      assert.deepEqual([diff.changes, diff.replaces], ["unknown", []], "the engine then diffs inputs itself");
      const read = await server.read(created.id, urn, created.properties);
      assert.deepEqual(read, { id: "minimal-1", properties: created.properties });
      await server.delete(created.id, urn, created.properties);
    } finally {
      await server.close();
    }
  });

  it("says which kind is missing when natgate/provider lacks it", async () => {
    const server = await startProviderServer({ cwd: project });
    try {
      await server.configure();
      const __provider = await serializeProvider(providerFor("Nope"));
      await assert.rejects(server.check(urnOf("n"), {}, { __provider }), (e: unknown) => {
        assert.ok(e instanceof ProviderCallError);
        assert.match(e.message, /no provider for resource kind "Nope"/);
        return true;
      });
    } finally {
      await server.close();
    }
  });
});

describe("scripts/link-self.js", () => {
  it("makes natgate resolve to this checkout, idempotently", () => {
    for (let i = 0; i < 2; i++) execFileSync(process.execPath, [path.join(repoRoot, "scripts", "link-self.js")]);
    const resolved = require.resolve("natgate/package.json", { paths: [repoRoot] });
    assert.equal(fs.realpathSync(resolved), fs.realpathSync(path.join(repoRoot, "package.json")));
    const pkg = JSON.parse(fs.readFileSync(resolved, "utf8"));
    assert.equal(pkg.exports["./provider"], "./dist/provider/index.js", "providerFor requires natgate/provider");
  });
});
