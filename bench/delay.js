// @ts-check
// A TCP relay that holds every chunk, and each end of stream, for a fixed time in each direction:
// the distance between a laptop and a far VPS, for the control-plane bench, where this machine's
// kernel has no sch_netem for `tc netem`.
//
//   node delay.js LISTEN_PORT TARGET_HOST TARGET_PORT ONE_WAY_MS
//
// Listens on 127.0.0.1 (LISTEN_PORT 0: any free port) and prints "ready PORT" once it does.
// What it emulates is the latency each message exchange of SSH pays (its handshake, each channel
// open, each exec and its answer): a chunk written at t reaches the other side at t + ONE_WAY_MS,
// in order. What it does not: loss, and TCP's own behaviour over a long path (each relayed leg is
// a local connection, so a lost segment or a small congestion window never shows here). Bulk
// transfer is not its use: it applies no backpressure.
"use strict";
const net = require("net");

const [listenPort, targetHost, targetPort, oneWayMs] = process.argv.slice(2);
const delay = Number(oneWayMs);
if (!targetHost || !(Number(targetPort) > 0) || !(delay >= 0) || !(Number(listenPort) >= 0)) {
  process.stderr.write("usage: node delay.js LISTEN_PORT TARGET_HOST TARGET_PORT ONE_WAY_MS\n");
  process.exit(2);
}

/**
 * Everything `from` sends reaches `to` `delay` ms later. Timers of one duration fire in the order
 * they were set (Node keeps one list per duration), so chunks keep their order.
 * @param {net.Socket} from @param {net.Socket} to
 */
function forward(from, to) {
  from.on("data", (chunk) => setTimeout(() => to.writable && to.write(chunk), delay));
  from.on("end", () => setTimeout(() => to.writable && to.end(), delay));
}

const server = net.createServer({ allowHalfOpen: true }, (client) => {
  const upstream = net.connect({ host: targetHost, port: Number(targetPort), allowHalfOpen: true });
  // Nagle off on both legs: the relay must not add its own wait to small messages.
  client.setNoDelay(true);
  upstream.setNoDelay(true);
  forward(client, upstream);
  forward(upstream, client);
  const drop = () => setTimeout(() => (client.destroy(), upstream.destroy()), delay);
  for (const s of [client, upstream]) {
    s.on("error", drop);
    s.on("close", drop);
  }
});
server.listen(Number(listenPort), "127.0.0.1", () => {
  const a = server.address();
  process.stdout.write(`ready ${a && typeof a === "object" ? a.port : listenPort}\n`);
});
process.on("SIGTERM", () => process.exit(0));
