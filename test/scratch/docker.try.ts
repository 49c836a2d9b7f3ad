import { getLab } from "../lab";
import { bootDebianVps, restoreLabVps } from "../lab/debianVps";
describe("try docker", function () {
  this.timeout(300_000);
  it("runs", async () => {
    const lab = getLab();
    const vps = await bootDebianVps(lab);
    try {
      const out = await vps.run("systemctl is-enabled docker containerd docker.socket; systemctl is-active docker; systemctl start docker; sleep 3; systemctl is-active docker; journalctl -u docker --no-pager | tail -n 40; iptables -S; iptables -t nat -S; docker info 2>&1 | head -30", { timeoutMs: 120_000 }).catch((e) => String(e));
      console.log(out);
    } finally {
      await restoreLabVps(lab);
    }
  });
});
