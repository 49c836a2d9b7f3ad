// The shapes of a PathCheck's report, which the SDK declares as outputs. Types only, importing
// nothing that reaches zod or ssh2: the published .d.ts of the SDK include this file.
import type { ProbeResult } from "./probe";

export type HopName = "VPS DNAT" | "tunnel" | "router DNAT" | "return path";
export const HOPS: HopName[] = ["VPS DNAT", "tunnel", "router DNAT", "return path"];

export interface Hop {
  hop: HopName;
  ok: boolean;
  detail: string;
  /** an earlier hop failed, so this one could not be judged (ok is false) */
  skipped?: boolean;
}

/** A conntrack entry in the report: what a user needs to read it, in conntrack's own words. */
export interface ReportEntry {
  state?: string;
  orig: { src: string; dst: string; sport?: number; dport?: number };
  reply: { src: string; dst: string; sport?: number; dport?: number };
  flags: string[];
  mark?: number;
  /** events seen during the check: NEW, UPDATE..., DESTROY */
  events: string[];
  replied: boolean;
}

export interface PathCheckReport {
  /** the caller's public address as the VPS saw it ("" when no connection reached the VPS) */
  callerAddress: string;
  probe: ProbeResult;
  vpsEntry?: ReportEntry;
  routerEntry?: ReportEntry;
  hops: Hop[];
  /** every hop ok */
  ok: boolean;
}
