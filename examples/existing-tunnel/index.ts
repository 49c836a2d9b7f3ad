// The seed over a tunnel natgate did not create (an OpenVPN tun0, say): VPS 10.10.10.1,
// router 10.10.10.2. Only DnatRule, ConnmarkReturnPath and PolicyRouteTable, by hand.
import * as pulumi from "@pulumi/pulumi";
import { ConnmarkReturnPath, DnatRule, PolicyRouteTable } from "natgate";

const cfg = new pulumi.Config();
const key = cfg.requireSecret("sshKey");
const vps = { host: cfg.require("vpsHost"), privateKey: key };
const router = { host: cfg.require("routerHost"), privateKey: key };
const table = 8764;

const routes = new PolicyRouteTable("tun0-routes", {
  connection: router,
  table,
  routes: [
    { to: "default", via: "10.10.10.1", dev: "tun0" },
    { to: "192.168.1.0/24", dev: "br-lan" },
  ],
});
const ret = new ConnmarkReturnPath("tun0-return", {
  connection: router,
  tunnelInterface: "tun0",
  table,
  mark: 0x1234, // the blog's mark; the default (a bit in 0xFF000000) is safer next to mwan3
  mask: 0x1234,
  localSource: "10.10.10.2",
}, { dependsOn: [routes] });
const onRouter = new DnatRule("lan-game", {
  connection: router,
  inInterface: "tun0",
  protocol: "both",
  ports: "5000-6000",
  toAddress: "192.168.1.99",
}, { dependsOn: [ret] });
new DnatRule("vps-game", {
  connection: vps,
  destination: cfg.require("vpsPublicAddress"),
  protocol: "both",
  ports: "5000-6000",
  toAddress: "10.10.10.2",
}, { dependsOn: [onRouter] });
new DnatRule("vps-router-ssh", {
  connection: vps,
  destination: cfg.require("vpsPublicAddress"),
  ports: 2222,
  toAddress: "10.10.10.2",
  toPorts: 22,
}, { dependsOn: [ret] });
