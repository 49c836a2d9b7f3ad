// A PortForward's slot when the program gives none (issue 12: two components on one router work
// as written): the pure choice, the router as the program names it, and components built in one
// program run under mocks, where each gets its own numbers.
import { strict as assert } from "assert";
import * as pulumi from "@pulumi/pulumi";
import { chooseSlot, hostKey, type SlotHold } from "../../sdk/slotChoice";
import { PortForward, type PortForwardArgs } from "../../sdk/portForward";

const hold = (name: string, from: number, span = 1, picked = true): SlotHold => ({ name, from, span, picked });

describe("slot choice: a free slot per PortForward on one router", () => {
  it("the first takes 0, the next the lowest free run, past every VPS of the ones before", () => {
    assert.deepEqual(chooseSlot([], "a", undefined, 1), { slot: 0 });
    assert.deepEqual(chooseSlot([hold("a", 0)], "b", undefined, 1), { slot: 1 });
    assert.deepEqual(chooseSlot([hold("a", 0, 2)], "b", undefined, 1), { slot: 2 });
    assert.deepEqual(chooseSlot([hold("a", 1, 1, false)], "b", undefined, 1), { slot: 0 }, "a given slot 1 leaves 0 free");
    assert.deepEqual(chooseSlot([hold("a", 1, 1, false)], "b", undefined, 2), { slot: 2 }, "two VPSes need two in a row");
  });

  it("a given slot is kept when free and refused, naming the holder, when taken", () => {
    assert.deepEqual(chooseSlot([hold("a", 0)], "b", 3, 1), { slot: 3 });
    const r = chooseSlot([hold("home", 0, 2)], "games", 1, 1);
    assert.ok("problem" in r);
    assert.equal(r.problem, "slot 1 is already taken by PortForward home (slot 0-1, picked as it gives none), which shares a router or VPS with it: each PortForward there needs slots of its own (0-7); give another, or leave slot out and natgate picks a free one");
  });

  it("no free run left is a problem naming the holders", () => {
    const full = Array.from({ length: 8 }, (_, k) => hold(`p${k}`, k));
    const r = chooseSlot(full, "late", undefined, 1);
    assert.ok("problem" in r && /^no free slot left \(0-7\) on its router and VPSes: held by PortForward p0 \(slot 0, picked/.test(r.problem), JSON.stringify(r));
    const gaps = [hold("a", 0), hold("b", 2), hold("c", 4), hold("d", 6)];
    assert.ok("problem" in chooseSlot(gaps, "two", undefined, 2), "four free slots, none two in a row");
  });

  it("a host is its address (any case) and port, and its jump host's; unknown when any is an output", () => {
    assert.equal(hostKey({ host: "192.168.1.1" }), "192.168.1.1:22");
    assert.equal(hostKey({ host: "Router.LAN", port: 2222, privateKey: pulumi.secret("k") }), "router.lan:2222");
    assert.equal(hostKey({ host: "10.0.0.1", proxy: { host: "jump.example" } }), "10.0.0.1:22 via jump.example:22");
    assert.notEqual(hostKey({ host: "10.0.0.1", proxy: { host: "a" } }), hostKey({ host: "10.0.0.1", proxy: { host: "b" } }));
    assert.equal(hostKey({ host: pulumi.output("192.168.1.1") }), undefined);
    assert.equal(hostKey(pulumi.output({ host: "192.168.1.1" })), undefined);
    assert.equal(hostKey({ host: "10.0.0.1", proxy: { host: pulumi.output("j") } }), undefined);
  });

  describe("in a program run", () => {
    const base = (over: Partial<PortForwardArgs> = {}): PortForwardArgs => ({
      vps: { connection: { host: "203.0.113.5", privateKey: "k" }, publicAddress: "203.0.113.5" },
      router: { connection: { host: "192.168.1.1", privateKey: "k" }, lanInterface: "br-lan", lanSubnet: "192.168.1.0/24" },
      lanHost: "192.168.1.99",
      forwards: [{ protocol: "tcp", ports: 443 }],
      ...over,
    });
    const run = (program: () => void) => {
      pulumi.runtime.setMocks({ newResource: (a) => ({ id: `${a.name}_id`, state: a.inputs }), call: (a) => a.inputs }, "natgate-slots", "test", false);
      program();
    };

    it("two PortForwards on one router, no slot given: 0 and 1, with their own interface, table and mark", async () => {
      let a!: PortForward, b!: PortForward;
      run(() => {
        a = new PortForward("web", base());
        b = new PortForward("games", base({ vps: { connection: { host: "198.51.100.7", privateKey: "k" }, publicAddress: "198.51.100.7" }, forwards: [{ protocol: "udp", ports: 27015 }] }));
      });
      assert.deepEqual([a.paths.map((p) => p.slot), b.paths.map((p) => p.slot)], [[0], [1]]);
      const table = (pf: PortForward) => new Promise((resolve) => pf.routeTable.table.apply(resolve));
      const ifname = (pf: PortForward) => new Promise((resolve) => pf.tunnel!.interfaceName.apply(resolve));
      // (slot 0 leaves the table to the provider's default, 8764, as before slots)
      assert.deepEqual(await Promise.all([table(a), table(b), ifname(a), ifname(b)]), [undefined, 8765, "wg0", "wg1"]);
    });

    it("a component with two VPSes holds two slots; the next takes the one after; another router and VPS start at 0 again", () => {
      let s: number[][] = [];
      run(() => {
        const home = new PortForward("home", base({ vps: [base().vps as never, { connection: { host: "198.51.100.7", privateKey: "k" }, publicAddress: "198.51.100.7" }] }));
        const games = new PortForward("games", base());
        const other = new PortForward("cabin", base({
          vps: { connection: { host: "192.0.2.44", privateKey: "k" }, publicAddress: "192.0.2.44" },
          router: { ...base().router, connection: { host: "192.168.7.1", privateKey: "k" } },
        }));
        s = [home, games, other].map((pf) => pf.paths.map((p) => p.slot));
      });
      assert.deepEqual(s, [[0, 1], [2], [0]]);
    });

    it("a given slot another component of the program already holds is refused at construction, naming both", () => {
      run(() => {
        new PortForward("web", base());
        assert.throws(() => new PortForward("games", base({ slot: 0 })), /^Error: PortForward games: slot 0 is already taken by PortForward web \(slot 0, picked as it gives none\), which shares a router or VPS/);
      });
    });

    it("two routers behind one VPS: the second takes slot 1, since the tunnel's interface and port on the VPS come from the slot too", () => {
      let s: number[] = [];
      run(() => {
        const home = new PortForward("home", base());
        const office = new PortForward("office", base({ router: { ...base().router, connection: { host: "192.168.20.1", privateKey: "k" } } }));
        s = [home, office].map((pf) => pf.paths[0]!.slot);
      });
      assert.deepEqual(s, [0, 1]);
      // Given the tunnel's interface, port and address on the VPS (examples/multi-site), each router keeps slot 0's numbers.
      run(() => {
        const tunnel = (k: number) => ({ interfaceName: `wg-${k}`, vpsAddress: `10.10.${10 + k}.1/30`, routerAddress: `10.10.${10 + k}.2/30`, listenPort: 51820 + k });
        const home = new PortForward("home", base({ tunnel: tunnel(0) }));
        const office = new PortForward("office", base({ tunnel: tunnel(1), router: { ...base().router, connection: { host: "192.168.20.1", privateKey: "k" } } }));
        s = [home, office].map((pf) => pf.paths[0]!.slot);
      });
      assert.deepEqual(s, [0, 0]);
    });

    it("each program run starts afresh (the engine harness runs many in one process)", () => {
      const slots: number[] = [];
      for (let k = 0; k < 3; k++) run(() => slots.push(new PortForward("web", base()).paths[0]!.slot));
      assert.deepEqual(slots, [0, 0, 0]);
    });
  });
});
