// A released natgate next to the checkout: scripts/build-release.sh builds the release's commit
// into a cache directory outside the repository, whose node_modules/natgate is the release itself.
// "The old provider" is then what a user had before upgrading: the stack's program running the
// release's SDK, and the dynamic-provider server started with the release's directory as working
// directory, so the serialized provider's `require("natgate/provider")` finds the release's code
// (DESIGN.md §4; Module._nodeModulePaths(cwd) is where require-from-string starts looking).
import { strict as assert } from "assert";
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import type * as natgate from "natgate";
import type { Lab } from "../lab";
import { startProviderServer, type ProviderServer } from "../engine/harness";
import { PUBLIC } from "../engine/seedLab";
import { connectionTo } from "../variants/variantLab";

const REPO_ROOT = path.resolve(__dirname, "..", "..");
const BUILD_RELEASE = path.join(REPO_ROOT, "scripts", "build-release.sh");

/** natgate 0.1.0, the first release: this commit on main. */
export const RELEASE_0_1_0 = { version: "0.1.0", commit: "e50b934c9d9abc13cf628b3cfb67ca9d548b4e10" };

export type Sdk = typeof natgate;

export interface Release {
  version: string;
  commit: string;
  /** The release's build: its files, dist/ and node_modules (natgate → itself). */
  dir: string;
  /** The release's SDK, what `import "natgate"` gave a user's program before the upgrade. */
  sdk: Sdk;
  /** A dynamic-provider server reviving providers against the release's code. */
  startServer(project: string): Promise<ProviderServer>;
}

/** Builds (or reuses the cached build of) a release; fails saying why when the commit is missing. */
export function buildRelease(r: { version: string; commit: string }): Release {
  let out: string;
  try {
    out = execFileSync(BUILD_RELEASE, [r.commit], { cwd: REPO_ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`cannot build natgate ${r.version} (commit ${r.commit}) with scripts/build-release.sh:\n${(err.stderr || err.message).trim()}`);
  }
  const dir = out.trim().split("\n").pop()!;
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")) as { name: string; version: string };
  assert.equal(`${pkg.name}@${pkg.version}`, `natgate@${r.version}`, `commit ${r.commit} is not natgate ${r.version}`);

  // Where the server's revived provider will find natgate: the release's build, not the checkout.
  // Asked the way the server asks (require-from-string, no file name: lookup from the cwd), in a
  // child process, since in this one `natgate` also resolves to the checkout by self-reference.
  const probe = `const rfs = require("require-from-string"); process.stdout.write(JSON.stringify(rfs(${JSON.stringify(
    'module.exports = [require.resolve("natgate/provider"), require.resolve("natgate")]',
  )})))`;
  const resolved = JSON.parse(
    execFileSync(process.execPath, ["-e", probe], { cwd: dir, encoding: "utf8", env: { ...process.env, NODE_OPTIONS: "" } }),
  ) as [string, string];
  const sdkFile = path.join(dir, "dist", "sdk", "index.js");
  assert.deepEqual(resolved, [path.join(dir, "dist", "provider", "index.js"), sdkFile], `natgate from ${dir} (as the provider server resolves it)`);
  assert.notEqual(fs.realpathSync(sdkFile), fs.realpathSync(require.resolve("natgate")), "the release's SDK is not the checkout's");
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const sdk = require(sdkFile) as Sdk;

  return {
    ...r,
    dir,
    sdk,
    async startServer(project) {
      const server = await startProviderServer({ cwd: dir, env: { PULUMI_NODEJS_PROJECT: project } });
      const cwd = fs.readlinkSync(`/proc/${server.pid}/cwd`);
      if (cwd !== dir) {
        await server.close();
        throw new Error(`the release's provider server runs in ${cwd}, not ${dir}`);
      }
      return server;
    },
  };
}

/** The checkout's SDK (node_modules/natgate → the repository, dist/ built by scripts/prepare.sh). */
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const currentSdk = (): Sdk => require("natgate") as Sdk;

/**
 * The seed's layout (examples/seed) as a user's program that does not change across the upgrade:
 * tcp+udp 5000-6000 to the LAN host, VPS:2222 → the router's sshd, host keys pinned. Only the
 * natgate package under it changes (`sdk`).
 */
export function seedLikeProgram(sdk: Sdk, lab: Lab): () => unknown {
  return () => {
    const home = new sdk.PortForward("home", {
      vps: { connection: connectionTo(lab, "vps"), publicAddress: PUBLIC },
      router: { connection: connectionTo(lab, "router"), lanInterface: "br-lan", lanSubnet: lab.addresses.lanSubnet },
      lanHost: lab.hosts.lan.addr,
      forwards: [{ protocol: "both", ports: "5000-6000" }],
      routerForwards: [{ protocol: "tcp", ports: 2222, toPorts: 22 }],
    });
    return { routerTunnelAddress: home.routerTunnelAddress };
  };
}
