// What tests import: the running lab's hosts, keys and users, rebuilt from the JSON record that
// `tsx test/lab/cli.ts run -- ...` points NATGATE_LAB at.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import { constants as osConstants } from "node:os";
import * as path from "node:path";
import { knownHostsPath, writeKnownHosts } from "./control";
import { HOST_NAMES, type HostName, type LabDescription } from "./description";

export type { HostName, LabDescription } from "./description";

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  /** written to the command's stdin */
  input?: string;
  /** default 60 s; on expiry the command is killed and code is 124 (like timeout(1)) */
  timeoutMs?: number;
}

export interface StartOptions {
  /** resolve only once something listens on this TCP port inside the host (5 s at most) */
  waitForTcpPort?: number;
  /** same for a UDP port */
  waitForUdpPort?: number;
}

/** A background process started in a host by LabHost.start; stop() kills its whole process group. */
export interface LabProcess {
  pid: number;
  /** file receiving its stdout and stderr */
  log: string;
  stop(): Promise<void>;
}

export interface LabSsh {
  host: string;
  port: number;
  user: string;
  privateKey: string;
  hostKey: string;
  /**
   * The lab's known_hosts file (every sshd host's key at its address), so a connection made from
   * these fields never reads the machine's ~/.ssh/known_hosts; a hostKey pin still wins over it.
   */
  knownHosts: string;
}

export interface LabHost {
  name: HostName;
  netns: string;
  addr: string;
  /** the host's IPv6 address (client, core, vps, router, lan, laptop; the ISP is IPv4-only) */
  addr6?: string;
  /** `sh -c cmd` as root inside the host's network (and, for sshd hosts, mount+UTS) namespace; never throws on non-zero */
  exec(cmd: string, opts?: ExecOptions): Promise<ExecResult>;
  /** like exec, but throws with stderr on non-zero; returns stdout */
  run(cmd: string, opts?: ExecOptions): Promise<string>;
  /** starts `sh -c cmd` in the background inside the host (in its own process group) */
  start(cmd: string, opts?: StartOptions): Promise<LabProcess>;
  /** root login; vps, router and lan only */
  ssh?: LabSsh;
  hostKeyFingerprint?: string;
  /** PID of the host's sshd, whose mount namespace is the host's file system view */
  sshdPid?: number;
  /** sshd's VERBOSE log: count lines matching /^Accepted \S+ for / for logins */
  sshdLog?: string;
}

export interface Lab {
  prefix: string;
  /** the JSON record this lab was loaded from */
  file: string;
  /** the lab's temp dir (keys, overlay upper dirs, logs) */
  dir: string;
  /** the lab's known_hosts file: each sshd host's key at its address (also in every host's ssh.knownHosts) */
  knownHosts: string;
  hosts: Record<HostName, LabHost>;
  users: {
    ops: { user: "ops"; privateKey: string };
    pw: { user: "pwuser"; password: string };
  };
  /** named addresses: ispPublic, ispCgnat, routerWan, routerLan, coreClientSide, coreIspSide, coreVpsSide, lanSubnet, cgnatSubnet */
  addresses: Record<string, string>;
  /** named IPv6 addresses: coreClientSide, coreVpsSide, routerLan, lanSubnet, and routerLinkLocal (the router's fe80:: on br-lan, the LAN's v6 default gateway) */
  addresses6: Record<string, string>;
}

let cached: Lab | undefined;

/** The lab this process runs in (NATGATE_LAB). Throws with what to do when run outside the wrapper. */
export function getLab(): Lab {
  const file = process.env.NATGATE_LAB;
  if (!file) {
    throw new Error(
      "NATGATE_LAB is not set: lab tests run inside the lab wrapper, e.g. " +
        "`npx tsx test/lab/cli.ts run -- npx mocha test/lab/topology.test.ts` (as root)",
    );
  }
  if (!cached || cached.file !== file) cached = loadLab(file);
  return cached;
}

export function loadLab(file: string): Lab {
  let d: LabDescription;
  try {
    d = JSON.parse(fs.readFileSync(file, "utf8")) as LabDescription;
  } catch (e) {
    throw new Error(`cannot read lab record ${file} (${(e as Error).message}); is the lab still up?`);
  }
  if (d.state !== "up") throw new Error(`lab ${d.prefix} is not up (state ${d.state}); bring it up again`);
  const rootKey = fs.readFileSync(d.keys.rootPrivateKeyPath, "utf8");
  // A lab brought up before labs wrote one gets it now.
  const knownHosts = fs.existsSync(knownHostsPath(d.dir)) ? knownHostsPath(d.dir) : writeKnownHosts(d);
  const hosts = Object.fromEntries(HOST_NAMES.map((h) => [h, makeHost(d, h, rootKey, knownHosts)])) as Record<HostName, LabHost>;
  const v6 = readIpv6(d.dir);
  for (const h of HOST_NAMES) if (v6.hosts[h]) hosts[h].addr6 = v6.hosts[h];
  return {
    prefix: d.prefix,
    file,
    dir: d.dir,
    knownHosts,
    hosts,
    users: {
      ops: { user: "ops", privateKey: fs.readFileSync(d.users.ops.privateKeyPath, "utf8") },
      pw: { user: "pwuser", password: d.users.pw.password },
    },
    addresses: d.addresses,
    addresses6: v6.addresses,
  };
}

/** IPv6 keys of lab.sh's lab.env (addr6.<host>, addr6.routerLinkLocal, net6.<name>); none from a lab without it */
function readIpv6(dir: string): { hosts: Partial<Record<HostName, string>>; addresses: Record<string, string> } {
  const hosts: Partial<Record<HostName, string>> = {};
  const addresses: Record<string, string> = {};
  let text = "";
  try {
    text = fs.readFileSync(path.join(dir, "lab.env"), "utf8");
  } catch {
    return { hosts, addresses };
  }
  for (const line of text.split("\n")) {
    const i = line.indexOf("=");
    if (i <= 0) continue;
    const [k, v] = [line.slice(0, i), line.slice(i + 1)];
    if (k.startsWith("net6.")) addresses[k.slice(5)] = v;
    else if (k === "addr6.routerLinkLocal") addresses.routerLinkLocal = v;
    else if (k.startsWith("addr6.") && (HOST_NAMES as readonly string[]).includes(k.slice(6))) hosts[k.slice(6) as HostName] = v;
  }
  return { hosts, addresses };
}

function makeHost(d: LabDescription, name: HostName, rootKey: string, knownHosts: string): LabHost {
  const h = d.hosts[name];
  const sshd = h.sshd;
  // sshd hosts: enter sshd's namespaces so commands see the host's own /etc, /run, hostname.
  const argv = (cmd: string) =>
    sshd
      ? ["nsenter", "-t", String(sshd.pid), "-m", "-n", "-u", "sh", "-c", cmd]
      : ["ip", "netns", "exec", h.netns, "sh", "-c", cmd];
  const exec = (cmd: string, opts?: ExecOptions) => spawnCollect(argv(cmd), opts);
  const run = async (cmd: string, opts?: ExecOptions) => {
    const r = await exec(cmd, opts);
    if (r.code !== 0) {
      throw new Error(`command failed on ${name} (exit ${r.code}): ${cmd}\n${r.stderr.trim() || r.stdout.trim()}`);
    }
    return r.stdout;
  };
  const host: LabHost = {
    name,
    netns: h.netns,
    addr: h.addr,
    exec,
    run,
    start: (cmd, opts) => startBackground(host, d.dir, cmd, opts),
  };
  if (sshd) {
    host.ssh = { host: h.addr, port: 22, user: "root", privateKey: rootKey, hostKey: sshd.hostKey, knownHosts };
    host.hostKeyFingerprint = sshd.hostKeyFingerprint;
    host.sshdPid = sshd.pid;
    host.sshdLog = sshd.log;
  }
  return host;
}

export function spawnCollect(argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  return new Promise((resolve) => {
    // detached: own process group, so a timeout kills the command's children too
    const child = spawn(argv[0], argv.slice(1), { stdio: ["pipe", "pipe", "pipe"], detached: true });
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
    child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid, "SIGKILL");
    }, timeoutMs);
    child.on("error", (e) => {
      clearTimeout(timer);
      resolve({ code: 127, stdout, stderr: stderr + String(e) });
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (timedOut) resolve({ code: 124, stdout, stderr: stderr + `\n[lab] timed out after ${timeoutMs} ms` });
      else resolve({ code: code ?? 128 + signalNumber(signal), stdout, stderr });
    });
    child.stdin.on("error", () => undefined); // a command that ignores its stdin may close it early
    child.stdin.end(opts.input ?? "");
  });
}

function signalNumber(signal: NodeJS.Signals | null): number {
  return signal ? osConstants.signals[signal] : 0;
}

export function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (!pid) return;
  try {
    process.kill(-pid, signal);
  } catch {
    /* already gone */
  }
}

/** alive and not a zombie (a zombie holds no socket, namespace or file any more) */
export function isAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function startBackground(host: LabHost, labDir: string, cmd: string, opts: StartOptions = {}): Promise<LabProcess> {
  const logDir = path.join(labDir, "logs");
  fs.mkdirSync(logDir, { recursive: true });
  const log = path.join(logDir, `${host.name}-${Date.now()}-${randomBytes(3).toString("hex")}.log`);
  // setsid: the process leads its own group, so stop() also reaches what it forks (socat fork, ...)
  const out = await host.run(`setsid sh -c ${shQuote(cmd)} </dev/null >${shQuote(log)} 2>&1 & echo $!`);
  const pid = Number(out.trim());
  if (!Number.isInteger(pid) || pid <= 1) throw new Error(`could not start on ${host.name}: ${cmd}`);
  const proc: LabProcess = {
    pid,
    log,
    stop: async () => {
      killGroup(pid, "SIGTERM");
      for (let i = 0; i < 60 && isAlive(pid); i++) await sleep(50);
      if (isAlive(pid)) killGroup(pid, "SIGKILL");
    },
  };
  const waits: Array<[string, number | undefined]> = [
    ["t", opts.waitForTcpPort],
    ["u", opts.waitForUdpPort],
  ];
  for (const [proto, port] of waits) {
    if (port === undefined) continue;
    const deadline = Date.now() + 5000;
    for (;;) {
      const r = await host.exec(`ss -Hln${proto} 'sport = :${port}'`);
      if (r.stdout.trim()) break;
      if (!isAlive(pid) || Date.now() > deadline) {
        await proc.stop();
        const output = fs.existsSync(log) ? fs.readFileSync(log, "utf8").trim() : "";
        throw new Error(`${cmd} on ${host.name} is not listening on ${proto === "t" ? "tcp" : "udp"} port ${port}: ${output}`);
      }
      await sleep(50);
    }
  }
  return proc;
}

/** POSIX single-quote quoting for the lab's own command lines */
export function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** First line the server sends on a fresh TCP connection from this process (the laptop). */
export function firstLine(host: string, port: number, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port });
    let buf = "";
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no line from ${host}:${port} within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.setEncoding("utf8");
    sock.on("data", (d: string) => {
      buf += d;
      const nl = buf.indexOf("\n");
      if (nl >= 0) {
        clearTimeout(timer);
        sock.destroy();
        resolve(buf.slice(0, nl).trim());
      }
    });
    sock.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/**
 * OpenWrt keeps sysupgrade's list in /lib/upgrade/keep.d, and /lib is the machine's, shared by
 * every lab host and every lab running at once: a copy-on-write /lib for host `h` (like its /etc)
 * while a test makes it look like OpenWrt. `tag` names the upper dir in the lab dir. Returns the undo.
 */
export async function privateLib(lab: Lab, h: LabHost, tag: string): Promise<() => Promise<void>> {
  const lib = (await h.run("readlink -f /lib")).trim();
  const dir = `${lab.dir}/${tag}-${h.name}-lib`;
  await h.run(`mkdir -p ${dir}/upper ${dir}/work && mount -t overlay overlay -o lowerdir=${lib},upperdir=${dir}/upper,workdir=${dir}/work ${lib}`);
  // Lazily: processes started meanwhile (sessions, wireguard-go) may still map files from it.
  return async () => void (await h.exec(`umount -l ${lib}`));
}
