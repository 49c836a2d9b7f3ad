import type * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { runPathCheck } from "./check";
import { INPUT_FIELDS, PathCheckSchema, type PathCheckInputs } from "./schema";

import { containsUnknown, UNKNOWN } from "../resources/common/unknown";

// The provider closure and the report's fields, which the SDK declares as outputs.
const NOT_INPUTS = new Set(["__provider", "callerAddress", "probe", "vpsEntry", "routerEntry", "hops", "ok"]);

interface Failure {
  property: string;
  reason: string;
}

function inputsOf(props: Record<string, unknown> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of INPUT_FIELDS) if (props?.[k] !== undefined) out[k] = props[k];
  return out;
}

function pathText(path: ReadonlyArray<PropertyKey>): string {
  let out = "";
  for (const seg of path) out += typeof seg === "number" ? `[${seg}]` : (out === "" ? "" : ".") + String(seg);
  return out;
}

function failuresOf(err: z.ZodError): Failure[] {
  const out: Failure[] = [];
  for (const issue of err.issues) {
    if (issue.code === "unrecognized_keys") {
      const inConnection = issue.path.length > 0;
      for (const key of issue.keys) {
        out.push({
          property: pathText([...issue.path, key]),
          reason: inConnection ? "unknown field (not in @pulumi/command's ConnectionArgs, nor natgate's sudo)" : "unknown field",
        });
      }
    } else {
      out.push({ property: pathText(issue.path), reason: issue.message });
    }
  }
  return out;
}

function crossCheck(i: PathCheckInputs): Failure[] {
  if (i.mask !== undefined && i.mark === undefined) return [{ property: "mask", reason: "needs mark: give the mark the router's connections carry" }];
  return [];
}

function topLevel(property: string): string {
  return property.split(/[.[]/)[0];
}

/** Parse inputs from check's output or state; throws listing every problem. */
export function parsePathCheckInputs(props: Record<string, unknown>): PathCheckInputs {
  const r = PathCheckSchema.safeParse(inputsOf(props));
  const failures = r.success ? crossCheck(r.data) : failuresOf(r.error);
  if (!r.success || failures.length) {
    throw new Error("invalid PathCheck inputs:\n" + failures.map((f) => `  ${f.property}: ${f.reason}`).join("\n"));
  }
  return r.data;
}

function stable(v: unknown): string {
  return JSON.stringify(v, (_k, x) =>
    x && typeof x === "object" && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : 1))) : x,
  );
}

async function check(inputs: PathCheckInputs): Promise<Record<string, unknown>> {
  const report = await runPathCheck(inputs);
  // connections stay in state under their input names, so the engine keeps them secret there too
  return { ...inputs, ...report };
}

/**
 * PathCheck: an action, not a piece of host state. create and update run the check (and fail the
 * deployment when a hop is broken); read returns what is in state, because re-probing on refresh
 * would send traffic on every `pulumi refresh` and a passing path yesterday is not drift; delete
 * has nothing to remove.
 */
export const pathCheckProvider: pulumi.dynamic.ResourceProvider = {
  async check(_olds, news) {
    // strict: a misspelt field is reported, not dropped; the report's own fields are not inputs
    const raw: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(news ?? {})) if (v !== undefined && !NOT_INPUTS.has(k)) raw[k] = v;
    const r = PathCheckSchema.safeParse(raw);
    if (!r.success) {
      // A field that is not known yet (preview) cannot be judged; report only what is wrong for sure.
      const failures = failuresOf(r.error).filter((f) => !containsUnknown(raw[topLevel(f.property)]));
      return { inputs: raw, failures };
    }
    if (containsUnknown(r.data)) return { inputs: r.data };
    const failures = crossCheck(r.data);
    return failures.length ? { inputs: raw, failures } : { inputs: r.data };
  },

  async diff(_id, olds, news) {
    const changed = INPUT_FIELDS.filter((k) => stable(olds?.[k]) !== stable(news?.[k]));
    return { changes: changed.length > 0 };
  },

  async create(inputs) {
    const i = parsePathCheckInputs(inputs);
    return { id: `pathcheck/${i.publicAddress}:${i.port}`, outs: await check(i) };
  },

  async update(_id, _olds, news) {
    return { outs: await check(parsePathCheckInputs(news)) };
  },

  async read(id, props) {
    return { id, props };
  },

  async delete() {
    // nothing on the hosts belongs to a check
  },
};
