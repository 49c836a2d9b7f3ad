// Checks a private key's text at `check` time without ssh2, which must not load with a preview
// (issue 8): PEM keys through node:crypto, OpenSSH keys (openssh-key-v1) and PuTTY keys by their
// structure. It accepts what ssh2 1.17's utils.parseKey reads (the client that uses the key at
// connect) and says why it refuses the rest. Problems are codes, never text from the key, so no
// part of a key or passphrase can reach a message.
import { createDecipheriv, createPrivateKey } from "crypto";

export type KeyProblem =
  /** Not a key in any format the SSH client reads (or a path, or a corrupted key). */
  | "unreadable"
  /** A public key (OpenSSH line, RFC 4716 or PEM) where the private key belongs. */
  | "public"
  /** A readable private key of a type the SSH client cannot use (e.g. a FIDO sk- key). */
  | "unsupported-type"
  /** Encrypted with a cipher the SSH client cannot decrypt a key file with (chacha20-poly1305). */
  | "unsupported-cipher"
  /** Encrypted, and no passphrase was given. */
  | "encrypted"
  /** Encrypted, and the passphrase given does not decrypt it. */
  | "wrong-passphrase";

export type KeyCheck =
  | { ok: true; format: "openssh" | "pem" | "ppk"; type: string; encrypted: boolean }
  | { ok: false; problem: KeyProblem };

/** Key types of an OpenSSH key blob that ssh2 can sign with. */
export const OPENSSH_KEY_TYPES = [
  "ssh-ed25519",
  "ssh-rsa",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
  "ssh-dss",
] as const;

// Ciphers ssh2 decrypts an openssh-key-v1 key with, and node:crypto's name for those checked here.
const OPENSSH_CIPHERS: Record<string, { ssl?: string; keyLen: number; ivLen: number; block: number }> = {
  "aes128-ctr": { ssl: "aes-128-ctr", keyLen: 16, ivLen: 16, block: 16 },
  "aes192-ctr": { ssl: "aes-192-ctr", keyLen: 24, ivLen: 16, block: 16 },
  "aes256-ctr": { ssl: "aes-256-ctr", keyLen: 32, ivLen: 16, block: 16 },
  "aes128-cbc": { ssl: "aes-128-cbc", keyLen: 16, ivLen: 16, block: 16 },
  "aes192-cbc": { ssl: "aes-192-cbc", keyLen: 24, ivLen: 16, block: 16 },
  "aes256-cbc": { ssl: "aes-256-cbc", keyLen: 32, ivLen: 16, block: 16 },
  // GCM: the first blocks decrypt as CTR does; the tag is left to ssh2.
  "aes128-gcm@openssh.com": { ssl: "aes-128-gcm", keyLen: 16, ivLen: 12, block: 16 },
  "aes256-gcm@openssh.com": { ssl: "aes-256-gcm", keyLen: 32, ivLen: 12, block: 16 },
  // Parsed but refused: ssh2 1.17 fails to decrypt a key file with it ("Invalid initialization vector").
  "chacha20-poly1305@openssh.com": { keyLen: 64, ivLen: 0, block: 8 },
};

// bcrypt_pbkdf costs rounds × 64 Blowfish key schedules; a key claiming more than this is not
// decrypted at check time (ssh2 does it at connect), so a hostile input cannot stall a preview.
const MAX_CHECKED_ROUNDS = 1024;

const OPENSSH_RE = /^-----BEGIN OPENSSH PRIVATE KEY-----\r?\n([\s\S]+?)\r?\n-----END OPENSSH PRIVATE KEY-----$/;
const PEM_PRIVATE_RE = /^-----BEGIN (RSA|DSA|EC) PRIVATE KEY-----\r?\n[\s\S]+\r?\n-----END \1 PRIVATE KEY-----$/;
const PKCS8_RE = /^-----BEGIN (ENCRYPTED )?PRIVATE KEY-----\r?\n[\s\S]+\r?\n-----END \1PRIVATE KEY-----$/;
const PPK_RE = /^PuTTY-User-Key-File-2: (ssh-(?:rsa|dss))\r?\nEncryption: (aes256-cbc|none)\r?\nComment: [^\r\n]*\r?\nPublic-Lines: \d+\r?\n[\s\S]+?\r?\nPrivate-Lines: \d+\r?\n[\s\S]+?\r?\nPrivate-MAC: [^\r\n]+/;
const PUBLIC_RE = [
  /^(?:ssh-[a-z0-9-]+|ecdsa-sha2-nistp\d+|sk-[a-z0-9@.-]+)(?:-cert-v01@openssh\.com)? +AAAA[A-Za-z0-9+/=]+(?: .*)?$/,
  /^---- BEGIN SSH2 PUBLIC KEY ----/,
  /^-----BEGIN (?:RSA |EC |DSA )?PUBLIC KEY-----/,
];
// ssh2 reads EC PEM keys on these curves only.
const PEM_CURVES = ["prime256v1", "secp384r1", "secp521r1"];

/** Strict base64 (whitespace between lines allowed): undefined when it is not. */
function base64(body: string): Buffer | undefined {
  const s = body.replace(/\s+/g, "");
  if (s.length === 0 || s.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(s)) return undefined;
  return Buffer.from(s, "base64");
}

/** A cursor over SSH wire format (RFC 4251): uint32 and length-prefixed strings. */
class Reader {
  pos = 0;
  constructor(private readonly buf: Buffer) {}
  u32(): number | undefined {
    if (this.pos + 4 > this.buf.length) return undefined;
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  bytes(): Buffer | undefined {
    const n = this.u32();
    if (n === undefined || this.pos + n > this.buf.length) return undefined;
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
  text(): string | undefined {
    const b = this.bytes();
    return b && b.toString("latin1");
  }
  rest(): Buffer {
    return this.buf.subarray(this.pos);
  }
}

const MAGIC = "openssh-key-v1\0";

/** The outer structure of an openssh-key-v1 key, as `ssh-keygen` writes it. */
export interface OpenSshKey {
  cipher: string;
  kdf: string;
  /** bcrypt's salt and rounds, when kdf is "bcrypt". */
  salt?: Buffer;
  rounds?: number;
  /** Key type named by the public key blob. */
  type: string;
  /** The private section: plain when cipher is "none", else ciphertext. */
  privateSection: Buffer;
  /** GCM's tag after the private section (16 bytes), else empty. */
  trailer: Buffer;
}

/** Parses the text of an OpenSSH private key file; undefined for anything malformed. */
export function parseOpenSshKey(text: string): OpenSshKey | undefined {
  const m = OPENSSH_RE.exec(text.trim());
  const data = m && base64(m[1]!);
  if (!data || data.length < MAGIC.length || data.toString("latin1", 0, MAGIC.length) !== MAGIC) return undefined;
  const r = new Reader(data);
  r.pos = MAGIC.length;
  const cipher = r.text();
  const kdf = r.text();
  const kdfOptions = r.bytes();
  const count = r.u32();
  if (cipher === undefined || kdf === undefined || kdfOptions === undefined || count !== 1) return undefined;
  const info = OPENSSH_CIPHERS[cipher];
  if (cipher !== "none" && !info) return undefined;
  // Encrypted exactly when a kdf is named: bcrypt, the only one OpenSSH writes.
  if ((cipher === "none") !== (kdf === "none")) return undefined;
  let salt: Buffer | undefined;
  let rounds: number | undefined;
  if (kdf === "none") {
    if (kdfOptions.length !== 0) return undefined;
  } else {
    if (kdf !== "bcrypt") return undefined;
    const o = new Reader(kdfOptions);
    salt = o.bytes();
    rounds = o.u32();
    if (!salt || salt.length === 0 || rounds === undefined || rounds === 0 || o.rest().length !== 0) return undefined;
  }
  const pub = r.bytes();
  const type = pub && new Reader(pub).text();
  const privateSection = r.bytes();
  if (!type || !privateSection) return undefined;
  const block = info?.block ?? 8;
  if (privateSection.length === 0 || privateSection.length % block !== 0) return undefined;
  const trailer = r.rest();
  if (trailer.length !== (cipher.includes("gcm") || cipher.startsWith("chacha20") ? 16 : 0)) return undefined;
  const key: OpenSshKey = { cipher, kdf, type, privateSection, trailer };
  if (salt) key.salt = salt;
  if (rounds !== undefined) key.rounds = rounds;
  return key;
}

/** Whether a plain private section opens as OpenSSH writes it: two equal check-ints, then the key's type. */
function privateSectionOpens(plain: Buffer, type: string): boolean {
  const r = new Reader(plain);
  const a = r.u32();
  const b = r.u32();
  return a !== undefined && a === b && r.text() === type;
}

interface BcryptPbkdf {
  pbkdf(pass: Buffer, passlen: number, salt: Buffer, saltlen: number, key: Buffer, keylen: number, rounds: number): number;
}

// bcrypt_pbkdf in plain JavaScript (the package ssh2 itself uses; it loads no ssh2). Loaded only
// for an encrypted OpenSSH key with a passphrase; when absent, the passphrase is left to ssh2.
function bcryptPbkdf(): BcryptPbkdf | undefined {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require("bcrypt-pbkdf") as BcryptPbkdf;
  } catch {
    return undefined;
  }
}

/**
 * Whether `passphrase` decrypts the key: true, false, or undefined when it is not checked here
 * (more than MAX_CHECKED_ROUNDS rounds, or no bcrypt_pbkdf available): then the passphrase is
 * checked by ssh2 at connect, where a wrong one is an auth error naming the privateKey field.
 */
function passphraseOpens(key: OpenSshKey, passphrase: string): boolean | undefined {
  const info = OPENSSH_CIPHERS[key.cipher];
  if (!info?.ssl || !key.salt || key.rounds === undefined || key.rounds > MAX_CHECKED_ROUNDS) return undefined;
  const bcrypt = bcryptPbkdf();
  if (!bcrypt) return undefined;
  const pass = Buffer.from(passphrase, "utf8");
  const out = Buffer.alloc(info.keyLen + info.ivLen);
  if (bcrypt.pbkdf(pass, pass.length, key.salt, key.salt.length, out, out.length, key.rounds) !== 0) return undefined;
  const decipher = createDecipheriv(info.ssl, out.subarray(0, info.keyLen), out.subarray(info.keyLen));
  if ("setAutoPadding" in decipher) decipher.setAutoPadding(false);
  // The check-ints and the type string sit in the first blocks; `update` alone decrypts them
  // (GCM's tag, checked only by `final`, is left to ssh2).
  const head = key.privateSection.subarray(0, Math.min(key.privateSection.length, 64));
  return privateSectionOpens(decipher.update(head), key.type);
}

function checkOpenSsh(text: string, passphrase: string | undefined): KeyCheck {
  const key = parseOpenSshKey(text);
  if (!key) return { ok: false, problem: "unreadable" };
  if (!(OPENSSH_KEY_TYPES as readonly string[]).includes(key.type)) return { ok: false, problem: "unsupported-type" };
  const encrypted = key.cipher !== "none";
  if (!OPENSSH_CIPHERS[key.cipher]?.ssl && encrypted) return { ok: false, problem: "unsupported-cipher" };
  if (!encrypted) {
    if (!privateSectionOpens(key.privateSection, key.type)) return { ok: false, problem: "unreadable" };
  } else {
    if (passphrase === undefined || passphrase === "") return { ok: false, problem: "encrypted" };
    if (passphraseOpens(key, passphrase) === false) return { ok: false, problem: "wrong-passphrase" };
  }
  return { ok: true, format: "openssh", type: key.type, encrypted };
}

function checkPem(text: string, passphrase: string | undefined): KeyCheck {
  const encrypted = /^Proc-Type: *4,ENCRYPTED\s*$/m.test(text);
  if (encrypted && (passphrase === undefined || passphrase === "")) return { ok: false, problem: "encrypted" };
  let type: string | undefined;
  let curve: string | undefined;
  try {
    const k = createPrivateKey(encrypted ? { key: text, format: "pem", passphrase: passphrase! } : { key: text, format: "pem" });
    type = k.asymmetricKeyType;
    curve = k.asymmetricKeyDetails?.namedCurve;
  } catch {
    // A wrong passphrase mostly fails the padding check, else leaves garbage no DER parser takes.
    return { ok: false, problem: encrypted ? "wrong-passphrase" : "unreadable" };
  }
  if (type === "ec" && !PEM_CURVES.includes(curve ?? "")) return { ok: false, problem: "unsupported-type" };
  if (type !== "rsa" && type !== "dsa" && type !== "ec") return { ok: false, problem: "unsupported-type" };
  return { ok: true, format: "pem", type, encrypted };
}

function checkPpk(text: string, passphrase: string | undefined): KeyCheck {
  const m = PPK_RE.exec(text)!;
  const encrypted = m[2] !== "none";
  // An encrypted PuTTY key's passphrase is checked by ssh2 at connect.
  if (encrypted && (passphrase === undefined || passphrase === "")) return { ok: false, problem: "encrypted" };
  return { ok: true, format: "ppk", type: m[1]!, encrypted };
}

/** Whether ssh2 could use `text` (with `passphrase`) as a private key, as far as it can be told without ssh2. */
export function checkPrivateKeyText(text: string, passphrase?: string): KeyCheck {
  const t = text.trim();
  if (t.startsWith("-----BEGIN OPENSSH PRIVATE KEY-----")) return checkOpenSsh(t, passphrase);
  if (PEM_PRIVATE_RE.test(t)) return checkPem(t, passphrase);
  if (PPK_RE.test(t)) return checkPpk(t, passphrase);
  // PKCS#8 parses in node:crypto but ssh2 1.17 cannot read it: refused here as ssh2 would at connect.
  if (PKCS8_RE.test(t)) return { ok: false, problem: "unreadable" };
  if (PUBLIC_RE.some((re) => re.test(t))) return { ok: false, problem: "public" };
  return { ok: false, problem: "unreadable" };
}
