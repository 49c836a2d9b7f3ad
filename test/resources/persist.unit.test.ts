import * as assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import {
  BOOT_SH,
  WRITE_FUNCTIONS,
  PERSIST_REMOVE_SH,
  bootEntryText,
  expectedFileState,
  observeBoot,
  persistWriteArgs,
  persistWriteScript,
  runnerFiles,
  type BootEntry,
  type BootStatus,
} from "../../provider/backends/persist";
import { ConnmarkReturnPathSchema } from "../../provider/resources/connmark/schema";
import { cmarkBootEntry } from "../../provider/resources/connmark";
import { DnatRuleSchema } from "../../provider/resources/dnat/schema";
import { dnatBootEntry, type DnatLive } from "../../provider/resources/dnat";
import { PolicyRouteTableSchema } from "../../provider/resources/routetable/schema";
import { routesBootEntry } from "../../provider/resources/routetable";
import { ARGS_SH } from "../../provider/backends/args";
import { sideBootEntry } from "../../provider/resources/tunnel/lifecycle";
import { parseTunnelArgs } from "../../provider/resources/tunnel/schema";

// Boot persistence without hosts: the text natgate writes to a host (entries, runner, hooks) and
// the scripts that write it parse in dash and in BusyBox ash (OpenWrt's shell); an entry's
// arguments come back exactly as given; md5 agrees with md5sum; drift says what is wrong.

const connection = { host: "192.0.2.1", password: "x" };
const dnat = DnatRuleSchema.parse({ connection, name: "fwd", protocol: "both", ports: "5000-6000", inInterface: "wg0", toAddress: "192.168.1.99" });
const status = (init: BootStatus["init"], files: Record<string, string> = {}): BootStatus => ({ init, files: new Map(Object.entries(files)) });

/** A router whose fw4 forward chain drops, and whose iptables FORWARD policy is DROP too. */
const dnatLive: DnatLive = {
  facts: { nft: true, iptables: "nf_tables" },
  nft: [],
  ipt: [],
  counters: {},
  foreign: { dropChains: [{ family: "inet", table: "fw4", chain: "forward" }], owned: [] },
  iptables: { present: true, policy: "DROP", owned: [], others: 0 },
  forward: { path: "net/ipv4/ip_forward", value: "1", prev: "1", held: true },
  boot: status("procd"),
};

function entries(): BootEntry[] {
  const tunnel = parseTunnelArgs({ listener: { connection, address: "10.10.10.1/24" }, dialer: { connection: { ...connection, host: "192.0.2.2" }, address: "10.10.10.2/24" } });
  const keys = { listener: "L".repeat(43) + "=", dialer: "D".repeat(43) + "=" };
  return [
    sideBootEntry(tunnel.inputs!, "listener", keys)!,
    sideBootEntry(tunnel.inputs!, "dialer", keys)!,
    routesBootEntry(PolicyRouteTableSchema.parse({ connection, name: "home", routes: [{ to: "default", via: "10.10.10.1", dev: "wg0" }, { to: "192.168.1.0/24", dev: "br-lan" }] })),
    cmarkBootEntry(ConnmarkReturnPathSchema.parse({ connection, name: "home", tunnelInterface: "wg0", localSource: "10.10.10.2" }), dnatLive.facts, "nftables"),
    dnatBootEntry(dnat, dnatLive, "iptables"),
    dnatBootEntry(dnat, dnatLive, "nftables"),
  ];
}

function parses(shell: string[], text: string): string {
  const r = spawnSync(shell[0]!, [...shell.slice(1), "-n"], { input: text, encoding: "utf8" });
  return r.status === 0 ? "" : `${shell.join(" ")}: ${r.stderr.trim()}`;
}

const SHELLS = [["dash"], ["busybox", "sh"]];

describe("boot persistence (unit)", () => {
  before(() => {
    for (const s of SHELLS) {
      assert.equal(spawnSync(s[0]!, ["--help"]).error, undefined, `${s[0]} is needed (scripts/install-deps.sh installs it)`);
    }
  });

  it("every entry, the runner, the hooks and the scripts that write them parse in dash and BusyBox ash", () => {
    const texts: [string, string][] = [
      ...entries().map((e): [string, string] => [e.name, bootEntryText(e)]),
      ...runnerFiles("procd").concat(runnerFiles("systemd")).filter((f) => f.content !== undefined && !/\.(service|path)$/.test(f.path) && !f.path.includes("keep.d")).map((f): [string, string] => [f.path, f.content!]),
      ...entries().map((e): [string, string] => [`write script for ${e.name}`, persistWriteScript(e.body)]),
      ["remove script", PERSIST_REMOVE_SH],
    ];
    const problems = texts.flatMap(([what, text]) => SHELLS.map((s) => parses(s, text)).filter(Boolean).map((p) => `${what}: ${p}`));
    assert.deepEqual(problems, []);
  });

  it("an entry's `set --` line gives the apply script its record back byte for byte (quotes, newlines)", () => {
    const e = dnatBootEntry(dnat, dnatLive, "nftables");
    const set = e.prefix.split("\n").filter((l) => !l.startsWith("#")).join("\n");
    const out = execFileSync("dash", ["-c", `${set}\n${ARGS_SH}\nng_args "$@"\nprintf '%s\\0' "$A_table" "$A_owner" "$A_nft" "$A_entry" "$A_boot_accepts" "$A_comment" "$A_fwd_if_drop" "$A_in_if_drop" "$A_fwd_add"`], { encoding: "utf8" }).split("\0").slice(0, -1);
    assert.deepEqual(out.slice(0, 2), ["natgate_dnat_fwd", "dnat_fwd"]);
    assert.match(out[2]!, /^add table ip natgate_dnat_fwd\ndelete table ip natgate_dnat_fwd\n/);
    assert.equal(out[3], "dnat-fwd.sh");
    assert.deepEqual(out[4]!.split("\n"), [
      'insert rule inet fw4 forward meta l4proto udp ct status dnat ct reply ip saddr 192.168.1.99 ct reply proto-src 5000-6000 accept comment "natgate:fwd"',
      'insert rule inet fw4 forward meta l4proto tcp ct status dnat ct reply ip saddr 192.168.1.99 ct reply proto-src 5000-6000 accept comment "natgate:fwd"',
    ]);
    assert.equal(out[5], "natgate:fwd");
    assert.equal(out[6]!.split("\n").length, 2, "one iptables accept per protocol, for wherever FORWARD drops when the entry runs");
    assert.equal(out[7], "", "none in INPUT: the target is another host");
    assert.equal(out[8], "", "not unconditionally: whether FORWARD drops is decided when the entry runs");
  });

  it("ng_args takes names of a-z0-9_ only (they are part of an eval), in dash and BusyBox ash", () => {
    for (const sh of [["dash"], ["busybox", "ash"]]) {
      const run = (k: string) => spawnSync(sh[0]!, [...sh.slice(1), "-c", `${ARGS_SH}\nng_args "$1=v" && eval "printf %s \\"\\$A_$1\\""`, "_", k], { encoding: "utf8" });
      for (const k of ["fw4_del", "a1"]) assert.equal(run(k).stdout, "v", `${sh.join(" ")} takes ${k}`);
      for (const k of ["", "A", "a-b", "a b", "x$(id)", "a*", "é", "a]"]) {
        const r = run(k);
        assert.equal(r.status, 2, `${sh.join(" ")} refuses ${JSON.stringify(k)}`);
        assert.match(r.stderr, /bad script argument/);
      }
    }
  });

  it("on an iptables host the entry writes natgate's chains with iptables-restore and no nft table", () => {
    const e = dnatBootEntry(dnat, dnatLive, "iptables");
    const set = e.prefix.split("\n").filter((l) => !l.startsWith("#")).join("\n");
    const out = execFileSync("dash", ["-c", `${set}\n${ARGS_SH}\nng_args "$@"\nprintf '%s\\0' "$A_nft" "$A_ipt_restore" "$A_ipt_jumps"`], { encoding: "utf8" }).split("\0").slice(0, -1);
    assert.equal(out[0], "");
    assert.match(out[1]!, /^\*nat\n:natgate-dnat-fwd - \[0:0\]\n-A natgate-dnat-fwd -i wg0 -p tcp -m tcp --dport 5000:6000 -j DNAT --to-destination 192.168.1.99\n/);
    assert.deepEqual(out[2]!.split("\n"), ["nat PREROUTING natgate-dnat-fwd", "mangle FORWARD natgate-mss-fwd", "mangle FORWARD natgate-cnt-fwd", "mangle INPUT natgate-cnt-fwd"]);
  });

  it("the tunnel's entry holds the peer's public key and a plan that also works when run again, the peer last", () => {
    const [listener, dialer] = entries();
    assert.equal(listener!.name, "tunnel-wg0.sh");
    const steps = dialer!.suffix.split("\n").filter((l) => !l.startsWith("echo "));
    assert.deepEqual(steps.slice(0, 5), [
      "ip link show dev wg0 >/dev/null 2>&1 || natgate_wg_link_add wg0",
      "wg set wg0 private-key /etc/natgate/wg/wg0.key",
      "ip address replace 10.10.10.2/24 dev wg0",
      "ip link set dev wg0 mtu 1420 up",
      `wg set wg0 peer ${"L".repeat(43)}= endpoint 192.0.2.1:51820 persistent-keepalive 25 allowed-ips 0.0.0.0/0`,
    ]);
  });

  it("the md5 natgate expects is what md5sum prints for the same bytes", () => {
    for (const e of entries()) {
      const sum = execFileSync("md5sum", { input: bootEntryText(e) }).toString().split(" ")[0];
      assert.equal(expectedFileState({ path: "", content: bootEntryText(e), mode: "600" }), sum, e.name);
      assert.equal(persistWriteArgs(e)[3], sum);
    }
    assert.match(expectedFileState({ path: "", content: "x\n", mode: "755" }), /^[0-9a-f]{32}\+x$/);
    assert.equal(expectedFileState({ path: "/etc/rc.d/S99natgate", target: "../init.d/natgate" }), "@../init.d/natgate");
  });

  it("drift names what is missing or stale; a host in sync renders the boot line", () => {
    const e = routesBootEntry(PolicyRouteTableSchema.parse({ connection, name: "home", routes: [{ to: "default", dev: "wg0" }] }));
    const path = "/etc/natgate/boot.d/routes-8764.sh";
    const entryState = expectedFileState({ path, content: bootEntryText(e), mode: "600" });
    const runner = (init: BootStatus["init"]) => Object.fromEntries(runnerFiles(init).map((f) => [f.path, expectedFileState(f)]));

    const synced = observeBoot(e.name, e, status("systemd", { [path]: entryState, ...runner("systemd") }));
    assert.deepEqual(synced.drift, []);
    assert.deepEqual(synced.rendered, ["# at boot: /etc/natgate/boot.sh runs /etc/natgate/boot.d/routes-8764.sh"]);
    assert.deepEqual(synced.facts, { boot: "systemd", bootNote: "natgate.service (systemd) runs /etc/natgate/boot.sh at boot" });

    assert.deepEqual(observeBoot(e.name, e, status("none")).drift, [
      "boot entry /etc/natgate/boot.d/routes-8764.sh is missing: nothing would restore this after a reboot",
      "boot runner: /etc/natgate/boot.sh is missing",
    ]);
    const stale = observeBoot(e.name, e, status("procd", { [path]: "0".repeat(32), ...runner("none"), "/etc/rc.d/S99natgate": "@/elsewhere" }));
    assert.deepEqual(stale.drift, [
      "boot entry /etc/natgate/boot.d/routes-8764.sh is out of date",
      "boot runner: /etc/init.d/natgate is missing",
      "boot runner: /etc/rc.d/S99natgate does not link to ../init.d/natgate",
      "boot runner: /etc/hotplug.d/iface/99-natgate is missing",
      "boot runner: /lib/upgrade/keep.d/natgate is missing",
    ]);
    assert.deepEqual(stale.rendered, ["# at boot: /etc/natgate/boot.sh runs /etc/natgate/boot.d/routes-8764.sh (not as natgate writes it: see drift)"]);

    const off = observeBoot(e.name, undefined, status("procd", { [path]: entryState }));
    assert.deepEqual(off.drift, ["boot entry /etc/natgate/boot.d/routes-8764.sh exists but persist is false"]);
    assert.deepEqual(observeBoot(e.name, undefined, status("none")), {
      rendered: [],
      drift: [],
      facts: { boot: "off", bootNote: "persist is false: nothing restores this after a reboot until the next pulumi up" },
    });
  });

  it("boot_states gives each path the state natgate expects of it (expectedFileState), with one md5sum for all the files; boot_same compares content and execute bit", () => {
    // A temporary tree with every kind of path boot_show lists: file, executable file, symlink, absent, a directory.
    const dir = execFileSync("mktemp", ["-d"], { encoding: "utf8" }).trim();
    try {
      const setup = `cd ${dir} && printf a > f && printf b > x && chmod +x x && ln -s /etc/natgate/boot.sh l && mkdir d && printf a > same && printf a > samex && chmod +x samex`;
      execFileSync("sh", ["-c", setup]);
      const paths = ["f", "x", "l", "missing", "d", "same"].map((p) => `${dir}/${p}`);
      const expected = [
        `${expectedFileState({ path: "", content: "a", mode: "644" })} ${dir}/f`,
        `${expectedFileState({ path: "", content: "b", mode: "755" })} ${dir}/x`,
        `${expectedFileState({ path: "", target: "/etc/natgate/boot.sh" })} ${dir}/l`,
        `- ${dir}/missing`,
        `- ${dir}/d`,
        `${expectedFileState({ path: "", content: "a", mode: "600" })} ${dir}/same`,
      ].sort();
      for (const sh of SHELLS) {
        const all = execFileSync(sh[0]!, [...sh.slice(1), "-c", `${BOOT_SH}\nboot_states "$@"`, "_", ...paths], { encoding: "utf8" }).trim().split("\n").sort();
        assert.deepEqual(all, expected, sh.join(" "));
        const same = (a: string, b: string) => spawnSync(sh[0]!, [...sh.slice(1), "-c", `${BOOT_SH}${WRITE_FUNCTIONS}\nboot_same "$1" "$2"`, "_", `${dir}/${a}`, `${dir}/${b}`]).status;
        assert.deepEqual([same("f", "same"), same("f", "samex"), same("f", "x"), same("l", "f"), same("missing", "f")], [0, 1, 1, 1, 1], sh.join(" "));
      }
    } finally {
      execFileSync("rm", ["-rf", dir]);
    }
  });
});
