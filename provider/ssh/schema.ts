import { isIP } from "net";
import { z } from "zod";
import { parseHostKeyPin } from "./hostkey";
import { checkPrivateKeyText, type KeyProblem } from "./keyFormat";
import { nonHostProblem } from "../resources/common/addresses";

// RFC 1123 labels; dots only between labels (one trailing dot allowed, as in DNS).
const HOSTNAME =
  /^(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

const KEY_EXAMPLE = 'give the key file\'s contents, e.g. fs.readFileSync("/home/me/.ssh/id_ed25519", "utf8")';

const HOST_EXAMPLE = "give an address like 198.51.100.1 or a hostname like vps.example.com";


function hostProblem(host: string): string | undefined {
  // No host answers at these (ssh to 0.0.0.0 or :: reaches this machine itself); loopback stays allowed.
  if (isIP(host) !== 0) return nonHostProblem(host) !== undefined ? `${host} is no one host's address (unspecified, broadcast or multicast): ${HOST_EXAMPLE}` : undefined;
  if (/^\[.*\]$/.test(host)) return "write an IPv6 address without brackets";
  if (/^[0-9.]+$/.test(host)) return `"${host}" is not a valid IPv4 address: ${HOST_EXAMPLE}`;
  if (!HOSTNAME.test(host)) return `"${host}" is not a hostname or an IP address: ${HOST_EXAMPLE}`;
  return undefined;
}

// Zod calls this with the raw issue, which still has the input: say "is required" when absent.
// The one copy: every natgate schema builds on this module's ConnectionSchema anyway.
export const typeError = (message: string) => (iss: { input?: unknown }) =>
  iss.input === undefined ? "is required" : message;

const host = z
  .string({ error: typeError("must be a string (hostname or IP address)") })
  .min(1, { error: "must not be empty" })
  .superRefine((h, ctx) => {
    if (h === "") return;
    const problem = hostProblem(h);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  });

const port = z
  .number({ error: "must be a number 1-65535" })
  .int({ error: "must be an integer 1-65535" })
  .min(1, { error: "must be 1-65535" })
  .max(65535, { error: "must be 1-65535" })
  .default(22);

const user = z
  .string({ error: "must be a string" })
  .min(1, { error: "must not be empty: give the login name, like root (the default when user is unset)" })
  .regex(/^[^\s\x00-\x1f\x7f]*$/, { error: "must not contain spaces or control characters: give the login name, like root" })
  .default("root");

const secret = (what: string) => z.string({ error: typeError(`must be a string (${what})`) });

const dialErrorLimit = z
  .number({ error: "must be an integer (-1 for unlimited)" })
  .int({ error: "must be an integer (-1 for unlimited)" })
  .min(-1, { error: "must be -1 (unlimited) or more" })
  .default(10);

const perDialTimeout = z
  .number({ error: "must be a whole number of seconds (0 for no limit)" })
  .int({ error: "must be a whole number of seconds (0 for no limit)" })
  .min(0, { error: "must be 0 (no limit) or more seconds" })
  .default(15);

const PIN_EXAMPLE = 'give the key line ssh-keyscan prints ("ssh-ed25519 AAAA...") or its fingerprint as ssh-keygen -lf prints it ("SHA256:...")';
const hostKey = z.string({ error: typeError(`must be a string: ${PIN_EXAMPLE}`) }).superRefine((v, ctx) => {
  const pin = parseHostKeyPin(v);
  // hostkey.ts says what is wrong with the key data; the way to a right one is said here once.
  if (typeof pin === "string") ctx.addIssue({ code: "custom", message: /ssh-keygen|AAAA\.\.\./.test(pin) ? pin : `${pin}: ${PIN_EXAMPLE}` });
});

// natgate's own: which known_hosts to honour (ssh's files when unset), for the target and the jump host.
const knownHostsMessage = "must be the path of a known_hosts file (absolute, or starting with ~/), or false to read none (unset: ssh's ~/.ssh/known_hosts)";
const knownHosts = z
  .union([z.string(), z.literal(false)], { error: knownHostsMessage })
  .refine((v) => v === false || v.startsWith("/") || v.startsWith("~/"), { error: knownHostsMessage });

// Fields shared by the target and the jump host, exactly @pulumi/command 1.2.1's
// remote.ProxyConnectionArgs; ConnectionArgs adds `proxy` (and natgate adds `sudo`).
const endpointFields = {
  host,
  port,
  user,
  password: secret("the password").optional(),
  privateKey: secret("the private key text").min(1, { error: `must not be empty: ${KEY_EXAMPLE}, or leave privateKey out` }).optional(),
  privateKeyPassword: secret("the private key's passphrase").optional(),
  agentSocketPath: z
    .string({ error: typeError("must be a string (path of the ssh-agent socket, like process.env.SSH_AUTH_SOCK)") })
    .min(1, { error: "must not be empty: give the ssh-agent socket's path, like process.env.SSH_AUTH_SOCK" })
    .optional(),
  dialErrorLimit,
  perDialTimeout,
  hostKey: hostKey.optional(),
};

interface AuthFields {
  password?: string | undefined;
  privateKey?: string | undefined;
  privateKeyPassword?: string | undefined;
  agentSocketPath?: string | undefined;
}

function hasAuth(v: AuthFields): boolean {
  return v.password !== undefined || v.privateKey !== undefined || v.agentSocketPath !== undefined;
}

// Reported even when other fields are wrong too, so one check shows every problem.
const hasAuthParams = {
  message:
    "give at least one of password, privateKey or agentSocketPath (for your ssh-agent: agentSocketPath: process.env.SSH_AUTH_SOCK)",
  when: (payload: { value: unknown }) => typeof payload.value === "object" && payload.value !== null,
};

function checkPrivateKey(v: AuthFields, ctx: z.RefinementCtx): void {
  if (v.privateKey !== undefined && v.privateKey !== "") {
    const problem = privateKeyProblem(v.privateKey, v.privateKeyPassword);
    if (problem) ctx.addIssue({ code: "custom", path: ["privateKey"], message: problem });
  }
}

/**
 * Unlimited dial attempts each without a deadline never end on a host whose sshd accepts the TCP
 * connection and then stalls: one of the two must be bounded.
 */
function checkDialBounds(v: { dialErrorLimit?: number; perDialTimeout?: number }, ctx: z.RefinementCtx): void {
  if (v.dialErrorLimit === -1 && v.perDialTimeout === 0) {
    ctx.addIssue({
      code: "custom",
      path: ["dialErrorLimit"],
      message:
        "-1 (retry without limit) together with perDialTimeout 0 (no deadline per attempt) would wait for ever on a host that accepts and stalls: " +
        "give perDialTimeout a deadline like 15 (seconds), or dialErrorLimit a count like 10",
    });
  }
}

// Checked without ssh2 (keyFormat.ts), which a preview must not load (issue 8). Messages are
// fixed texts per problem, so no part of the key text or passphrase can leak into them.
const KEY_PROBLEMS: Record<KeyProblem, string> = {
  unreadable: `is not a private key ssh can read (OpenSSH or PEM format, the text of the file, not its path): ${KEY_EXAMPLE}`,
  public: "is a public key: give the private key text (the file without .pub)",
  "unsupported-type": "is a key of a type natgate's SSH client cannot use: give an ed25519, RSA or ECDSA (nistp256/384/521) key",
  "unsupported-cipher":
    "is encrypted with chacha20-poly1305, which natgate's SSH client cannot decrypt: re-encrypt it with `ssh-keygen -p -Z aes256-ctr -f FILE`",
  encrypted: "is encrypted: set privateKeyPassword to its passphrase",
  "wrong-passphrase": "could not be decrypted with privateKeyPassword (wrong passphrase)",
};

function privateKeyProblem(key: string, passphrase: string | undefined): string | undefined {
  const r = checkPrivateKeyText(key, passphrase);
  return r.ok ? undefined : KEY_PROBLEMS[r.problem];
}

const objectError = { error: typeError("must be an object like @pulumi/command's remote.ConnectionArgs") };

export const ProxyConnectionSchema = z
  .strictObject(endpointFields, objectError)
  .refine(hasAuth, hasAuthParams)
  .superRefine(checkPrivateKey)
  .superRefine(checkDialBounds);

// natgate's own: how long one remote script may run (no default here, so an older stack's inputs
// stay as they were; DEFAULT_SCRIPT_TIMEOUT applies when unset).
const scriptTimeout = z
  .number({ error: typeError("must be a whole number of seconds 1-86400, like 300") })
  .int({ error: "must be a whole number of seconds 1-86400, like 300" })
  .min(1, { error: "must be at least 1 second: every script gets a deadline (a stalled host would otherwise hang pulumi up)" })
  .max(86400, { error: "must be at most 86400 seconds (a day)" });

/** Seconds one remote script may run when connection.scriptTimeout is unset. */
export const DEFAULT_SCRIPT_TIMEOUT = 300;

export const ConnectionSchema = z
  .strictObject({
    ...endpointFields,
    proxy: ProxyConnectionSchema.optional(),
    sudo: z.boolean({ error: typeError("must be true or false") }).default(false),
    knownHosts: knownHosts.optional(),
    scriptTimeout: scriptTimeout.optional(),
  }, objectError)
  .refine(hasAuth, hasAuthParams)
  .superRefine(checkPrivateKey)
  .superRefine(checkDialBounds);

export type ConnectionInput = z.input<typeof ConnectionSchema>;
export type Connection = z.output<typeof ConnectionSchema>;
export type ProxyConnection = z.output<typeof ProxyConnectionSchema>;

function pathText(prefix: string, path: ReadonlyArray<PropertyKey>): string {
  let out = prefix;
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else out += (out === "" ? "" : ".") + String(seg);
  }
  return out;
}

/** One `{ property, reason }` per problem, property being the dotted path ("connection.proxy.port"). */
export function zodFailures(err: z.ZodError, prefix = "connection"): { property: string; reason: string }[] {
  const out: { property: string; reason: string }[] = [];
  for (const issue of err.issues) {
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) {
        out.push({ property: pathText(prefix, [...issue.path, key]), reason: "unknown field (not in @pulumi/command's ConnectionArgs, nor natgate's sudo)" });
      }
      continue;
    }
    out.push({ property: pathText(prefix, issue.path), reason: issue.message });
  }
  return out;
}

/** Zod issues as lines "connection.port: must be 1-65535". */
export function formatZodError(err: z.ZodError, prefix = "connection"): string {
  return zodFailures(err, prefix)
    .map((f) => `${f.property}: ${f.reason}`)
    .join("\n");
}

/** Validate and fill defaults; failures in the shape Pulumi's check() returns. */
export function checkConnection(
  input: unknown,
  prefix = "connection",
): { connection: Connection; failures: [] } | { connection?: undefined; failures: { property: string; reason: string }[] } {
  const r = ConnectionSchema.safeParse(input);
  if (r.success) return { connection: r.data, failures: [] };
  return { failures: zodFailures(r.error, prefix) };
}
