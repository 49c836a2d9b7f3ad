/** The remote scripts of a PolicyRouteTable: read, apply (under the dead-man switch), delete; both address families. */
import { HOSTSTATE_SH } from "./hoststate";
import { IPROUTE_SH } from "./iproute";
import { BOOT_SH } from "./persist";
import { ARGS_SH, encodeArgs } from "./args";
import { CLAIMS_SH } from "./claims";

const PRELUDE = ARGS_SH + HOSTSTATE_SH + IPROUTE_SH + BOOT_SH + CLAIMS_SH + 'ng_args "$@"\nip_need\n';

/** Args: table, entry, deadman_owner (whose pending rollbacks are listed). */
export const ROUTES_READ_SH = PRELUDE + `echo "@@routes"; ip_routes "$A_table" || exit 1
echo "@@routes6"; ip_routes6 "$A_table" || exit 1\nboot_show "$A_entry"\nclaims_show\nip_deadman_pending "$A_deadman_owner"\n`;
/**
 * Args: table, batch (ip -batch lines), token and seconds of the dead-man switch (none at boot),
 * undo (the batch that undoes batch), entry, claims taken for claim_owner (none at boot).
 */
export const ROUTES_APPLY_SH =
  PRELUDE +
  `ng_lock
[ -z "$A_claim_owner" ] || claims_take "$A_claim_owner" "$A_claims" || exit 1
ip_deadman_arm "$A_token" "$A_seconds" "$A_undo" || exit 1
ip_batch "$A_batch" || { ip_deadman_now "$A_token" "$A_undo"; exit 1; }
echo "@@routes"; ip_routes "$A_table" || exit 1
echo "@@routes6"; ip_routes6 "$A_table" || exit 1
boot_show "$A_entry"
claims_show
`;
/** Args: table, entry, claim_owner (whose claims go). */
export const ROUTES_DELETE_SH =
  PRELUDE +
  `ng_lock\nip_flush_table "$A_table" || exit 1\nip_flush_table6 "$A_table" || exit 1\nboot_remove "$A_entry" || exit 1\n[ -z "$A_claim_owner" ] || claims_drop "$A_claim_owner" || exit 1\necho "@@routes"; ip_routes "$A_table" || exit 1
echo "@@routes6"; ip_routes6 "$A_table" || exit 1\nboot_show "$A_entry"\nclaims_show\n`;

/** The routes scripts' record; a boot entry has no dead-man switch (no SSH session to lose). */
export function routesArgs(a: {
  table: number;
  entry: string;
  batch?: string[];
  deadman?: { token: string; seconds: number; undo: string[] };
  claim?: { owner: string; keys: string[] };
  deadmanOwner?: string;
}): string[] {
  return encodeArgs({
    deadman_owner: a.deadmanOwner,
    claim_owner: a.claim?.owner,
    claims: a.claim?.keys.join(" "),
    table: a.table,
    entry: a.entry,
    batch: a.batch?.join("\n"),
    token: a.deadman?.token,
    seconds: a.deadman?.seconds,
    undo: a.deadman?.undo.join("\n"),
  });
}
