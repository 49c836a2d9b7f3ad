import type { z } from "zod";
import type { Failure } from "./failures";

export type Outputs = Record<string, unknown>;

/**
 * One resource kind, whatever it touches (one host, two, or none): the engine in `provider.ts`
 * does check, diff and the state bookkeeping the same way for all of them.
 *
 * - `schema` is strict (an unknown field is an error) and pure; `normalize` and `crossCheck` too.
 * - `render` gives the outputs known from the inputs alone (the lines a preview shows); `expected`
 *   the same for a resource already applied, where the old outputs say what a host was found to be
 *   (its backend, its public key). A difference between those and the old outputs is drift.
 * - `apply` reads each host, changes only what differs from the render and returns what it read
 *   back; `read` reads without writing (undefined: nothing of it is left anywhere); `remove`
 *   takes "not there" as success.
 */
export interface Kind<I> {
  kind: string;
  schema: z.ZodObject<any>;
  /** The schema's output as the inputs the rest of the kind works on (defaults that depend on other fields, canonical forms). */
  normalize?(parsed: any): I;
  /** Checks across fields. Run on fully known inputs, or also on partly known ones when `crossCheckUnknown`. */
  crossCheck(i: I): Failure[];
  crossCheckUnknown?: boolean;
  /** Output fields of the state besides the inputs (dropped before the inputs are checked again). */
  outputKeys: readonly string[];
  /** The render's output fields, all of them (so a preview can mark each as not known yet). */
  renderKeys: readonly string[];
  render(i: I): Outputs;
  expected?(i: I, olds: Outputs): Outputs;
  /** Input paths whose change makes a new resource: the hosts it is on, its names there. */
  replacePaths: readonly (readonly string[])[];
  /** Whether a replacement deletes first: always, or when it stays on the same host (the new object would collide with the old). */
  deleteBeforeReplace: "always" | "same-host" | "never";
  /** Paths to the connection(s) of the hosts: a replacement moving off all of them creates first. */
  hostPaths?: readonly (readonly string[])[];
  /** Whether outputs record the release that wrote them (an older one's are rewritten by the next up). */
  versioned: boolean;
  id(i: I): string;
  apply(i: I, olds: Outputs | undefined): Promise<Outputs>;
  read(i: I, props: Outputs): Promise<Outputs | undefined>;
  remove(i: I, props: Outputs): Promise<void>;
}
