import type { Failure } from "../engine/failures";
import type { Kind } from "../engine/kind";
import { inputsOf } from "../engine/check";
import { makeProvider } from "../engine/provider";
import { runPathCheck } from "./check";
import { FINGERPRINT_KEYS, fingerprintOutputs, loginsOf } from "./hostKeys";
import { PathCheckSchema, type PathCheckInputs } from "./schema";

function crossCheck(i: PathCheckInputs): Failure[] {
  if (i.mask !== undefined && i.mark === undefined) return [{ property: "mask", reason: "needs mark: give the mark the router's connections carry" }];
  return [];
}

/**
 * PathCheck: an action, not a piece of host state. create and update run the check (and fail the
 * deployment when a hop is broken); read returns what is in state, because re-probing on refresh
 * would send traffic on every `pulumi refresh` and a passing path yesterday is not drift; delete
 * has nothing to remove. Like every resource, it keeps the host key fingerprints it saw (trust on
 * first use) and refuses a changed key on the next run.
 */
export const PathCheckKind: Kind<PathCheckInputs> = {
  kind: "PathCheck",
  schema: PathCheckSchema,
  crossCheck,
  // The report's fields and the host key fingerprints, which the SDK declares as outputs.
  outputKeys: ["callerAddress", "probe", "vpsEntry", "routerEntry", "hops", "ok", ...FINGERPRINT_KEYS],
  renderKeys: [],
  render: () => ({}),
  replacePaths: [],
  deleteBeforeReplace: "never",
  versioned: false,
  id: (i) => `pathcheck/${i.publicAddress}:${i.port}`,
  // connections stay in state under their input names, so the engine keeps them secret there too
  apply: async (i, olds) => {
    const logins = loginsOf(i, olds);
    const report = await runPathCheck(i, logins);
    return { ...i, ...report, ...fingerprintOutputs(logins) };
  },
  read: async (_i, props) => {
    const { __provider: _p, ...state } = props;
    return state;
  },
  remove: async () => {
    // nothing on the hosts belongs to a check
  },
};

/** Parse inputs from check's output or state; throws listing every problem. */
export function parsePathCheckInputs(props: Record<string, unknown>): PathCheckInputs {
  return inputsOf(PathCheckKind, props);
}

export const pathCheckProvider = makeProvider(PathCheckKind);
