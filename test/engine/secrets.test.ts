// Secrets (issue 11): the seed's stack, with connections that carry marker secrets, through a whole
// lifecycle on the lab driven like the Pulumi CLI (stack.ts: the real dynamic-provider server,
// natgate's dist): preview from nothing → up → a preview with a change → a preview with a secret
// pasted into the wrong field → refresh → an update that fails on the router → up back → destroy.
// Every checkpoint the stack wrote, every output and step the CLI would print, every log line
// (the provider server's stdout/stderr, the engine's step events, this process's own output
// during the operations) and every error is searched for each marker in every form it could take:
// plain, JSON-escaped (once and twice), URL-encoded, base64/base64url at any byte alignment, and a
// private key's PEM body lines and chunks of its flattened body.
//
// The markers: the VPS and the router log in as `ops` with a copy of its key encrypted under a
// passphrase of our own (quote and backslash in it, so its JSON-escaped form differs), and the
// VPS is reached through a jump host (itself) where `pwuser` logs in with the lab's password.
// The decrypted ops key is searched too: natgate decrypts it in the provider process and must
// never write it out.
//
// The harness keeps its checkpoint in plain, with the names of the properties the program marked
// secret beside them (StateResource.secretInputs); a Pulumi checkpoint holds exactly those
// properties encrypted. So the checkpoint searched is the harness's with those properties replaced
// by "[secret]" (what `pulumi stack export` shows without --show-secrets), and the raw checkpoint
// must hold every marker: a marker found outside a secret property is a leak into state, and the
// raw hits prove the search looks where the secrets are.
// Run: node_modules/.bin/tsx test/lab/cli.ts run -- node_modules/.bin/mocha test/engine/secrets.test.ts
import { strict as assert } from "assert";
import { execFileSync } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { PortForward } from "natgate";
import { getLab, Lab } from "../lab";
import { PROVIDER_KEY, ProviderServer, startProviderServer } from "./harness";
import { PUBLIC } from "./seedLab";
import { PropertyChange, RefreshStep, RunResult, Stack, StateResource, Step, StepEvent } from "./stack";

const PROJECT = "natgate-seed";
const REPO_ROOT = path.resolve(__dirname, "..", "..");

/** Every form a secret could be written in: plain, escaped, encoded. */
export function formsOf(secret: string): string[] {
  const forms = new Set<string>([secret]);
  const once = JSON.stringify(secret).slice(1, -1);
  forms.add(once);
  forms.add(JSON.stringify(once).slice(1, -1));
  forms.add(encodeURIComponent(secret));
  // Base64 of data holding the secret at any byte offset contains, for one j in 0..2, the
  // encoding of the secret from byte j on, cut to whole 4-character groups.
  const bytes = Buffer.from(secret, "utf8");
  for (let j = 0; j < 3 && bytes.length - j >= 6; j++) {
    const part = bytes.subarray(j, j + Math.floor((bytes.length - j) / 3) * 3);
    forms.add(part.toString("base64"));
    forms.add(part.toString("base64url"));
  }
  return [...forms].filter((f) => f.length >= 8);
}

/** A key's PEM body lines, without the armour. */
const bodyLines = (pem: string) => pem.split("\n").filter((l) => l && !l.startsWith("-----"));

/**
 * A private key's tell-tale pieces: its PEM body lines and 48-character chunks of the flattened
 * body, less those found in `others` (keys of the same kind: the OpenSSH header every such key
 * starts with is no trace of this one).
 */
export function keyPieces(pem: string, others: string[]): string[] {
  const body = bodyLines(pem);
  const flat = body.join("");
  const otherFlat = others.map((o) => bodyLines(o).join(""));
  const chunks: string[] = [];
  for (let i = 0; i + 48 <= flat.length; i += 48) chunks.push(flat.slice(i, i + 48));
  return [...body.filter((l) => l.length >= 16), ...chunks].filter((p) => !others.some((o) => o.includes(p)) && !otherFlat.some((o) => o.includes(p)));
}

interface Marker {
  name: string;
  needles: string[];
}

/** Which markers (by name) occur in `text`, with the form found. */
function findMarkers(markers: Marker[], text: string): string[] {
  const hits: string[] = [];
  for (const m of markers) {
    const n = m.needles.find((x) => text.includes(x));
    if (n !== undefined) hits.push(`${m.name} (as ${JSON.stringify(n.slice(0, 24))}…)`);
  }
  return hits;
}

/** A property bag as a Pulumi checkpoint holds it: the secret properties encrypted. */
function asCheckpoint(r: StateResource): unknown {
  const mask = (p: Record<string, unknown>) =>
    Object.fromEntries(Object.entries(p).map(([k, v]) => [k, r.secretInputs.includes(k) && k !== PROVIDER_KEY ? "[secret]" : v]));
  return { ...r, inputs: mask(r.inputs), outputs: mask(r.outputs) };
}

/** A change as `pulumi preview --diff` prints it: a secret one as [secret]. */
const shown = (c: PropertyChange) => (c.secret ? { property: c.property, old: "[secret]", new: "[secret]" } : c);

describe("secrets: marker password, key and passphrase never reach state, outputs, logs or errors (seed stack on the lab)", function () {
  this.timeout(150_000);
  let lab: Lab;
  let server: ProviderServer;
  let stack: Stack;
  let tmp: string;
  let stateFile: string;
  let markers: Marker[];
  let PASSPHRASE: string;
  let PASSWORD: string;
  let encryptedKey: string;
  /** Each place searched, by kind: the text and where it came from. */
  const searched = { state: [] as string[], outputs: [] as string[], logs: [] as string[], errors: [] as string[] };
  const events: StepEvent[] = [];
  let ownOutput: string[] = [];
  /** A secret the program passes in the wrong field (a user's mistake), for one preview. */
  let mistake: string | undefined;

  const program = () => {
    const cfg = new pulumi.Config();
    // The key and the jump host's password as `pulumi config set --secret` keeps them; the
    // passphrase as plain config (a user who forgot --secret): the sdk must make it secret anyway.
    const key = cfg.requireSecret("opsKey");
    const passphrase = cfg.require("opsKeyPassphrase");
    const { vps, router } = lab.hosts;
    const ops = { user: "ops", sudo: true, privateKey: key, privateKeyPassword: passphrase };
    const home = new PortForward("home", {
      vps: {
        // The VPS reached through itself as the jump host (pwuser's password login there, then
        // 127.0.0.1 from inside): the router sits behind CGNAT, so no lab host can jump to it.
        connection: {
          host: mistake ?? "127.0.0.1",
          ...ops,
          hostKey: vps.ssh!.hostKey,
          proxy: { host: vps.addr, user: lab.users.pw.user, password: cfg.requireSecret("jumpPassword"), hostKey: vps.ssh!.hostKey },
        },
        publicAddress: PUBLIC,
      },
      router: {
        connection: { host: router.addr, ...ops, hostKey: router.ssh!.hostKey },
        lanInterface: cfg.get("lanInterface") ?? "br-lan",
        lanSubnet: "192.168.1.0/24",
      },
      lanHost: "192.168.1.99",
      forwards: [{ protocol: "both", ports: cfg.get("ports") ?? "5000-6000" }],
      routerForwards: [{ protocol: "tcp", ports: 2222, toPorts: 22 }],
    });
    return { routerTunnelAddress: home.routerTunnelAddress, vpsRules: home.vpsRules.map((r) => r.rendered) };
  };

  /** Runs one CLI operation, recording this process's output meanwhile, its result and its error. */
  async function op<T>(what: string, work: () => Promise<T>): Promise<{ value?: T; error?: Error }> {
    const writes: string[] = [];
    const out = process.stdout.write.bind(process.stdout);
    const err = process.stderr.write.bind(process.stderr);
    const tap = (orig: typeof out) =>
      ((chunk: unknown, ...rest: unknown[]) => {
        writes.push(String(chunk));
        return (orig as (...a: unknown[]) => boolean)(chunk, ...rest);
      }) as typeof out;
    process.stdout.write = tap(out);
    process.stderr.write = tap(err);
    let result: { value?: T; error?: Error };
    const started = Date.now();
    try {
      result = { value: await work() };
    } catch (e) {
      const error = e as Error & { steps?: Step[] };
      searched.errors.push(`${what}: ${error.name}: ${error.message}\n${error.stack ?? ""}`);
      if (error.steps) searched.outputs.push(JSON.stringify(error.steps.map((s) => ({ ...s, changes: s.changes.map(shown) }))));
      result = { error };
    } finally {
      process.stdout.write = out;
      process.stderr.write = err;
      timings.push(`${what}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }
    ownOutput.push(...writes.join("").split("\n").filter(Boolean));
    if (fs.existsSync(stateFile)) {
      const raw = fs.readFileSync(stateFile, "utf8");
      searched.state.push(JSON.stringify((JSON.parse(raw) as { resources: StateResource[] }).resources.map(asCheckpoint), null, 2));
      rawStates.push(raw);
    }
    const v = result.value as unknown;
    if (v && typeof v === "object" && "steps" in (v as object)) {
      const r = v as RunResult;
      searched.outputs.push(JSON.stringify(r.exports), JSON.stringify(r.steps.map((s) => ({ ...s, changes: s.changes.map(shown) }))));
    } else if (Array.isArray(v)) {
      searched.outputs.push(JSON.stringify((v as (Step | RefreshStep)[]).map((s) => ({ ...s, changes: s.changes.map(shown) }))));
    }
    return result;
  }
  const rawStates: string[] = [];
  const timings: string[] = [];

  before(async () => {
    lab = getLab();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "natgate-secrets-"));
    stateFile = path.join(tmp, "state.json");
    const tag = crypto.randomBytes(6).toString("hex");
    PASSPHRASE = `mk-pass"${tag}\\phrase`;
    PASSWORD = lab.users.pw.password;
    const keyFile = path.join(tmp, "ops_ed25519");
    fs.writeFileSync(keyFile, lab.users.ops.privateKey, { mode: 0o600 });
    execFileSync("ssh-keygen", ["-q", "-p", "-f", keyFile, "-P", "", "-N", PASSPHRASE]);
    encryptedKey = fs.readFileSync(keyFile, "utf8");
    assert.match(encryptedKey, /BEGIN OPENSSH PRIVATE KEY/);
    assert.notEqual(encryptedKey, lab.users.ops.privateKey, "the key is encrypted");
    // Keys of the same kinds, one plain and one encrypted, for what every such key has in common.
    const others = ["plain", "encrypted"].map((kind) => {
      const f = path.join(tmp, `other_${kind}`);
      execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", kind === "plain" ? "" : "other", "-C", "", "-f", f]);
      return fs.readFileSync(f, "utf8");
    });
    markers = [
      { name: "passphrase", needles: formsOf(PASSPHRASE) },
      { name: "password", needles: formsOf(PASSWORD) },
      { name: "encrypted key", needles: [...formsOf(encryptedKey), ...keyPieces(encryptedKey, others)] },
      { name: "decrypted key", needles: [...formsOf(lab.users.ops.privateKey), ...keyPieces(lab.users.ops.privateKey, others)] },
    ];
    server = await startProviderServer({ cwd: REPO_ROOT, env: { PULUMI_NODEJS_PROJECT: PROJECT } });
    stack = new Stack({
      project: PROJECT,
      config: {
        [`${PROJECT}:opsKey`]: encryptedKey,
        [`${PROJECT}:opsKeyPassphrase`]: PASSPHRASE,
        [`${PROJECT}:jumpPassword`]: PASSWORD,
      },
      secretKeys: [`${PROJECT}:opsKey`, `${PROJECT}:jumpPassword`],
      stateFile,
      server,
      onStep: (e) => events.push(e),
    });
  });

  after(async () => {
    if (stack?.state.length) await stack.destroy().catch((e) => console.error(`cleanup destroy failed: ${(e as Error).message}`));
    await stack?.close();
    await server?.close();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it("the search finds every marker in every form it looks for (it cannot pass by looking wrong)", () => {
    for (const m of markers) assert.ok(m.needles.length >= 3, m.name);
    const planted = [
      `x${PASSPHRASE}y`,
      JSON.stringify({ p: PASSPHRASE }),
      JSON.stringify(JSON.stringify({ p: PASSPHRASE })),
      Buffer.from(`ab${PASSWORD}cd`).toString("base64"),
      Buffer.from(`a${PASSPHRASE}`).toString("base64url"),
      encryptedKey.split("\n").slice(0, 3).join("\\n"),
      lab.users.ops.privateKey.replace(/\n/g, ""),
    ];
    const names = ["passphrase", "passphrase", "passphrase", "password", "passphrase", "encrypted key", "decrypted key"];
    planted.forEach((t, i) => assert.ok(findMarkers(markers, t).some((h) => h.startsWith(names[i])), `${names[i]} in ${t.slice(0, 60)}`));
    assert.deepEqual(findMarkers(markers, "ssh-ed25519 AAAA nothing secret here"), []);
  });

  it("runs the lifecycle: preview, up, preview of a change, a mistake, refresh, a failing update, up back, destroy", async () => {
    const started = Date.now();
    const preview0 = await op("preview from nothing", () => stack.preview(program));
    assert.ifError(preview0.error);
    assert.ok(preview0.value!.steps.some((s) => s.changes.some((c) => c.property === "connection" && c.secret)), "the preview shows the connection as a secret change");

    assert.ok(lab.hosts.vps.sshdLog, "the lab keeps the VPS's sshd log");
    const pwLogins = () => (fs.readFileSync(lab.hosts.vps.sshdLog!, "utf8").match(/Accepted password for pwuser /g) ?? []).length;
    const loginsBefore = pwLogins();
    const up = await op("up", () => stack.up(program));
    assert.ifError(up.error);
    assert.ok(up.value!.steps.filter((s) => s.op === "create").length >= 7, up.value!.steps.map((s) => `${s.name}:${s.op}`).join(" "));
    assert.match(await lab.hosts.router.run("nft list ruleset"), /5000-6000/, "the stack is on the hosts");
    assert.ok(pwLogins() > loginsBefore, "the jump host's password login was used");

    stack.setConfig("ports", "5000-5500");
    const preview1 = await op("preview of a narrower range", () => stack.preview(program));
    assert.ifError(preview1.error);
    assert.deepEqual(preview1.value!.steps.filter((s) => s.op !== "same").map((s) => s.name).sort(), ["home-router-0", "home-vps-0"]);
    stack.setConfig("ports", "5000-6000");

    // Secrets pasted into a field whose check failure quotes the value: the passphrase, and the
    // key's body without its BEGIN/END lines (as copied from between them).
    for (const [what, value] of [
      ["the passphrase", PASSPHRASE],
      ["the key's body lines", bodyLines(encryptedKey).join("\n")],
    ]) {
      mistake = value;
      const wrong = await op(`preview with ${what} pasted into connection.host`, () => stack.preview(program));
      mistake = undefined;
      assert.ok(wrong.error, `${what} is no host name`);
      assert.match(wrong.error!.message, /connection\.host/);
    }

    const refresh = await op("refresh", () => stack.refresh());
    assert.ifError(refresh.error);
    assert.deepEqual(refresh.value!.filter((s) => s.op !== "same").map((s) => s.name), []);

    // A LAN interface the router does not have: only the router can tell (its routes name the device).
    stack.setConfig("lanInterface", "br-nope");
    const failing = await op("up with a LAN interface the router lacks", () => stack.up(program));
    assert.ok(failing.error, "the update fails on the router");
    assert.match(failing.error!.message, /br-nope/);
    assert.ok(events.some((e) => e.phase === "failed" && e.step.op === "update"), "an update step failed");
    stack.setConfig("lanInterface", "br-lan");
    const back = await op("up back to br-lan", () => stack.up(program));
    assert.ifError(back.error);

    const destroy = await op("destroy", () => stack.destroy());
    assert.ifError(destroy.error);
    assert.deepEqual(stack.state, []);
    console.log(`      lifecycle: ${((Date.now() - started) / 1000).toFixed(1)} s (${timings.join("; ")})`);
  });

  it("the raw checkpoint holds every marker, and only in properties the program marked secret", () => {
    assert.ok(rawStates.length >= 5, `${rawStates.length} checkpoints`);
    const all = rawStates.join("\n");
    for (const name of ["passphrase", "password", "encrypted key"]) {
      assert.ok(findMarkers(markers, all).some((h) => h.startsWith(name)), `${name} is in the raw checkpoint: the search can see it`);
    }
    // The resources that hold a connection hold it as a secret.
    const withConnection = (JSON.parse(rawStates[1]) as { resources: StateResource[] }).resources.filter((r) => findMarkers(markers, JSON.stringify(r.inputs)).length);
    assert.ok(withConnection.length >= 7, `${withConnection.length} resources carry the secrets`);
    for (const r of withConnection) assert.ok(r.secretInputs.length > 0, `${r.name}: no secret inputs`);
  });

  it("no marker in any checkpoint, output, log line or error", () => {
    searched.logs.push(
      ...server.stdout().split("\n"),
      ...server.stderr().split("\n"),
      ...events.map((e) => JSON.stringify(e)),
      ...ownOutput,
    );
    const leaks: string[] = [];
    for (const [kind, texts] of Object.entries(searched)) {
      texts.forEach((t, i) => {
        const hits = findMarkers(markers, t);
        if (hits.length) leaks.push(`${kind}[${i}]: ${hits.join(", ")}\n    ${t.slice(0, 300)}`);
      });
    }
    const counts = Object.fromEntries(Object.entries(searched).map(([k, v]) => [k, v.length]));
    console.log(`      searched: ${JSON.stringify(counts)}, ${markers.reduce((n, m) => n + m.needles.length, 0)} needles for ${markers.length} markers`);
    assert.ok(searched.errors.length >= 3 && searched.state.length >= 5 && searched.logs.length >= 20, JSON.stringify(counts));
    assert.deepEqual(leaks, []);
  });
});
