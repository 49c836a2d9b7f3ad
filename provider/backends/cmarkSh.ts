/**
 * The remote scripts of a ConnmarkReturnPath. Values arrive as one record (args.ts): A_table,
 * A_owner, A_entry, A_sysctls (paths to show); apply also A_nft, A_ipt_restore / A_ipt_jumps,
 * A_ipt_jumps_del / A_ipt_chains_del (and the same as A_ip6t_* for the IPv6 twin), A_batch (ip -batch) with its dead-man switch A_token,
 * A_seconds and A_undo, A_hold ("path value" lines), A_release, fw4 include files A_fw4_del /
 * A_fw4_put (OpenWrt: the table's, which fw4 re-creates after its flush), the claims A_claims taken
 * for A_claim_owner (none at boot: a claim stands for the resource), and at boot A_rules_ensure.
 */
import { ARGS_SH } from "./args";
import { HOSTSTATE_SH } from "./hoststate";
import { IPROUTE_SH } from "./iproute";
import { IPTFW_SH } from "./iptablesFirewall";
import { NFT_SH } from "./nftables";
import { BOOT_SH } from "./persist";
import { CLAIMS_SH } from "./claims";
import { FW4_SH } from "./fw4Include";
import { SYSCTL_SH } from "./sysctl";

const SHOW_SH = `
cmark_show() {
  fw_facts
  if [ "$NG_NFT" = yes ]; then
    echo "@@nft"; nft_show ip "$A_table" || exit 1
    echo "@@nft6"; nft_show ip6 "$A_table" || exit 1
  fi
  iptfw_show
  NG_IPT=ip6tables; iptfw_show; NG_IPT=iptables
  fw4_show "" "$A_table"
  echo "@@rules"; ip_rules || exit 1
  echo "@@rules6"; ip_rules6 || exit 1
  echo "@@sysctl"
  for ng_p in $A_sysctls; do sysctl_show "$ng_p" "$A_owner"; done
  boot_show "$A_entry"
  claims_show
}
# cmark_rules_ensure LINES (boot entries): "rule add SPEC" or "-6 rule add SPEC", each run as ip
# LINE; one that is there already counts as added (ip rule has no replace, and the kernel refuses
# a duplicate), so a second run changes nothing
cmark_rules_ensure() {
  printf '%s\\n' "$1" | while IFS= read -r ng_r; do
    [ -n "$ng_r" ] || continue
    set -f
    ng_e=$(ip $ng_r 2>&1) || case $ng_e in
      *"File exists"*) ;;
      *) printf 'natgate: ip %s failed: %s\\n' "$ng_r" "$ng_e" >&2; exit 1 ;;
    esac
  done
}
# cmark_ipt6 FUNCTION ARGS...: an iptables backend function for the IPv6 twin (ip6tables)
cmark_ipt6() { NG_IPT=ip6tables; "$@"; ng_rc=$?; NG_IPT=iptables; return $ng_rc; }
`;

const PRELUDE = ARGS_SH + HOSTSTATE_SH + NFT_SH + IPTFW_SH + IPROUTE_SH + SYSCTL_SH + BOOT_SH + FW4_SH + CLAIMS_SH + SHOW_SH + 'ng_args "$@"\nip_need\n';

export const CMARK_READ_SH = PRELUDE + "cmark_show\nip_deadman_pending \"$A_owner\"\n";

export const CMARK_APPLY_SH =
  PRELUDE +
  `ng_lock
[ -z "$A_claim_owner" ] || claims_take "$A_claim_owner" "$A_claims" || exit 1
fw4_sync "$A_fw4_del" "$A_fw4_put" || exit 1
[ -z "$A_ipt_restore" ] || iptfw_apply "$A_ipt_restore" "$A_ipt_jumps" || exit 1
[ -z "$A_ip6t_restore" ] || cmark_ipt6 iptfw_apply "$A_ip6t_restore" "$A_ip6t_jumps" || exit 1
[ -z "$A_nft" ] || nft_apply "$A_nft" || exit 1
[ -z "$A_ipt_jumps_del$A_ipt_chains_del" ] || iptfw_delete "$A_ipt_jumps_del" "$A_ipt_chains_del" || exit 1
[ -z "$A_ip6t_jumps_del$A_ip6t_chains_del" ] || cmark_ipt6 iptfw_delete "$A_ip6t_jumps_del" "$A_ip6t_chains_del" || exit 1
ip_deadman_arm "$A_token" "$A_seconds" "$A_undo" || exit 1
ip_batch "$A_batch" || { ip_deadman_now "$A_token" "$A_undo"; exit 1; }
[ -z "$A_rules_ensure" ] || cmark_rules_ensure "$A_rules_ensure" || exit 1
printf '%s\\n' "$A_hold" | while read -r ng_p ng_v; do [ -z "$ng_p" ] || sysctl_hold "$ng_p" "$ng_v" "$A_owner" || exit 1; done || exit 1
printf '%s\\n' "$A_release" | while read -r ng_p; do [ -z "$ng_p" ] || sysctl_release "$ng_p" "$A_owner" || exit 1; done || exit 1
cmark_show
`;

export const CMARK_DELETE_SH =
  PRELUDE +
  `ng_lock
fw_facts >/dev/null
fw4_sync "$A_fw4_del" "" || exit 1
[ "$NG_NFT" != yes ] || nft_delete ip "$A_table" || exit 1
[ "$NG_NFT" != yes ] || nft_delete ip6 "$A_table" || exit 1
[ -z "$A_ipt_jumps_del$A_ipt_chains_del" ] || iptfw_delete "$A_ipt_jumps_del" "$A_ipt_chains_del" || exit 1
[ -z "$A_ip6t_jumps_del$A_ip6t_chains_del" ] || cmark_ipt6 iptfw_delete "$A_ip6t_jumps_del" "$A_ip6t_chains_del" || exit 1
ip_batch "$A_batch" || exit 1
for ng_p in $A_sysctls; do sysctl_release "$ng_p" "$A_owner" || exit 1; done
boot_remove "$A_entry" || exit 1
claims_drop "$A_owner" || exit 1
cmark_show
`;
