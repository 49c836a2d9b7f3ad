/** Shell functions for the nft part of a resource's scripts. */
export const NFT_SH = `
# nft_show FAMILY TABLE: the table as nft -j prints it, nothing when it does not exist
nft_show() {
  if ng_out=$(nft -j list table "$1" "$2" 2>&1); then
    printf '%s\\n' "$ng_out"
  else
    case $ng_out in
      *"No such file or directory"*|*"does not exist"*) ;;
      *) printf 'natgate: nft list table %s %s failed: %s\\n' "$1" "$2" "$ng_out" >&2; return 1 ;;
    esac
  fi
}
# nft_visible FAMILY OWN (after fw_facts, whose list of tables it takes): natgate's table OWN,
# then every table a packet of FAMILY (ip, ip6) passes that is not natgate's (FAMILY's and inet's:
# other firewalls' chains matter), one nft -j document per line. Not the whole ruleset: each
# natgate table on the host made every read list (and the provider parse) all the others.
nft_visible() {
  nft_show "$1" "$2" || return 1
  printf '%s\\n' "$NG_NFT_TABLES" | while read -r ng_kw ng_f ng_t ng_rest; do
    [ "$ng_kw" = table ] || continue
    case $ng_f in "$1" | inet) ;; *) continue ;; esac
    case $ng_t in natgate_*) continue ;; esac
    nft_show "$ng_f" "$ng_t" || exit 1
  done || return 1
}
# nft_apply TEXT: one atomic transaction
nft_apply() {
  printf '%s\\n' "$1" | nft -f - || { echo "natgate: nft rejected the transaction above" >&2; return 1; }
}
# nft_delete FAMILY TABLE: not-found is success
nft_delete() {
  printf 'add table %s %s\\ndelete table %s %s\\n' "$1" "$2" "$1" "$2" | nft -f -
}
`;
