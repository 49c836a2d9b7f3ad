// @ts-check
// Both ends of a bench measurement, run with plain node inside a lab host (no tsx: a measurement
// starts one of these per round, and its own timing is what counts, not node's startup).
//
//   node peer.js serve PORT                     the LAN service: per connection, the first byte says
//                                               what the client wants; every answer is the address the
//                                               service saw the connection come from
//   node peer.js bulk HOST PORT BYTES           sends BYTES, waits until the service has read them all
//   node peer.js connect HOST PORT MS PARALLEL  opens and completes connections for MS milliseconds
//   node peer.js rr HOST PORT MS                on one connection, 1-byte request, 1-byte answer,
//                                               one after the other for MS milliseconds
//   node peer.js udp HOST PORT MS               64-byte datagrams as fast as this process sends them
//                                               for MS milliseconds, then asks the service (UDP, same
//                                               port) how many of them arrived
//
// Clients print one JSON line: {ms, bytes, saw}, {ms, connections, failed, saw}, {ms, transactions, saw}
// or {ms, sent, received, saw}.
"use strict";
const net = require("net");
const dgram = require("dgram");

const [mode, ...args] = process.argv.slice(2);

/**
 * 'b': bulk, the service reads to EOF then answers; 'c': the service answers and closes at once.
 * @param {number} port
 */
function serve(port) {
  const server = net.createServer({ allowHalfOpen: true }, (sock) => {
    const saw = `${sock.remoteAddress}\n`;
    let kind = "";
    sock.on("data", (chunk) => {
      if (kind) return;
      kind = String.fromCharCode(chunk[0]);
      // The service closes first for 'c', so TIME_WAIT lands on its listening side instead of
      // using up the client's ephemeral ports over thousands of connections.
      if (kind === "c") sock.end(saw);
      // 'r': the address once, then every byte straight back (Nagle off: one byte is a packet).
      if (kind === "r") {
        sock.setNoDelay(true);
        sock.write(saw);
        sock.on("data", (d) => sock.write(d));
        if (chunk.length > 1) sock.write(chunk.subarray(1));
      }
    });
    sock.on("end", () => {
      if (kind === "b") sock.end(saw);
    });
    sock.on("error", () => sock.destroy());
  });
  server.listen(port, "0.0.0.0");
  // UDP on the same port: datagrams counted per sender (address and port as they arrive); "?"
  // answers the sender's count and the address it came from (each measurement sends from a new port).
  const udp = dgram.createSocket("udp4");
  /** @type {Map<string, number>} */
  const counts = new Map();
  udp.on("message", (msg, from) => {
    const key = `${from.address}:${from.port}`;
    if (msg.length === 1 && msg[0] === 63) {
      udp.send(JSON.stringify({ received: counts.get(key) ?? 0, saw: from.address }), from.port, from.address);
    } else counts.set(key, (counts.get(key) ?? 0) + 1);
  });
  udp.bind(port, "0.0.0.0");
}

/** @param {string} host @param {number} port @param {number} bytes */
function bulk(host, port, bytes) {
  const chunk = Buffer.alloc(256 * 1024);
  const started = process.hrtime.bigint();
  const sock = net.connect({ host, port, allowHalfOpen: true });
  let left = bytes;
  let reply = "";
  const pump = () => {
    while (left > 0) {
      const n = Math.min(left, chunk.length);
      left -= n;
      if (!sock.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void sock.once("drain", pump);
    }
    sock.end();
  };
  sock.on("connect", () => {
    sock.write("b");
    pump();
  });
  sock.setEncoding("utf8").on("data", (s) => (reply += s));
  sock.on("end", () => {
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    process.stdout.write(JSON.stringify({ ms, bytes, saw: reply.trim() }) + "\n");
  });
  sock.on("error", fail);
}

/** @param {string} host @param {number} port @param {number} durationMs @param {number} parallel */
function connect(host, port, durationMs, parallel) {
  const started = process.hrtime.bigint();
  const elapsed = () => Number(process.hrtime.bigint() - started) / 1e6;
  let connections = 0;
  let failed = 0;
  let saw = "";
  let running = parallel;
  const one = () => {
    if (elapsed() >= durationMs) {
      if (--running === 0) process.stdout.write(JSON.stringify({ ms: elapsed(), connections, failed, saw }) + "\n");
      return;
    }
    let reply = "";
    const sock = net.connect({ host, port });
    sock.setTimeout(5000, () => sock.destroy(new Error("timeout")));
    sock.on("connect", () => sock.write("c"));
    sock.setEncoding("utf8").on("data", (s) => (reply += s));
    sock.on("close", (hadError) => {
      if (hadError || !reply) failed++;
      else {
        connections++;
        saw ||= reply.trim();
      }
      setImmediate(one);
    });
    sock.on("error", () => undefined);
  };
  for (let i = 0; i < parallel; i++) one();
}

/** @param {string} host @param {number} port @param {number} durationMs */
function rr(host, port, durationMs) {
  const sock = net.connect({ host, port });
  sock.setNoDelay(true);
  let saw = "";
  let started = 0n;
  let transactions = 0;
  const elapsed = () => Number(process.hrtime.bigint() - started) / 1e6;
  sock.on("connect", () => sock.write("r"));
  sock.on("data", (d) => {
    if (!saw) {
      const nl = d.indexOf(10);
      if (nl < 0) return;
      saw = d.subarray(0, nl).toString("utf8");
      started = process.hrtime.bigint();
      return void sock.write("x");
    }
    transactions += d.length;
    if (elapsed() >= durationMs) {
      process.stdout.write(JSON.stringify({ ms: elapsed(), transactions, saw }) + "\n");
      return void sock.destroy();
    }
    sock.write("x");
  });
  sock.on("error", fail);
}

/**
 * 64 outstanding sends at a time, each completion sending the next, so the sender runs as fast as
 * its socket takes datagrams without queueing without bound in this process.
 * @param {string} host @param {number} port @param {number} durationMs
 */
function udp(host, port, durationMs) {
  const sock = dgram.createSocket("udp4");
  const payload = Buffer.alloc(64, 120);
  const started = process.hrtime.bigint();
  const elapsed = () => Number(process.hrtime.bigint() - started) / 1e6;
  let sent = 0;
  let inFlight = 0;
  let ms = 0;
  const ask = (tries) => {
    if (tries === 0) return fail(new Error("the service never answered how many datagrams it got"));
    sock.send("?");
    setTimeout(() => ask(tries - 1), 1000);
  };
  sock.on("message", (m) => {
    const r = JSON.parse(m.toString("utf8"));
    process.stdout.write(JSON.stringify({ ms, sent, received: r.received, saw: r.saw }) + "\n");
    process.exit(0);
  });
  const next = () => {
    if (elapsed() >= durationMs) {
      if (--inFlight === 0) {
        ms = elapsed();
        // what is still in the tunnel arrives before the question does
        setTimeout(() => ask(5), 300);
      }
      return;
    }
    sent++;
    sock.send(payload, next);
  };
  sock.on("error", fail);
  sock.connect(port, host, () => {
    for (let i = 0; i < 64; i++, inFlight++) next();
  });
}

/** @param {Error} e */
function fail(e) {
  process.stderr.write(`${mode}: ${e.message}\n`);
  process.exit(1);
}

if (mode === "serve") serve(Number(args[0]));
else if (mode === "bulk") bulk(args[0], Number(args[1]), Number(args[2]));
else if (mode === "rr") rr(args[0], Number(args[1]), Number(args[2]));
else if (mode === "udp") udp(args[0], Number(args[1]), Number(args[2]));
else if (mode === "connect") connect(args[0], Number(args[1]), Number(args[2]), Number(args[3]));
else fail(new Error(`unknown mode ${mode}; see the comment at the top of bench/peer.js`));
