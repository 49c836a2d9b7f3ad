// natgate next to @pulumi/command: one connection object serves both. A remote.Command installs
// and starts the LAN service; natgate publishes it on the VPS once it runs.
import * as pulumi from "@pulumi/pulumi";
import { remote, types } from "@pulumi/command";
import { PortForward } from "natgate";

const cfg = new pulumi.Config();
const key = cfg.requireSecret("sshKey");
const vps: types.input.remote.ConnectionArgs = { host: cfg.require("vpsHost"), privateKey: key };
const router: types.input.remote.ConnectionArgs = { host: cfg.require("routerHost"), privateKey: key };
const lanHost: types.input.remote.ConnectionArgs = { host: "192.168.1.99", privateKey: key };

const web = new remote.Command("web", {
  connection: lanHost,
  create: "apt-get install -y nginx && systemctl enable --now nginx",
  delete: "systemctl disable --now nginx",
});

const site = new PortForward("web", {
  vps: { connection: vps, publicAddress: cfg.require("vpsPublicAddress") },
  router: { connection: router, lanInterface: "br-lan", lanSubnet: "192.168.1.0/24" },
  lanHost: "192.168.1.99",
  forwards: [{ protocol: "tcp", ports: 443 }, { protocol: "tcp", ports: 80 }],
  verify: { port: 80 },
}, { dependsOn: [web] });

// The same connection object also runs an ad-hoc check on the VPS after natgate applied its rules.
export const vpsDnat = new remote.Command("show-dnat", {
  connection: vps,
  create: "nft list ruleset | grep -c natgate_",
}, { dependsOn: [site] }).stdout;
