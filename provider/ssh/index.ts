// The SSH layer of natgate: connection arguments (those of @pulumi/command plus sudo),
// a pooled, host-key-checked transport, quoting, and runScript.
//
// Only the pure modules load with this one. The transport (run, pool, dial and ssh2 under them)
// loads on the first call that needs it: the provider process of a `pulumi preview` (check and
// diff, which never touch a host) imports this module but must not load ssh2.
import type * as Dial from "./dial";
import type * as Pool from "./pool";
import type * as Run from "./run";

export { NatgateError, isNatgateError, type NatgateErrorCode } from "./errors";
export { shQuote } from "./quote";
export {
  ConnectionSchema,
  ProxyConnectionSchema,
  checkConnection,
  formatZodError,
  zodFailures,
  type Connection,
  type ConnectionInput,
  type ProxyConnection,
} from "./schema";
export { fingerprintOfKeyBlob, parseHostKeyPin, type HostKeyPin } from "./hostkey";
export { SH_PRELUDE } from "../backends/prelude";
export type { ExecResult, RunOptions, RunResult } from "./run";

/* eslint-disable @typescript-eslint/no-require-imports */
const run = () => require("./run") as typeof Run;
const pool = () => require("./pool") as typeof Pool;
const dial = () => require("./dial") as typeof Dial;
/* eslint-enable @typescript-eslint/no-require-imports */

export function runScript(...args: Parameters<typeof Run.runScript>): ReturnType<typeof Run.runScript> {
  return run().runScript(...args);
}
export function scriptCommand(...args: Parameters<typeof Run.scriptCommand>): ReturnType<typeof Run.scriptCommand> {
  return run().scriptCommand(...args);
}
export function usesSudo(...args: Parameters<typeof Run.usesSudo>): ReturnType<typeof Run.usesSudo> {
  return run().usesSudo(...args);
}
export function closeAll(): ReturnType<typeof Pool.closeAll> {
  return pool().closeAll();
}
export function poolStats(): ReturnType<typeof Pool.poolStats> {
  return pool().poolStats();
}
export function routeLabel(...args: Parameters<typeof Dial.routeLabel>): ReturnType<typeof Dial.routeLabel> {
  return dial().routeLabel(...args);
}
