/**
 * iptables backend, for one job: an accept in the filter FORWARD chain that ufw, Docker or a
 * hand-made `iptables -P FORWARD DROP` own (or in INPUT, for a DNAT to the host itself). An accept in natgate's own nft table cannot override
 * their drop (an accept only ends its own base chain), so the accept goes where the drop is.
 *
 * Owned rules carry `-m comment --comment natgate:<name>` and are found and deleted by it only.
 * A rule is a list of words without spaces or quotes (validated values only), so it travels as one
 * argument and is split by the shell with globbing off; nothing in it is ever evaluated.
 */
import { NatgateError } from "../ssh/errors";
import { iptCommand } from "./iptablesFirewall";

/**
 * The filter chain a DNATed packet meets: FORWARD when it goes on to another host, INPUT when
 * the DNAT target is an address of the host itself (a router-local service).
 */
export type FilterChain = "FORWARD" | "INPUT";

export interface IptablesForward {
  /** Whether `iptables` exists on the host. */
  present: boolean;
  /** The filter FORWARD chain's policy ("ACCEPT", "DROP"), as `iptables -S` prints it. */
  policy: string | undefined;
  /** Rules (words after "-A FORWARD") carrying this resource's comment. */
  owned: string[];
  /** Number of other rules in the chain. */
  others: number;
}

export function commentOf(owner: string): string {
  return `natgate:${owner}`;
}

/**
 * Whether something in filter FORWARD may drop forwarded packets, so natgate's accept is needed:
 * a DROP policy, or rules natgate does not own (ufw, Docker and firewalld jump to chains that end
 * in drop or reject). An empty chain with policy ACCEPT drops nothing: then natgate adds nothing,
 * and in particular never creates iptables' filter table on a host that has none.
 */
export function forwardNeedsAccept(live: IptablesForward): boolean {
  return live.present && (live.policy === "DROP" || live.others > 0);
}

const SAFE_WORD = /^[A-Za-z0-9_.:\/,!-]+$/;

/** Split one `iptables -S` line into words, undoing its double quotes. */
export function splitIptablesLine(line: string): string[] {
  const words: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(line)) !== null) words.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : m[2]!);
  return words;
}

/** `iptables -t filter -S FORWARD` (or INPUT) output → what natgate needs to know. */
export function parseForwardChain(text: string, present: boolean, owner: string, chain: FilterChain = "FORWARD"): IptablesForward {
  const comment = commentOf(owner);
  let policy: string | undefined;
  const owned: string[] = [];
  let others = 0;
  for (const raw of text.split("\n")) {
    const words = splitIptablesLine(raw.trim());
    if (words[0] === "-P" && words[1] === chain) policy = words[2];
    if (words[0] !== "-A" || words[1] !== chain) continue;
    const rest = words.slice(2);
    const i = rest.indexOf("--comment");
    if (i >= 0 && rest[i + 1] === comment) owned.push(rest.join(" "));
    // natgate's own chains (a DnatRule's refusal of sources outside allowFrom) never drop a DNATed packet.
    else if (!/^-j natgate-/.test(rest.join(" "))) others++;
  }
  return { present, policy, owned, others };
}

/** Throws when a live rule carrying our comment has a word the shell would have to quote. */
export function assertSafeRule(rule: string): void {
  for (const w of rule.split(" ")) {
    if (!SAFE_WORD.test(w)) {
      throw new NatgateError("remote", `an iptables rule carrying natgate's comment has the word ${JSON.stringify(w)}; natgate did not write it: delete it by hand (iptables -t filter -S FORWARD)`);
    }
  }
}

export function iptablesLine(rule: string, chain: FilterChain = "FORWARD", family: 4 | 6 = 4): string {
  return `${iptCommand(family)} -t filter -I ${chain} ${rule}`;
}

export const IPTABLES_SH = `
: "\${NG_IPT:=iptables}"
# ipt_show: "@@iptables present|absent" then the filter FORWARD chain, "@@iptinput" then INPUT
ipt_show() {
  if command -v "$NG_IPT" >/dev/null 2>&1; then
    echo "@@iptables present"
    "$NG_IPT" -w -t filter -S FORWARD || return 1
    echo "@@iptinput"
    "$NG_IPT" -w -t filter -S INPUT || return 1
  else
    echo "@@iptables absent"
  fi
}
# ipt_drops CHAIN COMMENT: whether filter CHAIN may drop now (policy DROP, or rules other than
# those tagged COMMENT), as forwardNeedsAccept decides it; false where iptables is absent
ipt_drops() {
  command -v "$NG_IPT" >/dev/null 2>&1 || return 1
  ng_s=$("$NG_IPT" -w -t filter -S "$1" 2>/dev/null) || return 1
  printf '%s\n' "$ng_s" | grep -qx -- "-P $1 DROP" && return 0
  printf '%s\n' "$ng_s" | grep -- "^-A $1 " | grep -vqF -- "--comment $2 "
}
# ipt_sync DELETE ADD [CHAIN]: newline-separated rules of filter CHAIN (FORWARD when absent);
# deletes first, adds go to the top of the chain.
# A for-list is split once, on newlines; each rule is then split on spaces, with globbing off.
ipt_sync() {
  ng_rc=0
  ng_chain=\${3:-FORWARD}
  ng_old_ifs=$IFS
  set -f
  IFS='
'
  for ng_rule in $1; do
    IFS=$ng_old_ifs
    "$NG_IPT" -w -t filter -D "$ng_chain" $ng_rule || ng_rc=1
  done
  IFS='
'
  for ng_rule in $2; do
    IFS=$ng_old_ifs
    "$NG_IPT" -w -t filter -C "$ng_chain" $ng_rule 2>/dev/null || "$NG_IPT" -w -t filter -I "$ng_chain" 1 $ng_rule || ng_rc=1
  done
  IFS=$ng_old_ifs
  set +f
  return $ng_rc
}
`;
