import { NatgateError, runScript, type Connection, type RunResult } from "../../ssh";
import { keyFileFor, type Role } from "./model";
import { liveSideFromSections, splitSections, type LiveSide } from "./parse";
import { applyScript, DELETE_SCRIPT, FOREIGN_INTERFACE_EXIT, PREPARE_SCRIPT, READ_SCRIPT } from "./scripts";

/** One side's host as the effects need it. */
export interface SideTarget {
  role: Role;
  connection: Connection;
  interfaceName: string;
  /** TOFU fingerprint from state, if any */
  knownFingerprint?: string | undefined;
}

export interface SideRead {
  live: LiveSide;
  fingerprint: string;
  /** the prepare step generated the key file just now */
  generated: boolean;
}

function where(t: SideTarget): string {
  const c = t.connection;
  return `the ${t.role} (${c.user}@${c.host}${c.port === 22 ? "" : `:${c.port}`})`;
}

function tail(text: string, lines = 15): string {
  const all = text.trimEnd().split("\n");
  return all.slice(-lines).join("\n");
}

async function run(t: SideTarget, script: string, args: string[], what: string): Promise<RunResult> {
  const r = await runScript(t.connection, script, args, { knownFingerprint: t.knownFingerprint, timeoutSeconds: 120 });
  if (r.code === FOREIGN_INTERFACE_EXIT && /natgate-foreign-interface/.test(r.stderr)) {
    throw new NatgateError(
      "config",
      `interface ${t.interfaceName} already exists on ${where(t)} and natgate did not create it (no ${keyFileFor(t.interfaceName)}): ` +
        `choose another interfaceName for this side (${t.role}.interfaceName), or remove that interface if it is unused (ip link del ${t.interfaceName})`,
    );
  }
  if (r.code !== 0) {
    throw new NatgateError("remote", `${what} on ${where(t)} failed (exit ${r.code}):\n${tail(r.stderr) || "(no output)"}`);
  }
  return r;
}

function toRead(t: SideTarget, r: RunResult): SideRead {
  const sections = splitSections(r.stdout);
  const live = liveSideFromSections(t.role, t.interfaceName, keyFileFor(t.interfaceName), sections);
  return { live, fingerprint: r.fingerprint, generated: sections.has("generated") };
}

/** Generates the key pair if absent (on the host), then reads the side's live state. */
export async function prepareSide(t: SideTarget, mode: "create" | "update"): Promise<SideRead> {
  const r = await run(t, PREPARE_SCRIPT, [t.interfaceName, keyFileFor(t.interfaceName), mode], "preparing the WireGuard key");
  return toRead(t, r);
}

export async function readSide(t: SideTarget): Promise<SideRead> {
  const r = await run(t, READ_SCRIPT, [t.interfaceName, keyFileFor(t.interfaceName)], "reading the tunnel state");
  return toRead(t, r);
}

/** Runs `plan` (non-empty) and returns the state read back right after. */
export async function applySide(t: SideTarget, plan: string[]): Promise<SideRead> {
  const r = await run(t, applyScript(plan), [t.interfaceName, keyFileFor(t.interfaceName)], "configuring the tunnel");
  return toRead(t, r);
}

/** Removes the side's interface, wireguard-go, key file; absent pieces are fine. */
export async function deleteSide(t: SideTarget): Promise<{ fingerprint: string }> {
  const r = await run(t, DELETE_SCRIPT, [t.interfaceName, keyFileFor(t.interfaceName)], "removing the tunnel");
  return { fingerprint: r.fingerprint };
}

export function describeSide(t: SideTarget): string {
  return where(t);
}
