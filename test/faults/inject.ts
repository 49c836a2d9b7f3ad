// Faults injected on a lab host from the server side, at the Nth remote script natgate runs there.
// root's login shell becomes a small sh script (in the host's own /etc/passwd overlay): sshd runs
// every exec as `$SHELL -c 'sh -s -- ...'`, so the script sees each of natgate's steps, counts
// them and, at the armed one, does what a bad network, a bad host or a power cut would do. The
// lab's own h.exec/h.run enter the namespaces directly and never pass through it.
import type { LabHost } from "../lab";

export const FAULT_MODES = ["kill-before", "kill-after", "fail", "reboot"] as const;
export type FaultMode = (typeof FAULT_MODES)[number];

export const FAULT_MEANING: Record<FaultMode, string> = {
  "kill-before": "SSH connection killed by the server before the step ran",
  "kill-after": "SSH connection killed by the server after the step ran, before its exit status was sent",
  fail: "the step's remote command failed (exit 1)",
  reboot: "the host rebooted before the step (runtime state lost, boot entries run) and the connection dropped",
};

export interface FaultHost {
  /** Fail (as `mode`) the `step`th script natgate runs on this host from now on (1-based). */
  arm(step: number, mode: FaultMode): Promise<void>;
  /** No fault; the step count starts again from 0. */
  disarm(): Promise<void>;
  /** Scripts natgate ran here since the last arm/disarm. */
  steps(): Promise<number>;
  /** Whether the armed fault happened (the host reached that step). */
  fired(): Promise<boolean>;
  /** root's login shell as it was. */
  restore(): Promise<void>;
}

// $PPID is the sshd process serving this connection: killing it cuts the TCP connection from the
// host's side, as a crashed sshd, an OOM kill or a NAT dropping the flow would.
const SHELL = (dir: string) => `#!/bin/sh
d=${dir}
n=$(cat "$d/count" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > "$d/count"
arm=$(cat "$d/arm" 2>/dev/null || true)
case "$arm" in
"$n kill-before") echo "$n" > "$d/fired"; kill -9 "$PPID"; exit 255 ;;
"$n fail") echo "$n" > "$d/fired"; cat > /dev/null; echo "injected failure at step $n" >&2; exit 1 ;;
"$n reboot") echo "$n" > "$d/fired"; /bin/sh "$d/reboot.sh" > "$d/reboot.log" 2>&1 < /dev/null; kill -9 "$PPID"; exit 255 ;;
"$n kill-after") /bin/sh "$@"; echo "$n" > "$d/fired"; kill -9 "$PPID"; exit 255 ;;
esac
exec /bin/sh "$@"
`;

/**
 * What a reboot loses: natgate's nft tables and iptables chains, the given ip rules and routing
 * tables, the given links (wireguard-go exits with its interface), sysctls back to their boot
 * values, conntrack and /run. /etc stays; then boot.sh runs the boot entries as the init system would.
 */
export interface RebootLoses {
  rulePriorities: number[];
  tables: number[];
  links: string[];
  sysctls: Record<string, string>;
}

function rebootScript(l: RebootLoses): string {
  return [
    "for t in $(nft list tables 2>/dev/null | awk '$3 ~ /^natgate_/ { print $2 \":\" $3 }'); do nft delete table ${t%%:*} ${t#*:}; done",
    ...l.rulePriorities.map((p) => `while ip rule del priority ${p} 2>/dev/null; do :; done; while ip -6 rule del priority ${p} 2>/dev/null; do :; done`),
    ...l.tables.map((t) => `ip route flush table ${t} 2>/dev/null; ip -6 route flush table ${t} 2>/dev/null`),
    ...l.links.map((k) => `ip link del ${k} 2>/dev/null`),
    ...Object.entries(l.sysctls).map(([k, v]) => `sysctl -qw ${k}=${v}`),
    "conntrack -F 2>/dev/null",
    // /run is a tmpfs: empty after a boot (the lab's sshd keeps its privilege-separation dir)
    "rm -rf /run/natgate /run/wireguard",
    "if [ -x /etc/natgate/boot.sh ]; then /etc/natgate/boot.sh; fi",
    "true",
  ].join("\n") + "\n";
}

export async function installFaults(h: LabHost, dir: string, loses: RebootLoses): Promise<FaultHost> {
  const shell = `${dir}/shell`;
  await h.run(`rm -rf ${dir} && mkdir -p ${dir} && cat > ${shell} && chmod 755 ${shell}`, { input: SHELL(dir) });
  await h.run(`cat > ${dir}/reboot.sh`, { input: rebootScript(loses) });
  const was = (await h.run("getent passwd root | cut -d: -f7")).trim();
  await h.run(`usermod -s ${shell} root`);
  const reset = async (arm: string) => void (await h.run(`rm -f ${dir}/fired; echo 0 > ${dir}/count; printf '%s' '${arm}' > ${dir}/arm`));
  return {
    arm: (step, mode) => reset(`${step} ${mode}`),
    disarm: () => reset(""),
    steps: async () => Number((await h.run(`cat ${dir}/count`)).trim()),
    fired: async () => (await h.exec(`test -e ${dir}/fired`)).code === 0,
    restore: async () => void (await h.run(`usermod -s ${was} root && rm -rf ${dir}`)),
  };
}
