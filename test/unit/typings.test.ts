// The published types stand alone (issue 12): the packed natgate, installed into a project set up
// as Pulumi's TypeScript template sets one up (strict, no skipLibCheck), with only what such a
// project has (natgate's dependencies, @pulumi/pulumi's, @types/node; none of natgate's dev
// dependencies, so no @types/ssh2), type-checks with TypeScript 6 and with the 5.x natgate builds with.
import { strict as assert } from "node:assert";
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const repo = path.resolve(__dirname, "..", "..");
const pkg = JSON.parse(fs.readFileSync(path.join(repo, "package.json"), "utf8")) as { devDependencies: Record<string, string> };
// TypeScript 6 comes from scripts/install-typescript6.sh (prepare.sh runs it), cached per machine.
const TS6 = execFileSync("bash", [path.join(repo, "scripts", "install-typescript6.sh")], { encoding: "utf8" }).trim();
const COMPILERS = { "TypeScript 6": TS6, "TypeScript 5": path.join(repo, "node_modules", "typescript", "bin", "tsc") };

// Pulumi's `pulumi new typescript` tsconfig.json.
const TEMPLATE_TSCONFIG = {
  compilerOptions: {
    strict: true,
    outDir: "bin",
    target: "es2020",
    module: "commonjs",
    moduleResolution: "node",
    sourceMap: true,
    experimentalDecorators: true,
    pretty: false,
    noFallthroughCasesInSwitch: true,
    noImplicitReturns: true,
    forceConsistentCasingInFileNames: true,
  },
  files: ["index.ts"],
};

const PROGRAM = `import * as pulumi from "@pulumi/pulumi";
import * as natgate from "natgate";

const config = new pulumi.Config();
const forward = new natgate.PortForward("home", {
  vps: { connection: { host: "198.51.100.1", privateKey: config.requireSecret("sshKey") }, publicAddress: "198.51.100.1" },
  router: { connection: { host: "192.168.1.1", privateKey: config.requireSecret("sshKey") }, lanInterface: "br-lan", lanSubnet: "192.168.1.0/24" },
  lanHost: "192.168.1.99",
  forwards: [{ protocol: "tcp", ports: "5000-6000" }],
});
export const counters = forward.counters;
`;

// TypeScript 6 refuses the template's moduleResolution "node" unless told, as its error says.
const TS6_TSCONFIG = { extends: "./tsconfig.json", compilerOptions: { ignoreDeprecations: "6.0" } };

function tsc(compiler: string, dir: string): { code: number; out: string } {
  const project = compiler === COMPILERS["TypeScript 6"] ? path.join(dir, "tsconfig.ts6.json") : dir;
  const r = spawnSync(process.execPath, [compiler, "-p", project, "--noEmit"], { encoding: "utf8" });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

describe("the published types, in a new Pulumi TypeScript project", function () {
  this.timeout(120_000);
  let dir = "";

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "natgate-typings-"));
    // What npm would publish (package.json "files"), as a user's npm install unpacks it.
    const packed = JSON.parse(execFileSync("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", dir], { cwd: repo, encoding: "utf8" }))[0];
    const modules = path.join(dir, "node_modules");
    fs.mkdirSync(path.join(modules, "natgate"), { recursive: true });
    execFileSync("tar", ["-xzf", path.join(dir, packed.filename), "-C", path.join(modules, "natgate"), "--strip-components=1"]);
    // Everything installed here except natgate's dev dependencies (the user's project has
    // @types/node and typescript of its own: the template lists them).
    const dev = new Set(Object.keys(pkg.devDependencies).filter((d) => d !== "@types/node"));
    const top = path.join(repo, "node_modules");
    for (const e of fs.readdirSync(top)) {
      if (e.startsWith(".") || e === "natgate") continue;
      if (e.startsWith("@")) {
        fs.mkdirSync(path.join(modules, e), { recursive: true });
        for (const s of fs.readdirSync(path.join(top, e))) {
          if (!dev.has(`${e}/${s}`)) fs.symlinkSync(path.join(top, e, s), path.join(modules, e, s));
        }
      } else if (!dev.has(e)) {
        fs.symlinkSync(path.join(top, e), path.join(modules, e));
      }
    }
    fs.writeFileSync(path.join(dir, "tsconfig.json"), JSON.stringify(TEMPLATE_TSCONFIG, null, 2));
    fs.writeFileSync(path.join(dir, "tsconfig.ts6.json"), JSON.stringify(TS6_TSCONFIG, null, 2));
    fs.writeFileSync(path.join(dir, "index.ts"), PROGRAM);
  });
  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("the project has no @types/ssh2 (control: a file that imports ssh2's types fails there with TS7016)", () => {
    assert.equal(fs.existsSync(path.join(dir, "node_modules", "@types", "ssh2")), false);
    const control = path.join(dir, "control");
    fs.mkdirSync(control);
    fs.writeFileSync(path.join(control, "index.ts"), 'import type { Client } from "ssh2";\nexport const c: Client | undefined = undefined;\n');
    fs.writeFileSync(path.join(control, "tsconfig.json"), JSON.stringify({ ...TEMPLATE_TSCONFIG, compilerOptions: { ...TEMPLATE_TSCONFIG.compilerOptions, typeRoots: [path.join(dir, "node_modules", "@types")] } }));
    fs.writeFileSync(path.join(control, "tsconfig.ts6.json"), JSON.stringify(TS6_TSCONFIG));
    const r = tsc(COMPILERS["TypeScript 6"], control);
    assert.notEqual(r.code, 0, r.out);
    assert.match(r.out, /TS7016/);
  });

  for (const [name, compiler] of Object.entries(COMPILERS)) {
    it(`${name}: a PortForward program type-checks against the packed natgate (strict, no skipLibCheck)`, () => {
      const version = execFileSync(process.execPath, [compiler, "-v"], { encoding: "utf8" }).trim();
      const r = tsc(compiler, dir);
      assert.equal(r.code, 0, `${version}:\n${r.out}`);
    });
  }
});
