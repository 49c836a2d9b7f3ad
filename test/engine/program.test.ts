// Program shape, no hosts: the examples as a user's `pulumi preview` would run them. Every dynamic
// resource goes through the real provider's Check in the dynamic-provider server (natgate's dist,
// so build first), nothing is created. Proves what PortForward declares, in which order, and that
// bad inputs fail at preview naming the field and the fix.
import { strict as assert } from "assert";
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { CheckFailure, ProviderServer, Props, UNKNOWN, startProviderServer } from "./harness";
import { loadProgram, ProgramRun, RecordedResource, runProgram } from "./mocks";
import { kindOf, Stack } from "./stack";

const repoRoot = path.resolve(__dirname, "..", "..");
const SEED = path.join(repoRoot, "examples", "seed", "index.ts");
const PROJECT = "natgate-seed";
// The providers check that a private key parses, so the tests need a real one.
let KEY = "";

const seedConfig = (extra: Record<string, string> = {}) => ({
  [`${PROJECT}:vpsHost`]: "198.51.100.1",
  [`${PROJECT}:vpsPublicAddress`]: "198.51.100.1",
  [`${PROJECT}:routerHost`]: "192.168.1.1",
  [`${PROJECT}:sshKey`]: KEY,
  ...extra,
});

interface Checked {
  run: ProgramRun;
  /** Check failures by resource name. */
  failures: Map<string, CheckFailure[]>;
  /** Checked inputs by resource name. */
  checked: Map<string, Props>;
}

/** Runs a program as `pulumi preview` does: Check every dynamic resource, create nothing. */
async function preview(server: ProviderServer, program: () => unknown, config: Record<string, string> = {}): Promise<Checked> {
  pulumi.runtime.setAllConfig(config, [`${PROJECT}:sshKey`]);
  const failures = new Map<string, CheckFailure[]>();
  const checked = new Map<string, Props>();
  const run = await runProgram(program, {
    project: PROJECT,
    preview: true,
    dynamic: async (rec, news) => {
      const r = await server.check(rec.urn, {}, news);
      if (r.failures.length) failures.set(rec.name, r.failures);
      checked.set(rec.name, r.inputs);
      return { id: undefined, state: r.inputs };
    },
  });
  return { run, failures, checked };
}

describe("examples: program shape under mocks, checked by the real providers", function () {
  this.timeout(120_000);
  let server: ProviderServer;

  before(async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "natgate-program-"));
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", path.join(dir, "key")]);
    KEY = fs.readFileSync(path.join(dir, "key"), "utf8");
    fs.rmSync(dir, { recursive: true, force: true });
    server = await startProviderServer({ cwd: repoRoot, env: { PULUMI_NODEJS_PROJECT: PROJECT } });
    await server.configure({});
  });
  after(async () => server?.close());

  it("the seed declares PortForward's children, parented to it, in data-path order", async () => {
    const { run, failures, checked } = await preview(server, () => loadProgram(SEED), seedConfig());
    assert.deepEqual([...failures], [], "the seed's inputs pass every check");

    const component = run.get("home", "natgate:index:PortForward");
    const children = run.resources.filter((r) => r !== component);
    const kinds = Object.fromEntries(children.map((r) => [r.name, kindOf(r.provider)]));
    assert.deepEqual(kinds, {
      "home-tunnel": "Tunnel",
      "home-routes": "PolicyRouteTable",
      "home-return": "ConnmarkReturnPath",
      "home-router-0": "DnatRule",
      "home-router-local-0": "DnatRule",
      "home-vps-0": "DnatRule",
      "home-vps-1": "DnatRule",
    });
    for (const c of children) {
      assert.equal(c.parent, component.urn, `${c.name}'s parent is the component`);
      assert.ok(c.secretInputs.includes("connection") || c.name === "home-tunnel", `${c.name}'s connection is a secret`);
    }

    // Each step of the data path waits for the one before it.
    const urn = (n: string) => run.get(n).urn;
    const dependsOn = (r: RecordedResource, ...names: string[]) => {
      for (const n of names) assert.ok(r.dependencies.includes(urn(n)), `${r.name} depends on ${n}; its dependencies: ${r.dependencies.join(", ")}`);
    };
    assert.deepEqual(run.get("home-tunnel").dependencies, []);
    dependsOn(run.get("home-routes"), "home-tunnel");
    dependsOn(run.get("home-return"), "home-routes", "home-tunnel");
    dependsOn(run.get("home-router-0"), "home-return");
    dependsOn(run.get("home-router-local-0"), "home-return");
    dependsOn(run.get("home-vps-0"), "home-return", "home-router-0", "home-router-local-0");
    dependsOn(run.get("home-vps-1"), "home-return", "home-router-0", "home-router-local-0");

    const input = (n: string) => run.get(n).inputs;
    assert.deepEqual(
      { ...input("home-vps-0"), connection: undefined, name: undefined },
      { connection: undefined, name: undefined, destination: "198.51.100.1", protocol: "both", ports: "5000-6000", toAddress: "10.10.10.2" },
    );
    assert.deepEqual(
      { ...input("home-vps-1"), connection: undefined, name: undefined },
      { connection: undefined, name: undefined, destination: "198.51.100.1", protocol: "tcp", ports: 2222, toAddress: "10.10.10.2" },
      "the VPS passes every public port on unchanged",
    );
    // The router remaps its own service's port: a DNAT to itself puts the accept where INPUT drops.
    assert.deepEqual(
      { ...input("home-router-local-0"), connection: undefined, name: undefined },
      { connection: undefined, name: undefined, inInterface: "wg0", destination: "10.10.10.2", protocol: "tcp", ports: 2222, toAddress: "10.10.10.2", toPorts: 22 },
    );
    assert.equal(input("home-router-0").inInterface, "wg0");
    assert.equal(input("home-router-0").toAddress, "192.168.1.99");
    assert.equal(input("home-return").localSource, "10.10.10.2", "router-local forwards need the from-rule");
    assert.deepEqual(input("home-routes").routes, [
      { to: "default", via: "10.10.10.1", dev: "wg0" },
      { to: "192.168.1.0/24", dev: "br-lan" },
    ]);
    assert.equal((input("home-vps-0").connection as Props).host, "198.51.100.1");
    assert.equal((input("home-router-0").connection as Props).host, "192.168.1.1");

    // A preview shows what will land on each host: every checked resource carries its lines.
    for (const [name, inputs] of checked) {
      const keys = Object.keys(inputs).filter((k) => k.startsWith("rendered"));
      assert.ok(keys.length > 0, `${name} has rendered lines`);
      for (const k of keys) {
        const lines = inputs[k];
        assert.ok(Array.isArray(lines) && lines.length > 0 && lines.every((l) => typeof l === "string" && !l.includes(UNKNOWN)), `${name}.${k}: ${JSON.stringify(lines)}`);
      }
    }
    const vpsLines = (checked.get("home-vps-0")!.rendered as string[]).join("\n");
    assert.match(vpsLines, /5000-6000/);
    assert.match(vpsLines, /10\.10\.10\.2/);
  });

  it("with verifyPort, the seed adds a PathCheck that runs after both VPS rules", async () => {
    const { run, failures } = await preview(server, () => loadProgram(SEED), seedConfig({ [`${PROJECT}:verifyPort`]: "5000" }));
    assert.deepEqual([...failures], []);
    const check = run.get("home-check");
    assert.equal(kindOf(check.provider), "PathCheck");
    assert.equal(check.parent, run.get("home", "natgate:index:PortForward").urn);
    for (const n of ["home-vps-0", "home-vps-1"]) assert.ok(check.dependencies.includes(run.get(n).urn), `home-check depends on ${n}`);
    assert.equal(check.inputs.port, 5000);
    assert.equal(check.inputs.routerLocal, false, "5000 goes to the LAN host, not the router");
  });

  it("a backwards port range fails at preview on the component's `forwards[0].ports`, saying how to write it", async () => {
    // the component's own field, as the program wrote it, not the ports of its two DnatRules
    await assert.rejects(
      preview(server, () => loadProgram(SEED), seedConfig({ [`${PROJECT}:ports`]: "6000-5000" })),
      /^Error: PortForward home:\n {2}forwards\[0\]\.ports "6000-5000": range 6000-5000 is backwards: write 5000-6000$/,
    );
  });

  it("a connection port out of range fails at preview on `connection.port`", async () => {
    const { failures } = await preview(server, () => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const natgate = require("natgate") as typeof import("../../sdk");
      new natgate.DnatRule("bad-port", {
        connection: { host: "198.51.100.1", port: 70000, privateKey: KEY },
        destination: "198.51.100.1",
        ports: 5000,
        toAddress: "10.10.10.2",
      });
      new natgate.Tunnel("bad-tunnel", {
        listener: { connection: { host: "198.51.100.1", port: 70000, privateKey: KEY }, address: "10.10.10.1/24" },
        dialer: { connection: { host: "192.168.1.1", privateKey: KEY }, address: "10.10.10.2/24" },
      });
    });
    assert.deepEqual(failures.get("bad-port")?.map((f) => f.property), ["connection.port"]);
    assert.match(failures.get("bad-port")![0].reason, /65535/);
    assert.deepEqual(failures.get("bad-tunnel")?.map((f) => f.property), ["listener.connection.port"]);
  });

  it("`pulumi preview` of the bad range fails naming the component, its field and the fix", async () => {
    // Preview only: Check and no Create, so nothing dials a host.
    const stack = new Stack({ project: PROJECT, config: seedConfig({ [`${PROJECT}:ports`]: "6000-5000" }), secretKeys: [`${PROJECT}:sshKey`], server });
    await assert.rejects(
      stack.preview(() => loadProgram(SEED)),
      /PortForward home:\n {2}forwards\[0\]\.ports "6000-5000": range 6000-5000 is backwards: write 5000-6000/,
    );
    assert.deepEqual(stack.state, []);
  });

  it("every example compiles (tsc -p tsconfig.check.json, examples import natgate from sdk/)", () => {
    const tsc = path.join(repoRoot, "node_modules", ".bin", "tsc");
    try {
      execFileSync(tsc, ["-p", "tsconfig.check.json"], { cwd: repoRoot, encoding: "utf8", stdio: "pipe" });
    } catch (e) {
      const err = e as { stdout?: string; stderr?: string };
      assert.fail(`tsc -p tsconfig.check.json failed:\n${err.stdout ?? ""}${err.stderr ?? ""}`);
    }
  });
});
