import type { Connection, RunResult } from "../../ssh";
import { NatgateError } from "../../ssh/errors";
import { PERSIST_REMOVE_SH, bootEntryName, observeBoot, parseBootShow, persistWriteArgs, persistWriteScript, type BootEntry, type BootStatus } from "../../backends/persist";
import { keyFileFor, type Role } from "../../plan/wireguard";
import { liveSideFromSections, splitSections, type LiveSide } from "./parse";
import { claimConflict, claimKeys } from "../../backends/claims";
import { applyScript, DELETE_SCRIPT, FOREIGN_INTERFACE_EXIT, PREPARE_SCRIPT, READ_SCRIPT, tunnelArgs } from "./scripts";

/** A side's entry in /etc/natgate/boot.d: the interface is what it owns on its host. */
export function tunnelBootEntryName(interfaceName: string): string {
  return bootEntryName("tunnel", interfaceName);
}

/** One side's host as the effects need it. */
export interface SideTarget {
  role: Role;
  connection: Connection;
  interfaceName: string;
  /** TOFU fingerprint from state, if any; then what the host presented */
  knownFingerprint?: string | undefined;
  /** The same for the jump host (connection.proxy): from state while its host:port is the same */
  knownProxyFingerprint?: string | undefined;
  /** Who holds the interface's claim on this host (none: a Tunnel without a host-side name takes no claim). */
  owner?: string;
  /** The owner under the name in state, when that differs (a rename, or a state from before names): its claim passes to `owner`. */
  ownerBefore?: string;
}

export interface SideRead {
  live: LiveSide;
  fingerprint: string;
  /** the jump host's, when connection.proxy is set */
  proxyFingerprint?: string | undefined;
  /** the prepare step generated the key file just now */
  generated: boolean;
  boot: BootStatus;
}

function where(t: SideTarget): string {
  const c = t.connection;
  return `the ${t.role} (${c.user}@${c.host}${c.port === 22 ? "" : `:${c.port}`})`;
}

function tail(text: string, lines = 15): string {
  const all = text.trimEnd().split("\n");
  return all.slice(-lines).join("\n");
}

/** The SSH transport, loaded on first use so that check and diff, which never touch a host, do not load ssh2. */
function ssh(): typeof import("../../ssh") {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require("../../ssh") as typeof import("../../ssh");
}

async function run(t: SideTarget, script: string, args: string[], what: string): Promise<RunResult> {
  const r = await ssh().runScript(t.connection, script, args, {
    knownFingerprint: t.knownFingerprint,
    knownProxyFingerprint: t.knownProxyFingerprint,
    timeoutSeconds: t.connection.scriptTimeout ?? 120,
  });
  if (r.code === FOREIGN_INTERFACE_EXIT && /natgate-foreign-interface/.test(r.stderr)) {
    throw new NatgateError(
      "config",
      `interface ${t.interfaceName} already exists on ${where(t)} and natgate did not create it (no ${keyFileFor(t.interfaceName)}): ` +
        `choose another interfaceName for this side (${t.role}.interfaceName), or remove that interface if it is unused (ip link del ${t.interfaceName})`,
    );
  }
  const claimed = claimConflict(r.code, r.stderr, where(t));
  if (claimed) throw claimed;
  if (r.code !== 0) {
    throw new NatgateError("remote", `${what} on ${where(t)} failed (exit ${r.code}):\n${tail(r.stderr) || "(no output)"}`);
  }
  return r;
}

function bootOf(sections: Map<string, string>): BootStatus {
  const boot = sections.get("boot");
  if (boot === undefined) throw new NatgateError("unexpected-output", "the tunnel script printed no boot state (@@boot): the connection may have dropped; run again");
  return parseBootShow(boot.split("\n"));
}

function toRead(t: SideTarget, r: RunResult): SideRead {
  const sections = splitSections(r.stdout);
  const live = liveSideFromSections(t.role, t.interfaceName, keyFileFor(t.interfaceName), sections);
  return { live, fingerprint: r.fingerprint, proxyFingerprint: r.proxyFingerprint, generated: sections.has("generated"), boot: bootOf(sections) };
}

function args(t: SideTarget, mode?: "create" | "update", claim?: "take" | "drop"): string[] {
  const c = claim && t.owner ? { owner: t.owner, keys: claim === "take" ? claimKeys.wireguard(t.interfaceName) : [], from: t.ownerBefore } : undefined;
  return tunnelArgs({ ifname: t.interfaceName, keyFile: keyFileFor(t.interfaceName), entry: tunnelBootEntryName(t.interfaceName), mode, claim: c });
}

/** Generates the key pair if absent (on the host), then reads the side's live state. */
export async function prepareSide(t: SideTarget, mode: "create" | "update"): Promise<SideRead> {
  const r = await run(t, PREPARE_SCRIPT, args(t, mode, "take"), "preparing the WireGuard key");
  return toRead(t, r);
}

export async function readSide(t: SideTarget): Promise<SideRead> {
  const r = await run(t, READ_SCRIPT, args(t), "reading the tunnel state");
  return toRead(t, r);
}

/** Runs `plan` (non-empty) and returns the state read back right after. */
export async function applySide(t: SideTarget, plan: string[]): Promise<SideRead> {
  const r = await run(t, applyScript(plan), args(t), "configuring the tunnel");
  return toRead(t, r);
}

/**
 * Writes the side's boot entry when it differs from `entry` (installing the boot runner on first
 * use), or removes it when `entry` is undefined (persist off). Returns the boot state read back.
 */
export async function syncSideBoot(t: SideTarget, entry: BootEntry | undefined, status: BootStatus): Promise<BootStatus> {
  const name = tunnelBootEntryName(t.interfaceName);
  if (observeBoot(name, entry, status).drift.length === 0) return status;
  const r = entry
    ? await run(t, ssh().SH_PRELUDE + persistWriteScript(entry.body), persistWriteArgs(entry), "writing the tunnel's boot entry")
    : await run(t, ssh().SH_PRELUDE + PERSIST_REMOVE_SH, [name], "removing the tunnel's boot entry");
  sawKeys(t, r);
  return bootOf(splitSections(r.stdout));
}

/** Removes the side's interface, wireguard-go, key file, boot entry; absent pieces are fine. */
export async function deleteSide(t: SideTarget): Promise<{ fingerprint: string }> {
  const r = await run(t, DELETE_SCRIPT, args(t, undefined, "drop"), "removing the tunnel");
  return { fingerprint: r.fingerprint };
}

/** Hold the side's next runs to the keys its host (and jump host) just presented. */
export function sawKeys(t: SideTarget, r: { fingerprint: string; proxyFingerprint?: string | undefined }): void {
  t.knownFingerprint = r.fingerprint;
  if (t.connection.proxy && r.proxyFingerprint) t.knownProxyFingerprint = r.proxyFingerprint;
}

export function describeSide(t: SideTarget): string {
  return where(t);
}
