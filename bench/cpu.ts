// The machine's busy CPU time, for both benches.
import { execFileSync } from "child_process";
import * as fs from "fs";

const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;

/**
 * CPU seconds the whole machine has spent busy so far (/proc/stat: user, nice, system, irq,
 * softirq, steal). Every lab host is a namespace of this one kernel, so a host's share of the
 * kernel's work (softirq forwarding, conntrack, NAT, sshd, the remote shells) cannot be told
 * apart: the figure is all of them together, the bench's own process included.
 */
export function busyCpuSeconds(): number {
  const f = fs.readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = f;
  return ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0)) / CLK_TCK;
}
