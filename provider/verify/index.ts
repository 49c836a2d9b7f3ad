// PathCheck: after `up`, prove the forwarded path carries a real connection, hop by hop.
export { pathCheckProvider, parsePathCheckInputs } from "./provider";
export { runPathCheck } from "./check";
export { analyzePath, failureMessage, PathCheckError, AmbiguousProbeError, HOPS, type Hop, type HopName, type PathCheckReport, type ReportEntry } from "./analyze";
export { parseConntrack, parseConntrackLine, flowsOf, type ConntrackEntry, type ConntrackFlow, type ConntrackTuple } from "./conntrack";
export { probeTcp, type ProbeResult, type ProbeOutcome } from "./probe";
export { PathCheckSchema, type PathCheckInput, type PathCheckInputs } from "./schema";
