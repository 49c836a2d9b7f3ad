/**
 * Several writing scripts as one remote run, under one hold of the host lock: the steps of a
 * change that must happen together (a resource's boot entry, then its apply) cost one exec
 * instead of one each, and nothing of another natgate run (or the boot runner) comes between them.
 */
import { HOSTSTATE_SH } from "./hoststate";

/** A script and its arguments, as Host.run takes them. */
export interface ScriptPart {
  script: string;
  args: string[];
}

/**
 * One script running `parts` in order, each in a subshell that sees only its own arguments, and
 * stopping at the first that fails with its exit status. The wrapper takes the lock and hands it
 * down: ng_lock returns at once in a script whose NG_LOCK_TOKEN names the holder. Only the counts
 * of arguments are part of the text; the values stay arguments.
 */
export function chainScripts(parts: readonly ScriptPart[]): ScriptPart {
  let offset = 0;
  const runs = parts.map((p) => {
    const from = offset;
    offset += p.args.length;
    return `(
ng_all=$#
ng_i=0
for ng_a in "$@"; do
  ng_i=$((ng_i + 1))
  if [ "$ng_i" -gt ${from} ] && [ "$ng_i" -le ${offset} ]; then set -- "$@" "$ng_a"; fi
done
shift "$ng_all"
${p.script}
) || exit
`;
  });
  return { script: `${HOSTSTATE_SH}ng_lock\nNG_LOCK_TOKEN=$NG_TOKEN\n${runs.join("")}`, args: parts.flatMap((p) => p.args) };
}
