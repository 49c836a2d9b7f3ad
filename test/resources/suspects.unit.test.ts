import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { SUSPECTS_SH, suspectsOf } from "../../provider/backends/suspects";

// Lines as the script prints them on a Debian VPS an hour after boot, natgate applied 100 s ago.
const NOW = 1_800_000_000;
const debian = [
  `now ${NOW}`,
  `booted ${NOW - 3600}`,
  "unit nftables.service load loaded",
  `unit nftables.service started ${NOW - 3590}`,
  `unit nftables.service stopped ${NOW - 40}`,
  "unit systemd-networkd.service load loaded",
  `unit systemd-networkd.service started ${NOW - 20}`,
  "unit docker.service load not-found",
  `unit docker.service started ${NOW - 10}`,
  `ufw conf ${NOW - 5000} no`,
];
const OWN_TABLE = ["missing nft: nft add table ip natgate_dnat_fwd"];
const IPT_ACCEPT = ["missing iptables accept (filter FORWARD drops forwarded packets): iptables -t filter -I FORWARD ..."];
const FW4_ACCEPT = ['missing accept in inet fw4 forward (it drops forwarded packets): nft insert rule inet fw4 forward ... comment "natgate:fwd"'];
const IP_RULE = ["missing ip rule: ip rule add priority 950 fwmark 0x10000000/0x10000000 lookup 8764"];

describe("suspects: what ran on a host after natgate applied, and could remove what is missing (pure)", () => {
  it("names only events after the apply, of units that exist, that can remove what the drift lists", () => {
    assert.deepEqual(suspectsOf(debian, 100, OWN_TABLE), ["nftables.service stopped, 40 s ago"]);
    assert.deepEqual(suspectsOf(debian, 100, IP_RULE), ["systemd-networkd.service started, 20 s ago"]);
    assert.deepEqual(suspectsOf(debian, 100, [...OWN_TABLE, ...IP_RULE]), ["systemd-networkd.service started, 20 s ago", "nftables.service stopped, 40 s ago"]);
    assert.deepEqual(suspectsOf(debian, 10, OWN_TABLE), [], "nothing since the apply");
  });

  it("without an apply time (a state from an older release), every event it knows of", () => {
    const all = suspectsOf(debian, undefined, IPT_ACCEPT);
    assert.equal(all[0], "nftables.service stopped, 40 s ago");
    assert.ok(all.some((s) => s.startsWith("the host rebooted")), JSON.stringify(all));
    assert.ok(all.some((s) => s.startsWith("ufw was disabled")), JSON.stringify(all));
  });

  it("OpenWrt: a stopped firewall is named whenever; a reload only for fw4's chains, and only after the apply", () => {
    assert.deepEqual(suspectsOf([`now ${NOW}`, "fw4 stopped"], 10, OWN_TABLE), [
      "the OpenWrt firewall is stopped (`/etc/init.d/firewall stop` runs `fw4 flush`, which deletes every nft table, natgate's too)",
    ]);
    assert.deepEqual(suspectsOf([`now ${NOW}`, `fw4 loaded ${NOW - 3}`], 10, FW4_ACCEPT), ["fw4 reloaded its table, 3 s ago"]);
    assert.deepEqual(suspectsOf([`now ${NOW}`, `fw4 loaded ${NOW - 3}`], 10, OWN_TABLE), [], "a reload leaves other tables alone: a hand edit is likelier");
    assert.deepEqual(suspectsOf([`now ${NOW}`, `fw4 loaded ${NOW - 30}`], 10, FW4_ACCEPT), []);
  });

  it("ufw enabled by its CLI says how to put the accept back", () => {
    assert.match(suspectsOf([`now ${NOW}`, `ufw conf ${NOW - 2} yes`], 60, IPT_ACCEPT)[0]!, /^ufw was enabled \(`ufw enable` does not go through systemd/);
  });

  it("output it cannot read gives nothing, not an error", () => {
    assert.deepEqual(suspectsOf(["garbage", "unit x"], 10, OWN_TABLE), []);
  });

  it("the script is POSIX sh (dash -n)", () => {
    execFileSync("dash", ["-n"], { input: SUSPECTS_SH });
  });
});
