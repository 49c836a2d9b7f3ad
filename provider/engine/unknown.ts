/** What the engine sends for a value not known yet (preview with another resource's output). */
import { NatgateError } from "../ssh/errors";
export const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

/** Whether any string anywhere in `v` is the engine's unknown marker. */
export function containsUnknown(v: unknown): boolean {
  return unknownPaths(v).length > 0;
}

/** Where in `v` the engine's unknown marker is, as paths the user writes (`connection.host`, `routes[1].via`). */
export function unknownPaths(v: unknown, at = ""): string[] {
  if (v === UNKNOWN) return [at];
  if (Array.isArray(v)) return v.flatMap((x, k) => unknownPaths(x, `${at}[${k}]`));
  if (v !== null && typeof v === "object") return Object.entries(v).flatMap(([k, x]) => unknownPaths(x, at === "" ? k : `${at}.${k}`));
  return [];
}

/**
 * Refuses text about to be sent to a host (a script, its arguments, a boot entry) that holds the
 * engine's unknown marker: it belongs in preview text only. Reaching this is a natgate bug, not
 * a user error; nothing has been sent when it throws.
 */
export function assertNoUnknown(what: string, ...texts: string[]): void {
  if (texts.some((t) => t.includes(UNKNOWN))) {
    throw new NatgateError("internal", `${what}: refusing to send a value the engine does not know yet (preview placeholder ${UNKNOWN}) to a host`);
  }
}
