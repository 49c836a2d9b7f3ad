/**
 * Secrets never appear in a message natgate writes: not the password or key the user gave (they
 * can end up in a wrong field, e.g. a private key pasted into connection.host, whose error quotes
 * the value), and nothing that looks like private key material, wherever it came from.
 */

const SECRET_KEYS = new Set(["password", "privateKey", "privateKeyPassword", "passphrase"]);
// A PEM or OpenSSH private key block, also cut short or flattened onto one line.
const KEY_BLOCK = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)/g;
// What is left of a key without its armour: a long unbroken base64 run (public keys in messages
// are shorter than this after "ssh-ed25519 ", and fingerprints are 43 characters).
const LONG_BASE64 = /[A-Za-z0-9+/]{120,}={0,2}/g;
// The same run still wrapped as in the key file, e.g. a key's body copied from between its BEGIN
// and END lines into a field whose error quotes it: lines of 40+ base64 characters (the last one
// may be short) joined by newlines, escaped newlines or spaces. Judged by its length without the
// breaks, as LONG_BASE64 is: two lines of a PEM body are already past it.
const WRAPPED_BASE64 = /[A-Za-z0-9+/]{40,}(?:(?:\r?\n|(?:\\r)?\\n| )[A-Za-z0-9+/]{40,})*(?:(?:\r?\n|(?:\\r)?\\n| )[A-Za-z0-9+/]{4,})?={0,2}/g;
const base64Length = (s: string) => s.replace(/\\r|\\n|[^A-Za-z0-9+/]/g, "").length;

/** The secret values in a record of inputs: every password, key and passphrase, at any depth (the jump host's too). */
export function secretsOf(v: unknown, out: string[] = []): string[] {
  if (Array.isArray(v)) for (const x of v) secretsOf(x, out);
  else if (v !== null && typeof v === "object") {
    for (const [k, x] of Object.entries(v)) {
      if (SECRET_KEYS.has(k) && typeof x === "string" && x.length >= 4) out.push(x);
      else secretsOf(x, out);
    }
  }
  return out;
}

export function redact(text: string, secrets: readonly string[] = []): string {
  let out = text;
  // Longest first, so a secret that contains another is removed whole.
  for (const s of [...secrets].sort((a, b) => b.length - a.length)) out = out.split(s).join("<redacted>");
  return out
    .replace(KEY_BLOCK, "<redacted: private key>")
    .replace(WRAPPED_BASE64, (m) => (base64Length(m) >= 120 ? "<redacted>" : m))
    .replace(LONG_BASE64, "<redacted>");
}
