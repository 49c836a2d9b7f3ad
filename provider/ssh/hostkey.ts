import { createHash } from "crypto";
import { NatgateError } from "./errors";

/** `SHA256:<base64 without padding>` of a raw public key blob, as `ssh-keygen -lf` prints it. */
export function fingerprintOfKeyBlob(blob: Buffer): string {
  return "SHA256:" + createHash("sha256").update(blob).digest("base64").replace(/=+$/, "");
}

/** The algorithm name stored at the start of an SSH public key blob (RFC 4253 string). */
export function keyTypeOfBlob(blob: Buffer): string | undefined {
  if (blob.length < 4) return undefined;
  const len = blob.readUInt32BE(0);
  if (len === 0 || len > 64 || blob.length < 4 + len) return undefined;
  return blob.subarray(4, 4 + len).toString("latin1");
}

/** What a pin says about the host: the fingerprint to match and, for a full key, its type. */
export interface HostKeyPin {
  fingerprint: string;
  keyType?: string;
}

const FINGERPRINT = /^SHA256:([A-Za-z0-9+/]{43})=?$/;
// `ssh-keygen -lf` prints "256 SHA256:... comment (ED25519)"; accept the whole line too.
const KEYGEN_LINE = /^\d+\s+(SHA256:[A-Za-z0-9+/]{43}=?)(?:\s.*)?$/;
const KEY_TYPE = /^(ssh-ed25519|ssh-rsa|ssh-dss|ecdsa-sha2-nistp(?:256|384|521))$/;

/**
 * Parse connection.hostKey: an OpenSSH public key line ("ssh-ed25519 AAAA... comment",
 * what @pulumi/command takes) or a SHA256 fingerprint. Returns an error text on failure.
 */
export function parseHostKeyPin(value: string): HostKeyPin | string {
  const text = value.trim();
  const fp = FINGERPRINT.exec(text) ?? FINGERPRINT.exec(KEYGEN_LINE.exec(text)?.[1] ?? "");
  if (fp) return { fingerprint: "SHA256:" + fp[1] };
  if (/^(MD5:|[0-9a-f]{2}(:[0-9a-f]{2}){15}$)/i.test(text)) {
    return "MD5 fingerprints are not accepted: use the SHA256 one (ssh-keygen -lf <key>)";
  }
  const parts = text.split(/\s+/);
  if (parts.length < 2 || !KEY_TYPE.test(parts[0]!)) {
    return 'must be an OpenSSH public key line ("ssh-ed25519 AAAA... [comment]") or a fingerprint ("SHA256:...", as ssh-keygen -lf prints it)';
  }
  const [type, b64] = parts as [string, string];
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return `the key data after "${type}" is not base64`;
  const blob = Buffer.from(b64, "base64");
  const inner = keyTypeOfBlob(blob);
  if (inner !== type) {
    return `the key data does not hold a ${type} key${inner ? ` (it holds ${inner})` : ""}`;
  }
  return { fingerprint: fingerprintOfKeyBlob(blob), keyType: type };
}

/** Host key algorithms to offer so the server presents the pinned key and not another of its keys. */
export function hostKeyAlgorithmsFor(keyType: string): string[] {
  if (keyType === "ssh-rsa") return ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"];
  return [keyType];
}

/** Where an expected fingerprint came from; decides the wording of a mismatch. */
export type ExpectationSource = "hostKey" | "proxy.hostKey" | "state" | "process";

export interface Expectation {
  fingerprint: string;
  source: ExpectationSource;
}

const SOURCE_TEXT: Record<ExpectationSource, string> = {
  hostKey: "from connection.hostKey",
  "proxy.hostKey": "from connection.proxy.hostKey",
  state: "seen on first use and kept in this resource's state",
  process: "seen earlier by this process",
};

export function mismatchError(
  label: string,
  expected: Expectation,
  received: string,
  receivedType: string | undefined,
  isProxy: boolean,
  note?: string,
): NatgateError {
  const field = isProxy ? "connection.proxy.hostKey" : "connection.hostKey";
  return new NatgateError(
    "hostkey-mismatch",
    `host key of ${label} does not match: expected ${expected.fingerprint} (${SOURCE_TEXT[expected.source]}), ` +
      `received ${received}${receivedType ? ` (${receivedType})` : ""}. Nothing was run on the host. ` +
      `If the host was legitimately reinstalled, set ${field} to the new fingerprint shown ("${received}"); ` +
      `otherwise someone may be intercepting the connection: do not proceed.${note ? ` (Note: ${note}.)` : ""}`,
  );
}
