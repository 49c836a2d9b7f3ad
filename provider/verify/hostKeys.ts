// Trust on first use for PathCheck's logins, as every other resource keeps its host's key: the
// fingerprints each host (and its jump host) presented are kept in the outputs, and the next run
// passes them back, so a changed key is refused even by a fresh provider process. Pure: no ssh2.
import type { Outputs } from "../engine/kind";
import type { Connection } from "../ssh/schema";
import type { PathCheckInputs } from "./schema";

/** A host PathCheck logs into: its connection, and the fingerprints expected of it (from state), then seen. */
export interface Login {
  readonly connection: Connection;
  /** the target's key: from state until the first script ran, then what it presented */
  fingerprint?: string | undefined;
  /** the same for connection.proxy */
  proxyFingerprint?: string | undefined;
}

export interface Logins {
  vps: Login;
  router: Login;
}

const FIELDS = {
  vps: { target: "vpsFingerprint", proxy: "vpsProxyFingerprint" },
  router: { target: "routerFingerprint", proxy: "routerProxyFingerprint" },
} as const;

/** The output fields (the SDK declares them too). */
export const FINGERPRINT_KEYS = Object.values(FIELDS).flatMap((f) => [f.target, f.proxy]);

type Endpoint = { host?: unknown; port?: unknown } | undefined;
const endpoint = (e: Endpoint): string | undefined => (e && typeof e === "object" ? `${String(e.host)}:${String(e.port ?? 22)}` : undefined);

/** What the target's key belongs to: its address as dialled, through which jump host (as dial's TOFU memory keys it). */
function route(c: Endpoint & { proxy?: Endpoint }): string | undefined {
  const target = endpoint(c);
  return target && (c!.proxy ? `${endpoint(c!.proxy)}>${target}` : target);
}

const text = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);

function loginOf(connection: Connection, old: unknown, olds: Outputs | undefined, role: keyof typeof FIELDS): Login {
  const before = old as (Endpoint & { proxy?: Endpoint }) | undefined;
  // A fingerprint from state counts only for the same route: a new address may be another machine.
  const fingerprint = before && route(before) === route(connection) ? text(olds?.[FIELDS[role].target]) : undefined;
  const proxyFingerprint =
    before?.proxy && connection.proxy && endpoint(before.proxy) === endpoint(connection.proxy) ? text(olds?.[FIELDS[role].proxy]) : undefined;
  return { connection, fingerprint, proxyFingerprint };
}

/** The logins of one run, primed with what the previous run's outputs (`olds`) kept. */
export function loginsOf(i: PathCheckInputs, olds?: Outputs): Logins {
  return {
    vps: loginOf(i.vpsConnection, olds?.vpsConnection, olds, "vps"),
    router: loginOf(i.routerConnection, olds?.routerConnection, olds, "router"),
  };
}

/** The fingerprints seen, as output fields (a jump host's only where there is one). */
export function fingerprintOutputs(l: Logins): Outputs {
  const out: Outputs = {};
  for (const role of ["vps", "router"] as const) {
    if (l[role].fingerprint) out[FIELDS[role].target] = l[role].fingerprint;
    if (l[role].connection.proxy && l[role].proxyFingerprint) out[FIELDS[role].proxy] = l[role].proxyFingerprint;
  }
  return out;
}
