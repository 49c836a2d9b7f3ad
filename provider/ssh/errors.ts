/**
 * The one error type of natgate's provider, for every resource kind: classified once where it is
 * raised, so callers branch on `code` instead of matching message text. Messages say what the user
 * can do next and never carry a password, private key or passphrase.
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
  /** a host printed what natgate cannot read (a dropped connection, a tool's other version) */
  | "unexpected-output"
  /** PathCheck: a hop of the forwarded path is broken, or the probe cannot be told apart */
  | "path-broken"
  | "path-ambiguous"
  /** natgate refused to send text it did not mean to (a bug, caught before anything ran) */
  | "internal"
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
