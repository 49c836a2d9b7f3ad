// The host lock (issue 11) raced for real: the shell functions natgate's scripts include
// (HOSTSTATE_SH), run by many sh processes at once on the lab router, as dash (the router's sh) and
// as BusyBox ash (OpenWrt's). Mutual exclusion (a read-then-write counter), the takeover of a lock
// whose holder was killed (exactly one of several waiters, round after round), a PID that names
// another process now, unlock by a script that no longer owns the lock, a script run under its
// parent's lock, an older natgate's lock directory; and the Tunnel's scripts take the lock.
// Run: node_modules/.bin/tsx test/lab/cli.ts run -- node_modules/.bin/mocha test/resources/lock.test.ts
import * as assert from "node:assert/strict";
import { getLab, type LabHost } from "../lab";
import { HOSTSTATE_SH } from "../../provider/backends/hoststate";
import { APPLY_HEAD, applyScript, DELETE_SCRIPT, PREPARE_SCRIPT, tunnelArgs } from "../../provider/resources/tunnel/scripts";
import { shQuote } from "../../provider/ssh/quote";
import { BOOT_DIR, PERSIST_REMOVE_SH, persistWriteScript } from "../../provider/backends/persist";
import { providers } from "../../provider";
import { closeAll } from "../../provider/ssh";
import { snapshotDiff, snapshotHost } from "../engine/seedLab";

const D = "/root/ng-locktest";
const SHELLS = ["sh", "busybox ash"];
const N = 20;
const ROUNDS = 30;
const WAITERS = 8;

// inc.sh: wait for the start signal (so the waiters contend at once), take the lock, read the
// counter, sleep, write it plus one; unlock is the EXIT trap.
const INC = `. ${D}/fns.sh
while [ ! -e ${D}/go ]; do sleep 0.005; done
ng_lock
n=$(cat ${D}/counter)
sleep 0.05
echo $((n + 1)) > ${D}/counter
`;
// hold.sh FLAG: take the lock, say so, hold it until killed (TERM: it unlocks on the way out;
// KILL: it leaves a stale lock)
const HOLD = `. ${D}/fns.sh
ng_lock
echo "$NG_TOKEN" > ${D}/$1
while :; do sleep 0.05; done
`;

async function put(h: LabHost, path: string, text: string): Promise<void> {
  await h.run(`cat > ${path}`, { input: text });
}

describe("host lock (lab: ng_lock raced on the router)", function () {
  this.timeout(300_000);
  const lab = getLab();
  const router = lab.hosts.router;
  const run = (cmd: string, timeoutMs = 120_000) => router.run(cmd, { timeoutMs });
  const state = async () => (await run("ls -A /run/natgate 2>/dev/null || true")).trim();

  before(async () => {
    await run(`rm -rf ${D}; mkdir -p ${D}`);
    await put(router, `${D}/fns.sh`, HOSTSTATE_SH);
    await put(router, `${D}/inc.sh`, INC);
    await put(router, `${D}/hold.sh`, HOLD);
    assert.match(await run("readlink -f /bin/sh"), /dash/, "the router's sh is dash, so both shells are raced");
    assert.equal(await state(), "", "no natgate state on the router before");
  });
  afterEach(async () => {
    await run(`rm -f ${D}/go ${D}/held* ${D}/err*`);
  });
  after(async () => {
    await run(`rm -rf ${D} /run/natgate`);
  });

  for (const sh of SHELLS) {
    it(`${sh}: ${N} scripts at once, each read-sleep-write under the lock: the counter is ${N}, nothing left`, async () => {
      const out = await run(`cd ${D}; echo 0 > counter; rm -f go
for i in $(seq ${N}); do ${sh} inc.sh 2>>err & done; sleep 0.3; touch go; wait; cat counter; cat err`);
      assert.equal(out.trim(), String(N));
      assert.equal(await state(), "", "lock, token files and /run/natgate are gone");
    });
  }

  it(`both shells mixed: ${N} scripts (${N / 2} dash, ${N / 2} BusyBox ash), counter ${N}`, async () => {
    const out = await run(`cd ${D}; echo 0 > counter; rm -f go
for i in $(seq ${N / 2}); do sh inc.sh 2>>err & busybox ash inc.sh 2>>err & done; sleep 0.3; touch go; wait; cat counter; cat err`);
    assert.equal(out.trim(), String(N));
    assert.equal(await state(), "");
  });

  for (const sh of SHELLS) {
    it(`${sh}: a holder killed with SIGKILL, ${WAITERS} waiters at once, ${ROUNDS} rounds: each round exactly one takes over, counter ${WAITERS}`, async () => {
      // One host-side loop (no SSH per process): per round, "ROUND TAKEOVERS COUNTER".
      const out = await run(`cd ${D}
for r in $(seq ${ROUNDS}); do
  rm -f held go err; echo 0 > counter
  ${sh} hold.sh held & hp=$!
  while [ ! -s held ]; do sleep 0.01; done
  kill -9 $hp; wait $hp 2>/dev/null
  for i in $(seq ${WAITERS}); do ${sh} inc.sh 2>>err & done
  sleep 0.2; touch go; wait
  echo "$r $(grep -c 'took over /run/natgate/lock from process' err) $(cat counter) $(grep -v 'took over' err | head -1)"
done`);
      const rounds = out.trim().split("\n");
      assert.equal(rounds.length, ROUNDS);
      for (const line of rounds) assert.equal(line.trim().replace(/^\d+ /, ""), `1 ${WAITERS}`, `round ${line}`);
      assert.equal(await state(), "", "the dead holder's files are gone too");
    });
  }

  it("a lock whose PID is alive but started at another time (a reused PID) is taken over", async () => {
    const out = await run(`cd ${D}; echo 0 > counter; rm -f err
sleep 30 & sp=$!
mkdir -p /run/natgate
printf '%s\\n' "$sp.1.00000000-dead-beef" > "/run/natgate/lock.$sp.1.00000000-dead-beef"
ln "/run/natgate/lock.$sp.1.00000000-dead-beef" /run/natgate/lock
touch go; sh inc.sh 2>err; kill $sp
cat counter; cat err`);
    assert.match(out, /^1\nnatgate: took over \/run\/natgate\/lock from process \d+, which ended without releasing it\n$/);
    assert.equal(await state(), "");
  });

  it("a live holder is waited for, not taken over; its waiters run after it", async () => {
    const out = await run(`cd ${D}; echo 0 > counter; rm -f err
sh hold.sh held & hp=$!
while [ ! -s held ]; do sleep 0.01; done
touch go; t0=$(date +%s%N)
for i in 1 2 3; do busybox ash inc.sh 2>>err & done
sleep 1.5; echo "during $(cat counter)"
kill $hp; wait
echo "after $(cat counter) $((($(date +%s%N) - t0) / 1000000))"; cat err`);
    const m = /^during 0\nafter 3 (\d+)\n$/.exec(out);
    assert.ok(m, out);
    assert.ok(Number(m[1]) >= 1500, `the waiters ran after the holder (${m[1]} ms)`);
    assert.equal(await state(), "");
  });

  it("unlock by a script that no longer owns the lock leaves the new owner's lock", async () => {
    // X holds the lock; then the lock is made another token's (what a takeover does), and X exits:
    // its EXIT trap must not remove it. A script that never took the lock calling ng_unlock neither.
    const out = await run(`cd ${D}; rm -f go
sh -c '. ./fns.sh; ng_lock; echo "$NG_TOKEN" > held; while [ ! -e go ]; do sleep 0.01; done' & xp=$!
while [ ! -s held ]; do sleep 0.01; done
other=1.1.other-owner
printf '%s\\n' "$other" > /run/natgate/lock.$other
rm /run/natgate/lock; ln /run/natgate/lock.$other /run/natgate/lock
touch go; wait $xp
echo "after X: $(cat /run/natgate/lock)"
sh -c '. ./fns.sh; NG_TOKEN=9.9.not-mine; ng_unlock'
echo "after a stranger: $(cat /run/natgate/lock)"
ls -A /run/natgate | sort | tr '\\n' ' '
rm -f /run/natgate/lock /run/natgate/lock.$other; rmdir /run/natgate`);
    assert.equal(out, "after X: 1.1.other-owner\nafter a stranger: 1.1.other-owner\nlock lock.1.1.other-owner ");
    assert.equal(await state(), "");
  });

  it("a takeover cut short (a signal between the rename and the removal) hands the dead holder's file back for the next waiter", async () => {
    // The state a waiter leaves when its EXIT trap runs right after it renamed lock.T1 to its
    // stale.TB: T1 dead, "lock" still T1's. Its unlock must rename it back, not delete it.
    const out = await run(`cd ${D}; echo 0 > counter; rm -f err; touch go
sh -c 'exit 0' & dp=$!; wait $dp
t1=$dp.1.00000000-dead; tb=1.1.0000000b-aaaa
mkdir -p /run/natgate
printf '%s\\n' "$t1" > /run/natgate/stale.$tb
ln /run/natgate/stale.$tb /run/natgate/lock
sh -c ". ./fns.sh; NG_TOKEN=$tb; ng_unlock"
ls -A /run/natgate | sed "s/$t1/T1/" | sort | tr '\\n' ' '; echo
sh inc.sh 2>err; cat counter; cat err`);
    assert.match(out, /^lock lock\.T1 \n1\nnatgate: took over \/run\/natgate\/lock from process \d+, which ended without releasing it\n$/);
    assert.equal(await state(), "");
  });

  it("a script run by the lock's holder goes on under it (NG_LOCK_TOKEN), and leaves it held", async () => {
    const out = await run(`cd ${D}
cat > child.sh <<'EOF'
. ${D}/fns.sh
ng_lock
echo "child ran; lock $(cat /run/natgate/lock)"
EOF
timeout 20 sh -c '. ./fns.sh; ng_lock; echo "parent $NG_TOKEN"; busybox ash ./child.sh; echo "parent still $(cat /run/natgate/lock)"'
echo "rc $?"`);
    const m = /^parent (\S+)\nchild ran; lock (\S+)\nparent still (\S+)\nrc 0\n$/.exec(out);
    assert.ok(m, out);
    assert.equal(m[2], m[1]);
    assert.equal(m[3], m[1]);
    assert.equal(await state(), "");
  });

  it("an older natgate's lock directory: waited for while its process runs, taken over once it is dead", async () => {
    const out = await run(`cd ${D}; echo 0 > counter; rm -f err; touch go
sleep 1 & sp=$!
mkdir -p /run/natgate/lock; echo $sp > /run/natgate/lock/pid
t0=$(date +%s%N); sh inc.sh 2>err; t1=$(date +%s%N)
echo "$(cat counter) $(((t1 - t0) / 1000000))"
sh -c 'exit 0' & dp=$!; wait $dp
mkdir -p /run/natgate/lock; echo $dp > /run/natgate/lock/pid
sh inc.sh 2>>err; cat counter; cat err`);
    // (the live holder's lock is taken over once its process has ended, the dead one's at once)
    const taken = "natgate: took over /run/natgate/lock \\(an older natgate's\\) from process \\d+, which ended without releasing it\\n";
    const m = new RegExp(`^1 (\\d+)\\n2\\n${taken}${taken}$`).exec(out);
    assert.ok(m, out);
    assert.ok(Number(m[1]) >= 700, `waited for the live holder (${m[1]} ms)`);
    assert.equal(await state(), "");
  });

  it("a boot entry that waited for the lock while its file was replaced or removed does nothing; one left as it was runs", async () => {
    // What an apply or delete of the same resource does to the entry while the runner's sh has it open.
    const out = await run(`cd ${D}; rm -f ran err
[ ! -e /etc/natgate ] || { echo "/etc/natgate exists"; exit 1; }
mkdir -p ${BOOT_DIR}; e=${BOOT_DIR}/dnat-locktest.sh
entry() { { cat ${D}/fns.sh; echo ng_lock; echo "echo $1 >> ${D}/ran"; } > $e.tmp && mv $e.tmp $e; }
held() { sh hold.sh $1 & hp=$!; while [ ! -s $1 ]; do sleep 0.01; done; }
entry old; held h1; sh $e 2>>err & ep=$!; sleep 0.3; entry new; kill $hp; wait $ep; echo "replaced: $? $(cat ran 2>/dev/null)"
held h2; sh $e 2>>err & ep=$!; sleep 0.3; kill $hp; wait $ep; echo "kept: $? $(cat ran)"
held h3; sh $e 2>>err & ep=$!; sleep 0.3; rm $e; kill $hp; wait $ep; echo "removed: $? $(cat ran)"
rm -rf /etc/natgate; cat err`);
    const skipped = `natgate: ${BOOT_DIR}/dnat-locktest.sh was replaced or removed while it waited for the lock: not run (what replaced it is newer)\n`;
    assert.equal(out, `replaced: 0 \nkept: 0 new\nremoved: 0 new\n${skipped}${skipped}`);
    assert.equal(await state(), "");
  });

  it("the Tunnel's prepare and apply (its boot entry's body) wait while another script holds the lock", async () => {
    const args = tunnelArgs({ ifname: "ngl0", keyFile: `${D}/keys/ngl0.key`, entry: "tunnel-ngl0.sh", mode: "update" }).map(shQuote).join(" ");
    await put(router, `${D}/prepare.sh`, PREPARE_SCRIPT);
    await put(router, `${D}/apply.sh`, applyScript([`touch ${D}/applied`]));
    const out = await run(`cd ${D}; rm -rf keys applied
sh hold.sh held & hp=$!
while [ ! -s held ]; do sleep 0.01; done
sh prepare.sh ${args} >prep.out 2>&1 & pp=$!
busybox ash apply.sh ${args} >apply.out 2>&1 & ap=$!
sleep 1
echo "during: $(ls keys 2>/dev/null | wc -l) $([ -e applied ] && echo applied || echo not-applied)"
kill $hp; wait $pp; echo "prepare $?"; wait $ap; echo "apply $?"
echo "after: $(ls keys | wc -l) $([ -e applied ] && echo applied)"
rm -rf keys applied prep.out apply.out`);
    assert.equal(out, "during: 0 not-applied\nprepare 0\napply 0\nafter: 1 applied\n");
    assert.equal(await state(), "");
  });

  it("the Tunnel's prepare, apply (boot entry) and delete scripts take the lock, as the boot entries' writers do", () => {
    for (const [name, s] of Object.entries({ PREPARE_SCRIPT, APPLY_HEAD, DELETE_SCRIPT, PERSIST_REMOVE_SH, persistWrite: persistWriteScript("true\n") })) {
      assert.match(s, /\nng_lock\n/, `${name} takes the lock`);
    }
  });
});

// The case the Tunnel's lock is for: OpenWrt's hotplug (or init) running the boot entries while
// Pulumi applies. The router's boot.sh runs in a loop, back to back, while a Tunnel and a DnatRule
// on it are created, updated, refreshed and deleted through the providers: every operation
// succeeds, refresh finds them in sync, and after the deletes nothing of natgate's is left on
// either host (an entry that waited while its resource was deleted does not put it back).
describe("host lock (lab: the router's boot runner in a loop while its resources are applied)", function () {
  this.timeout(300_000);
  const lab = getLab();
  const { vps, router } = lab.hosts;
  const conn = (h: LabHost) => ({ host: h.ssh!.host, port: h.ssh!.port, user: h.ssh!.user, privateKey: h.ssh!.privateKey, hostKey: h.ssh!.hostKey });
  type Props = Record<string, any>;
  const check = async (kind: string, news: Props) => {
    const r = await providers[kind]!.check!({}, news);
    assert.deepEqual(r.failures ?? [], [], `${kind} check failures`);
    return r.inputs;
  };
  const tunnelIn = (keepalive: number) => ({ name: "storm", listener: { connection: conn(vps), address: "10.10.10.1/24" }, dialer: { connection: conn(router), address: "10.10.10.2/24" }, persistentKeepalive: keepalive });
  const dnatIn = (port: number) => ({ connection: conn(router), name: "storm", protocol: "tcp", ports: port, inInterface: "wg0", toAddress: "192.168.1.99" });
  const S = "/root/ng-storm";
  const initial: Record<string, string> = {};

  before(async () => {
    for (const h of [vps, router]) initial[h.name] = await snapshotHost(h);
    // a logger that keeps the runner's messages (the lab has no syslog)
    await router.run(`rm -rf ${S}; mkdir -p ${S}/bin; cat > ${S}/bin/logger <<'EOF2'
#!/bin/sh
for a in "$@"; do m=$a; done
printf '%s\\n' "$m" >> ${S}/log
EOF2
chmod +x ${S}/bin/logger`);
  });
  after(async () => {
    await router.exec(`touch ${S}/stop`);
    await closeAll();
  });

  it("create, update, refresh and delete succeed while boot.sh runs back to back; nothing is left", async () => {
    const storm = await router.start(`cd ${S}; while [ ! -e stop ]; do
  if [ -f /etc/natgate/boot.sh ]; then PATH=${S}/bin:$PATH sh /etc/natgate/boot.sh >/dev/null 2>&1; echo ran >> runs; else sleep 0.05; fi
done; echo done > stopped`);
    const t = await providers.Tunnel!.create(await check("Tunnel", tunnelIn(25)));
    const d = await providers.DnatRule!.create(await check("DnatRule", dnatIn(5000)));
    assert.deepEqual(d.outs.drift, []);
    const t2 = (await providers.Tunnel!.update!(t.id, t.outs, await check("Tunnel", tunnelIn(20)))).outs!;
    const d2 = (await providers.DnatRule!.update!(d.id, d.outs, await check("DnatRule", dnatIn(5001)))).outs!;
    const runsDuring = Number((await router.run(`cat ${S}/runs 2>/dev/null | wc -l`)).trim());
    const rd = await providers.DnatRule!.read!(d.id, d2);
    assert.deepEqual(rd.props!.drift, [], "DnatRule in sync while the runner runs");
    const rt = await providers.Tunnel!.read!(t.id, t2);
    const dt = await providers.Tunnel!.diff!(t.id, rt.props!, await check("Tunnel", tunnelIn(20)));
    assert.equal(dt.changes, false, "Tunnel in sync while the runner runs");
    await providers.DnatRule!.delete!(d.id, rd.props!);
    await providers.Tunnel!.delete!(t.id, rt.props!);
    await router.run(`touch ${S}/stop; for i in $(seq 200); do [ -e ${S}/stopped ] && break; sleep 0.1; done; [ -e ${S}/stopped ]`);
    await storm.stop();
    const log = (await router.exec(`cat ${S}/log`)).stdout;
    const runs = Number((await router.run(`cat ${S}/runs 2>/dev/null | wc -l`)).trim());
    console.log(`      boot.sh ran ${runs} times (${runsDuring} before the refresh); ${(log.match(/: applied$/gm) ?? []).length} entries applied, ${(log.match(/FAILED/g) ?? []).length} failed, ${(log.match(/not run/g) ?? []).length} skipped as replaced or removed`);
    // boot.sh exists from the first create on, so any run counted here overlapped the applies
    // (a create or update is 2-3 scripts now; a loaded CI machine saw 2 runs in them)
    assert.ok(runsDuring >= 1, `the runner ran during the applies (${runsDuring} times)`);
    for (const h of [vps, router]) assert.deepEqual(snapshotDiff(initial[h.name]!, await snapshotHost(h)), [], `${h.name} as before`);
    assert.equal((await router.exec("ls -A /etc/natgate /run/natgate 2>&1")).code, 2, "no /etc/natgate, no /run/natgate on the router");
    await router.run(`rm -rf ${S}`);
  });
});
