// What the IPv6 / dual-stack variants share: an address as the services print it, asking a
// forwarded service from a lab host over either family, and both families' host state.
import ipaddr from "ipaddr.js";
import type { LabHost } from "../lab";
import { hostState } from "./variantLab";

/** An address in one spelling (socat prints IPv6 in full, sometimes in brackets); anything else trimmed. */
export const canonical = (a: string): string => {
  try {
    return ipaddr.process(a.trim().replace(/^\[|\]$/g, "")).toString();
  } catch {
    return a.trim();
  }
};

/**
 * What a service behind `address:port` saw, asked from `from` over tcp or udp (udp once more when
 * no answer came: a datagram may be lost); "(no answer: ...)" when nothing came back.
 */
export async function ask(from: LabHost, proto: "tcp" | "udp", address: string, port: number): Promise<string> {
  const six = address.includes(":");
  const target = six ? `[${address}]:${port}` : `${address}:${port}`;
  const cmd = proto === "tcp"
    ? `socat -T3 - TCP${six ? "6" : "4"}:${target},connect-timeout=3 </dev/null`
    : `echo hello | socat -T2 - UDP${six ? "6" : "4"}:${target}`;
  let r = await from.exec(cmd, { timeoutMs: 10_000 });
  if (proto === "udp" && !r.stdout.trim()) r = await from.exec(cmd, { timeoutMs: 10_000 });
  const line = r.stdout.trim().split("\n")[0] ?? "";
  return line ? canonical(line) : `(no answer: ${r.stderr.trim().split("\n").pop()})`;
}

/** The variants' host state plus the IPv6 side natgate touches: what a destroy must leave as it found it. */
export async function stateBothFamilies(h: LabHost): Promise<string> {
  const v6 = await h.run("echo '# ip -6 rule'; ip -6 rule; echo '# ip -6 route'; ip -6 route show table all | grep -v ' proto kernel '; echo '# ip6tables'; ip6tables -w -S; ip6tables -w -t nat -S; sysctl net.ipv6.conf.all.forwarding; for f in /proc/sys/net/ipv6/conf/*/accept_ra; do echo \"$f $(cat $f)\"; done");
  return ((await hostState(h)) + "\n" + v6).replace(/counter packets \d+ bytes \d+/g, "counter");
}
