// Two sites behind one VPS: each PortForward gets its own tunnel interface and subnet, WireGuard
// port, routing table and public port range, so the two never share an object on the VPS.
import * as pulumi from "@pulumi/pulumi";
import { PortForward } from "natgate";

const cfg = new pulumi.Config();
const key = cfg.requireSecret("sshKey");
const vps = { connection: { host: cfg.require("vpsHost"), privateKey: key }, publicAddress: cfg.require("vpsPublicAddress") };

new PortForward("home", {
  vps,
  router: { connection: { host: cfg.require("homeRouter"), privateKey: key }, lanInterface: "br-lan", lanSubnet: "192.168.1.0/24" },
  lanHost: "192.168.1.99",
  forwards: [{ protocol: "both", ports: "5000-5999" }],
  tunnel: { interfaceName: "wg-home", vpsAddress: "10.10.10.1/30", routerAddress: "10.10.10.2/30", listenPort: 51820 },
});

new PortForward("office", {
  vps,
  router: { connection: { host: cfg.require("officeRouter"), privateKey: key }, lanInterface: "br-lan", lanSubnet: "192.168.20.0/24" },
  lanHost: "192.168.20.10",
  forwards: [{ protocol: "tcp", ports: "6000-6999" }, { protocol: "tcp", ports: 8443, toPorts: 443 }],
  tunnel: { interfaceName: "wg-office", vpsAddress: "10.10.11.1/30", routerAddress: "10.10.11.2/30", listenPort: 51821 },
  returnPath: { table: 8765 },
});
