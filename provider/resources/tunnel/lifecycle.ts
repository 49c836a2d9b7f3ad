import { isLegacyState } from "../../engine/version";
import { inputsOf } from "../../engine/check";
import { NatgateError } from "../../ssh";
import { bootEntry, bootEntryPath, bootEntryText, observeBoot, type BootEntry, type BootObservation, type BootStatus, type InitSystem } from "../../backends/persist";
import type { WireGuardBackend } from "../../backends/wireguard";
import { keptProxyFingerprint } from "../common/host";
import { describeSide, applySide, deleteSide, prepareSide, readSide, sawKeys, syncSideBoot, tunnelBootEntryName, type SideRead, type SideTarget } from "./effects";
import { keyFileFor, type Role, type SideState } from "../../plan/wireguard";
import { bootPlan, planSide, renderLive } from "./plan";
import { desiredSide, renderSide, renderTunnel, type PublicKeys } from "./render";
import { APPLY_HEAD, applySteps, assertRunnable, tunnelArgs } from "./scripts";
import { wireGuardKeyProblem } from "./parse";
import { TUNNEL_INPUTS, type TunnelInputs } from "./schema";

/** What a Tunnel stores in state: its checked inputs plus what only the hosts know. */
export interface TunnelOutputs extends TunnelInputs {
  renderedListener: string[];
  renderedDialer: string[];
  listenerPublicKey?: string;
  dialerPublicKey?: string;
  listenerFingerprint?: string;
  dialerFingerprint?: string;
  /** Each side's jump host key (connection.proxy), only for a side that has one. */
  listenerProxyFingerprint?: string;
  dialerProxyFingerprint?: string;
  listenerBackend?: WireGuardBackend;
  dialerBackend?: WireGuardBackend;
  /** What restores each side at boot: the host's init system, or "off" (persist false). */
  listenerBoot?: InitSystem | "off";
  dialerBoot?: InitSystem | "off";
  bootNote?: string;
  /** The natgate release that wrote these outputs (absent: 0.1.0). */
  natgateVersion?: string;
}

export const ROLES: readonly Role[] = ["listener", "dialer"];

/** What the render gives: each side's lines. */
export const RENDER_KEYS = ["renderedListener", "renderedDialer"] as const;

/** The state's fields that only the hosts know. */
export const OUTPUT_KEYS = [
  "listenerPublicKey",
  "dialerPublicKey",
  "listenerFingerprint",
  "dialerFingerprint",
  "listenerProxyFingerprint",
  "dialerProxyFingerprint",
  "listenerBackend",
  "dialerBackend",
  "listenerBoot",
  "dialerBoot",
  "bootNote",
] as const;

/** The checked inputs inside a state object (create's inputs, or old outputs); errors for anything invalid or unknown. */
export function inputsFromProps(props: Record<string, unknown> | undefined): TunnelInputs {
  return inputsOf(TUNNEL_INPUTS, props);
}

/**
 * The public key natgate read from a side's host (`wg pubkey` of its key file), checked before it
 * goes into the other side's commands and boot entry: the text came from another machine.
 */
export function publicKeyFrom(t: SideTarget, read: SideRead): string {
  const file = keyFileFor(t.interfaceName);
  const key = read.live.keyFilePublicKey;
  if (key === undefined) {
    throw new NatgateError(
      "remote",
      `no public key could be read from ${describeSide(t)}: \`wg pubkey < ${file}\` printed nothing; check that file ` +
        `(it holds the private key) or remove it so that the next up generates a new key pair`,
    );
  }
  const why = wireGuardKeyProblem(key);
  if (why) {
    throw new NatgateError(
      "remote",
      `the public key read from ${describeSide(t)} (\`wg pubkey < ${file}\`) ${why}; it was not used. ` +
        `Check that host's wg and the key file, or remove the file so that the next up generates a new key pair`,
    );
  }
  return key;
}

export function tunnelId(a: TunnelInputs): string {
  return `${a.listener.connection.host}/${a.listener.interfaceName}~${a.dialer.connection.host}/${a.dialer.interfaceName}`;
}

/** A side's host, expecting the keys the state (`olds`, or a read's or delete's props) kept for it. */
function target(a: TunnelInputs, role: Role, olds: Partial<TunnelOutputs> | undefined, nameBefore?: unknown): SideTarget {
  const owner = a.name === undefined ? undefined : `tunnel_${a.name}`;
  const before = typeof nameBefore === "string" && nameBefore !== a.name ? `tunnel_${nameBefore}` : undefined;
  const connection = a[role].connection;
  // The side's host and port are its identity (a change replaces the Tunnel), its jump host is not:
  // a new jump host address may be another machine, so its key is trusted on first use again.
  const knownProxyFingerprint = keptProxyFingerprint(olds?.[role]?.connection, connection, olds?.[PROXY_FINGERPRINT[role]]);
  return { role, connection, interfaceName: a[role].interfaceName, knownFingerprint: olds?.[FINGERPRINT[role]], knownProxyFingerprint, owner, ownerBefore: before };
}

const FINGERPRINT = { listener: "listenerFingerprint", dialer: "dialerFingerprint" } as const;
const PROXY_FINGERPRINT = { listener: "listenerProxyFingerprint", dialer: "dialerProxyFingerprint" } as const;

/** The host key outputs: a side's jump host key only where it has one, so a Tunnel without a proxy keeps its outputs as they were. */
function fingerprintOutputs(targets: SideTarget[], seen: Pick<SideRead, "fingerprint" | "proxyFingerprint">[]): Partial<TunnelOutputs> {
  const out: Partial<TunnelOutputs> = {};
  targets.forEach((t, i) => {
    out[FINGERPRINT[t.role]] = seen[i]!.fingerprint;
    const proxy = seen[i]!.proxyFingerprint;
    if (t.connection.proxy && proxy) out[PROXY_FINGERPRINT[t.role]] = proxy;
  });
  return out;
}

/** Drops undefined members: protobuf Structs refuse them. */
function clean<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

function reasons(results: PromiseSettledResult<unknown>[]): string {
  return results
    .filter((r): r is PromiseRejectedResult => r.status === "rejected")
    .map((r) => (r.reason instanceof Error ? r.reason.message : String(r.reason)))
    .join("\n\n");
}

function firstError(results: PromiseSettledResult<unknown>[]): NatgateError {
  const rejected = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
  const code = rejected.length === 1 && rejected[0]!.reason instanceof NatgateError ? rejected[0]!.reason.code : "remote";
  return new NatgateError(code, reasons(results));
}

function assertWireGuard(t: SideTarget, read: SideRead): void {
  if (read.live.notWireGuard) {
    throw new NatgateError(
      "config",
      `interface ${t.interfaceName} on ${describeSide(t)} is a ${read.live.notWireGuard} device, not WireGuard: choose another ${t.role}.interfaceName`,
    );
  }
}

export interface ConvergeResult {
  outputs: TunnelOutputs;
  /** the commands run on each side; both empty when the hosts were already in sync */
  plans: Record<Role, string[]>;
}

/**
 * Brings both hosts to the inputs' state: key pairs first (each host generates its own),
 * then each side's plan against its live state, then a read-back that must render exactly
 * like the desired state. A failed create removes what it made, like wg-quick's `up`.
 */
export async function converge(a: TunnelInputs, mode: "create" | "update", olds?: Partial<TunnelOutputs>): Promise<ConvergeResult> {
  const targets = ROLES.map((r) => target(a, r, olds, (olds as { name?: unknown } | undefined)?.name));
  const prepared = await Promise.allSettled(targets.map((t) => prepareSide(t, mode)));
  if (prepared.some((p) => p.status === "rejected")) {
    if (mode === "create") {
      const undo = targets.filter((_, i) => {
        const p = prepared[i]!;
        return p.status === "fulfilled" && p.value.generated;
      });
      await rollback(undo);
    }
    throw firstError(prepared);
  }
  const reads = prepared.map((p) => (p as PromiseFulfilledResult<SideRead>).value);
  for (const [i, t] of targets.entries()) sawKeys(t, reads[i]!);
  try {
    targets.forEach((t, i) => assertWireGuard(t, reads[i]!));
    const keys: PublicKeys = { listener: publicKeyFrom(targets[0]!, reads[0]!), dialer: publicKeyFrom(targets[1]!, reads[1]!) };
    const desired = ROLES.map((r) => desiredSide(a, r, keys));
    const plans = targets.map((_, i) => planSide(desired[i]!, reads[i]!.live.state));
    // Listener first: the dialer sends a handshake as soon as its peer is set (persistent
    // keepalive), and a listener that does not know the dialer yet drops it; WireGuard then
    // retries only after 5 s.
    const after: SideRead[] = [];
    for (const [i, t] of targets.entries()) {
      after.push(plans[i]!.length > 0 ? await applySide(t, plans[i]!) : reads[i]!);
    }
    targets.forEach((t, i) => verifyInSync(t, desired[i]!, after[i]!.live.state));
    const entries = targets.map((t) => sideBootEntry(a, t.role, keys));
    entries.forEach((e, i) => e && assertRunnable(`the tunnel's boot entry on ${describeSide(targets[i]!)}`, bootEntryText(e)));
    const boots = await Promise.all(targets.map((t, i) => syncSideBoot(t, entries[i], after[i]!.boot)));
    const observed = ROLES.map((r, i) => observeSideBoot(a, r, keys, boots[i]!));
    observed.forEach((o, i) => {
      if (o.drift.length) {
        throw new NatgateError("remote", `the tunnel's boot entry on ${describeSide(targets[i]!)} does not read back as written:\n  ${o.drift.join("\n  ")}`);
      }
    });
    const outputs: TunnelOutputs = clean({
      ...a,
      ...renderTunnel(a, keys),
      listenerPublicKey: keys.listener,
      dialerPublicKey: keys.dialer,
      ...fingerprintOutputs(targets, after),
      listenerBackend: after[0]!.live.backend,
      dialerBackend: after[1]!.live.backend,
      ...bootFacts(observed),
    });
    return { outputs, plans: { listener: plans[0]!, dialer: plans[1]! } };
  } catch (e) {
    if (mode === "create") await rollback(targets, e);
    throw e;
  }
}

function verifyInSync(t: SideTarget, desired: SideState, live: SideState): void {
  const want = renderSide(desired);
  const got = renderLive(live, desired);
  if (want.join("\n") === got.join("\n")) return;
  throw new NatgateError(
    "remote",
    `the tunnel on ${describeSide(t)} does not match what was applied; something else changed it meanwhile, or a command had no effect.\n` +
      `expected:\n  ${want.join("\n  ")}\nfound:\n  ${got.join("\n  ")}\nRun the update again; if it persists, look for another tool managing ${t.interfaceName}.`,
  );
}

async function rollback(targets: SideTarget[], cause?: unknown): Promise<void> {
  const undone = await Promise.allSettled(targets.map((t) => deleteSide(t)));
  const failed = reasons(undone);
  if (failed && cause instanceof Error) {
    cause.message += `\n\nRemoving what this create had made also failed (remove it by hand or run the delete again):\n${failed}`;
  }
}

/** Live state of both sides in the shape of the outputs (`pulumi refresh`); undefined when both sides are gone. */
export async function readTunnel(a: TunnelInputs, props: Partial<TunnelOutputs>): Promise<TunnelOutputs | undefined> {
  const targets = ROLES.map((r) => target(a, r, props));
  const settled = await Promise.allSettled(targets.map((t) => readSide(t)));
  if (settled.some((p) => p.status === "rejected")) throw firstError(settled);
  const reads = settled.map((p) => (p as PromiseFulfilledResult<SideRead>).value);
  const hasEntry = (r: SideRead, t: SideTarget) => (r.boot.files.get(bootEntryPath(tunnelBootEntryName(t.interfaceName))) ?? "-") !== "-";
  if (reads.every((r, i) => !r.live.state.link && !r.live.state.keyFile && !hasEntry(r, targets[i]!))) return undefined;
  const keys: PublicKeys = { listener: reads[0]!.live.keyFilePublicKey, dialer: reads[1]!.live.keyFilePublicKey };
  const observed = ROLES.map((r, i) => observeSideBoot(a, r, keys, reads[i]!.boot, isLegacyState(props)));
  const rendered = ROLES.map((r, i) => [...renderLive(reads[i]!.live.state, desiredSide(a, r, keys)), ...observed[i]!.rendered]);
  return clean({
    ...a,
    renderedListener: rendered[0]!,
    renderedDialer: rendered[1]!,
    listenerPublicKey: keys.listener,
    dialerPublicKey: keys.dialer,
    ...fingerprintOutputs(targets, reads),
    listenerBackend: reads[0]!.live.backend,
    dialerBackend: reads[1]!.live.backend,
    ...bootFacts(observed),
  });
}

/**
 * What rebuilds a side at boot: its apply script with the plan that makes it from nothing (and
 * changes nothing when run again). The private key stays in its file; the peer's public key is in
 * the plan. Undefined when persist is off.
 */
export function sideBootEntry(a: TunnelInputs, role: Role, keys: PublicKeys): BootEntry | undefined {
  if (!a.persist) return undefined;
  const ifname = a[role].interfaceName;
  const args = tunnelArgs({ ifname, keyFile: keyFileFor(ifname), entry: tunnelBootEntryName(ifname) });
  return bootEntry("tunnel", ifname, `Tunnel ${role} ${ifname}`, args, APPLY_HEAD, applySteps(bootPlan(desiredSide(a, role, keys))));
}

function observeSideBoot(a: TunnelInputs, role: Role, keys: PublicKeys, status: BootStatus, upgrading = false): BootObservation {
  return observeBoot(tunnelBootEntryName(a[role].interfaceName), sideBootEntry(a, role, keys), status, upgrading);
}

function bootFacts(observed: BootObservation[]): Pick<TunnelOutputs, "listenerBoot" | "dialerBoot" | "bootNote"> {
  const [l, d] = observed.map((o) => o.facts);
  return {
    listenerBoot: l!.boot,
    dialerBoot: d!.boot,
    bootNote: l!.bootNote === d!.bootNote ? l!.bootNote : `listener: ${l!.bootNote}; dialer: ${d!.bootNote}`,
  };
}

/** Removes both sides; each side's absence is success. Both are attempted even if one fails. */
export async function deleteTunnel(a: TunnelInputs, props: Partial<TunnelOutputs>): Promise<void> {
  const settled = await Promise.allSettled(ROLES.map((r) => deleteSide(target(a, r, props))));
  if (settled.some((p) => p.status === "rejected")) throw firstError(settled);
}

/** What the host state should render as, given old outputs' keys; used by diff to see drift. */
export function expectedRendering(a: TunnelInputs, olds: Partial<TunnelOutputs>): { renderedListener: string[]; renderedDialer: string[] } {
  return renderTunnel(a, { listener: olds.listenerPublicKey, dialer: olds.dialerPublicKey });
}
