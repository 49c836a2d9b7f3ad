import { createHash } from "crypto";

const MAX = 32;

/**
 * natgate's host-side name for a resource (it becomes part of an nft table name and an iptables
 * comment), derived from the Pulumi name when the user gives none: lower case, `_` for anything
 * outside a-z0-9, at most 32 characters. A name that has to be shortened keeps a hash of the
 * whole Pulumi name, so `a-long-site-name-vps-0` and `...-vps-1` never share a table. The
 * provider validates whatever results, so a bad explicit name is still reported at preview.
 */
export function hostSideName(pulumiName: string): string {
  let n = pulumiName.toLowerCase().replace(/[^a-z0-9_]+/g, "_").replace(/^_+|_+$/g, "");
  const hash = createHash("sha256").update(pulumiName).digest("hex").slice(0, 7);
  // Nothing usable left (a name in another script): the hash alone tells such names apart.
  if (n === "") return `r_${hash}`;
  if (!/^[a-z]/.test(n)) n = `r_${n}`;
  if (n.length <= MAX) return n;
  return `${n.slice(0, MAX - hash.length - 1).replace(/_+$/, "")}_${hash}`;
}
