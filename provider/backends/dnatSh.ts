/**
 * The remote scripts of a DnatRule: read, apply, delete. Values arrive as one record (args.ts):
 * A_name, A_family (4 or 6), A_fwd (the forwarding sysctl's path), A_table, A_owner, A_entry, A_comment, A_addrs; apply and delete also A_nft (one nft
 * transaction: own table and accepts in other tables), A_ipt_restore / A_ipt_jumps (natgate's
 * iptables chains and their jumps), A_ipt_jumps_del / A_ipt_chains_del, the filter accepts
 * A_fwd_del / A_fwd_add / A_in_del / A_in_add, fw4 include files A_fw4_del / A_fw4_put, and at
 * boot A_boot_accepts and A_fwd_if_drop / A_in_if_drop (added where the chain drops at run time).
 */
import { ARGS_SH } from "./args";
import { HOSTSTATE_SH } from "./hoststate";
import { IPTABLES_SH } from "./iptables";
import { IPTFW_SH } from "./iptablesFirewall";
import { NFT_SH } from "./nftables";
import { FW4_SH } from "./fw4Include";
import { BOOT_SH } from "./persist";
import { SYSCTL_SH } from "./sysctl";

const SHOW_SH = `
# Other firewalls' tables too when nft works: their forward chains matter.
dnat_show() {
  fw_facts
  if [ "$NG_NFT" = yes ]; then
    echo "@@nft"
    if [ "$A_family" = 6 ]; then nft_visible ip6 "$A_table" || exit 1; else nft_visible ip "$A_table" || exit 1; fi
  fi
  iptfw_show
  ipt_show || exit 1
  fw4_show "$A_name" "$A_table"
  echo "@@sysctl"; sysctl_show "$A_fwd" "$A_owner"
  [ "$A_family" != 6 ] || { echo "@@acceptra"; sysctl_ra_show "$A_owner"; }
  boot_show "$A_entry"
}
# dnat_local: whether the host takes each address of A_addrs as its own (the kernel's answer, so an
# address routed locally without being on an interface counts too), and the host's addresses.
dnat_local() {
  echo "@@local"
  for ng_a in $A_addrs; do
    case "$(ip route get "$ng_a" 2>/dev/null | head -n 1)" in
      "local "*) echo "$ng_a local" ;;
      *) echo "$ng_a remote" ;;
    esac
  done
  echo "@@addrs"
  ip -o addr show | sed -n -e 's,.* inet \\([0-9.]*\\)/.*,\\1,p' -e 's,.* inet6 \\([0-9a-f:]*\\)/.*,\\1,p'
}
# dnat_accepts_replace LINES COMMENT (boot entries): LINES are "insert rule FAMILY TABLE CHAIN ..."
# for other firewalls' forward chains. One transaction deletes the rules carrying COMMENT there
# and inserts LINES, so a second run changes nothing, and a run after the firewall rebuilt its
# chain puts the accepts back. A chain that does not exist is skipped: its firewall is not
# running, so it drops nothing.
dnat_accepts_replace() {
  ng_chains=$(printf '%s\\n' "$1" | while IFS= read -r ng_l; do
    set -f; set -- $ng_l
    [ -n "$5" ] && nft list chain "$3" "$4" "$5" >/dev/null 2>&1 && echo "$3 $4 $5"
  done | sort -u)
  [ -n "$ng_chains" ] || return 0
  ng_txn=$(
    printf '%s\\n' "$ng_chains" | while read -r ng_f ng_t ng_c; do
      nft -a list chain "$ng_f" "$ng_t" "$ng_c" | grep -F "comment \\"$2\\" # handle " |
        sed 's/.* # handle \\([0-9]*\\)$/\\1/' | while read -r ng_h; do echo "delete rule $ng_f $ng_t $ng_c handle $ng_h"; done
    done
    printf '%s\\n' "$1" | while IFS= read -r ng_l; do
      ( set -f; set -- $ng_l; [ -n "$5" ] && printf '%s\\n' "$ng_chains" | grep -qxF "$3 $4 $5" ) && printf '%s\\n' "$ng_l"
    done
  )
  nft_apply "$ng_txn"
}
`;

// An IPv6 rule's iptables objects are ip6tables': every iptables function calls $NG_IPT.
const PRELUDE = ARGS_SH + HOSTSTATE_SH + NFT_SH + IPTABLES_SH + IPTFW_SH + FW4_SH + SYSCTL_SH + BOOT_SH + SHOW_SH + 'ng_args "$@"\n[ "$A_family" != 6 ] || NG_IPT=ip6tables\n';

export const DNAT_READ_SH = PRELUDE + `need ip iproute2 ip-full
dnat_show
dnat_local
`;

export const DNAT_APPLY_SH =
  PRELUDE +
  `ng_lock
fw_facts >/dev/null
ipt_sync "$A_fwd_del" "$A_fwd_add" || exit 1
ipt_sync "$A_in_del" "$A_in_add" INPUT || exit 1
[ "$A_family" != 6 ] || sysctl_ra_hold "$A_owner" || exit 1
sysctl_hold "$A_fwd" 1 "$A_owner" || exit 1
fw4_sync "$A_fw4_del" "$A_fw4_put" || exit 1
[ -z "$A_ipt_restore" ] || iptfw_apply "$A_ipt_restore" "$A_ipt_jumps" || exit 1
[ -z "$A_nft" ] || nft_apply "$A_nft" || exit 1
[ -z "$A_ipt_jumps_del$A_ipt_chains_del" ] || iptfw_delete "$A_ipt_jumps_del" "$A_ipt_chains_del" || exit 1
[ -z "$A_boot_accepts" ] || [ "$NG_NFT" != yes ] || dnat_accepts_replace "$A_boot_accepts" "$A_comment" || exit 1
# At boot (and each time a firewall service started): the accepts go where a drop is now, also
# where there was none at pulumi up (ufw enabled, Docker installed since).
[ -z "$A_fwd_if_drop" ] || ! ipt_drops FORWARD "$A_comment" || ipt_sync "" "$A_fwd_if_drop" || exit 1
[ -z "$A_in_if_drop" ] || ! ipt_drops INPUT "$A_comment" || ipt_sync "" "$A_in_if_drop" INPUT || exit 1
dnat_show
`;

export const DNAT_DELETE_SH =
  PRELUDE +
  `ng_lock
[ -z "$A_nft" ] || nft_apply "$A_nft" || exit 1
[ -z "$A_ipt_jumps_del$A_ipt_chains_del" ] || iptfw_delete "$A_ipt_jumps_del" "$A_ipt_chains_del" || exit 1
ipt_sync "$A_fwd_del" "" || exit 1
ipt_sync "$A_in_del" "" INPUT || exit 1
fw4_sync "$A_fw4_del" "" || exit 1
sysctl_release "$A_fwd" "$A_owner" || exit 1
[ "$A_family" != 6 ] || sysctl_ra_release "$A_owner" || exit 1
boot_remove "$A_entry" || exit 1
dnat_show
`;
