import { NatgateError } from "../ssh/errors";
import { containsUnknown, UNKNOWN, unknownPaths } from "./unknown";
import { failuresOf, invalidInputs, type Failure } from "./failures";
import type { Kind, Outputs } from "./kind";

/** What checking a kind's inputs takes: its schema and the pure steps after it. */
export type InputSpec<I> = Pick<Kind<I>, "kind" | "schema" | "normalize" | "crossCheck" | "crossCheckUnknown">;

/** The schema's fields of a state object (create's inputs or old outputs). */
export function inputPart(kind: InputSpec<unknown>, v: Outputs | undefined): Outputs {
  const out: Outputs = {};
  for (const k of Object.keys(kind.schema.shape)) if (v?.[k] !== undefined) out[k] = v[k];
  return out;
}

type Checked<I> = { inputs: I; failures: Failure[] } | { inputs?: undefined; failures: Failure[] };

/** Schema, normalize, cross-field checks: the inputs, or every problem that is certain now. */
export function checkInputs<I>(kind: InputSpec<I>, raw: Outputs): Checked<I> {
  const r = kind.schema.safeParse(raw);
  if (!r.success) return { failures: failuresOf(r.error, raw) };
  const i = (kind.normalize ? kind.normalize(r.data) : r.data) as I;
  const judge = kind.crossCheckUnknown || !containsUnknown(i);
  return { inputs: i, failures: judge ? kind.crossCheck(i) : [] };
}

/**
 * The inputs in a state object, for an operation that acts on hosts: every problem is an error,
 * and so is a value the engine does not know yet (it would become an address or a host name in a
 * command).
 */
export function inputsOf<I>(kind: InputSpec<I>, props: Outputs | undefined): I {
  const raw = inputPart(kind, props);
  // The engine sends its marker to check and diff during a preview only, never to create, update,
  // read or delete: here it is text the program wrote (a copied preview value), so it is named
  // before the schema judges it as an address or a host name.
  const unknown = unknownPaths(raw);
  if (unknown.length) {
    throw new NatgateError(
      "config",
      `the ${kind.kind}'s inputs are not all known yet:\n` +
        unknown.map((p) => `  ${p}: holds Pulumi's unknown-value placeholder ${UNKNOWN}, which only a preview may carry; pass the Output itself, not its string form (the value another resource produces)`).join("\n"),
    );
  }
  const r = checkInputs(kind, raw);
  if (!r.inputs || r.failures.length) {
    if (!r.failures.length) throw new NatgateError("config", `the ${kind.kind}'s inputs are not valid`);
    throw invalidInputs(kind.kind, r.failures);
  }
  return r.inputs;
}

