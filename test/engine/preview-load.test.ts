// Issue 8: a `pulumi preview` (Check, and Diff against the state, of every resource) touches no host,
// so the provider process must not load ssh2 or natgate's SSH transport for it. The real
// dynamic-provider server (natgate's dist, so build first) runs with a preload (load-log.cjs) that
// logs every module file it loads; the seed example is checked and diffed, then the log is read.
// A host-touching Read afterwards proves the log would show ssh2 had it been loaded. No host is
// needed: run with plain mocha, or inside the lab like the rest of the suite.
import { strict as assert } from "assert";
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { ProviderServer, Props, startProviderServer } from "./harness";
import { loadProgram, RecordedResource, runProgram } from "./mocks";
import { kindOf } from "./stack";
import { NATGATE_VERSION } from "../../provider/engine/version";

/** Old outputs of the single-host kinds carry the release that wrote them (an older one is an upgrade). */
const asOutputs = (rec: { provider?: unknown }, inputs: Record<string, unknown>) =>
  ["PathCheck"].includes(kindOf(rec.provider) ?? "") ? inputs : { ...inputs, natgateVersion: NATGATE_VERSION };

const repoRoot = path.resolve(__dirname, "..", "..");
const SEED = path.join(repoRoot, "examples", "seed", "index.ts");
const PROJECT = "natgate-seed";
const PRELOAD = path.join(__dirname, "load-log.cjs");

/** Loaded files a preview must not load: ssh2 (any file of it) and the SSH transport modules. */
const FORBIDDEN: [string, RegExp][] = [
  ["ssh2", /\/node_modules\/ssh2\//],
  ["natgate's provider/ssh/run (runScript)", /\/dist\/provider\/ssh\/run\.js$/],
  ["natgate's provider/ssh/pool", /\/dist\/provider\/ssh\/pool\.js$/],
  ["natgate's provider/ssh/dial", /\/dist\/provider\/ssh\/dial\.js$/],
];

interface Loaded {
  file: string;
  parent: string;
}

function readLog(file: string): Loaded[] {
  return fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => {
      const [f, p] = l.split("\t");
      return { file: f!, parent: p ?? "" };
    });
}

/** The require chain that first brought `file` in, as repository-relative paths. */
function chainTo(log: Loaded[], file: string): string {
  const parentOf = new Map<string, string>();
  for (const l of log) if (!parentOf.has(l.file)) parentOf.set(l.file, l.parent);
  const chain = [file];
  for (let p = parentOf.get(file); p && !chain.includes(p) && chain.length < 30; p = parentOf.get(p)) chain.unshift(p);
  return chain.map((f) => path.relative(repoRoot, f)).join(" → ");
}

function loadedOf(log: Loaded[], pattern: RegExp): string[] {
  return [...new Set(log.map((l) => l.file).filter((f) => pattern.test(f)))];
}

describe("a preview loads neither ssh2 nor natgate's SSH transport in the provider process (issue 8)", function () {
  this.timeout(120_000);
  let server: ProviderServer;
  let logFile = "";
  let key = "";
  const config = (extra: Record<string, string> = {}) => ({
    [`${PROJECT}:vpsHost`]: "198.51.100.1",
    [`${PROJECT}:vpsPublicAddress`]: "198.51.100.1",
    [`${PROJECT}:routerHost`]: "192.168.1.1",
    [`${PROJECT}:sshKey`]: key,
    // With a verify port the seed also declares its PathCheck: every kind of resource is previewed.
    [`${PROJECT}:verifyPort`]: "5000",
    ...extra,
  });
  /** Checked inputs of the first preview, the state the second preview diffs against. */
  const checkedFirst = new Map<string, { rec: RecordedResource; inputs: Props }>();

  before(async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "natgate-preview-load-"));
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", path.join(dir, "key")]);
    key = fs.readFileSync(path.join(dir, "key"), "utf8");
    logFile = path.join(dir, "loaded.log");
    fs.rmSync(path.join(dir, "key"));
    fs.rmSync(path.join(dir, "key.pub"));
    server = await startProviderServer({
      cwd: repoRoot,
      env: {
        PULUMI_NODEJS_PROJECT: PROJECT,
        NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --require ${JSON.stringify(PRELOAD)}`.trim(),
        NATGATE_LOAD_LOG: logFile,
      },
    });
    await server.configure({});
  });
  after(async () => {
    await server?.close();
    if (logFile) fs.rmSync(path.dirname(logFile), { recursive: true, force: true });
  });

  it("check and diff of every seed resource load no ssh2, run, pool or dial", async () => {
    // First preview: Check of every resource from nothing.
    pulumi.runtime.setAllConfig(config(), [`${PROJECT}:sshKey`]);
    await runProgram(() => loadProgram(SEED), {
      project: PROJECT,
      preview: true,
      dynamic: async (rec, news) => {
        const r = await server.check(rec.urn, {}, news);
        assert.deepEqual(r.failures, [], `${rec.name} passes its check`);
        checkedFirst.set(rec.name, { rec, inputs: r.inputs });
        // The same inputs again: a no-change Diff.
        // Old outputs carry the version of the release that wrote them (an older one is an upgrade).
        const same = await server.diff(`${rec.name}-id`, rec.urn, asOutputs(rec, r.inputs), r.inputs);
        assert.notEqual(same.changes, "some", `${rec.name}: unchanged inputs diff as no change`);
        return { id: undefined, state: r.inputs };
      },
    });
    const kinds = new Set([...checkedFirst.values()].map((c) => kindOf(c.rec.provider)));
    assert.deepEqual([...kinds].sort(), ["ConnmarkReturnPath", "DnatRule", "PathCheck", "PolicyRouteTable", "Tunnel"]);

    // Second preview against that state with a narrower port range: Check with olds, Diff with changes.
    pulumi.runtime.setAllConfig(config({ [`${PROJECT}:ports`]: "5000-5500" }), [`${PROJECT}:sshKey`]);
    let diffs = 0;
    let changed = 0;
    await runProgram(() => loadProgram(SEED), {
      project: PROJECT,
      preview: true,
      dynamic: async (rec, news) => {
        const old = checkedFirst.get(rec.name);
        assert.ok(old, `${rec.name} was in the first preview`);
        const r = await server.check(rec.urn, old.inputs, news);
        assert.deepEqual(r.failures, [], `${rec.name} passes its check`);
        const d = await server.diff(`${rec.name}-id`, rec.urn, asOutputs(rec, old.inputs), r.inputs);
        diffs++;
        if (d.changes === "some") changed++;
        return { id: `${rec.name}-id`, state: r.inputs };
      },
    });
    assert.equal(diffs, checkedFirst.size, "every resource diffed");
    assert.ok(changed >= 2, `the port change shows as a change (${changed} resources changed)`);

    const log = readLog(logFile);
    // The recording works: the provider process logged the revived provider's own modules.
    assert.ok(loadedOf(log, /\/dist\/provider\/index\.js$/).length === 1, "the log shows natgate/provider loaded");
    assert.ok(loadedOf(log, /\/node_modules\/@pulumi\/pulumi\//).length > 0, "the log shows @pulumi/pulumi loaded");
    const offenders = FORBIDDEN.flatMap(([what, pattern]) => {
      const files = loadedOf(log, pattern);
      return files.length ? [`${what}, first via ${chainTo(log, files[0]!)}`] : [];
    });
    assert.deepEqual(offenders, [], `a preview loaded SSH code:\n  ${offenders.join("\n  ")}`);
  });

  it("control: a Read, which touches a host, does load ssh2 and the SSH transport (the log sees them)", async () => {
    const rule = checkedFirst.get("home-router-0");
    assert.ok(rule, "the first preview checked home-router-0");
    // Nothing listens on 127.0.0.1:1: the Read fails to connect, after it has loaded the transport.
    const inputs = JSON.parse(JSON.stringify(rule.inputs)) as Props;
    inputs.connection = { ...(inputs.connection as Props), host: "127.0.0.1", port: 1 };
    await assert.rejects(server.read("home-router-0-id", rule.rec.urn, inputs, inputs));
    const log = readLog(logFile);
    for (const [what, pattern] of FORBIDDEN) assert.ok(loadedOf(log, pattern).length > 0, `a Read loads ${what}`);
  });
});
