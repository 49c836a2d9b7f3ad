// The lab's JSON record: written by control.ts when a lab comes up, read by getLab() in tests and
// by `lab down` to find what to remove. Only plain data (paths, PIDs, addresses), no functions.

export const HOST_NAMES = ["client", "core", "vps", "isp", "router", "lan", "laptop"] as const;
export type HostName = (typeof HOST_NAMES)[number];
export const SSHD_HOSTS = ["vps", "router", "lan"] as const;
export type SshdHostName = (typeof SSHD_HOSTS)[number];

export interface SshdDescription {
  pid: number;
  /** sshd's LogLevel VERBOSE log: one "Accepted <method> for <user> from <addr>" line per login (VERBOSE also logs "Accepted key ..." per key offered) */
  log: string;
  /** public host key line, "ssh-ed25519 AAAA... comment" (what ConnectionArgs.hostKey takes) */
  hostKey: string;
  /** "SHA256:..." as `ssh-keygen -lf` prints it */
  hostKeyFingerprint: string;
}

export interface HostDescription {
  netns: string;
  /** the address tests use to reach this host (see LabDescription.addresses for the others) */
  addr: string;
  sshd?: SshdDescription;
}

export interface LabDescription {
  version: 1;
  prefix: string;
  /** temp dir holding keys, overlay upper dirs, sshd configs and logs; removed by teardown */
  dir: string;
  state: "starting" | "up";
  createdAt: string;
  hosts: Record<HostName, HostDescription>;
  keys: { rootPrivateKeyPath: string; opsPrivateKeyPath: string };
  users: { ops: { user: "ops"; privateKeyPath: string }; pw: { user: "pwuser"; password: string } };
  /** every named address of the topology, e.g. ispPublic, routerWan, coreVpsSide */
  addresses: Record<string, string>;
  upSeconds: number;
}
