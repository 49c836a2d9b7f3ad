import { NatgateError } from "./errors";

/**
 * POSIX single-quote quoting: inside '...' every byte is literal, so the only
 * character needing care is the quote itself, closed, escaped and reopened ('\'').
 * NUL cannot be passed through argv at all, so refuse it rather than truncate.
 */
export function shQuote(s: string): string {
  if (typeof s !== "string") throw new TypeError(`shQuote: expected a string, got ${typeof s}`);
  if (s.includes("\0")) throw new NatgateError("config", "a NUL byte cannot be passed to a shell: remove it from the value");
  return "'" + s.replace(/'/g, "'\\''") + "'";
}
