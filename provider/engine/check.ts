import { NatgateError } from "../ssh/errors";
import { containsUnknown } from "./unknown";
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
  const r = checkInputs(kind, inputPart(kind, props));
  if (!r.inputs || r.failures.length) {
    if (!r.failures.length) throw new NatgateError("config", `the ${kind.kind}'s inputs are not valid`);
    throw invalidInputs(kind.kind, r.failures);
  }
  if (containsUnknown(r.inputs)) {
    throw new NatgateError("config", `the ${kind.kind}'s inputs are not all known yet (another resource's output): natgate only acts on a host once every value is known`);
  }
  return r.inputs;
}

