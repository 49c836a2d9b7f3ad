// The seed: publish tcp+udp 5000-6000 of a LAN host behind CGNAT on a VPS, plus VPS:2222 → the
// router's own sshd. Config (pulumi config set ...):
//   vpsHost, vpsPublicAddress, routerHost    addresses to reach the hosts over SSH / the public address
//   sshKey (secret)                          private key text for root on both
//   vpsHostKey, routerHostKey (optional)     pinned host keys; unset = trust on first use
//   lanHost (default 192.168.1.99), lanSubnet (default 192.168.1.0/24), lanInterface (default br-lan)
import * as pulumi from "@pulumi/pulumi";
import { PortForward } from "natgate";

const cfg = new pulumi.Config();
const key = cfg.requireSecret("sshKey");

const home = new PortForward("home", {
  vps: {
    connection: { host: cfg.require("vpsHost"), privateKey: key, hostKey: cfg.get("vpsHostKey") },
    publicAddress: cfg.require("vpsPublicAddress"),
  },
  router: {
    connection: { host: cfg.require("routerHost"), privateKey: key, hostKey: cfg.get("routerHostKey") },
    lanInterface: cfg.get("lanInterface") ?? "br-lan",
    lanSubnet: cfg.get("lanSubnet") ?? "192.168.1.0/24",
  },
  lanHost: cfg.get("lanHost") ?? "192.168.1.99",
  forwards: [{ protocol: "both", ports: cfg.get("ports") ?? "5000-6000" }],
  routerForwards: [{ protocol: "tcp", ports: 2222, toPorts: 22 }],
  verify: cfg.getNumber("verifyPort") ? { port: cfg.requireNumber("verifyPort") } : undefined,
});

export const routerTunnelAddress = home.routerTunnelAddress;
export const vpsRules = home.vpsRules.map((r) => r.rendered);
