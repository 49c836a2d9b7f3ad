/**
 * How a script's values travel: one typed record, encoded as `key=value` arguments by one encoder
 * and read by one shell function into variables `A_<key>`, instead of `$1..${12}` lists that the
 * apply and the boot entry would each have to build in the same order. Values are never part of
 * script text: `ng_args` assigns them (an assignment's right side is neither split nor globbed).
 */
import { NatgateError } from "../ssh/errors";

export type ScriptArgs = Record<string, string | number | boolean | undefined>;

const KEY = /^[a-z][a-z0-9_]*$/;

/** The record as arguments, keys sorted so the same record is the same text (boot entries compare by md5). */
export function encodeArgs(rec: ScriptArgs): string[] {
  return Object.keys(rec)
    .sort()
    .filter((k) => rec[k] !== undefined)
    .map((k) => {
      if (!KEY.test(k)) throw new NatgateError("internal", `script argument name ${JSON.stringify(k)} is not a-z0-9_`);
      const v = rec[k];
      return `${k}=${typeof v === "boolean" ? (v ? "1" : "") : String(v)}`;
    });
}

/** ng_args "$@": each key=value becomes A_key; unset keys read as empty. */
export const ARGS_SH = `
ng_args() {
  for ng_kv in "$@"; do
    ng_k=\${ng_kv%%=*}
    # a name of a-z0-9_ only, as encodeArgs makes them: it is part of the eval below. A case
    # pattern, not a tr per argument (a process each: 2 ms apiece on a small host); the letters
    # listed because a range's meaning depends on the locale.
    case $ng_k in
      '' | *[!abcdefghijklmnopqrstuvwxyz0123456789_]*) echo "natgate: bad script argument $ng_k" >&2; exit 2 ;;
    esac
    eval "A_$ng_k=\\\${ng_kv#*=}"
  done
}
`;
