import * as net from "net";

export type ProbeOutcome = "connected" | "refused" | "timeout" | "unreachable" | "error";

export interface ProbeResult {
  outcome: ProbeOutcome;
  /** the OS error code (ECONNREFUSED, EHOSTUNREACH...) when the connection failed */
  errorCode?: string;
  /** this machine's address and port of the connection (before any NAT on the way) */
  localAddress?: string;
  localPort?: number;
  /** milliseconds from connect() to the outcome */
  ms: number;
}

export interface OpenProbe {
  result: ProbeResult;
  /** close the connection (idempotent) */
  close(): void;
}

const UNREACHABLE = new Set(["EHOSTUNREACH", "ENETUNREACH", "EHOSTDOWN", "ENETDOWN"]);

/**
 * Open a TCP connection to address:port and wait until it is established, refused (a reset is
 * also a reply) or timed out. An established connection stays open until close(), so the hosts'
 * conntrack entries are still live while they are read.
 */
export function probeTcp(address: string, port: number, timeoutMs: number): Promise<OpenProbe> {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = net.connect({ host: address, port });
    let done = false;
    const close = () => {
      socket.destroy();
    };
    const finish = (outcome: ProbeOutcome, errorCode?: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const result: ProbeResult = {
        outcome,
        ...(errorCode ? { errorCode } : {}),
        ...(socket.localAddress ? { localAddress: socket.localAddress } : {}),
        ...(socket.localPort ? { localPort: socket.localPort } : {}),
        ms: Date.now() - started,
      };
      if (outcome !== "connected") close();
      resolve({ result, close });
    };
    const timer = setTimeout(() => finish("timeout"), timeoutMs);
    socket.once("connect", () => finish("connected"));
    socket.on("error", (e: NodeJS.ErrnoException) => {
      if (done) return; // an error after connect (the service closed with a reset) changes nothing
      const code = e.code ?? "";
      finish(code === "ECONNREFUSED" || code === "ECONNRESET" ? "refused" : UNREACHABLE.has(code) ? "unreachable" : "error", code || e.message);
    });
    // the service may talk first or hang up; the probe only needs the handshake
    socket.on("data", () => undefined);
  });
}
