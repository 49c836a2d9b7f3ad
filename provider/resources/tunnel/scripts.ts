import { NatgateError } from "../../ssh/errors";
import { assertNoUnknown } from "../../engine/unknown";
import { APPLY_HEAD, applySteps } from "../../backends/tunnelSh";
import { hasPlaceholder } from "../../backends/wgCommands";

export { APPLY_HEAD, applySteps, DELETE_SCRIPT, FOREIGN_INTERFACE_EXIT, PREPARE_SCRIPT, READ_SCRIPT, tunnelArgs } from "../../backends/tunnelSh";

/**
 * Refuses script text that still holds preview-only values: a public key placeholder
 * (`<dialer public key>`, which sh would read as a redirection from a file "dialer") or the
 * engine's unknown marker. Both are fine in rendered lines, never in what runs on a host.
 */
export function assertRunnable(what: string, text: string): void {
  if (hasPlaceholder(text)) throw new NatgateError("internal", `${what}: the commands still hold a public key placeholder (preview text); refusing to run them`);
  assertNoUnknown(what, text);
}

/** Runs a plan (see plan.ts), then prints the live state for verification (args: tunnelArgs). */
export function applyScript(plan: string[]): string {
  const script = APPLY_HEAD + applySteps(plan);
  assertRunnable("configuring the tunnel", script);
  return script;
}
