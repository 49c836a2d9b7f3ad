import type { Client } from "ssh2";
import { isNatgateError } from "./errors";
import {
  dial,
  endpointName,
  mismatchError,
  poolKey,
  proxyExpectations,
  routeLabel,
  targetExpectations,
  type Dialed,
  type Expectation,
} from "./dial";
import type { Connection } from "./schema";

// sshd's MaxSessions defaults to 10 channels per connection; stay under it with room to spare.
export const MAX_CHANNELS_PER_CONNECTION = 8;
// Long enough that a Pulumi step's consecutive scripts share one login, short enough
// that a finished program is not kept alive by an open socket for long.
export const IDLE_CLOSE_MS = 2000;

interface Entry {
  dialed: Dialed;
  label: string;
  active: number;
  waiting: Array<() => void>;
  idleTimer?: NodeJS.Timeout;
  dead: boolean;
  pooled: boolean;
  closed: Promise<void>;
}

/** A slot on a live connection: one exec channel may be opened on `client` until release(). */
export interface Lease {
  readonly client: Client;
  readonly fingerprint: string;
  readonly proxyFingerprint?: string;
  readonly label: string;
  isDead(): boolean;
  /** Drop the connection (e.g. it failed mid-use) so the next caller dials afresh. */
  discard(): void;
  release(): void;
}

export interface AcquireOptions {
  knownFingerprint?: string | undefined;
  knownProxyFingerprint?: string | undefined;
  fresh?: boolean | undefined;
}

const pool = new Map<string, Promise<Entry>>();
const live = new Set<Entry>();
let dialCount = 0;

function makeEntry(dialed: Dialed, label: string, pooled: boolean, onDead: () => void): Entry {
  let markClosed!: () => void;
  const entry: Entry = {
    dialed,
    label,
    active: 0,
    waiting: [],
    dead: false,
    pooled,
    closed: new Promise<void>((r) => (markClosed = r)),
  };
  live.add(entry);
  const die = () => {
    if (entry.dead) return;
    entry.dead = true;
    if (entry.idleTimer) clearTimeout(entry.idleTimer);
    onDead();
  };
  dialed.client.on("error", die);
  dialed.client.on("end", die);
  dialed.client.once("close", () => {
    die();
    live.delete(entry);
    markClosed();
  });
  return entry;
}

function closeEntry(entry: Entry): void {
  entry.dead = true;
  if (entry.idleTimer) clearTimeout(entry.idleTimer);
  entry.dialed.client.end();
}

/** A pooled connection was verified against its first caller's expectations; hold it to ours too. */
function checkExpectations(entry: Entry, conn: Connection, expectations: Expectation[], opts: AcquireOptions): void {
  for (const exp of expectations) {
    if (exp.fingerprint !== entry.dialed.fingerprint) {
      throw mismatchError(entry.label, exp, entry.dialed.fingerprint, undefined, false);
    }
  }
  if (!conn.proxy || !entry.dialed.proxyFingerprint) return;
  for (const exp of proxyExpectations(conn, opts.knownProxyFingerprint)) {
    if (exp.fingerprint !== entry.dialed.proxyFingerprint) {
      throw mismatchError(`jump host ${endpointName(conn.proxy)}`, exp, entry.dialed.proxyFingerprint, undefined, true);
    }
  }
}

async function pooledEntry(conn: Connection, expectations: Expectation[], opts: AcquireOptions): Promise<Entry> {
  const key = poolKey(conn);
  let redialedForMismatch = false;
  for (;;) {
    let p = pool.get(key);
    let mine = false;
    if (!p) {
      mine = true;
      dialCount++;
      const created: Promise<Entry> = dial(conn, expectations, opts.knownProxyFingerprint).then((d) =>
        makeEntry(d, routeLabel(conn), true, () => {
          if (pool.get(key) === created) pool.delete(key);
        }),
      );
      p = created;
      pool.set(key, created);
      created.catch(() => {
        if (pool.get(key) === created) pool.delete(key);
      });
    }
    let entry: Entry;
    try {
      entry = await p;
    } catch (e) {
      // A concurrent caller's dial was refused against *its* expected key: judge ours ourselves.
      if (!mine && !redialedForMismatch && isNatgateError(e, "hostkey-mismatch")) {
        redialedForMismatch = true;
        continue;
      }
      throw e;
    }
    if (entry.dead) {
      if (pool.get(key) === p) pool.delete(key);
      continue;
    }
    return entry;
  }
}

/**
 * A channel slot on a pooled (or, with `fresh`, a new unshared) connection whose host key
 * matched every expectation. Nothing has been sent to the host when this throws.
 */
export async function acquire(conn: Connection, opts: AcquireOptions = {}): Promise<Lease> {
  const expectations = targetExpectations(conn, opts.knownFingerprint);
  let entry: Entry;
  if (opts.fresh) {
    dialCount++;
    const d = await dial(conn, expectations, opts.knownProxyFingerprint);
    entry = makeEntry(d, routeLabel(conn), false, () => {});
  } else {
    entry = await pooledEntry(conn, expectations, opts);
    checkExpectations(entry, conn, expectations, opts);
  }

  if (entry.idleTimer) {
    clearTimeout(entry.idleTimer);
    entry.idleTimer = undefined;
  }
  if (entry.active < MAX_CHANNELS_PER_CONNECTION) entry.active++;
  else await new Promise<void>((r) => entry.waiting.push(r)); // the releaser hands its slot over

  let released = false;
  return {
    client: entry.dialed.client,
    fingerprint: entry.dialed.fingerprint,
    ...(entry.dialed.proxyFingerprint ? { proxyFingerprint: entry.dialed.proxyFingerprint } : {}),
    label: entry.label,
    isDead: () => entry.dead,
    discard: () => closeEntry(entry),
    release: () => {
      if (released) return;
      released = true;
      const next = entry.waiting.shift();
      if (next) return next();
      entry.active--;
      if (entry.active > 0) return;
      if (!entry.pooled) return closeEntry(entry);
      if (entry.dead) return;
      entry.idleTimer = setTimeout(() => closeEntry(entry), IDLE_CLOSE_MS);
      entry.idleTimer.unref();
    },
  };
}

/** Close every connection this process holds (pooled and fresh) and wait until they are closed. */
export async function closeAll(): Promise<void> {
  const pending = [...pool.values()];
  pool.clear();
  await Promise.all(pending.map((p) => p.then(() => undefined, () => undefined)));
  const entries = [...live];
  for (const e of entries) closeEntry(e);
  await Promise.all(
    entries.map((e) => Promise.race([e.closed, new Promise<void>((r) => setTimeout(r, 2000).unref())])),
  );
}

/** Counters for tests and diagnostics: dials started by this process, connections open now. */
export function poolStats(): { dials: number; open: number } {
  return { dials: dialCount, open: live.size };
}
