// A real Debian 12 with systemd as the lab's VPS: the image scripts/build-debian-vps.sh caches,
// booted with systemd-nspawn inside the VPS's network namespace (eth0 198.51.100.1, the routes
// lab.sh set) in place of the lab's own sshd (DESIGN.md §3 "Real host software in the lab").
//
//   const vps = await bootDebianVps(lab);      // stops the lab's VPS sshd, boots Debian
//   await vps.run("systemctl is-system-running");
//   await vps.reboot();                        // systemctl reboot; nspawn exits 133, starts again
//   await restoreLabVps(lab);                  // powers Debian off, the lab's sshd is back
//
// Disk: an overlayfs per boot of bootDebianVps (lower = the cached image, upper/work in the lab
// dir), mounted only inside nspawn's own mount namespace, so each bootDebianVps starts from the
// clean image while reboot() keeps what was written before it, like a real disk. The overlay
// and nspawn's /run/systemd/nspawn (a tmpfs there) die with nspawn: nothing is mounted where
// the lab's teardown would have to find it. nspawn itself runs in the VPS namespace, so
// `lab.sh down` kills it and the container with every other process of the lab.
//
// While Debian runs, lab.hosts.vps is the Debian VPS: exec/run/start enter the container,
// sshdPid is the container's PID 1 (its mount namespace is the VPS's file system), sshdLog is
// undefined (logins are in the journal: `journalctl -u ssh`); ssh and hostKey are unchanged
// (Debian's sshd gets the lab VPS's host key and the lab's root and ops keys).
import { execFile, execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import { constants as osConstants } from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import type { LabDescription } from "./description";
import {
  isAlive,
  killGroup,
  spawnCollect,
  loadLab,
  shQuote,
  type ExecOptions,
  type ExecResult,
  type Lab,
  type LabHost,
  type LabProcess,
  type LabSsh,
  type StartOptions,
} from "./index";

const execFileP = promisify(execFile);
const REPO = path.resolve(__dirname, "..", "..");
const BUILD_SCRIPT = path.join(REPO, "scripts", "build-debian-vps.sh");
const LAB_SH = path.join(__dirname, "lab.sh");
const CONTAINER_ENV = [
  "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
  "HOME=/root",
  "USER=root",
  "LOGNAME=root",
  "LANG=C.UTF-8",
  "TERM=dumb",
  "SYSTEMD_PAGER=",
  "SYSTEMD_COLORS=0",
];
/** systemd-nspawn's exit code when the container asked for a reboot (systemd-nspawn@.service restarts on it) */
export const NSPAWN_REBOOT_EXIT = 133;

/** The cached Debian 12 image for the current build script; throws with what to run when it is not built. */
export function debianVpsDir(): string {
  const dir = execFileSync("bash", [BUILD_SCRIPT, "--print-dir"], { encoding: "utf8" }).trim();
  if (!fs.existsSync(path.join(dir, ".natgate-debian-vps"))) {
    throw new Error(
      `no Debian VPS image at ${dir}: run scripts/build-debian-vps.sh as root (scripts/prepare.sh, which npm test runs, does)`,
    );
  }
  return dir;
}

export interface BootOptions {
  /**
   * eth0 under systemd-networkd (enabled in the image, default ManageForeign* settings):
   * "static" (default) adds /etc/systemd/network/10-natgate-lab-eth0.network matching eth0 with
   * the address and gateway the lab gave it, as on a VPS configured by networkd, so networkd
   * manages eth0 and network-online.target waits for it; "none" adds no .network file: networkd
   * runs but manages no link (and systemd-networkd-wait-online is masked, as it would only time out).
   */
  network?: "static" | "none";
  /** for the boot to reach running/degraded with sshd answering; default 60 s */
  timeoutMs?: number;
}

export interface DebianVps {
  readonly lab: Lab;
  /** nspawn's --machine name, <prefix>-vps */
  readonly machine: string;
  /** the cached image (overlay lowerdir, never written) */
  readonly image: string;
  /** this boot's state in the lab dir: upper/ and work/ (the disk), root/ (mount point), console.log */
  readonly dir: string;
  /** the overlay upper dir: every file the VPS wrote, readable from the test process */
  readonly upper: string;
  /** the container's console (systemd's boot and shutdown messages), appended across reboots */
  readonly consoleLog: string;
  /** root login, as lab.hosts.vps.ssh (same address, host key and key) */
  readonly ssh: LabSsh;
  /** the VPS as a LabHost (also installed as lab.hosts.vps while it runs) */
  readonly host: LabHost;
  /** systemd-nspawn's PID for the current boot */
  readonly nspawnPid: number;
  /** the container's PID 1 (systemd) as the machine sees it */
  readonly leaderPid: number;
  /** boots so far: 1 after bootDebianVps, +1 per reboot */
  readonly boots: number;
  readonly running: boolean;
  /** seconds from starting nspawn to running/degraded with sshd answering, first boot */
  readonly bootSeconds: number;
  /** `sh -c cmd` as root in the container (all its namespaces); never throws on non-zero */
  exec(cmd: string, opts?: ExecOptions): Promise<ExecResult>;
  /** like exec, but throws on non-zero; returns stdout */
  run(cmd: string, opts?: ExecOptions): Promise<string>;
  /** `systemctl reboot` inside, nspawn exits 133 and is started again; resolves with the seconds it took once running again */
  reboot(opts?: { timeoutMs?: number }): Promise<number>;
  /** `systemctl poweroff` inside; resolves with nspawn's exit code once it ended; throws if it did not within the timeout */
  poweroff(opts?: { timeoutMs?: number }): Promise<number>;
  /** poweroff, then SIGTERM and SIGKILL to the nspawn (and container PID 1) it started if needed; never throws */
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const active = new Map<string, Vps>();

/** The Debian VPS booted in this lab and not yet stopped, if any. */
export function activeDebianVps(lab: Lab): DebianVps | undefined {
  const v = active.get(lab.prefix);
  return v?.running ? v : undefined;
}

// What a real reboot forgets: the VPS's network namespace outlives the container, so before each
// boot (and when the lab's own VPS comes back) drop what was configured in it: links created
// there (wg0...), nftables and iptables-legacy rules, policy rules, routes outside the local
// table, conntrack entries, forwarding; eth0 keeps its link and loses its IPv4 address, which
// systemd-networkd gives back (.network) or, with configure=yes, this does, as lab.sh did.
// Runs with the machine's tools, inside the VPS's network namespace.
const NET_RESET_SH = String.raw`reset_net() {
  addr=$1 gw=$2 configure=$3
  for l in $(ip -o link show | sed -n 's/^[0-9]*: \([^:@]*\).*/\1/p'); do
    case $l in lo | eth0) ;; *) ip link del "$l" 2>/dev/null || true ;; esac
  done
  nft flush ruleset 2>/dev/null || true
  if command -v iptables-legacy >/dev/null; then
    for t in $(cat /proc/net/ip_tables_names 2>/dev/null); do
      iptables-legacy -t "$t" -F && iptables-legacy -t "$t" -X || true
      for c in INPUT FORWARD OUTPUT PREROUTING POSTROUTING; do iptables-legacy -t "$t" -P "$c" ACCEPT 2>/dev/null || true; done
    done
  fi
  for f in -4 -6; do
    ip "$f" rule flush
    ip "$f" rule add priority 32766 lookup main
    ip "$f" rule add priority 32767 lookup default
    for t in $(ip "$f" route show table all | sed -n 's/.* table \([^ ]*\).*/\1/p' | sort -u); do
      case $t in local | main) ;; *) ip "$f" route flush table "$t" ;; esac
    done
  done
  ip -4 route flush table main || true
  ip -4 addr flush dev eth0
  conntrack -F >/dev/null 2>&1 || true
  sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  if [ "$configure" = yes ]; then
    ip addr add "$addr" dev eth0
    ip route add default via "$gw" dev eth0
  fi
}
`;

// Runs in nspawn's own mount namespace (a private copy of the machine's, in the VPS's network
// namespace) before every boot: resets the network state, mounts the disk, provisions it on its
// first boot, then becomes systemd-nspawn.
const BOOT_SH = NET_RESET_SH + String.raw`set -eu
img=$1 state=$2 netns=$3 machine=$4 labdir=$5 addr=$6 gw=$7
root=$state/root
if [ -e "$state/eth0.network" ]; then reset_net "$addr" "$gw" no; else reset_net "$addr" "$gw" yes; fi

# nspawn keeps lock and propagation files here: in a tmpfs of this namespace they die with it.
mkdir -p /run/systemd/nspawn
mount -t tmpfs -o mode=755 natgate-nspawn /run/systemd/nspawn
mount -t overlay natgate-debian-vps -o "lowerdir=$img,upperdir=$state/upper,workdir=$state/work" "$root"
if [ ! -e "$state/provisioned" ]; then
  keys=$labdir/keys hostkey=$labdir/hosts/vps/ssh_host_ed25519_key
  install -d -m 700 "$root/root/.ssh"
  install -m 600 "$keys/root_ed25519.pub" "$root/root/.ssh/authorized_keys"
  install -m 600 "$hostkey" "$root/etc/ssh/ssh_host_ed25519_key"
  install -m 644 "$hostkey.pub" "$root/etc/ssh/ssh_host_ed25519_key.pub"
  chroot "$root" install -d -m 700 -o ops -g ops /home/ops/.ssh
  install -m 600 "$keys/ops_ed25519.pub" "$root/home/ops/.ssh/authorized_keys"
  chroot "$root" chown ops:ops /home/ops/.ssh/authorized_keys
  printf 'pwuser:%s\n' "$(cat "$keys/pwuser.password")" | chpasswd -R "$root"
  if [ -e "$state/eth0.network" ]; then
    install -m 644 "$state/eth0.network" "$root/etc/systemd/network/10-natgate-lab-eth0.network"
  else
    ln -sf /dev/null "$root/etc/systemd/system/systemd-networkd-wait-online.service"
  fi
  touch "$state/provisioned"
fi
export SYSTEMD_NSPAWN_API_VFS_WRITABLE=network
exec systemd-nspawn --boot --directory="$root" --machine="$machine" \
  --network-namespace-path="/run/netns/$netns" --register=no --keep-unit --console=passive \
  --capability=CAP_NET_ADMIN,CAP_NET_RAW --bind=/dev/net/tun --resolv-conf=off --timezone=off
`;

/**
 * Boots the cached Debian 12 as the lab's VPS: stops the lab's own VPS sshd (only that PID),
 * gives the container a fresh copy-on-write disk, starts systemd-nspawn in the VPS namespace and
 * waits until `systemctl is-system-running` says running or degraded and sshd answers on the
 * VPS's address. lab.hosts.vps then enters the container; restoreLabVps(lab) undoes all of it.
 */
export async function bootDebianVps(lab: Lab, opts: BootOptions = {}): Promise<DebianVps> {
  const image = debianVpsDir();
  if (activeDebianVps(lab)) throw new Error(`lab ${lab.prefix} already runs a Debian VPS: stop it or restoreLabVps(lab) first`);
  if (!fs.existsSync("/dev/net/tun")) throw new Error("/dev/net/tun is missing (wireguard-go in the VPS needs it; lab.sh up creates it)");
  await stopLabSshd(lab);

  const base = path.join(lab.dir, "debian-vps");
  fs.mkdirSync(base, { recursive: true });
  const dir = path.join(base, `boot-${fs.readdirSync(base).filter((f) => f.startsWith("boot-")).length + 1}`);
  for (const d of ["upper", "work", "root"]) fs.mkdirSync(path.join(dir, d), { recursive: true });
  const eth0 = await labEth0(lab);
  if ((opts.network ?? "static") === "static") fs.writeFileSync(path.join(dir, "eth0.network"), eth0Network(eth0));

  const vps = new Vps(lab, image, dir, eth0);
  active.set(lab.prefix, vps);
  const t0 = performance.now();
  try {
    vps.launch();
    await vps.waitBooted(opts.timeoutMs ?? 60_000);
  } catch (e) {
    await vps.stop();
    throw e;
  }
  vps.bootSeconds = (performance.now() - t0) / 1000;
  installAsLabVps(lab, vps);
  return vps;
}

/**
 * Brings back the lab's usual VPS: stops this lab's Debian VPS if one runs, starts the lab's
 * VPS sshd as bring-up did (`lab.sh sshd`: same host key, config and overlay upper dirs) and
 * points lab.hosts.vps (and the lab record) at it. Nothing to do if the lab's sshd runs.
 */
export async function restoreLabVps(lab: Lab): Promise<void> {
  const vps = active.get(lab.prefix);
  if (vps) {
    await vps.stop();
    active.delete(lab.prefix);
  }
  if (labSshdPid(lab) !== undefined) return;
  // the lab's VPS as after bring-up: nothing the Debian VPS configured stays in the namespace
  const { addr, gateway } = await labEth0(lab);
  const script = `${NET_RESET_SH}set -eu; reset_net "$1" "$2" yes`;
  const reset = await spawnCollect(["nsenter", `--net=/run/netns/${lab.hosts.vps.netns}`, "sh", "-c", script, "reset", addr, gateway]);
  if (reset.code !== 0) throw new Error(`resetting ${lab.hosts.vps.netns}'s network failed: ${reset.stderr}${reset.stdout}`);
  let stdout: string;
  try {
    ({ stdout } = await execFileP("bash", [LAB_SH, "sshd", lab.prefix, lab.dir, "vps"]));
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`lab.sh sshd ${lab.prefix} ${lab.dir} vps failed: ${(err.stderr || err.message).trim()}`);
  }
  const pid = Number(stdout.trim());
  if (!Number.isInteger(pid) || pid <= 1) throw new Error(`lab.sh sshd printed no PID: ${stdout}`);
  const d = JSON.parse(fs.readFileSync(lab.file, "utf8")) as LabDescription;
  d.hosts.vps.sshd!.pid = pid;
  const tmp = `${lab.file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(d, null, 2) + "\n", { mode: 0o600 });
  fs.renameSync(tmp, lab.file);
  setHostProps(lab.hosts.vps, loadLab(lab.file).hosts.vps);
}

/** The lab's VPS sshd PID when it runs (recorded in hosts/vps/sshd.pid, the binary checked against PID reuse). */
function labSshdPid(lab: Lab): number | undefined {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(path.join(lab.dir, "hosts", "vps", "sshd.pid"), "utf8").trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 1 || !isAlive(pid)) return undefined;
  try {
    return fs.readlinkSync(`/proc/${pid}/exe`) === "/usr/sbin/sshd" ? pid : undefined;
  } catch {
    return undefined;
  }
}

async function stopLabSshd(lab: Lab): Promise<void> {
  const pid = labSshdPid(lab);
  if (pid !== undefined) {
    process.kill(pid, "SIGTERM");
    for (let i = 0; i < 60 && isAlive(pid); i++) await sleep(50);
    if (isAlive(pid)) process.kill(pid, "SIGKILL");
  }
  // Sessions it had (their own sshd processes) may go on; only the listener must be gone.
  for (const deadline = Date.now() + 5000; ; ) {
    const r = await spawnCollect(["nsenter", `--net=/run/netns/${lab.hosts.vps.netns}`, "ss", "-Hltn", "sport = :22"]);
    if (r.code === 0 && !r.stdout.trim()) return;
    if (Date.now() > deadline) throw new Error(`something still listens on port 22 in ${lab.hosts.vps.netns}: ${r.stdout}${r.stderr}`);
    await sleep(50);
  }
}

interface Eth0 {
  /** address/prefix, e.g. 198.51.100.1/24 */
  addr: string;
  gateway: string;
}

const labEth0s = new Map<string, Eth0>();

/**
 * eth0's address and default gateway as the lab configured them in the VPS namespace, read
 * before this lab's first Debian boot changed them (the lab's addresses, with a /24, if gone).
 */
async function labEth0(lab: Lab): Promise<Eth0> {
  const known = labEth0s.get(lab.prefix);
  if (known) return known;
  const net = `--net=/run/netns/${lab.hosts.vps.netns}`;
  const a = await spawnCollect(["nsenter", net, "ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
  const r = await spawnCollect(["nsenter", net, "ip", "-4", "route", "show", "default"]);
  const eth0 = {
    addr: /\binet (\S+)/.exec(a.stdout)?.[1] ?? `${lab.hosts.vps.addr}/24`,
    gateway: /^default via (\S+) dev eth0\b/m.exec(r.stdout)?.[1] ?? lab.addresses.coreVpsSide,
  };
  if (!eth0.gateway) throw new Error(`cannot tell eth0's gateway in ${lab.hosts.vps.netns}: ${r.stdout}${r.stderr}`);
  labEth0s.set(lab.prefix, eth0);
  return eth0;
}

/**
 * eth0's .network: the lab's address and gateway, static. IPv6AcceptRA=no: the lab has no IPv6
 * router, and with router discovery on networkd would keep eth0 "configuring" forever (and
 * network-online.target would wait for systemd-networkd-wait-online's 2 min timeout).
 */
function eth0Network(eth0: Eth0): string {
  return [
    "# natgate lab (test/lab/debianVps.ts): eth0 as the lab set it up, configured by networkd",
    "[Match]",
    "Name=eth0",
    "",
    "[Network]",
    `Address=${eth0.addr}`,
    `Gateway=${eth0.gateway}`,
    "IPv6AcceptRA=no",
    "",
  ].join("\n");
}

class Vps implements DebianVps {
  readonly machine: string;
  readonly upper: string;
  readonly consoleLog: string;
  readonly ssh: LabSsh;
  readonly host: LabHost;
  bootSeconds = 0;
  nspawnPid = 0;
  leaderPid = 0;
  boots = 0;
  private stopping = false;
  private exitCodes: number[] = [];
  private alive = false;
  private waiters = new Set<() => void>();

  constructor(
    readonly lab: Lab,
    readonly image: string,
    readonly dir: string,
    private readonly eth0: Eth0,
  ) {
    this.machine = `${lab.prefix}-vps`;
    this.upper = path.join(dir, "upper");
    this.consoleLog = path.join(dir, "console.log");
    this.ssh = { ...lab.hosts.vps.ssh! };
    const self = this;
    this.host = {
      name: "vps",
      netns: lab.hosts.vps.netns,
      addr: lab.hosts.vps.addr,
      exec: (cmd, o) => this.exec(cmd, o),
      run: (cmd, o) => this.run(cmd, o),
      start: (cmd, o) => this.start(cmd, o),
      ssh: this.ssh,
      hostKeyFingerprint: lab.hosts.vps.hostKeyFingerprint,
      get sshdPid() {
        return self.leaderPid;
      },
      sshdLog: undefined,
    };
  }

  get running(): boolean {
    return this.alive && !this.stopping;
  }

  /** Starts nspawn for one boot; a reboot (exit 133) starts the next one, as systemd-nspawn@.service does. */
  launch(): void {
    const out = fs.openSync(this.consoleLog, "a");
    const { lab } = this;
    const args = [...cgroupMountNs(), `--net=/run/netns/${lab.hosts.vps.netns}`, "unshare", "--mount", "--propagation", "private"];
    args.push("sh", "-c", BOOT_SH, "natgate-debian-vps", this.image, this.dir, lab.hosts.vps.netns, this.machine, lab.dir, this.eth0.addr, this.eth0.gateway);
    const child = spawn("nsenter", args, {
      stdio: ["ignore", out, out],
      // its own process group: a ^C to the test run goes to the tests, the lab's teardown ends nspawn
      detached: true,
      env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", LANG: "C.UTF-8" },
    });
    fs.closeSync(out);
    // The test run may end while the VPS runs: lab teardown stops it, node must not wait for it.
    child.unref();
    if (!child.pid) throw new Error("could not start systemd-nspawn");
    this.nspawnPid = child.pid;
    this.leaderPid = 0;
    this.alive = true;
    this.boots++;
    child.on("error", () => undefined);
    child.on("exit", (code, signal) => {
      const c = code ?? 128 + (signal ? osConstants.signals[signal] : 0);
      this.exitCodes.push(c);
      this.alive = false;
      if (c === NSPAWN_REBOOT_EXIT && !this.stopping) {
        try {
          this.launch();
        } catch {
          /* reported by waitBooted: not alive */
        }
      }
      for (const w of this.waiters) w();
    });
  }

  private lastExit(): string {
    const c = this.exitCodes[this.exitCodes.length - 1];
    return c === undefined ? "" : `systemd-nspawn exited with code ${c}`;
  }

  private consoleTail(): string {
    try {
      return fs.readFileSync(this.consoleLog, "utf8").split("\n").slice(-40).join("\n");
    } catch {
      return "";
    }
  }

  /** Resolves when pred() holds, checked now and on every nspawn exit or every 50 ms. */
  private async until(pred: () => boolean, timeoutMs: number): Promise<boolean> {
    for (const deadline = Date.now() + timeoutMs; !pred(); ) {
      if (Date.now() > deadline) return false;
      await new Promise<void>((resolve) => {
        const w = () => {
          clearTimeout(t);
          this.waiters.delete(w);
          resolve();
        };
        const t = setTimeout(w, 50);
        this.waiters.add(w);
      });
    }
    return true;
  }

  /** The container's PID 1 once it is systemd: nspawn's child whose innermost PID is 1. */
  private findLeader(): number {
    const pid = this.nspawnPid;
    let tasks: string[];
    try {
      tasks = fs.readdirSync(`/proc/${pid}/task`);
    } catch {
      return 0;
    }
    for (const t of tasks) {
      let children: string[];
      try {
        children = fs.readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
      } catch {
        continue;
      }
      for (const c of children) {
        try {
          const comm = fs.readFileSync(`/proc/${c}/comm`, "utf8").trim();
          if (innermostPid(Number(c)) === 1 && comm === "systemd") return Number(c);
        } catch {
          /* gone meanwhile */
        }
      }
    }
    return 0;
  }

  async waitBooted(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const fail = (what: string): never => {
      throw new Error(`Debian VPS ${this.machine}: ${what} ${this.lastExit()}\nconsole (${this.consoleLog}):\n${this.consoleTail()}`);
    };
    if (!(await this.until(() => !this.alive || (this.leaderPid = this.findLeader()) > 0, timeoutMs)) || !this.alive) {
      fail("systemd did not start in the container");
    }
    let state = "";
    for (;;) {
      if (!this.alive) fail(`the container ended while booting (last state: ${state})`);
      const r = await this.exec("systemctl is-system-running", { timeoutMs: 10_000 });
      state = r.stdout.trim() || r.stderr.trim();
      if (state === "running" || state === "degraded") break;
      if (Date.now() > deadline) {
        const jobs = (await this.exec("systemctl list-jobs --no-legend; systemctl --failed --no-legend")).stdout;
        fail(`not booted after ${timeoutMs} ms: is-system-running says ${state}; jobs and failed units:\n${jobs}`);
      }
      await sleep(100);
    }
    // sshd answers on the VPS's address: an SSH banner through eth0's address, from inside
    const probe = `exec 3<>/dev/tcp/${this.host.addr}/22 && head -c 8 <&3`;
    for (;;) {
      const r = await this.exec(`timeout 3 bash -c ${shQuote(probe)}`, { timeoutMs: 5000 });
      if (r.stdout.startsWith("SSH-2.0")) return;
      if (!this.alive) fail("the container ended while waiting for sshd");
      if (Date.now() > deadline) {
        const st = (await this.exec("systemctl status --no-pager ssh.service 2>&1")).stdout;
        fail(`sshd does not answer on ${this.host.addr}:22 (${r.stdout}${r.stderr}):\n${st}`);
      }
      await sleep(100);
    }
  }

  private argv(cmd: string): string[] {
    // -r/-w without a value: the root and working directory of the container's PID 1
    return [
      "nsenter", "-t", String(this.leaderPid), "-m", "-u", "-i", "-n", "-p", "-C", "-r", "-w",
      "env", "-i", ...CONTAINER_ENV, "sh", "-c", cmd,
    ]; // prettier-ignore
  }

  exec(cmd: string, opts?: ExecOptions): Promise<ExecResult> {
    if (!this.alive || !this.leaderPid) {
      return Promise.resolve({
        code: 125,
        stdout: "",
        stderr: `the Debian VPS ${this.machine} is not running (${this.lastExit() || "not booted"}); restoreLabVps(lab) brings back the lab's VPS`,
      });
    }
    return spawnCollect(this.argv(cmd), opts);
  }

  async run(cmd: string, opts?: ExecOptions): Promise<string> {
    const r = await this.exec(cmd, opts);
    if (r.code !== 0) {
      throw new Error(`command failed on the Debian VPS (exit ${r.code}): ${cmd}\n${r.stderr.trim() || r.stdout.trim()}`);
    }
    return r.stdout;
  }

  /** Like LabHost.start: `sh -c cmd` in the container in the background; stop() kills its process group (nsenter and what it runs). */
  async start(cmd: string, opts: StartOptions = {}): Promise<LabProcess> {
    if (!this.alive || !this.leaderPid) throw new Error(`the Debian VPS ${this.machine} is not running`);
    const logDir = path.join(this.lab.dir, "logs");
    fs.mkdirSync(logDir, { recursive: true });
    const log = path.join(logDir, `vps-debian-${Date.now()}-${Math.random().toString(16).slice(2, 8)}.log`);
    const out = fs.openSync(log, "a");
    const argv = this.argv(cmd);
    const child = spawn(argv[0], argv.slice(1), { stdio: ["ignore", out, out], detached: true });
    fs.closeSync(out);
    child.unref();
    child.on("error", () => undefined);
    const pid = child.pid;
    if (!pid) throw new Error(`could not start on the Debian VPS: ${cmd}`);
    const proc: LabProcess = {
      pid,
      log,
      stop: async () => {
        killGroup(pid, "SIGTERM");
        for (let i = 0; i < 60 && isAlive(pid); i++) await sleep(50);
        if (isAlive(pid)) killGroup(pid, "SIGKILL");
      },
    };
    for (const [proto, port] of [["t", opts.waitForTcpPort], ["u", opts.waitForUdpPort]] as const) {
      if (port === undefined) continue;
      for (const deadline = Date.now() + 5000; ; ) {
        const r = await this.exec(`ss -Hln${proto} 'sport = :${port}'`);
        if (r.stdout.trim()) break;
        if (!isAlive(pid) || Date.now() > deadline) {
          await proc.stop();
          throw new Error(`${cmd} on the Debian VPS is not listening on ${proto === "t" ? "tcp" : "udp"} port ${port}: ${fs.readFileSync(log, "utf8").trim()}`);
        }
        await sleep(50);
      }
    }
    return proc;
  }

  async reboot(opts: { timeoutMs?: number } = {}): Promise<number> {
    if (!this.running) throw new Error(`the Debian VPS ${this.machine} is not running`);
    const timeoutMs = opts.timeoutMs ?? 60_000;
    const t0 = performance.now();
    const boots = this.boots;
    const exits = this.exitCodes.length;
    // The command's own process is killed by the shutdown it starts: its result says nothing.
    await this.exec("systemctl reboot", { timeoutMs: 10_000 });
    // done when the next boot started, or failed when nspawn ended otherwise than for a reboot
    const ended = () => !this.alive && this.exitCodes.length > exits && this.exitCodes[this.exitCodes.length - 1] !== NSPAWN_REBOOT_EXIT;
    await this.until(() => this.boots > boots || ended(), timeoutMs);
    if (this.boots === boots) {
      throw new Error(`Debian VPS ${this.machine} did not reboot: ${this.lastExit() || "systemd-nspawn still runs"}\n${this.consoleTail()}`);
    }
    await this.waitBooted(Math.max(1000, timeoutMs - (performance.now() - t0)));
    return (performance.now() - t0) / 1000;
  }

  async poweroff(opts: { timeoutMs?: number } = {}): Promise<number> {
    if (!this.alive) throw new Error(`the Debian VPS ${this.machine} is not running (${this.lastExit()})`);
    this.stopping = true;
    await this.exec("systemctl poweroff", { timeoutMs: 10_000 });
    if (!(await this.until(() => !this.alive, opts.timeoutMs ?? 30_000))) {
      throw new Error(`Debian VPS ${this.machine} still runs ${opts.timeoutMs ?? 30_000} ms after systemctl poweroff\n${this.consoleTail()}`);
    }
    return this.exitCodes[this.exitCodes.length - 1];
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.alive && this.leaderPid) {
      try {
        await this.poweroff({ timeoutMs: 20_000 });
      } catch {
        /* forced below */
      }
    }
    // nspawn turns SIGTERM into a clean halt of the container; SIGKILL ends nspawn only.
    for (const [signal, ms] of [["SIGTERM", 10_000], ["SIGKILL", 5000]] as const) {
      if (!this.alive) break;
      try {
        process.kill(this.nspawnPid, signal);
      } catch {
        /* gone */
      }
      await this.until(() => !this.alive, ms);
    }
    // A container whose nspawn was killed goes on under init: killing its PID 1 ends its PID
    // namespace, every process in it with it.
    const leader = this.leaderPid;
    if (leader > 1 && isAlive(leader) && innermostPid(leader) === 1) {
      try {
        process.kill(leader, "SIGKILL");
      } catch {
        /* gone */
      }
      for (let i = 0; i < 100 && isAlive(leader); i++) await sleep(50);
    }
  }
}

/** The PID a process has in its own (innermost) PID namespace, from NSpid in /proc/PID/status. */
function innermostPid(pid: number): number | undefined {
  try {
    const nspid = /^NSpid:\s+(.*)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))?.[1].trim().split(/\s+/);
    return nspid ? Number(nspid[nspid.length - 1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * nsenter's --mount= for nspawn: it needs the machine's cgroup file systems, and the test process
 * usually runs under `ip netns exec`, whose mount namespace has a sysfs of its own without
 * /sys/fs/cgroup. The nearest ancestor that sees them (the lab wrapper, cli.ts) has the machine's
 * mounts (PID 1's namespace is not open to us: it holds capabilities we lack). Empty when ours does.
 */
function cgroupMountNs(): string[] {
  const seesCgroups = (pid: number) =>
    fs.readFileSync(`/proc/${pid}/mountinfo`, "utf8").split("\n").some((l) => l.split(" ")[4]?.startsWith("/sys/fs/cgroup"));
  for (let pid = process.pid; pid > 1; ) {
    if (seesCgroups(pid)) return pid === process.pid ? [] : [`--mount=/proc/${pid}/ns/mnt`];
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    pid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  }
  throw new Error("neither the test process nor an ancestor sees /sys/fs/cgroup: systemd-nspawn needs the machine's cgroups");
}

/** While Debian runs, lab.hosts.vps is the container (same object, so every holder of the lab sees it). */
function installAsLabVps(lab: Lab, vps: Vps): void {
  setHostProps(lab.hosts.vps, vps.host);
}

/** Copies a host's properties (getters as getters) onto the lab's host object, replacing earlier ones. */
function setHostProps(target: LabHost, source: LabHost): void {
  for (const key of ["exec", "run", "start", "ssh", "hostKeyFingerprint", "sshdPid", "sshdLog"] as const) {
    const desc = Object.getOwnPropertyDescriptor(source, key) ?? { value: undefined };
    Object.defineProperty(target, key, { ...desc, enumerable: true, configurable: true });
  }
}

