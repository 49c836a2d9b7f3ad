// The SSH layer of natgate: connection arguments (those of @pulumi/command plus sudo),
// a pooled, host-key-checked transport, quoting, and runScript.
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
export { runScript, scriptCommand, usesSudo, SH_PRELUDE, type ExecResult, type RunOptions, type RunResult } from "./run";
export { closeAll, poolStats, MAX_CHANNELS_PER_CONNECTION, IDLE_CLOSE_MS } from "./pool";
export { routeLabel } from "./dial";
