// OpenSSH known_hosts, read as `ssh` reads it (sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT", hostfile.c,
// match.c): parse and lookup are pure; readKnownHostsFiles is the one function that touches the disk.
import { createHmac, timingSafeEqual } from "crypto";
import { readFileSync, statSync } from "fs";
import { homedir } from "os";
import { NatgateError } from "./errors";
import { fingerprintOfKeyBlob, hostKeyAlgorithmsFor, keyTypeOfBlob } from "./hostkey";

export type KnownHostsMarker = "revoked" | "cert-authority";

/** One usable line of a known_hosts file. */
export interface KnownHostsEntry {
  file: string;
  /** 1-based line number */
  line: number;
  marker?: KnownHostsMarker;
  /** comma-separated patterns (`!` negates), or one hashed host name */
  hosts: { patterns: string[] } | { salt: Buffer; hash: Buffer };
  keyType: string;
  fingerprint: string;
}

const KEY_TYPE = /^[A-Za-z0-9][A-Za-z0-9@._-]*$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

function decodeHashed(field: string): { salt: Buffer; hash: Buffer } | undefined {
  const m = /^\|1\|([A-Za-z0-9+/=]+)\|([A-Za-z0-9+/=]+)$/.exec(field);
  if (!m) return undefined;
  const salt = Buffer.from(m[1]!, "base64");
  const hash = Buffer.from(m[2]!, "base64");
  return salt.length === 20 && hash.length === 20 ? { salt, hash } : undefined;
}

/**
 * The host key lines of a known_hosts file. Comments, blank lines and lines ssh would not read
 * either (an unknown marker, a key that is not base64 or whose blob holds another type, SSH-1
 * "bits e n" keys, a bad hash) are skipped, as ssh skips them.
 */
export function parseKnownHosts(text: string, file: string): KnownHostsEntry[] {
  const out: KnownHostsEntry[] = [];
  text.split("\n").forEach((raw, i) => {
    let fields = raw.trim().split(/[ \t]+/);
    if (fields[0] === "" || fields[0]!.startsWith("#")) return;
    let marker: KnownHostsMarker | undefined;
    if (fields[0]!.startsWith("@")) {
      if (fields[0] === "@revoked") marker = "revoked";
      else if (fields[0] === "@cert-authority") marker = "cert-authority";
      else return;
      fields = fields.slice(1);
    }
    const [hostField, keyType, b64] = fields;
    if (!hostField || !keyType || !b64 || !KEY_TYPE.test(keyType) || !BASE64.test(b64)) return;
    const blob = Buffer.from(b64, "base64");
    if (keyTypeOfBlob(blob) !== keyType) return;
    let hosts: KnownHostsEntry["hosts"];
    if (hostField.startsWith("|")) {
      const hashed = decodeHashed(hostField);
      if (!hashed) return;
      hosts = hashed;
    } else {
      hosts = { patterns: hostField.split(",").filter((p) => p !== "" && p !== "!") };
    }
    out.push({ file, line: i + 1, ...(marker ? { marker } : {}), hosts, keyType, fingerprint: fingerprintOfKeyBlob(blob) });
  });
  return out;
}

/** What ssh looks a host up as: the name for port 22, `[name]:port` otherwise; lowercase. */
export function knownHostsName(host: string, port: number): string {
  const h = host.toLowerCase();
  return port === 22 ? h : `[${h}]:${port}`;
}

/** OpenSSH's match_pattern: `*` any run of characters, `?` one character, the rest literal. */
export function matchPattern(s: string, pattern: string): boolean {
  let si = 0;
  let pi = 0;
  let starP = -1;
  let starS = 0;
  while (si < s.length) {
    if (pi < pattern.length && (pattern[pi] === "?" || pattern[pi] === s[si])) {
      si++;
      pi++;
    } else if (pi < pattern.length && pattern[pi] === "*") {
      starP = pi++;
      starS = si;
    } else if (starP >= 0) {
      pi = starP + 1;
      si = ++starS;
    } else {
      return false;
    }
  }
  while (pattern[pi] === "*") pi++;
  return pi === pattern.length;
}

/** Whether an entry is for this host name (as knownHostsName gives it). A matching `!pattern` rules the line out. */
export function entryMatches(entry: KnownHostsEntry, name: string): boolean {
  const h = entry.hosts;
  if ("salt" in h) return timingSafeEqual(createHmac("sha1", h.salt).update(name).digest(), h.hash);
  let positive = false;
  for (const p of h.patterns) {
    const negated = p.startsWith("!");
    if (!matchPattern(name, (negated ? p.slice(1) : p).toLowerCase())) continue;
    if (negated) return false;
    positive = true;
  }
  return positive;
}

/** The lines of known_hosts that speak about one host, by kind. */
export interface KnownHostsLookup {
  /** host string searched for, as in the file ("vps.example" or "[vps.example]:2222") */
  name: string;
  keys: KnownHostsEntry[];
  revoked: KnownHostsEntry[];
  certAuthorities: KnownHostsEntry[];
}

export function lookupKnownHosts(entries: readonly KnownHostsEntry[], host: string, port: number): KnownHostsLookup {
  const name = knownHostsName(host, port);
  const r: KnownHostsLookup = { name, keys: [], revoked: [], certAuthorities: [] };
  for (const e of entries) {
    if (!entryMatches(e, name)) continue;
    if (e.marker === "revoked") r.revoked.push(e);
    else if (e.marker === "cert-authority") r.certAuthorities.push(e);
    else r.keys.push(e);
  }
  return r;
}

// ssh2's order of preference; the offer keeps it, as ssh orders its HostKeyAlgorithms.
const SUPPORTED_KEY_TYPES = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa", "ssh-dss"];

/**
 * Host key algorithms to offer when known_hosts knows keys for the host: only those of the known
 * types (so the server presents a key that can be checked); empty if natgate's client can use none.
 */
export function knownHostsOffer(lookup: KnownHostsLookup): string[] {
  const types = new Set(lookup.keys.map((e) => e.keyType));
  return SUPPORTED_KEY_TYPES.filter((t) => types.has(t)).flatMap(hostKeyAlgorithmsFor);
}

export type KnownHostsVerdict =
  /** no host key line for the host: trust on first use decides (after the revocation check) */
  | { kind: "unknown" }
  | { kind: "known"; entry: KnownHostsEntry }
  | { kind: "revoked"; entry: KnownHostsEntry }
  /** keys of the presented type are known, none is this one; or only keys of other types are */
  | { kind: "changed"; entries: KnownHostsEntry[]; sameType: boolean };

/** ssh's check of a presented key: a revoked key is refused first, then a known key is accepted, any other refused. */
export function judgeHostKey(lookup: KnownHostsLookup, fingerprint: string, keyType: string | undefined): KnownHostsVerdict {
  const revoked = lookup.revoked.find((e) => e.fingerprint === fingerprint);
  if (revoked) return { kind: "revoked", entry: revoked };
  if (lookup.keys.length === 0) return { kind: "unknown" };
  const known = lookup.keys.find((e) => e.fingerprint === fingerprint);
  if (known) return { kind: "known", entry: known };
  const sameType = lookup.keys.filter((e) => e.keyType === keyType);
  return sameType.length ? { kind: "changed", entries: sameType, sameType: true } : { kind: "changed", entries: lookup.keys, sameType: false };
}

const where = (e: KnownHostsEntry) => `${e.file}:${e.line}`;
const shellWord = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`);

function removeHint(lookup: KnownHostsLookup, entries: KnownHostsEntry[]): string {
  const files = [...new Set(entries.map((e) => e.file))];
  return files.map((f) => `ssh-keygen -f ${shellWord(f)} -R ${shellWord(lookup.name)}`).join(" and ");
}

/**
 * The refusal for a key known_hosts rules out (revoked, changed), naming the file:line, both
 * fingerprints and the fix. `field` is connection.hostKey or connection.proxy.hostKey.
 */
export function knownHostsRefusal(label: string, lookup: KnownHostsLookup, verdict: KnownHostsVerdict, received: string, receivedType: string | undefined, field: string): NatgateError {
  const got = `${received}${receivedType ? ` (${receivedType})` : ""}`;
  if (verdict.kind === "revoked") {
    return new NatgateError(
      "hostkey-mismatch",
      `host key of ${label} is revoked: it presented ${got}, which ${where(verdict.entry)} marks @revoked. Nothing was run on the host. ` +
        `The host needs a new host key; then put it in known_hosts or set ${field} to it.`,
    );
  }
  if (verdict.kind !== "changed") throw new Error(`knownHostsRefusal: nothing to refuse (${verdict.kind})`);
  const known = verdict.entries.map((e) => `${e.fingerprint} (${e.keyType}, ${where(e)})`).join(", ");
  const what = verdict.sameType
    ? `known_hosts has ${known} for ${lookup.name}, received ${got}`
    : `known_hosts has only keys of other types for ${lookup.name}: ${known}; received ${got}`;
  return new NatgateError(
    "hostkey-mismatch",
    `host key of ${label} does not match known_hosts: ${what}. Nothing was run on the host. ` +
      `If the host was legitimately reinstalled, remove the old key (${removeHint(lookup, verdict.entries)}) or set ${field} to the new fingerprint shown ("${received}"); ` +
      `otherwise someone may be intercepting the connection: do not proceed.`,
  );
}

/** The refusal when known_hosts narrowed the offer and the server has no key of those types. */
export function knownHostsNoCommonType(label: string, lookup: KnownHostsLookup, field: string): NatgateError {
  const known = lookup.keys.map((e) => `${e.keyType} ${e.fingerprint} (${where(e)})`).join(", ");
  return new NatgateError(
    "hostkey-mismatch",
    `host key of ${label} cannot be checked: known_hosts has ${known} for ${lookup.name}, and the server offers no key of ` +
      `${lookup.keys.length > 1 ? "these types" : "that type"}, as ssh refuses it. Nothing was run on the host. ` +
      `If the host was legitimately reinstalled, remove the old key (${removeHint(lookup, lookup.keys)}) or set ${field} to its new key.`,
  );
}

/** Said in a first-use refusal when the only lines for the host are @cert-authority ones. */
export function certAuthorityNote(lookup: KnownHostsLookup): string | undefined {
  if (lookup.keys.length || !lookup.certAuthorities.length) return undefined;
  return (
    `known_hosts has only @cert-authority lines for ${lookup.name} (${lookup.certAuthorities.map(where).join(", ")}): ` +
    `natgate does not check host certificates, so they were not used`
  );
}

/**
 * The files to read: `setting` (connection.knownHosts) when it is a path, none for false, and
 * ssh's defaults otherwise: ~/.ssh/known_hosts, ~/.ssh/known_hosts2, /etc/ssh/ssh_known_hosts(2).
 */
export function knownHostsFiles(setting: string | false | undefined, home: string = homedir()): string[] {
  if (setting === false) return [];
  if (setting !== undefined) return [setting.startsWith("~/") ? `${home}/${setting.slice(2)}` : setting];
  return [`${home}/.ssh/known_hosts`, `${home}/.ssh/known_hosts2`, "/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"];
}

const cache = new Map<string, { stamp: string; entries: KnownHostsEntry[] }>();

/** Read and parse the files (re-read when one changes); a missing file is no entry, as for ssh. */
export function readKnownHostsFiles(files: readonly string[]): KnownHostsEntry[] {
  const out: KnownHostsEntry[] = [];
  for (const file of files) {
    try {
      const st = statSync(file);
      const stamp = `${st.ino}:${st.size}:${st.mtimeMs}`;
      let hit = cache.get(file);
      if (hit?.stamp !== stamp) {
        hit = { stamp, entries: parseKnownHosts(readFileSync(file, "utf8"), file) };
        cache.set(file, hit);
      }
      out.push(...hit.entries);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR") continue;
      throw new NatgateError("config", `connection.knownHosts: cannot read ${file} (${code ?? (e as Error).message}): fix its permissions, or set knownHosts to another file or to false`);
    }
  }
  return out;
}

/** The known_hosts lines for one host:port under connection.knownHosts (unset: ssh's files). */
export function knownHostsFor(host: string, port: number, setting: string | false | undefined): KnownHostsLookup {
  return lookupKnownHosts(readKnownHostsFiles(knownHostsFiles(setting)), host, port);
}
