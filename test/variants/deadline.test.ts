// Script deadlines (issue 11): a host whose command hangs (here the router's `nft`, made to stall)
// fails the step within connection.scriptTimeout, naming the host, the step and the time waited,
// instead of hanging `pulumi up`; with the host well again, the same create converges.
import { strict as assert } from "assert";
import * as fs from "fs";
import * as path from "path";
import { getLab, type Lab } from "../lab";
import { providers } from "../../provider";
import { closeAll } from "../../provider/ssh";
import { clearRouterRootPath, linkStandardPath, setRouterRootPath } from "./rootPath";
import { scratchDir } from "./variantLab";

describe("variants: every remote script has a deadline (connection.scriptTimeout)", function () {
  this.timeout(120_000);
  let lab: Lab;
  const rule = (scriptTimeout?: number) => {
    const s = lab.hosts.router.ssh!;
    return {
      connection: { host: s.host, port: s.port, user: s.user, privateKey: s.privateKey, hostKey: s.hostKey, ...(scriptTimeout ? { scriptTimeout } : {}) },
      name: "deadline",
      ports: 5900,
      inInterface: "br-lan",
      toAddress: "192.168.1.99",
      persist: false,
    };
  };

  before(() => {
    lab = getLab();
  });
  after(async () => {
    await clearRouterRootPath(lab);
    await closeAll();
  });

  it("scriptTimeout must be whole seconds 1-86400, named at preview", async () => {
    for (const [v, why] of [[0, /at least 1 second/], [1.5, /whole number/], [100000, /at most 86400/], ["300", /whole number of seconds/]] as const) {
      const r = await providers.DnatRule!.check!({}, { ...rule(), connection: { ...rule().connection, scriptTimeout: v } });
      const f = (r.failures ?? []).find((x) => x.property === "connection.scriptTimeout");
      assert.ok(f, `${JSON.stringify(v)}: ${JSON.stringify(r.failures)}`);
      assert.match(f!.reason, why);
    }
  });

  it("a stalled nft on the router fails the create within 2 s, naming host, step and time; once nft answers, the same create converges", async () => {
    const dir = scratchDir(lab, "stalled-nft");
    fs.writeFileSync(path.join(dir, "nft"), "#!/bin/sh\nsleep 8\n", { mode: 0o755 });
    linkStandardPath(dir, (n) => n === "nft");
    await setRouterRootPath(lab, [dir]);
    const inputs = (await providers.DnatRule!.check!({}, rule(2))).inputs;
    const t = Date.now();
    await assert.rejects(providers.DnatRule!.create(inputs), (e: Error) => {
      assert.match(e.message, /reading DnatRule deadline on root@192\.168\.1\.1: the script did not finish within 2 s \(connection\.scriptTimeout\)/);
      assert.match(e.message, /run pulumi up again and it converges/);
      return true;
    });
    const waited = (Date.now() - t) / 1000;
    assert.ok(waited < 6, `gave up after ${waited} s`);
    await clearRouterRootPath(lab);
    await new Promise((r) => setTimeout(r, 8000)); // the stalled script ends on its own
    const r = await providers.DnatRule!.create(inputs);
    assert.deepEqual(r.outs.drift, []);
    await providers.DnatRule!.delete!(r.id, r.outs);
    assert.equal((await lab.hosts.router.exec("nft list table ip natgate_dnat_deadline")).code, 1);
  });
});
