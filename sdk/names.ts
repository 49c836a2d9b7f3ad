/**
 * natgate's host-side name for a resource (it becomes part of an nft table name and an iptables
 * comment), derived from the Pulumi name when the user gives none: lower case, `_` for anything
 * outside a-z0-9, at most 32 characters. The provider validates whatever results, so a name that
 * cannot be made safe is still reported at preview.
 */
export function hostSideName(pulumiName: string): string {
  let n = pulumiName.toLowerCase().replace(/[^a-z0-9_]+/g, "_").replace(/^_+|_+$/g, "");
  if (!/^[a-z]/.test(n)) n = `r_${n}`;
  return n.slice(0, 32).replace(/_+$/, "");
}
