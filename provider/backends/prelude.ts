// The prelude of every natgate script and the markers runScript reads back from it. Pure: it
// loads with check and diff, where the transport (run, pool, dial, ssh2) must not.
export const MISSING_TOOL_MARKER = "natgate-missing-tool:";
export const NOT_ROOT_MARKER = "natgate-not-root:";
export const NOT_ROOT_EXIT = 126;

/**
 * What every natgate script starts with (POSIX sh, BusyBox ash compatible).
 * It stops at once unless it runs as root: nft, ip, wg and conntrack need CAP_NET_ADMIN, so a
 * script run as a plain user would fail halfway with a "Permission denied" that does not say why;
 * the marker line becomes a not-root error telling the user to set sudo.
 * `need CMD PACKAGE [OPENWRT_PACKAGE]` stops the script with exit 127 and a marker line that
 * runScript turns into a missing-tool error naming the package.
 */
export const SH_PRELUDE = `if [ "$(id -u)" != 0 ]; then
  printf '%s %s\\n' '${NOT_ROOT_MARKER}' "$(id -u)" >&2
  exit ${NOT_ROOT_EXIT}
fi
need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  printf '%s %s %s%s\\n' '${MISSING_TOOL_MARKER}' "$1" "$2" "\${3:+ $3}" >&2
  exit 127
}
`;
