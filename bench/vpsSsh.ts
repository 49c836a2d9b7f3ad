// The OpenSSH client as the benchmarks' baselines use it (one connection per command, `ssh -R`):
// root on the lab's VPS with the lab's key, its host key pinned, never a prompt.
import * as fs from "fs";
import * as path from "path";
import type { Lab } from "../test/lab";

/** `ssh` options (before the destination) for root@`address` on the lab's VPS; the key files go into a new directory in the lab's. */
export function vpsSshOptions(lab: Lab, address: string): string[] {
  const dir = fs.mkdtempSync(path.join(lab.dir, "bench-ssh-"));
  const key = path.join(dir, "key");
  fs.writeFileSync(key, lab.hosts.vps.ssh!.privateKey, { mode: 0o600 });
  const known = path.join(dir, "known_hosts");
  fs.writeFileSync(known, `${address} ${lab.hosts.vps.ssh!.hostKey}\n`);
  return ["-i", key, "-o", `UserKnownHostsFile=${known}`, "-o", "BatchMode=yes"];
}
