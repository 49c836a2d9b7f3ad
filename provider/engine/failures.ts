import type { z } from "zod";
import { NatgateError } from "../ssh/errors";
import { containsUnknown, UNKNOWN } from "./unknown";
import { redact, secretsOf } from "./redact";

/** One problem with one input, as Pulumi's check reports it: the field as the user wrote it, and why. */
export interface Failure {
  property: string;
  reason: string;
}

/** `listener.allowedIps[1]`: the path as it reads in the user's program. */
export function pathText(path: ReadonlyArray<PropertyKey>): string {
  let out = "";
  for (const seg of path) out += typeof seg === "number" ? `[${seg}]` : (out === "" ? "" : ".") + String(seg);
  return out;
}

/**
 * Whether the value at `path`, or an object on the way to it, is not known yet (preview). `deep`:
 * also anything inside the value (a field of an unknown type is judged with all of it known).
 */
function unknownAt(root: unknown, path: ReadonlyArray<PropertyKey>, deep: boolean): boolean {
  let cur: unknown = root;
  for (const seg of path) {
    if (cur === UNKNOWN) return true;
    if (cur === null || typeof cur !== "object") return false;
    cur = (cur as Record<PropertyKey, unknown>)[seg];
  }
  return deep ? containsUnknown(cur) : cur === UNKNOWN;
}

const CONNECTION_FIELD = /connection$/i;

/**
 * Zod issues as check failures. An issue about a value the engine does not know yet is left out:
 * it is judged once the value is known (the next check, with real values).
 */
export function failuresOf(err: z.ZodError, raw: unknown): Failure[] {
  const out: Failure[] = [];
  const secrets = secretsOf(raw);
  for (const issue of err.issues) {
    // A misspelt field is wrong whatever the values beside it; other issues wait for the value.
    if (unknownAt(raw, issue.path, issue.code !== "unrecognized_keys")) continue;
    if (issue.code === "unrecognized_keys") {
      const inConnection = issue.path.some((s) => typeof s === "string" && CONNECTION_FIELD.test(s));
      for (const key of issue.keys) {
        out.push({
          property: pathText([...issue.path, key]),
          reason: inConnection ? "unknown field (not in @pulumi/command's ConnectionArgs, nor natgate's sudo)" : "unknown field",
        });
      }
      continue;
    }
    out.push({ property: pathText(issue.path), reason: redact(issue.message, secrets) });
  }
  return out;
}

/** The error create, update, read and delete raise for inputs that do not check (a state edited by hand, a bug). */
export function invalidInputs(kind: string, failures: Failure[]): NatgateError {
  return new NatgateError("config", `invalid ${kind} inputs:\n` + failures.map((f) => `  ${f.property}: ${f.reason}`).join("\n"));
}
