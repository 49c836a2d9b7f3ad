// Brings labs up and down: drives lab.sh (the namespace plumbing) and keeps the JSON record
// (<lab dir>/<prefix>.json) that getLab() and `lab down` read.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import { HOST_NAMES, SSHD_HOSTS, type HostName, type LabDescription } from "./description";

const execFileP = promisify(execFile);
const LAB_SH = path.join(__dirname, "lab.sh");
const REPO = path.resolve(__dirname, "..", "..");
const PREFIX_RE = /^[a-z][a-z0-9]{1,9}$/;
const TEMP_DIR_PREFIX = "natgate-lab-";
// Not os.tmpdir(): overlay upper dirs must lie outside the overlaid /etc, /var, /root, /home.
const TEMP_BASE = "/tmp";

/** Where lab records live: $NATGATE_LAB_DIR or <repo>/.lab */
export function recordDir(): string {
  return process.env.NATGATE_LAB_DIR || path.join(REPO, ".lab");
}

export function recordPath(prefix: string): string {
  return path.join(recordDir(), `${prefix}.json`);
}

export function randomPrefix(): string {
  return `ng${randomBytes(2).toString("hex")}`;
}

function checkPrefix(prefix: string): void {
  if (!PREFIX_RE.test(prefix)) {
    throw new Error(`lab prefix must be 2-10 lowercase letters/digits starting with a letter, got "${prefix}"`);
  }
}

/** Prefixes of every lab recorded in recordDir() */
export function recordedPrefixes(): string[] {
  if (!fs.existsSync(recordDir())) return [];
  return fs
    .readdirSync(recordDir())
    .filter((f) => f.endsWith(".json"))
    .map((f) => f.slice(0, -".json".length))
    .filter((p) => PREFIX_RE.test(p));
}

function readRecord(prefix: string): LabDescription | undefined {
  try {
    return JSON.parse(fs.readFileSync(recordPath(prefix), "utf8")) as LabDescription;
  } catch {
    return undefined;
  }
}

function writeRecord(d: LabDescription): string {
  const file = recordPath(d.prefix);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(d, null, 2) + "\n", { mode: 0o600 });
  fs.renameSync(tmp, file);
  return file;
}

async function labSh(args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileP("bash", [LAB_SH, ...args], { maxBuffer: 16 << 20 });
    return stdout;
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`lab.sh ${args.join(" ")} failed: ${(err.stderr || err.message).trim()}`);
  }
}

function parseEnv(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split("\n")) {
    const i = line.indexOf("=");
    if (i > 0) m.set(line.slice(0, i), line.slice(i + 1));
  }
  return m;
}

async function fingerprint(pubKeyPath: string): Promise<string> {
  const { stdout } = await execFileP("ssh-keygen", ["-lf", pubKeyPath]);
  const fp = stdout.split(" ")[1];
  if (!fp?.startsWith("SHA256:")) throw new Error(`unexpected ssh-keygen -lf output: ${stdout}`);
  return fp;
}

/** The lab's own known_hosts (in its temp dir), so lab SSH never reads the machine's ~/.ssh/known_hosts. */
export function knownHostsPath(dir: string): string {
  return path.join(dir, "known_hosts");
}

/**
 * Writes the lab's known_hosts: each sshd host's key under the address tests reach it at (new keys
 * every bring-up, so a machine's own known_hosts may hold an earlier lab's keys for them).
 */
export function writeKnownHosts(d: LabDescription): string {
  const file = knownHostsPath(d.dir);
  const lines = [`# natgate lab ${d.prefix}: the host keys of this bring-up`];
  for (const h of SSHD_HOSTS) {
    const sshd = d.hosts[h].sshd;
    if (sshd) lines.push(`${d.hosts[h].addr} ${sshd.hostKey}`);
  }
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, lines.join("\n") + "\n", { mode: 0o644 });
  fs.renameSync(tmp, file);
  return file;
}

export interface UpResult {
  prefix: string;
  file: string;
  description: LabDescription;
  seconds: number;
}

/** Builds a lab (after removing stale objects of the same prefix) and records it. */
export async function labUp(prefix = process.env.NATGATE_LAB_PREFIX || randomPrefix()): Promise<UpResult> {
  checkPrefix(prefix);
  await labDown(prefix);
  const t0 = performance.now();
  const dir = fs.mkdtempSync(path.join(TEMP_BASE, `${TEMP_DIR_PREFIX}${prefix}-`));
  const ns = (h: HostName) => `${prefix}-${h}`;
  // Recorded before anything is built, so a crash mid-way still leaves `lab down` a trail.
  const d: LabDescription = {
    version: 1,
    prefix,
    dir,
    state: "starting",
    createdAt: new Date().toISOString(),
    hosts: Object.fromEntries(HOST_NAMES.map((h) => [h, { netns: ns(h), addr: "" }])) as LabDescription["hosts"],
    keys: { rootPrivateKeyPath: "", opsPrivateKeyPath: "" },
    users: { ops: { user: "ops", privateKeyPath: "" }, pw: { user: "pwuser", password: "" } },
    addresses: {},
    upSeconds: 0,
  };
  writeRecord(d);
  try {
    await labSh(["up", prefix, dir]);
    const env = parseEnv(fs.readFileSync(path.join(dir, "lab.env"), "utf8"));
    const get = (k: string) => {
      const v = env.get(k);
      if (v === undefined) throw new Error(`lab.env lacks ${k}`);
      return v;
    };
    for (const h of HOST_NAMES) d.hosts[h].addr = get(`addr.${h}`);
    for (const h of SSHD_HOSTS) {
      const hostDir = path.join(dir, "hosts", h);
      const pub = path.join(hostDir, "ssh_host_ed25519_key.pub");
      d.hosts[h].sshd = {
        pid: Number(get(`sshdPid.${h}`)),
        log: path.join(hostDir, "sshd.log"),
        hostKey: fs.readFileSync(pub, "utf8").trim(),
        hostKeyFingerprint: await fingerprint(pub),
      };
    }
    for (const [k, v] of env) if (k.startsWith("net.")) d.addresses[k.slice(4)] = v;
    d.keys = {
      rootPrivateKeyPath: path.join(dir, "keys", "root_ed25519"),
      opsPrivateKeyPath: path.join(dir, "keys", "ops_ed25519"),
    };
    d.users = {
      ops: { user: "ops", privateKeyPath: d.keys.opsPrivateKeyPath },
      pw: { user: "pwuser", password: fs.readFileSync(path.join(dir, "keys", "pwuser.password"), "utf8").trim() },
    };
    writeKnownHosts(d);
    d.state = "up";
    d.upSeconds = Number(((performance.now() - t0) / 1000).toFixed(3));
    const file = writeRecord(d);
    return { prefix, file, description: d, seconds: d.upSeconds };
  } catch (e) {
    await labDown(prefix).catch(() => undefined);
    throw e;
  }
}

export interface DownResult {
  prefix: string;
  seconds: number;
}

/**
 * Removes everything of a lab: processes inside its namespaces (sshd, sessions, wireguard-go,
 * listeners), the namespaces, its temp dir(s) and its record. Idempotent; throws if something
 * could not be removed rather than leaving it silently.
 */
export async function labDown(prefix: string): Promise<DownResult> {
  checkPrefix(prefix);
  const t0 = performance.now();
  const dirs = new Set<string>();
  const recorded = readRecord(prefix)?.dir;
  if (recorded) dirs.add(recorded);
  // Temp dirs of this prefix whose record was lost (crash between mkdtemp and the first write).
  for (const f of fs.readdirSync(TEMP_BASE)) {
    if (f.startsWith(`${TEMP_DIR_PREFIX}${prefix}-`)) dirs.add(path.join(TEMP_BASE, f));
  }
  if (dirs.size === 0) await labSh(["down", prefix]);
  for (const dir of dirs) await labSh(["down", prefix, dir]);
  fs.rmSync(recordPath(prefix), { force: true });
  return { prefix, seconds: Number(((performance.now() - t0) / 1000).toFixed(3)) };
}
