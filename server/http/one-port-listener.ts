// One port for every protocol. Cleartext: the first bytes of a connection tell HTTP/2
// prior knowledge ("PRI * HTTP/2.0" preface) from HTTP/1.1, and the socket goes to the
// matching Node server. TLS: ALPN picks h2 or http/1.1 on one secure server.
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";

export type RequestHandler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => void;

export interface ListenerOptions {
  host: string;
  port: number;
  tls?: { cert: string | Buffer; key: string | Buffer };
}

export interface OnePortListener {
  /** The bound port (useful with port 0). */
  port: number;
  /** Stops accepting, lets open requests finish for up to `graceMs`, then closes every connection. */
  close(graceMs: number): Promise<void>;
}

const H2_PREFACE_START = Buffer.from("PRI ");
const FIRST_BYTES_TIMEOUT_MS = 10_000;

export async function listenOnePort(handler: RequestHandler, options: ListenerOptions): Promise<OnePortListener> {
  const sessions = new Set<http2.Http2Session>();
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  };

  let front: net.Server;
  let h1: http.Server | null = null;
  let closing = false;
  const h1Open = new Set<http.ServerResponse>();
  if (options.tls) {
    const secure = http2.createSecureServer({ cert: options.tls.cert, key: options.tls.key, allowHTTP1: true }, handler);
    secure.on("session", (s) => trackSession(sessions, s));
    secure.on("connection", track);
    front = secure;
  } else {
    const h2 = http2.createServer({}, handler);
    h2.on("session", (s) => trackSession(sessions, s));
    h1 = http.createServer(closeAfterAbandonedBodies(handler as http.RequestListener));
    h1.keepAliveTimeout = 65_000;
    const h1Server = h1;
    // Sockets reach h1 by emit("connection"), never by h1.listen(), and Node starts its
    // connection tracking on "listening": without it closeIdleConnections() is a no-op (an
    // idle keep-alive client held shutdown for the whole grace period). Start it here.
    h1.emit("listening");
    // While closing, HTTP/1.1 responses say "Connection: close" (clients stop reusing the
    // connection), and a keep-alive connection is closed once its last response is done.
    h1.prependListener("request", (_req: http.IncomingMessage, res: http.ServerResponse) => {
      h1Open.add(res);
      if (closing) res.setHeader("connection", "close");
      res.once("close", () => {
        h1Open.delete(res);
        if (closing) setImmediate(() => h1Server.closeIdleConnections());
      });
    });
    front = net.createServer((socket) => {
      track(socket);
      // A connection that never says which protocol it speaks is dropped, not kept forever.
      socket.setTimeout(FIRST_BYTES_TIMEOUT_MS, () => socket.destroy());
      socket.once("data", (first: Buffer) => {
        socket.setTimeout(0);
        socket.pause();
        socket.unshift(first);
        const isH2 = first.subarray(0, H2_PREFACE_START.length).equals(H2_PREFACE_START.subarray(0, Math.min(first.length, H2_PREFACE_START.length)));
        (isH2 ? h2 : h1Server).emit("connection", socket);
        process.nextTick(() => socket.resume());
      });
      socket.on("error", () => socket.destroy());
    });
  }

  await new Promise<void>((resolve, reject) => {
    front.once("error", reject);
    front.listen(options.port, options.host, () => {
      front.off("error", reject);
      resolve();
    });
  });
  const address = front.address() as net.AddressInfo;

  return {
    port: address.port,
    async close(graceMs: number) {
      const closed = new Promise<void>((resolve) => front.close(() => resolve()));
      for (const s of sessions) s.close(); // GOAWAY: open streams finish, no new ones
      closing = true;
      for (const res of h1Open) if (!res.headersSent) res.setHeader("connection", "close");
      h1?.close(); // closes idle connections (and stops h1's timeout checks); front is what listens
      const timer = setTimeout(() => {
        for (const s of sessions) s.destroy();
        for (const s of sockets) s.destroy();
      }, graceMs);
      await closed;
      clearTimeout(timer);
    },
  };
}

function trackSession(sessions: Set<http2.Http2Session>, s: http2.Http2Session): void {
  sessions.add(s);
  s.once("close", () => sessions.delete(s));
  s.on("error", () => s.destroy());
}

/**
 * An HTTP/1.1 response can start before the request body was read whole (an oversized
 * request is refused at the limit). The rest of that body would then be parsed as the
 * next request on the connection and the client's next call would hang, so such a
 * response says "Connection: close" and the connection ends with it.
 */
function closeAfterAbandonedBodies(handler: http.RequestListener): http.RequestListener {
  return (req, res) => {
    const writeHead = res.writeHead;
    res.writeHead = function (this: http.ServerResponse, ...args: unknown[]) {
      if (!req.complete) this.shouldKeepAlive = false;
      return (writeHead as (...a: unknown[]) => http.ServerResponse).apply(this, args);
    } as typeof res.writeHead;
    handler(req, res);
  };
}
