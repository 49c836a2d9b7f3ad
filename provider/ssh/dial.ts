import { createHash } from "crypto";
import type { Duplex } from "stream";
import { Client, type ClientChannel, type ConnectConfig } from "ssh2";
import { NatgateError } from "./errors";
import { fingerprintOfKeyBlob, hostKeyAlgorithmsFor, keyTypeOfBlob, mismatchError, parseHostKeyPin, type Expectation } from "./hostkey";
import { certAuthorityNote, judgeHostKey, knownHostsFor, knownHostsNoCommonType, knownHostsOffer, knownHostsRefusal, type KnownHostsLookup } from "./knownHosts";
import type { Connection, ProxyConnection } from "./schema";

type Endpoint = Connection | ProxyConnection;
export { mismatchError, type Expectation, type ExpectationSource } from "./hostkey";

/** A connected, authenticated client (and the jump host client it tunnels through). */
export interface Dialed {
  client: Client;
  proxyClient?: Client;
  fingerprint: string;
  proxyFingerprint?: string;
}

// TOFU memory for this process: the first key seen per route refuses a later change,
// even for callers that keep no state. Only for the default algorithm offer, because
// a pinned key line narrows the offer and the server then presents another of its keys.
const seenFingerprints = new Map<string, string>();

export function endpointName(ep: Endpoint): string {
  const host = ep.host.includes(":") ? `[${ep.host}]` : ep.host;
  return `${ep.user}@${host}:${ep.port}`;
}

/** Human label of the whole route, used in every message: "root@10.0.0.2:22 (via jump host root@vps:22)". */
export function routeLabel(conn: Connection): string {
  return endpointName(conn) + (conn.proxy ? ` (via jump host ${endpointName(conn.proxy)})` : "");
}

/** Key of the TOFU memory: what the client dials, as seen from here. */
export function routeKey(conn: Connection): string {
  const target = `${conn.host}:${conn.port}`;
  return conn.proxy ? `${conn.proxy.host}:${conn.proxy.port}>${target}` : target;
}

function pinOf(ep: Endpoint): { fingerprint: string; keyType?: string } | undefined {
  if (ep.hostKey === undefined) return undefined;
  const pin = parseHostKeyPin(ep.hostKey);
  if (typeof pin === "string") throw new NatgateError("config", `hostKey: ${pin}`);
  return pin;
}

/** The known_hosts lines for an endpoint; none when its hostKey pin decides (a pin wins) or knownHosts is false. */
function knownOf(ep: Endpoint, setting: Connection["knownHosts"]): KnownHostsLookup | undefined {
  if (ep.hostKey !== undefined || setting === false) return undefined;
  return knownHostsFor(ep.host, ep.port, setting);
}

/**
 * Host key algorithms to offer, when not ssh2's default: the pinned key's type, or (as ssh orders
 * its HostKeyAlgorithms) the types known_hosts has keys of, so the server presents a checkable key.
 */
function offerOf(ep: Endpoint, known: KnownHostsLookup | undefined): string[] | undefined {
  const keyType = pinOf(ep)?.keyType;
  if (keyType) return hostKeyAlgorithmsFor(keyType);
  return known?.keys.length ? knownHostsOffer(known) : undefined;
}

/**
 * Pool key: everything that makes two connections interchangeable (endpoint, identity,
 * algorithm offer), hashed so no secret is kept as a map key or shows up in a dump.
 */
export function poolKey(conn: Connection): string {
  const part = (ep: Endpoint) => [
    ep.host,
    ep.port,
    ep.user,
    ep.password ?? null,
    ep.privateKey ?? null,
    ep.privateKeyPassword ?? null,
    ep.agentSocketPath ?? null,
    offerOf(ep, knownOf(ep, conn.knownHosts)) ?? null,
  ];
  const material = JSON.stringify([part(conn), conn.proxy ? part(conn.proxy) : null, conn.knownHosts ?? null]);
  return createHash("sha256").update(material).digest("hex");
}

/**
 * Fingerprints the target must present, strongest source first; a pin overrides everything, then
 * known_hosts (judged by the dial, which may accept any of several keys), then TOFU.
 */
export function targetExpectations(conn: Connection, knownFingerprint?: string): Expectation[] {
  const pin = pinOf(conn);
  if (pin) return [{ fingerprint: pin.fingerprint, source: "hostKey" }];
  if (knownOf(conn, conn.knownHosts)?.keys.length) return [];
  const out: Expectation[] = [];
  if (knownFingerprint) out.push({ fingerprint: normalizeFingerprint(knownFingerprint), source: "state" });
  const seen = seenFingerprints.get(routeKey(conn));
  if (seen) out.push({ fingerprint: seen, source: "process" });
  return out;
}

export function proxyExpectations(conn: Connection, knownProxyFingerprint?: string): Expectation[] {
  const proxy = conn.proxy!;
  const pin = pinOf(proxy);
  if (pin) return [{ fingerprint: pin.fingerprint, source: "proxy.hostKey" }];
  if (knownOf(proxy, conn.knownHosts)?.keys.length) return [];
  const out: Expectation[] = [];
  if (knownProxyFingerprint) out.push({ fingerprint: normalizeFingerprint(knownProxyFingerprint), source: "state" });
  const seen = seenFingerprints.get(`${proxy.host}:${proxy.port}`);
  if (seen) out.push({ fingerprint: seen, source: "process" });
  return out;
}

function normalizeFingerprint(fp: string): string {
  const pin = parseHostKeyPin(fp);
  if (typeof pin === "string" || pin.keyType !== undefined) {
    throw new NatgateError("config", `knownFingerprint must be "SHA256:..." as runScript returned it, got ${JSON.stringify(fp)}`);
  }
  return pin.fingerprint;
}

function recordSeen(key: string, fingerprint: string, narrowedOffer: boolean): void {
  if (!narrowedOffer && !seenFingerprints.has(key)) seenFingerprints.set(key, fingerprint);
}

/** Failure of one dial attempt: `fatal` ones (auth, host key, config) are not retried. */
class AttemptError extends Error {
  constructor(
    readonly kind: "timeout" | "unreachable",
    message: string,
  ) {
    super(message);
  }
}

const AUTH_NAMES: Record<string, string> = {
  publickey: "private key",
  agent: "ssh-agent",
  password: "password",
  "keyboard-interactive": "keyboard-interactive (password)",
};

/**
 * keyboard-interactive answers: the password for a prompt that asks for one (hidden input, named
 * password), an empty answer for anything else (a one-time code, a question), so the password never
 * goes to a prompt that did not ask for it. `refused` are those other prompts, trimmed and without
 * control characters, for the error message.
 */
export function keyboardAnswers(prompts: ReadonlyArray<{ prompt: string; echo?: boolean }>, password: string | undefined): { answers: string[]; refused: string[] } {
  const refused: string[] = [];
  const answers = prompts.map((p) => {
    if (password !== undefined && p.echo !== true && /password|passwd|passwort|mot de passe|contrase\u00f1a/i.test(p.prompt)) return password;
    refused.push(p.prompt.replace(/[\u0000-\u001f\u007f]+/g, " ").trim().slice(0, 80));
    return "";
  });
  return { answers, refused };
}

interface ConnectOptions {
  ep: Endpoint;
  label: string;
  expectations: Expectation[];
  isProxy: boolean;
  knownHosts: Connection["knownHosts"];
  sock?: Duplex;
}

/** One SSH handshake + authentication. Resolves with the client once ready (`narrowed`: not the default offer). */
function connectOnce(o: ConnectOptions): Promise<{ client: Client; fingerprint: string; narrowed: boolean }> {
  const { ep, label } = o;
  const known = knownOf(ep, o.knownHosts);
  const offer = offerOf(ep, known);
  const field = o.isProxy ? "connection.proxy.hostKey" : "connection.hostKey";
  return new Promise((resolve, reject) => {
    const client = new Client();
    client.setMaxListeners(50);
    let settled = false;
    let seen: { fingerprint: string; keyType?: string } | undefined;
    let mismatch: NatgateError | undefined;
    let inAuth = false;
    const tried: string[] = [];
    let serverMethods: string[] | undefined;
    const notes: string[] = [];

    const fail = (e: Error) => {
      if (settled) return;
      settled = true;
      client.removeAllListeners("ready");
      client.on("error", () => {});
      client.end();
      if (o.sock) o.sock.destroy();
      reject(e);
    };

    const methods: string[] = [];
    if (ep.privateKey !== undefined) methods.push("publickey");
    if (ep.agentSocketPath !== undefined) methods.push("agent");
    if (ep.password !== undefined) methods.push("password", "keyboard-interactive");

    const authFailed = () =>
      new NatgateError(
        "auth",
        `authentication as ${label} failed (tried: ${tried.map((m) => AUTH_NAMES[m] ?? m).join(", ") || "nothing the server accepts"}` +
          `${serverMethods ? `; the server accepts: ${serverMethods.join(", ")}` : ""})` +
          `${notes.length ? `; ${notes.join("; ")}` : ""}. ` +
          `Check ${o.isProxy ? "connection.proxy" : "connection"}.user and its credentials` +
          (tried.includes("publickey") || tried.includes("agent") ? `, that the public key is in ~${ep.user}/.ssh/authorized_keys on the host` : "") +
          (tried.includes("password") ? ", that sshd allows password login (PasswordAuthentication)" : "") +
          `. This is not retried.`,
      );

    const cfg: ConnectConfig = {
      host: ep.host,
      port: ep.port,
      username: ep.user,
      readyTimeout: ep.perDialTimeout * 1000,
      keepaliveInterval: 15000,
      keepaliveCountMax: 4,
      tryKeyboard: ep.password !== undefined,
      hostVerifier: (key: Buffer): boolean => {
        const fingerprint = fingerprintOfKeyBlob(key);
        const keyType = keyTypeOfBlob(key);
        seen = { fingerprint, ...(keyType ? { keyType } : {}) };
        const verdict = known ? judgeHostKey(known, fingerprint, keyType) : { kind: "unknown" as const };
        if (verdict.kind === "revoked" || verdict.kind === "changed") {
          mismatch = knownHostsRefusal(label, known!, verdict, fingerprint, keyType, field);
          return false;
        }
        for (const exp of verdict.kind === "known" ? [] : o.expectations) {
          if (exp.fingerprint !== fingerprint) {
            mismatch = mismatchError(label, exp, fingerprint, keyType, o.isProxy, known && certAuthorityNote(known));
            return false;
          }
        }
        inAuth = true;
        return true;
      },
      authHandler: ((methodsLeft: string[] | null, _partial: boolean | null, next: (m: string | false) => void) => {
        if (methodsLeft) serverMethods = methodsLeft;
        while (methods.length > 0) {
          const m = methods.shift()!;
          // keyboard-interactive goes with password; skip methods the server said it does not take.
          if (methodsLeft && !methodsLeft.includes(m)) continue;
          tried.push(m);
          return next(m);
        }
        return next(false);
      }) as unknown as ConnectConfig["authHandler"],
    };
    if (ep.password !== undefined) cfg.password = ep.password;
    if (ep.privateKey !== undefined) cfg.privateKey = ep.privateKey;
    if (ep.privateKeyPassword !== undefined) cfg.passphrase = ep.privateKeyPassword;
    if (ep.agentSocketPath !== undefined) cfg.agent = ep.agentSocketPath;
    if (offer) cfg.algorithms = { serverHostKey: offer as never };
    if (o.sock) cfg.sock = o.sock;

    client.on("keyboard-interactive", (_n, _i, _l, prompts, finish) => {
      const k = keyboardAnswers(prompts, ep.password);
      for (const p of k.refused) notes.push(`the server asked ${JSON.stringify(p)} (keyboard-interactive), which natgate does not answer: it gives the password to password prompts only`);
      finish(k.answers);
    });
    client.on("ready", () => {
      if (settled) return;
      settled = true;
      // Each script is a few small SSH packets each way (channel open, exec, data, EOF); with
      // Nagle on, the last waits for the host's delayed ACK: 40-90 ms per script for nothing.
      client.setNoDelay(true);
      resolve({ client, fingerprint: seen!.fingerprint, narrowed: offer !== undefined });
    });
    client.on("error", (err: Error & { level?: string }) => {
      if (settled) return;
      if (mismatch) return fail(mismatch);
      // ssh2 reports a failing agent or key signature and then moves on to the next method.
      if (err.level === "agent") {
        notes.push("the ssh-agent at agentSocketPath could not be used");
        return;
      }
      if (err.level === "client-authentication") {
        if (/All configured authentication methods failed/.test(err.message)) return fail(authFailed());
        notes.push("the private key could not sign");
        return;
      }
      if (err.level === "client-timeout") {
        return fail(new AttemptError("timeout", `no SSH login within ${ep.perDialTimeout} s (${inAuth ? "during authentication" : "connecting or during the handshake"})`));
      }
      if (inAuth && /authentication/i.test(err.message)) return fail(authFailed());
      if (offer && /no matching host key/i.test(err.message)) {
        // The offer was narrowed to the pinned or known key types, and the server has none of them: not worth a retry.
        if (known?.keys.length) return fail(knownHostsNoCommonType(label, known, field));
        return fail(new NatgateError("hostkey-mismatch", `host key of ${label} cannot be checked: ${field} is an ${pinOf(ep)!.keyType} key, and the server has no key of that type. Nothing was run on the host. Check that ${field} is this host's key (\`ssh-keyscan ${ep.host}\` lists its keys).`));
      }
      fail(new AttemptError("unreachable", err.message));
    });
    client.on("close", () => {
      if (settled) return;
      if (mismatch) return fail(mismatch);
      fail(new AttemptError("unreachable", "the connection was closed before login completed"));
    });

    if (offer?.length === 0) return fail(knownHostsNoCommonType(label, known!, field));
    try {
      client.connect(cfg);
    } catch (e) {
      // ssh2 throws synchronously on an unusable private key; its text never holds the key.
      const field = o.isProxy ? "connection.proxy.privateKey" : "connection.privateKey";
      fail(new NatgateError("auth", `${field} cannot be used (${(e as Error).message.replace(/:.*$/s, "")}): give the private key text and, if it is encrypted, privateKeyPassword`));
    }
  });
}

function forwardOut(proxy: Client, host: string, port: number, timeoutS: number, label: string): Promise<ClientChannel> {
  return new Promise((resolve, reject) => {
    const timer =
      timeoutS > 0
        ? setTimeout(() => reject(new AttemptError("timeout", `the jump host did not open a tunnel to ${label} within ${timeoutS} s`)), timeoutS * 1000)
        : undefined;
    try {
      proxy.forwardOut("127.0.0.1", 0, host, port, (err, stream) => {
        if (timer) clearTimeout(timer);
        if (err) reject(new AttemptError("unreachable", `the jump host could not open a tunnel to ${label}: ${err.message}`));
        else resolve(stream);
      });
    } catch (e) {
      if (timer) clearTimeout(timer);
      reject(new AttemptError("unreachable", `the jump host connection dropped: ${(e as Error).message}`));
    }
  });
}

async function dialOnce(conn: Connection, expectations: Expectation[], knownProxyFingerprint?: string): Promise<Dialed> {
  const label = routeLabel(conn);
  const target = { ep: conn, label, expectations, isProxy: false, knownHosts: conn.knownHosts };
  if (!conn.proxy) {
    const { narrowed, ...r } = await connectOnce(target);
    recordSeen(routeKey(conn), r.fingerprint, narrowed);
    return r;
  }
  const p = await connectOnce({
    ep: conn.proxy,
    label: `jump host ${endpointName(conn.proxy)}`,
    expectations: proxyExpectations(conn, knownProxyFingerprint),
    isProxy: true,
    knownHosts: conn.knownHosts,
  });
  recordSeen(`${conn.proxy.host}:${conn.proxy.port}`, p.fingerprint, p.narrowed);
  try {
    const stream = await forwardOut(p.client, conn.host, conn.port, conn.perDialTimeout, endpointName(conn));
    const { narrowed, ...r } = await connectOnce({ ...target, sock: stream });
    recordSeen(routeKey(conn), r.fingerprint, narrowed);
    // The tunnel lives as long as the target connection; either closing ends both.
    r.client.once("close", () => p.client.end());
    p.client.once("close", () => r.client.end());
    return { ...r, proxyClient: p.client, proxyFingerprint: p.fingerprint };
  } catch (e) {
    p.client.end();
    throw e;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Dial with @pulumi/command's semantics: up to dialErrorLimit attempts (-1: no limit), each
 * bounded by perDialTimeout seconds (0: no bound). Auth, host key and config failures are final.
 */
export async function dial(conn: Connection, expectations: Expectation[], knownProxyFingerprint?: string): Promise<Dialed> {
  const tries = conn.dialErrorLimit === -1 ? Infinity : Math.max(1, conn.dialErrorLimit);
  let last: AttemptError | undefined;
  for (let attempt = 1; attempt <= tries; attempt++) {
    try {
      return await dialOnce(conn, expectations, knownProxyFingerprint);
    } catch (e) {
      if (!(e instanceof AttemptError)) throw e;
      last = e;
      if (attempt < tries) await sleep(Math.min(250 * attempt, 1000));
    }
  }
  const each = conn.perDialTimeout > 0 ? ` of up to ${conn.perDialTimeout} s each` : "";
  const target = conn.proxy ? "connection.host/port (as reached from the jump host) and connection.proxy.host/port" : "connection.host and connection.port";
  throw new NatgateError(
    last!.kind,
    `cannot reach ${routeLabel(conn)} over SSH after ${tries} ${tries === 1 ? "try" : "tries"}${each}: ${last!.message}. ` +
      `Check that the host is up and reachable from here, that ${target} are right, that sshd listens there and no firewall drops the port; ` +
      `on a slow link raise connection.perDialTimeout or connection.dialErrorLimit.`,
  );
}
