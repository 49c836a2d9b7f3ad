/** The remote scripts of a PolicyRouteTable: read, apply (under the dead-man switch), delete. */
import { HOSTSTATE_SH } from "./hoststate";
import { IPROUTE_SH } from "./iproute";
import { BOOT_SH } from "./persist";

const PRELUDE = HOSTSTATE_SH + IPROUTE_SH + BOOT_SH + "ip_need\n";

/** $1 table, $2 boot entry */
export const ROUTES_READ_SH = PRELUDE + `echo "@@routes"; ip_routes "$1" || exit 1\nboot_show "$2"\n`;
/** $1 table, $2 ip batch, $3 dead-man token, $4 its seconds, $5 the batch that undoes $2, $6 boot entry */
export const ROUTES_APPLY_SH =
  PRELUDE +
  `ng_lock
ip_deadman_arm "$3" "$4" "$5" || exit 1
ip_batch "$2" || { ip_deadman_now "$3" "$5"; exit 1; }
echo "@@routes"; ip_routes "$1" || exit 1
boot_show "$6"
`;
/** $1 table, $2 boot entry */
export const ROUTES_DELETE_SH =
  PRELUDE + `ng_lock\nip_flush_table "$1" || exit 1\nboot_remove "$2" || exit 1\necho "@@routes"; ip_routes "$1" || exit 1\nboot_show "$2"\n`;
