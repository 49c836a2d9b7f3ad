/**
 * Failures of the SSH layer, classified once here so callers branch on `code`
 * instead of matching message text. Messages say what the user can do next and
 * never carry a password, private key or passphrase.
 */
export type NatgateErrorCode =
  | "unreachable"
  | "timeout"
  | "auth"
  | "hostkey-mismatch"
  | "sudo-password"
  | "missing-tool"
  | "not-root"
  | "remote"
  | "config";

export class NatgateError extends Error {
  readonly code: NatgateErrorCode;

  constructor(code: NatgateErrorCode, message: string) {
    super(message);
    this.name = "NatgateError";
    this.code = code;
  }
}

export function isNatgateError(e: unknown, code?: NatgateErrorCode): e is NatgateError {
  return e instanceof NatgateError && (code === undefined || e.code === code);
}
