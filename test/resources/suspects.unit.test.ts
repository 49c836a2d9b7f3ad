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
  "unit docker.service load not-found",
  `unit docker.service started ${NOW - 10}`,
  `ufw conf ${NOW - 5000} no`,
];

describe("suspects: what ran on a host after natgate applied (pure)", () => {
  it("names only events after the apply, newest first, and only of units that exist", () => {
    assert.deepEqual(suspectsOf(debian, 100), ["nftables.service stopped, 40 s ago"]);
  });

  it("without an apply time (a state from an older release), every event it knows of", () => {
    const all = suspectsOf(debian, undefined);
    assert.equal(all[0], "nftables.service stopped, 40 s ago");
    assert.ok(all.some((s) => s.startsWith("the host rebooted")), JSON.stringify(all));
    assert.ok(all.some((s) => s.startsWith("ufw was disabled")), JSON.stringify(all));
  });

  it("OpenWrt: a stopped firewall is named whenever; a reload only after the apply", () => {
    assert.deepEqual(suspectsOf([`now ${NOW}`, "fw4 stopped"], 10), [
      "the OpenWrt firewall is stopped (`/etc/init.d/firewall stop` runs `fw4 flush`, which deletes every nft table, natgate's too)",
    ]);
    assert.deepEqual(suspectsOf([`now ${NOW}`, `fw4 loaded ${NOW - 3}`], 10), [`fw4 (re)loaded its ruleset (had the firewall been stopped before, \`/etc/init.d/firewall stop\` ran \`fw4 flush\`, which deletes every nft table), 3 s ago`]);
    assert.deepEqual(suspectsOf([`now ${NOW}`, `fw4 loaded ${NOW - 30}`], 10), []);
  });

  it("ufw enabled by its CLI says how to put the accept back", () => {
    assert.match(suspectsOf([`now ${NOW}`, `ufw conf ${NOW - 2} yes`], 60)[0]!, /^ufw was enabled \(`ufw enable` does not go through systemd/);
  });

  it("output it cannot read gives nothing, not an error", () => {
    assert.deepEqual(suspectsOf(["garbage", "unit x"], 10), []);
  });

  it("the script is POSIX sh (dash -n)", () => {
    execFileSync("dash", ["-n"], { input: SUSPECTS_SH });
  });
});
