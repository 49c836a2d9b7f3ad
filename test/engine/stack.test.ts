// The stack engine (stack.ts) over a toy provider that manages files in a temp directory: proves
// preview/up/refresh/destroy semantics (ops, diffs, replace order, deletes in reverse dependency
// order, drift) without any host, through the real dynamic-provider server.
import { strict as assert } from "assert";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { deletionWaves, lineDiff, Stack, Step, type StateResource } from "./stack";

// Every provider call appends "<op> <file>" to the journal, so tests can see what ran in which order.
const toyLinesProvider: pulumi.dynamic.ResourceProvider = {
  async check(_olds, news) {
    const failures = [];
    if (typeof news.content !== "string") failures.push({ property: "content", reason: "content must be a string" });
    const rendered = typeof news.content === "string" ? news.content.split(",").map((l: string) => `line ${l}`) : [];
    return { inputs: { ...news, rendered }, failures };
  },
  async diff(_id, olds, news) {
    const replaces = olds.file !== news.file ? ["file"] : [];
    const drift = Array.isArray(olds.drift) && olds.drift.length > 0;
    return {
      changes: replaces.length > 0 || JSON.stringify(olds.rendered) !== JSON.stringify(news.rendered) || drift,
      replaces,
      deleteBeforeReplace: replaces.length > 0 && news.dbr === true,
    };
  },
  async create(inputs) {
    const fs = require("fs");
    fs.appendFileSync(inputs.journal, `create ${inputs.file}\n`);
    fs.writeFileSync(inputs.file, inputs.rendered.join("\n"));
    return { id: inputs.file, outs: { ...inputs, drift: [] } };
  },
  async read(id, props) {
    const fs = require("fs");
    fs.appendFileSync(props.journal, `read ${id}\n`);
    if (!fs.existsSync(id)) return { id: "", props: {} };
    const live = fs.readFileSync(id, "utf8").split("\n");
    const want: string[] = props.content.split(",").map((l: string) => `line ${l}`);
    const drift = [...want.filter((l) => !live.includes(l)).map((l) => `missing ${l}`), ...live.filter((l: string) => !want.includes(l)).map((l: string) => `unexpected ${l}`)];
    return { id, props: { ...props, rendered: live, drift } };
  },
  async update(id, _olds, news) {
    const fs = require("fs");
    fs.appendFileSync(news.journal, `update ${id}\n`);
    fs.writeFileSync(id, news.rendered.join("\n"));
    return { outs: { ...news, drift: [] } };
  },
  async delete(id, props) {
    const fs = require("fs");
    fs.appendFileSync(props.journal, `delete ${id}\n`);
    fs.rmSync(id, { force: true });
  },
};

interface ToyArgs {
  file: string;
  content: pulumi.Input<string>;
  journal: string;
  dbr?: boolean;
}

class ToyLines extends pulumi.dynamic.Resource {
  declare public readonly rendered: pulumi.Output<string[]>;
  constructor(name: string, args: ToyArgs, opts?: pulumi.CustomResourceOptions) {
    super(toyLinesProvider, name, { rendered: undefined, drift: undefined, ...args }, opts);
  }
}

class ToyChain extends pulumi.ComponentResource {
  constructor(name: string, dir: string, spec: { a: string; b?: string; c: string; aFile?: string; dbr?: boolean }) {
    super("test:engine:ToyChain", name, {});
    const journal = path.join(dir, "journal");
    const child = { parent: this };
    const a = new ToyLines(`${name}-a`, { file: path.join(dir, spec.aFile ?? "a"), content: spec.a, journal, dbr: spec.dbr }, child);
    const deps: pulumi.Resource[] = [a];
    if (spec.b !== undefined) deps.push(new ToyLines(`${name}-b`, { file: path.join(dir, "b"), content: spec.b, journal }, { ...child, dependsOn: [a] }));
    new ToyLines(`${name}-c`, { file: path.join(dir, "c"), content: pulumi.interpolate`${spec.c}`, journal }, { ...child, dependsOn: deps });
    this.registerOutputs({});
  }
}

const ops = (steps: Step[]) => Object.fromEntries(steps.map((s) => [s.name, s.op]));

describe("stack engine: preview/up/refresh/destroy over the real dynamic-provider server", () => {
  let dir: string;
  let stack: Stack;
  const journal = () => fs.readFileSync(path.join(dir, "journal"), "utf8").trim().split("\n").filter(Boolean).map((l) => l.replace(dir + "/", ""));
  const clearJournal = () => fs.writeFileSync(path.join(dir, "journal"), "");
  const read = (f: string) => fs.readFileSync(path.join(dir, f), "utf8");

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "natgate-stack-"));
    clearJournal();
    stack = new Stack({ project: "toystack", stateFile: path.join(dir, "state.json") });
  });
  after(async () => {
    await stack?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("preview from nothing: every resource a create with its rendered lines; nothing applied", async () => {
    const r = await stack.preview(() => new ToyChain("t", dir, { a: "1,2", b: "3", c: "4" }));
    assert.deepEqual(ops(r.steps), { "t-a": "create", "t-b": "create", "t-c": "create", t: "create" });
    const a = r.steps.find((s) => s.name === "t-a")!;
    assert.deepEqual(a.changes.find((c) => c.property === "rendered")?.new, ["line 1", "line 2"]);
    assert.deepEqual(lineDiff(undefined, ["line 1", "line 2"]), ["+ line 1", "+ line 2"]);
    assert.deepEqual(journal(), [], "preview calls no create");
    assert.deepEqual(stack.state, []);
  });

  it("up creates in dependency order and records parents and dependencies", async () => {
    const r = await stack.up(() => new ToyChain("t", dir, { a: "1,2", b: "3", c: "4" }));
    assert.deepEqual(ops(r.steps), { "t-a": "create", "t-b": "create", "t-c": "create", t: "create" });
    assert.deepEqual(journal(), ["create a", "create b", "create c"]);
    assert.equal(read("a"), "line 1\nline 2");
    const comp = stack.get("t");
    assert.equal(comp.custom, false);
    assert.equal(stack.get("t-a").parent, comp.urn);
    assert.deepEqual([...stack.get("t-c").dependencies].sort(), [stack.get("t-a").urn, stack.get("t-b").urn].sort());
    assert.ok(JSON.parse(fs.readFileSync(path.join(dir, "state.json"), "utf8")).resources.length === 4, "state file written");
  });

  it("up again with the same program: every resource the same, no provider writes", async () => {
    clearJournal();
    const r = await stack.up(() => new ToyChain("t", dir, { a: "1,2", b: "3", c: "4" }));
    assert.deepEqual(ops(r.steps), { "t-a": "same", "t-b": "same", "t-c": "same", t: "same" });
    assert.deepEqual(journal(), []);
  });

  it("preview of a change shows the changed rendered lines as an update; up applies it", async () => {
    const program = () => new ToyChain("t", dir, { a: "1,5", b: "3", c: "4" });
    const p = await stack.preview(program);
    assert.deepEqual(ops(p.steps), { "t-a": "update", "t-b": "same", "t-c": "same", t: "same" });
    const change = p.steps.find((s) => s.name === "t-a")!.changes;
    assert.deepEqual(change.map((c) => c.property).sort(), ["content", "rendered"]);
    const rendered = change.find((c) => c.property === "rendered")!;
    assert.deepEqual(lineDiff(rendered.old, rendered.new), ["- line 2", "+ line 5"]);
    assert.deepEqual(journal(), []);
    const u = await stack.up(program);
    assert.deepEqual(ops(u.steps), ops(p.steps));
    assert.deepEqual(journal(), ["update a"]);
    assert.equal(read("a"), "line 1\nline 5");
  });

  it("a replace deletes first when the provider says deleteBeforeReplace, else creates first and deletes last", async () => {
    clearJournal();
    let r = await stack.up(() => new ToyChain("t", dir, { a: "1,5", b: "3", c: "4", aFile: "a2", dbr: true }));
    assert.equal(ops(r.steps)["t-a"], "replace");
    assert.deepEqual(r.steps.find((s) => s.name === "t-a")!.replaces, ["file"]);
    assert.deepEqual(journal(), ["delete a", "create a2"]);
    clearJournal();
    r = await stack.up(() => new ToyChain("t", dir, { a: "1,5", b: "3", c: "4", aFile: "a3" }));
    assert.deepEqual(journal(), ["create a3", "delete a2"]);
    assert.ok(!fs.existsSync(path.join(dir, "a2")));
    assert.equal(read("a3"), "line 1\nline 5");
  });

  it("a resource the program no longer declares is deleted (preview says so first)", async () => {
    clearJournal();
    const program = () => new ToyChain("t", dir, { a: "1,5", c: "4", aFile: "a3" });
    const p = await stack.preview(program);
    assert.equal(ops(p.steps)["t-b"], "delete");
    assert.deepEqual(journal(), []);
    const u = await stack.up(program);
    assert.equal(ops(u.steps)["t-b"], "delete");
    assert.deepEqual(journal(), ["delete b"]);
    assert.throws(() => stack.get("t-b"), /found 0/);
  });

  it("refresh reports drift from the live state; the next up repairs it", async () => {
    fs.writeFileSync(path.join(dir, "c"), "line 4\nline 666");
    clearJournal();
    const steps = await stack.refresh();
    const c = steps.find((s) => s.name === "t-c")!;
    assert.equal(c.op, "update");
    assert.deepEqual(c.changes.find((x) => x.property === "drift")?.new, ["unexpected line 666"]);
    assert.deepEqual(lineDiff(c.changes.find((x) => x.property === "rendered")!.old, c.changes.find((x) => x.property === "rendered")!.new), ["+ line 666"]);
    assert.equal(steps.find((s) => s.name === "t-a")!.op, "same");
    const u = await stack.up(() => new ToyChain("t", dir, { a: "1,5", c: "4", aFile: "a3" }));
    assert.equal(ops(u.steps)["t-c"], "update");
    assert.equal(read("c"), "line 4");
  });

  it("refresh drops a resource whose object is gone", async () => {
    fs.rmSync(path.join(dir, "c"));
    const steps = await stack.refresh();
    assert.equal(steps.find((s) => s.name === "t-c")!.op, "delete");
    assert.throws(() => stack.get("t-c"), /found 0/);
    const u = await stack.up(() => new ToyChain("t", dir, { a: "1,5", c: "4", aFile: "a3" }));
    assert.equal(ops(u.steps)["t-c"], "create");
  });

  it("a check failure fails up naming the resource and property; the state keeps what was done", async () => {
    await assert.rejects(
      stack.up(() => new ToyLines("bad", { file: path.join(dir, "bad"), content: 42 as unknown as string, journal: path.join(dir, "journal") })),
      /"bad".*failed its check: content: content must be a string/s,
    );
    assert.ok(stack.get("t-a"), "resources of the previous up are still in state");
  });

  it("destroy deletes dependents first and empties the state", async () => {
    clearJournal();
    const steps = await stack.destroy();
    assert.deepEqual(journal(), ["delete c", "delete a3"]);
    assert.deepEqual(steps.map((s) => s.name), ["t-c", "t-a", "t"]);
    assert.deepEqual(stack.state, []);
    assert.deepEqual(fs.readdirSync(dir).sort(), ["journal", "state.json"]);
  });
});

describe("deletionWaves: the engine's parallel delete schedule", () => {
  const res = (name: string, deps: string[] = [], parent?: string): StateResource => ({
    urn: name, type: "t", name, custom: true, inputs: {}, outputs: {}, dependencies: deps, secretInputs: [], ...(parent ? { parent } : {}),
  });
  it("deletes everything nothing else needs at once, then what they needed", () => {
    const waves = deletionWaves([res("comp"), res("tunnel", [], "comp"), res("dnat", ["tunnel"], "comp"), res("route", [], "comp"), res("other")]);
    assert.deepEqual(waves.map((w) => w.map((r) => r.name).sort()), [["dnat", "other", "route"], ["tunnel"], ["comp"]]);
  });
  it("a dependency outside the set does not hold anything back", () => {
    assert.deepEqual(deletionWaves([res("a", ["gone"]), res("b")]).map((w) => w.map((r) => r.name).sort()), [["a", "b"]]);
  });
});
