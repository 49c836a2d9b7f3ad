import { z } from "zod";
import { BACKEND_CHOICES, resolveBackend, type Backend, type BackendChoice, type FirewallFacts } from "../../plan/firewall";
import { NatgateError } from "../../ssh/errors";

/** The `backend` input of every resource that writes packet-filter rules. */
export const backendChoice = z
  .enum(BACKEND_CHOICES, { error: 'must be "auto", "nftables" or "iptables" ("auto": nftables where nft works on the host, else iptables)' })
  .default("auto");

/** The backend an apply uses on this host, or an error (before anything is written) saying what to install. */
export function requireBackend(what: string, choice: BackendChoice, facts: FirewallFacts): Backend {
  const b = resolveBackend(choice, facts);
  if (b !== "nftables" && b !== "iptables") throw new NatgateError("config", `${what}: ${b}`);
  return b;
}

/**
 * The backend a refresh compares with: the one the host offers now, or, when it offers none that
 * fits, the one the last apply used, with the reason as drift.
 */
export function observedBackend(choice: BackendChoice, facts: FirewallFacts, previous: unknown): { backend: Backend; problem?: string } {
  const b = resolveBackend(choice, facts);
  if (b === "nftables" || b === "iptables") return { backend: b };
  return { backend: previous === "iptables" ? "iptables" : "nftables", problem: b };
}
