// The lab's real hosts: a Debian 12 VPS booted with systemd (running its nftables.service, as a
// Debian VPS that uses Debian's firewall service does) and OpenWrt's fw4 on the router, with its
// default zones. The demo and the seed suite run on them; other tests keep the namespace hosts.
import { privateLib, type Lab } from "./index";
import { bootDebianVps, restoreLabVps } from "./debianVps";
import { installFw4, removeFw4 } from "./fw4";

/** Turns the lab's VPS and router into the real hosts; returns what puts the lab back (also after a failure half way). */
export async function realHosts(lab: Lab): Promise<() => Promise<void>> {
  const undoLib = await privateLib(lab, lab.hosts.router, "real-hosts-fw4");
  const undo = async () => {
    await restoreLabVps(lab).catch((e) => console.error(`restoring the lab's VPS failed: ${(e as Error).message}`));
    await removeFw4(lab).catch((e) => console.error(`removing fw4 failed: ${(e as Error).message}`));
    await undoLib();
  };
  try {
    await installFw4(lab);
    await bootDebianVps(lab);
    await lab.hosts.vps.run("systemctl enable --now nftables.service");
  } catch (e) {
    await undo();
    throw e;
  }
  return undo;
}
