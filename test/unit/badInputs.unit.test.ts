// Bad input as the user wrote it (issue 11): one table of wrong values across every resource and
// PortForward, each sent through the provider's check as the engine sends it (or, for PortForward,
// the component's constructor). Every row must be refused, name the field as the user wrote it,
// say what a valid value looks like, and open no socket on the way.
import { strict as assert } from "assert";
import * as net from "net";
import * as pulumi from "@pulumi/pulumi";
import { Client } from "ssh2";
import { providers } from "../../provider";
import { UNKNOWN } from "../../provider/engine/unknown";
import { PortForward, type PortForwardArgs } from "../../sdk/portForward";

type Kind = "DnatRule" | "ConnmarkReturnPath" | "PolicyRouteTable" | "Tunnel" | "PathCheck" | "PortForward";

/** One bad input: the value(s) at a field path as the user writes it, the field the error must name, and what a valid value looks like. */
interface Row {
  kind: Kind;
  /** Field path → value; `DROP` removes the field. */
  set: Record<string, unknown>;
  /** The field the error names (default: the only key of `set`). */
  field?: string;
  /** What the message must say about a valid value (default: EXAMPLE). */
  hint?: RegExp;
}

const DROP = Symbol("drop");

// A message says what to do or what a valid value looks like: an example, a range, the words to write.
const EXAMPLE = /\blike\b|e\.g\.|\bwrite\b|\bgive\b|must be\b|\bomit\b|\bremove\b|\bset\b|\bchoose\b|\buse\b|\bat (most|least)\b|\bpick\b|\bdid you mean\b|\bfix\b|\bmake\b/;

const vps = { host: "198.51.100.1", password: "x" };
const router = { host: "192.168.1.1", password: "x" };

const BASE: Record<Exclude<Kind, "PortForward">, Record<string, unknown>> = {
  DnatRule: { connection: vps, name: "web", protocol: "tcp", ports: 80, inInterface: "wg0", toAddress: "192.168.1.99" },
  ConnmarkReturnPath: { connection: router, name: "home", tunnelInterface: "wg0" },
  PolicyRouteTable: { connection: router, name: "home", routes: [{ to: "default", via: "10.10.10.1", dev: "wg0" }, { to: "192.168.1.0/24", dev: "br-lan" }] },
  Tunnel: { listener: { connection: vps, address: "10.10.10.1/24" }, dialer: { connection: router, address: "10.10.10.2/24" } },
  PathCheck: { vpsConnection: vps, routerConnection: router, publicAddress: "198.51.100.1", port: 5000, routerTunnelAddress: "10.10.10.2", tunnelInterface: "wg0" },
};

const PF_BASE: PortForwardArgs = {
  vps: { connection: vps, publicAddress: "198.51.100.1" },
  router: { connection: router, lanInterface: "br-lan", lanSubnet: "192.168.1.0/24" },
  lanHost: "192.168.1.99",
  forwards: [{ ports: 443 }],
};

// ssh-keygen output for the rows that need a real key text: a public key (wrongly given as the private one) and a pin.
const ED25519_PUB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl user@host";

function segments(path: string): (string | number)[] {
  return [...path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)].map((m) => (m[2] !== undefined ? Number(m[2]) : m[1]!));
}

/** `base` with `value` at `path` (objects on the way are copied, never shared with BASE). */
export function withAt<T>(base: T, path: string, value: unknown): T {
  const root: any = structuredClone(base);
  const segs = segments(path);
  let cur = root;
  segs.slice(0, -1).forEach((s, k) => {
    if (cur[s] === null || typeof cur[s] !== "object") cur[s] = typeof segs[k + 1] === "number" ? [] : {};
    cur = cur[s];
  });
  const last = segs.at(-1)!;
  if (value === DROP) delete cur[last];
  else cur[last] = value;
  return root;
}

// Bad connection values, checked under every connection field of every resource.
const CONNECTION_BAD: { at: string; value: unknown; extra?: Record<string, unknown>; field?: string; hint?: RegExp }[] = [
  // Its wording ("must not be empty", nothing more) is pinned by test/ssh/schema.unit.test.ts.
  { at: "host", value: "", hint: /must not be empty/ },
  { at: "host", value: "vps;reboot" },
  { at: "host", value: "vps host" },
  { at: "host", value: "vps\nreboot" },
  { at: "host", value: "vps\0" },
  { at: "host", value: "[2001:db8::1]" },
  { at: "host", value: "999.1.1.1" },
  { at: "host", value: "-oProxyCommand=reboot" },
  { at: "host", value: "$(reboot)" },
  { at: "host", value: "0.0.0.0" },
  { at: "host", value: "255.255.255.255" },
  { at: "host", value: "::" },
  { at: "host", value: "ff02::1" },
  { at: "host", value: 42 },
  { at: "host", value: DROP, hint: /is required/ },
  { at: "port", value: 0 },
  { at: "port", value: 65536 },
  { at: "port", value: -22 },
  { at: "port", value: 22.5 },
  { at: "port", value: "22" },
  { at: "user", value: "" },
  { at: "user", value: "ro ot" },
  { at: "user", value: "root\n" },
  { at: "user", value: "root\0" },
  { at: "user", value: 0 },
  { at: "password", value: 1234 },
  { at: "privateKey", value: "" },
  { at: "privateKey", value: "not a key" },
  { at: "privateKey", value: "~/.ssh/id_ed25519" },
  { at: "privateKey", value: ED25519_PUB },
  { at: "privateKey", value: "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n" },
  { at: "privateKey", value: ["key"] },
  { at: "privateKeyPassword", value: 1234 },
  { at: "agentSocketPath", value: "" },
  { at: "agentSocketPath", value: false },
  { at: "password", value: DROP, field: "", hint: /agentSocketPath: process\.env\.SSH_AUTH_SOCK/ },
  { at: "dialErrorLimit", value: -2 },
  { at: "dialErrorLimit", value: 1.5 },
  { at: "dialErrorLimit", value: "10" },
  { at: "perDialTimeout", value: -1 },
  { at: "perDialTimeout", value: 0.5 },
  { at: "perDialTimeout", value: "15" },
  // A host whose sshd accepts and then stalls: unlimited retries without a per-dial deadline never end.
  { at: "dialErrorLimit", value: -1, extra: { perDialTimeout: 0 }, hint: /perDialTimeout/ },
  { at: "hostKey", value: "" },
  { at: "hostKey", value: "SHA256:" },
  { at: "hostKey", value: "MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48" },
  { at: "hostKey", value: "ssh-ed25519 not!base64" },
  { at: "hostKey", value: ED25519_PUB.replace("ssh-ed25519", "ssh-rsa") },
  { at: "hostKey", value: "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl" },
  { at: "hostKey", value: 7 },
  { at: "knownHosts", value: "known_hosts" },
  { at: "knownHosts", value: "" },
  { at: "knownHosts", value: true },
  { at: "scriptTimeout", value: 0 },
  { at: "scriptTimeout", value: 86401 },
  { at: "scriptTimeout", value: 1.5 },
  { at: "scriptTimeout", value: "300" },
  { at: "scriptTimeout", value: -5 },
  { at: "sudo", value: "yes" },
  { at: "sudo", value: 1 },
  { at: "hots", value: "198.51.100.1", hint: /ConnectionArgs/ },
  { at: "proxy", value: "jump.example.com" },
  { at: "proxy", value: {}, field: "proxy.host", hint: /is required/ },
  { at: "proxy", value: { host: "jump;reboot", password: "x" }, field: "proxy.host" },
  { at: "proxy", value: { host: "jump.example.com", port: 0, password: "x" }, field: "proxy.port" },
  { at: "proxy", value: { host: "jump.example.com" }, hint: /agentSocketPath/ },
  { at: "proxy", value: { host: "jump.example.com", password: "x", sudo: true }, field: "proxy.sudo", hint: /ConnectionArgs/ },
  { at: "proxy", value: { host: "jump.example.com", password: "x", hostKey: "MD5:aa" }, field: "proxy.hostKey" },
  { at: "proxy", value: { host: "jump.example.com", password: "x", dialErrorLimit: -1, perDialTimeout: 0 }, field: "proxy.dialErrorLimit", hint: /perDialTimeout/ },
];

const CONNECTIONS: [Exclude<Kind, "PortForward">, string][] = [
  ["DnatRule", "connection"],
  ["ConnmarkReturnPath", "connection"],
  ["PolicyRouteTable", "connection"],
  ["Tunnel", "listener.connection"],
  ["Tunnel", "dialer.connection"],
  ["PathCheck", "vpsConnection"],
  ["PathCheck", "routerConnection"],
];

const connectionRows: Row[] = CONNECTIONS.flatMap(([kind, prefix]) =>
  CONNECTION_BAD.map((c): Row => ({
    kind,
    set: { [`${prefix}.${c.at}`]: c.value, ...Object.fromEntries(Object.entries(c.extra ?? {}).map(([k, v]) => [`${prefix}.${k}`, v])) },
    field: c.field === "" ? prefix : `${prefix}.${c.field ?? c.at}`,
    ...(c.hint ? { hint: c.hint } : {}),
  })),
);

// Interface names every interface field refuses: too long, '/', spaces, metacharacters, reserved.
const BAD_INTERFACES: unknown[] = ["", "wg0123456789abcd", "wg/0", "wg 0", "wg0;reboot", "wg0\n", "wg\0", "wg*", "$(id)", "all", "default", "lo", "-h", ".", "..", 0];
const interfaceRows = (kind: Kind, field: string, around: Record<string, unknown> = {}): Row[] =>
  BAD_INTERFACES.map((value) => ({ kind, set: { ...around, [field]: value }, field }));

const one = (kind: Kind, field: string, values: unknown[], hint?: RegExp): Row[] => values.map((value) => ({ kind, set: { [field]: value }, field, ...(hint ? { hint } : {}) }));

// Addresses no host has: a rule, a route or a probe with one matches or reaches nothing.
const NO_HOST = ["0.0.0.0", "255.255.255.255", "224.0.0.1", "240.0.0.1", "::", "ff02::1"];

const NAMES: unknown[] = ["", "Web", "web-1", "web;reboot", "web name", "w".repeat(33), "web\n", "1web", "web\0", 5];
const PORT_SPECS: unknown[] = [0, 65536, -1, 22.5, "80;reboot", "6000-5000", "80 443", "1-2-3", "0x50", "", "80\n", true, [80], "70000"];
const TABLES: unknown[] = [0, 253, 254, 255, -1, 2 ** 32, 1.5, "100"];
const MARKS: unknown[] = [0, "0x", "0x100000000", 2 ** 32, -1, "abc", 1.5, "0x1G", "0x10000000;reboot", null];
const PRIORITIES: unknown[] = [0, 32766, 32767, -1, 1.5, "950"];

const dnatRows: Row[] = [
  ...one("DnatRule", "name", NAMES),
  ...one("DnatRule", "protocol", ["icmp", "TCP", "", 6, "tcp;reboot"]),
  ...one("DnatRule", "ports", PORT_SPECS),
  ...one("DnatRule", "ports", [DROP], /is required/),
  ...one("DnatRule", "toPorts", [0, "90-80", "abc", 65536]),
  { kind: "DnatRule", set: { ports: 80, toPorts: "80-81" }, field: "toPorts" },
  { kind: "DnatRule", set: { ports: "1000-3000", toPorts: "11000-13000" }, field: "toPorts" },
  ...interfaceRows("DnatRule", "inInterface"),
  ...one("DnatRule", "destination", [...NO_HOST.slice(0, 4), "1.2.3", "198.51.100.1/32", "vps.example.com", "198.51.100.1;", 5]),
  { kind: "DnatRule", set: { destination: "2001:db8::1" }, field: "destination" },
  { kind: "DnatRule", set: { inInterface: DROP }, field: "inInterface" },
  ...one("DnatRule", "toAddress", [
    "0.0.0.0", "255.255.255.255", "224.0.0.1", "239.1.2.3", "127.0.0.1", "169.254.1.1", "240.0.0.1", "192.168.1.99/32", "192.168.1.256", "192.168.1",
    "::", "::1", "ff02::1", "fe80::1", "::ffff:192.168.1.1", "$(reboot)", "192.168.1.99\n", "192.168.1.99;reboot", "lanhost.example.com", 5,
  ]),
  ...one("DnatRule", "toAddress", [DROP], /is required/),
  ...one("DnatRule", "allowFrom", [[], "203.0.113.0/24", {}]),
  ...one("DnatRule", "allowFrom[0]", ["203.0.113.7/24", "0.0.0.0/0", "x", "203.0.113.0/33", "2001:db8::/32", "203.0.113.0/24;reboot", 7]),
  { kind: "DnatRule", set: { allowFrom: ["203.0.113.0/24"], refuse: "deny" }, field: "refuse" },
  { kind: "DnatRule", set: { refuse: "reject" }, field: "refuse" },
  ...one("DnatRule", "clampMss", ["yes", 1]),
  ...one("DnatRule", "backend", ["pf", "nft", "", true]),
  ...one("DnatRule", "persist", ["true", 0]),
  { kind: "DnatRule", set: { toaddress: "192.168.1.99" }, field: "toaddress", hint: /unknown field/ },
];

const connmarkRows: Row[] = [
  ...one("ConnmarkReturnPath", "name", NAMES),
  ...interfaceRows("ConnmarkReturnPath", "tunnelInterface"),
  ...one("ConnmarkReturnPath", "table", TABLES),
  ...one("ConnmarkReturnPath", "mark", MARKS),
  ...one("ConnmarkReturnPath", "mask", MARKS.filter((m) => m !== null)),
  { kind: "ConnmarkReturnPath", set: { mark: 3, mask: 1 }, field: "mark" },
  ...one("ConnmarkReturnPath", "priority", PRIORITIES),
  { kind: "ConnmarkReturnPath", set: { priority: 32765, localSource: "10.10.10.2" }, field: "localSourcePriority" },
  ...one("ConnmarkReturnPath", "localSource", [...NO_HOST.slice(0, 4), "10.10.10.2/24", "fd00::2", "router", "10.10.10.2;reboot", 5]),
  ...one("ConnmarkReturnPath", "localSourcePriority", [951, 0]),
  { kind: "ConnmarkReturnPath", set: { ipv6: true, localSource6: "10.10.10.2" }, field: "localSource6" },
  { kind: "ConnmarkReturnPath", set: { localSource6: "fd00:4e47::2" }, field: "localSource6" },
  ...NO_HOST.slice(4).map((v): Row => ({ kind: "ConnmarkReturnPath", set: { ipv6: true, localSource6: v }, field: "localSource6" })),
  ...one("ConnmarkReturnPath", "ipv6", ["yes"]),
  ...one("ConnmarkReturnPath", "restoreInOutput", ["no"]),
  ...one("ConnmarkReturnPath", "looseRpFilter", [0]),
];

const routeRows: Row[] = [
  ...one("PolicyRouteTable", "name", NAMES.slice(0, 5)),
  ...one("PolicyRouteTable", "table", TABLES),
  ...one("PolicyRouteTable", "routes", [[], "default", {}]),
  { kind: "PolicyRouteTable", set: { "routes[1].to": "0.0.0.0/0", "routes[1].via": "10.10.10.1" }, field: "routes[1].to" },
  { kind: "PolicyRouteTable", set: { "routes[1].to": "default" }, field: "routes[1].to" },
  { kind: "PolicyRouteTable", set: { "routes[0].to": "::/0", "routes[1].to": "0::0/0", "routes[0].via": DROP }, field: "routes[1].to" },
  ...one("PolicyRouteTable", "routes[1].to", ["192.168.1.1/24", "192.168.1.0", "fd00:1::1/64", "default6", "192.168.1.0/24;reboot", "192.168.1.0/33", "", 24]),
  ...one("PolicyRouteTable", "routes[0].via", [...NO_HOST.slice(0, 4), "10.10.10.1/32", "fd00::1", "gw.example.com", "10.10.10.1;reboot"]),
  { kind: "PolicyRouteTable", set: { "routes[0].to": "::/0", "routes[0].via": "ff02::1" }, field: "routes[0].via" },
  { kind: "PolicyRouteTable", set: { "routes[0].to": "::/0", "routes[0].via": "fe80::1", "routes[0].dev": DROP }, field: "routes[0].via" },
  ...interfaceRows("PolicyRouteTable", "routes[1].dev"),
  ...one("PolicyRouteTable", "routes[1].src", [...NO_HOST.slice(0, 4), "x", "fd00::1", "192.168.1.1/24"]),
  ...one("PolicyRouteTable", "routes[1].metric", [-1, 2 ** 32, 1.5, "10"]),
  { kind: "PolicyRouteTable", set: { "routes[1].onlink": true }, field: "routes[1].onlink" },
  { kind: "PolicyRouteTable", set: { "routes[1].dev": DROP }, field: "routes[1]" },
  { kind: "PolicyRouteTable", set: { "routes[1].gateway": "10.10.10.1" }, field: "routes[1].gateway", hint: /unknown field/ },
];

const CIDR_BAD = ["10.10.10.1", "10.10.10.0/24", "10.10.10.255/24", "10.10.10.1/33", "x", "10.10.10.1/24;reboot", "10.10.10.1 /24"];
const tunnelRows: Row[] = [
  ...one("Tunnel", "name", ["Wg", "wg-0", "wg;reboot"]),
  ...interfaceRows("Tunnel", "interfaceName"),
  ...interfaceRows("Tunnel", "listener.interfaceName").slice(0, 8),
  ...interfaceRows("Tunnel", "dialer.interfaceName").slice(8),
  ...one("Tunnel", "mtu", [575, 9001, 1420.5, "1420"]),
  ...one("Tunnel", "listenPort", [0, 65536, 51820.5, "51820"]),
  ...one("Tunnel", "persistentKeepalive", [-1, 65536, "25"]),
  ...one("Tunnel", "listener.address", CIDR_BAD),
  ...one("Tunnel", "dialer.address", [...CIDR_BAD.slice(0, 4), "10.10.11.2/24", "10.10.10.1/24", "fd00:4e47::2/64"]),
  ...one("Tunnel", "listener.address6", ["fe80::1/64", "10.0.0.1/24", "ff02::1/64", "fd00:4e47::1", "fd00:4e47::/64"]),
  { kind: "Tunnel", set: { "dialer.address6": "fd00:4e47::2/64" }, field: "listener.address6" },
  { kind: "Tunnel", set: { "listener.address6": "fd00:4e47::1/64", "dialer.address6": "fd00:4e48::2/64" }, field: "dialer.address6" },
  { kind: "Tunnel", set: { "listener.address": "fd00:4e47::1/64", "dialer.address": "fd00:4e47::2/64", mtu: 1200 }, field: "mtu" },
  ...one("Tunnel", "listener.endpoint", [...NO_HOST, "vps.example.com:51820", "vps example.com", "vps;reboot", "$(reboot)", ""]),
  ...one("Tunnel", "listener.allowedIps[0]", ["192.168.1.1/24", "x", "192.168.1.0/24;reboot"]),
  ...one("Tunnel", "dialer.allowedIps", ["0.0.0.0/0"]),
  { kind: "Tunnel", set: { "dialer.connection": vps }, field: "dialer.connection" },
];

const pathCheckRows: Row[] = [
  ...one("PathCheck", "publicAddress", [...NO_HOST, "198.51.100.1/32", "vps.example.com", "", "198.51.100.1;reboot", 5]),
  ...one("PathCheck", "vpsAddress", [...NO_HOST.slice(0, 2), "x", "172.31.5.9/20"]),
  ...one("PathCheck", "port", [0, 65536, "5000", 1.5]),
  ...one("PathCheck", "routerTunnelAddress", [...NO_HOST.slice(2), "10.10.10.2/24", "$(id)"]),
  ...interfaceRows("PathCheck", "tunnelInterface").filter((_r, k) => k % 2 === 0),
  ...one("PathCheck", "mark", [0, "x"]),
  ...one("PathCheck", "mask", ["0x1G"]),
  ...one("PathCheck", "routerLocal", ["no"]),
  ...one("PathCheck", "timeoutSeconds", [0, 121, -1, "5"]),
];

const pf = (set: Record<string, unknown>, field: string, hint?: RegExp): Row => ({ kind: "PortForward", set, field, ...(hint ? { hint } : {}) });
const portForwardRows: Row[] = [
  ...["192.168.1.1/24", "192.168.1.0", "fd00::/64", "lan", "192.168.1.0/33", "192.168.1.0/24;reboot", ""].map((v) => pf({ "router.lanSubnet": v }, "router.lanSubnet")),
  ...["192.168.1.0", "192.168.1.255", "0.0.0.0", "255.255.255.255", "224.0.0.251", "127.0.0.1", "fd00::5", "192.168.1.x", "192.168.1.99;reboot"].map((v) => pf({ lanHost: v }, "lanHost")),
  pf({ lanHost: "192.168.2.5" }, "router.lanSubnet"),
  ...["192.168.1.255", "10.0.0.5;", "$(reboot)"].map((v) => pf({ "forwards[0].to": v }, "forwards[0].to")),
  pf({ "forwards[0].to": "10.0.0.5" }, "forwards[0]"),
  pf({ "forwards[0].allowFrom": [] }, "forwards[0].allowFrom"),
  pf({ "forwards[0].allowFrom": "203.0.113.0/24" }, "forwards[0].allowFrom"),
  pf({ "forwards[0].allowFrom": ["203.0.113.7/24"] }, "forwards[0].allowFrom[0]"),
  pf({ "forwards[0].allowFrom": ["2001:db8::/32"] }, "forwards[0].allowFrom[0]"),
  pf({ "forwards[0].allowFrom": ["203.0.113.0/24"], "forwards[0].refuse": "deny" }, "forwards[0].refuse"),
  pf({ "forwards[0].refuse": "drop" }, "forwards[0].refuse"),
  pf({ forwards: [{ ports: "5000-5009", toPorts: "80-81" }] }, "forwards[0].toPorts"),
  pf({ routerForwards: [{ ports: "2222-2223", toPorts: 22 }] }, "routerForwards[0].toPorts"),
  pf({ routerForwards: [{ ports: 2222, toPorts: 22, allowFrom: ["x"] }] }, "routerForwards[0].allowFrom[0]"),
  ...["all", "-h", "br lan", "br/lan", "br-lan0123456789", "br-lan;reboot"].map((v) => pf({ "router.lanInterface": v }, "router.lanInterface")),
  pf({ "tunnel.interfaceName": "lo" }, "tunnel.interfaceName"),
  pf({ existingTunnel: { interfaceName: "tun 0", vpsAddress: "10.8.0.1", routerAddress: "10.8.0.2" } }, "existingTunnel.interfaceName"),
  pf({ existingTunnel: { interfaceName: "tun0", vpsInterfaceName: "all", vpsAddress: "10.8.0.1", routerAddress: "10.8.0.2" } }, "existingTunnel.vpsInterfaceName"),
  pf({ tunnel: {}, existingTunnel: { interfaceName: "tun0", vpsAddress: "10.8.0.1", routerAddress: "10.8.0.2" } }, "existingTunnel"),
  ...[8, -1, 1.5, "1"].map((v) => pf({ slot: v }, "slot")),
  pf({ slot: 7, vps: [PF_BASE.vps, { connection: vps, publicAddress: "203.0.113.9" }] }, "slot", /there are 8 \(0-7\)/),
  pf({ "returnPath.priority": 32765, routerForwards: [{ ports: 2222, toPorts: 22 }] }, "returnPath.priority"),
  pf({ forwards: [{ ports: "5000-6000" }, { ports: 5500 }] }, "forwards[1]"),
  // sdk/portForward.ts's own wording, which says what is missing rather than showing a forward.
  pf({ forwards: [] }, "forwards", /nothing to forward/),
  pf({ vps: [] }, "vps"),
  pf({ lanHost: DROP }, "forwards[0]", /lanHost/),
  pf({ lanHost6: "fd00:1::10" }, "lanHost6"),
  pf({ "vps.publicAddress6": "2001:db8::1" }, "router.lanSubnet6"),
  pf({ "vps.publicAddress6": "2001:db8::1", "router.lanSubnet6": "fd00:1::1/64", lanHost6: "fd00:1::10" }, "router.lanSubnet6"),
  pf({ "vps.publicAddress6": "2001:db8::1", "router.lanSubnet6": "fd00:1::/64", lanHost6: "fe80::10" }, "lanHost6"),
  pf({ "vps.publicAddress6": "2001:db8::1", "router.lanSubnet6": "fd00:1::/64", lanHost6: "192.168.1.99" }, "lanHost6"),
  pf({ "vps.publicAddress6": "2001:db8::1", "router.lanSubnet6": "fd00:1::/64", lanHost6: "fd00:2::10" }, "lanHost6"),
];

export const ROWS: Row[] = [...connectionRows, ...dnatRows, ...connmarkRows, ...routeRows, ...tunnelRows, ...pathCheckRows, ...portForwardRows];

export function describeRow(r: Row): string {
  const vals = Object.entries(r.set).map(([k, v]) => `${k}=${v === DROP ? "(absent)" : JSON.stringify(v)}`);
  return `${r.kind} ${vals.join(" ")}`;
}

/** Counts every way out of this process to a host for the duration of `fn`. */
export async function countingDials<T>(fn: () => Promise<T>): Promise<{ result: T; dials: string[] }> {
  const dials: string[] = [];
  const spied: [any, string][] = [[net.Socket.prototype, "connect"], [net, "connect"], [net, "createConnection"], [Client.prototype, "connect"]];
  const originals = spied.map(([o, k]) => o[k]);
  spied.forEach(([o, k], n) => {
    o[k] = function (this: unknown, ...args: unknown[]) {
      dials.push(`${k}(${JSON.stringify(args[0])?.slice(0, 80)})`);
      return originals[n].apply(this, args);
    };
  });
  try {
    return { result: await fn(), dials };
  } finally {
    spied.forEach(([o, k], n) => (o[k] = originals[n]));
  }
}

export interface Problem {
  property: string;
  reason: string;
}

/** The problems the user sees for one input: the provider check's failures, or the component's error lines. */
export async function problemsOf(kind: Kind, input: Record<string, unknown>): Promise<Problem[] | "threw-internal"> {
  if (kind === "PortForward") {
    try {
      new PortForward("home", input as unknown as PortForwardArgs);
      return [];
    } catch (e) {
      // Layout problems are one a line, "field: reason" or "field value: reason"; argument problems one line of prose.
      const lines = (e as Error).message.replace(/^PortForward home:\s*/, "").split(/\n\s*/);
      return lines.filter(Boolean).map((line) => ({ property: line.split(/[ :]/)[0]!, reason: line }));
    }
  }
  const r = await providers[kind]!.check!({}, { __provider: "serialized", ...input });
  return r.failures ?? [];
}

function inputOf(row: Row): Record<string, unknown> {
  let v: Record<string, unknown> = row.kind === "PortForward" ? (PF_BASE as unknown as Record<string, unknown>) : BASE[row.kind];
  for (const [path, value] of Object.entries(row.set)) v = withAt(v, path, value);
  return v;
}

describe("bad input as the user wrote it: refused at check, naming the field, saying what is valid, dialing nothing (issue 11)", function () {
  before(() => {
    pulumi.runtime.setMocks({ newResource: (a) => ({ id: `${a.name}_id`, state: a.inputs }), call: (a) => a.inputs }, "natgate-bad-inputs", "test", false);
  });

  it("the table has at least 150 rows, across every resource and PortForward", () => {
    assert.ok(ROWS.length >= 150, `${ROWS.length} rows`);
    for (const kind of [...Object.keys(BASE), "PortForward"]) assert.ok(ROWS.some((r) => r.kind === kind), kind);
  });

  it("every base input is accepted (so each row's refusal is its own value's)", async () => {
    for (const kind of Object.keys(BASE) as (keyof typeof BASE)[]) assert.deepEqual(await problemsOf(kind, BASE[kind]), [], kind);
    assert.deepEqual(await problemsOf("PortForward", PF_BASE as unknown as Record<string, unknown>), []);
  });

  it("the dial counter sees a connect (so the zero below can fail)", async () => {
    const { dials } = await countingDials(async () => {
      const s = net.connect({ host: "127.0.0.1", port: 9 });
      s.on("error", () => {});
      s.destroy();
    });
    assert.ok(dials.length >= 1, JSON.stringify(dials));
  });

  // At check a literal marker and a preview's unknown value are the same text, so check lets both
  // through; create, update, read and delete never receive a preview's, so there it is the user's.
  it("the engine's unknown-value marker typed as text: let through at check, refused at create naming the field, nothing dialed", async () => {
    const at: [Exclude<Kind, "PortForward">, string][] = [
      ["DnatRule", "connection.host"], ["DnatRule", "toAddress"], ["ConnmarkReturnPath", "tunnelInterface"], ["PolicyRouteTable", "routes[0].via"],
      ["Tunnel", "listener.connection.host"], ["Tunnel", "dialer.address"], ["PathCheck", "routerTunnelAddress"],
    ];
    const { dials } = await countingDials(async () => {
      for (const [kind, field] of at) {
        const checked = await providers[kind]!.check!({}, { __provider: "serialized", ...withAt(BASE[kind], field, UNKNOWN) });
        assert.deepEqual(checked.failures ?? [], [], `${kind} ${field}: a preview's unknown value is not an error`);
        await assert.rejects(providers[kind]!.create(checked.inputs), (e: Error) => {
          assert.match(e.message, new RegExp(`\\n  ${field.replace(/[.[\]]/g, "\\$&")}: holds Pulumi's unknown-value placeholder ${UNKNOWN}, .*pass the Output itself, not its string form`), `${kind}: ${e.message}`);
          assert.match(e.message, /not all known yet/);
          return true;
        });
      }
    });
    assert.deepEqual(dials, []);
  });

  it("refuses every row", async () => {
    const wrong: string[] = [];
    const { dials } = await countingDials(async () => {
      for (const row of ROWS) {
        const field = row.field ?? Object.keys(row.set)[0]!;
        const problems = await problemsOf(row.kind, inputOf(row));
        const text = `${describeRow(row)}\n    -> ${JSON.stringify(problems)}`;
        if (problems === "threw-internal" || problems.length === 0) {
          wrong.push(`accepted: ${text}`);
          continue;
        }
        // The component's messages are its own prose: the field may be named inside it ("...overlaps forwards[0]", "give either tunnel or existingTunnel").
        const mentions = (p: Problem) => row.kind === "PortForward" && new RegExp(`(^|[^\\w.])${field.replace(/[.[\]]/g, "\\$&")}(?![\\w.[])`).test(p.reason);
        const named = problems.filter((p) => p.property === field || mentions(p));
        if (named.length === 0) wrong.push(`does not name ${field}: ${text}`);
        else if (!named.some((p) => (row.hint ?? EXAMPLE).test(p.reason))) wrong.push(`no valid example (${row.hint ?? "EXAMPLE"}): ${text}`);
      }
    });
    assert.deepEqual(dials, [], "a check opened a connection");
    assert.equal(wrong.length, 0, `${wrong.length} of ${ROWS.length} rows:\n${wrong.join("\n")}`);
  });
});
