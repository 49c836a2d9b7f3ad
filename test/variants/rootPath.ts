// Root's PATH for SSH sessions on the router (its sshd reads PATH from ~/.ssh/environment, see
// test/lab/README.md): OpenWrt's BusyBox shell and applets, or a standard PATH with tools taken
// away. Directories live in the lab's temp dir and go with the lab.
import * as fs from "fs";
import * as path from "path";
import { execFileSync } from "child_process";
import { shQuote, type Lab } from "../lab";
import { scratchDir } from "./variantLab";

export const STANDARD_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

export async function setRouterRootPath(lab: Lab, dirs: string[]): Promise<void> {
  await lab.hosts.router.run(`printf 'PATH=%s\\n' ${shQuote(dirs.join(":"))} >/root/.ssh/environment`);
}

export async function clearRouterRootPath(lab: Lab): Promise<void> {
  await lab.hosts.router.run("rm -f /root/.ssh/environment");
}

/**
 * OpenWrt's userland as far as natgate's scripts can tell: `sh` is BusyBox ash and every BusyBox
 * applet (cat, awk, sed, mktemp, sleep, sysctl...) shadows the Debian tool, except `ip`, which on a
 * router natgate supports is ip-full (iproute2). nft, wg, conntrack have no applet and stay the
 * real ones. `sh` is a BusyBox script that notes each start in `log` before becoming ash, so a
 * test can count the sessions that ran under it.
 */
export function busyboxUserland(lab: Lab): { dir: string; log: string; busybox: string } {
  const busybox = fs.realpathSync(execFileSync("sh", ["-c", "command -v busybox"], { encoding: "utf8" }).trim());
  const dir = scratchDir(lab, "busybox-bin");
  const log = path.join(scratchDir(lab, "busybox-log"), "starts");
  const applets = execFileSync(busybox, ["--list"], { encoding: "utf8" }).split("\n").filter(Boolean);
  for (const a of applets) {
    if (["sh", "ip", "ipneigh", "reboot", "halt", "poweroff", "init", "linuxrc"].includes(a) || a.includes("/")) continue;
    const link = path.join(dir, a);
    if (!fs.existsSync(link)) fs.symlinkSync(busybox, link);
  }
  fs.writeFileSync(path.join(dir, "sh"), `#!${busybox} sh\necho "$$ $#" >>${shQuote(log)}\nexec ${busybox} sh "$@"\n`, { mode: 0o755 });
  fs.writeFileSync(log, "");
  return { dir, log, busybox };
}

/** A directory holding every command of a standard root PATH except `missing` (symlinks). */
export function pathWithout(lab: Lab, missing: string[]): string {
  return pathWithoutMatching(lab, missing.join("-"), (name) => missing.includes(name));
}

/** The same without every command `skip` names; `label` names the directory. */
export function pathWithoutMatching(lab: Lab, label: string, skip: (name: string) => boolean): string {
  const dir = scratchDir(lab, `path-without-${label}`);
  linkStandardPath(dir, skip);
  return dir;
}

/** Every command of a standard root PATH as a symlink in `dir`, except those `skip` names; a name already in `dir` stays. */
export function linkStandardPath(dir: string, skip: (name: string) => boolean): void {
  for (const d of STANDARD_PATH) {
    if (!fs.existsSync(d)) continue;
    for (const name of fs.readdirSync(d)) {
      if (skip(name)) continue;
      const link = path.join(dir, name);
      if (!isLink(link)) fs.symlinkSync(path.join(d, name), link);
    }
  }
}

/** Whether anything (a file, or a link, broken or not) has this name. */
export function isLink(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}
