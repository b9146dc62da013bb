// A JSON endpoint for generic_polling sources in fault tests: it serves items with ids
// 0..count-1 (the test grows `count`), so the number of source events is known exactly.
// All items carry a version `v` the test can bump (each bump changes every item: one
// `item.changed` event per item for a list whose size stays put). It answers
// If-None-Match with 304 while nothing changed, counts every request, and remembers the
// largest list and version it has handed out.
import http from "node:http";

export interface ItemsEndpoint {
  url: string;
  /** Items served now: ids 0..count-1. Only ever grows. */
  count: number;
  /** Requests answered (200 and 304). */
  readonly requests: number;
  /** The largest `count` a 200 response carried: what a poller may have seen. */
  readonly served: number;
  /** Version of every item now (starts at 0). */
  readonly version: number;
  /** The newest version a 200 response carried. */
  readonly servedVersion: number;
  /** Changes every item: version + 1. */
  bump(): void;
  close(): Promise<void>;
}

/** Starts the endpoint on 127.0.0.1; each item is `{"id": i, "v": version, "pad": <padBytes chars>}`. */
export function itemsEndpoint(padBytes = 64): Promise<ItemsEndpoint> {
  const pad = "x".repeat(padBytes);
  let count = 0;
  let version = 0;
  let requests = 0;
  let served = 0;
  let servedVersion = 0;
  // Built incrementally while only the list grows, so each item is stringified once.
  let parts: string[] = [];
  let partsVersion = 0;
  let body = { count: 0, version: 0, text: '{"items":[]}' };
  const bodyFor = (n: number, v: number) => {
    if (body.count === n && body.version === v) return body.text;
    if (partsVersion !== v) {
      parts = [];
      partsVersion = v;
    }
    while (parts.length < n) parts.push(JSON.stringify({ id: parts.length, v, pad }));
    body = { count: n, version: v, text: `{"items":[${parts.slice(0, n).join(",")}]}` };
    return body.text;
  };
  const server = http.createServer((req, res) => {
    requests++;
    const n = count;
    const v = version;
    const etag = `"n${n}v${v}"`;
    if (req.headers["if-none-match"] === etag) {
      res.writeHead(304, { etag });
      res.end();
      return;
    }
    const text = bodyFor(n, v);
    served = Math.max(served, n);
    servedVersion = Math.max(servedVersion, v);
    res.writeHead(200, { "content-type": "application/json", etag });
    res.end(text);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      resolve({
        url: `http://127.0.0.1:${port}/items`,
        get count() {
          return count;
        },
        set count(n: number) {
          if (!Number.isSafeInteger(n) || n < count) throw new RangeError(`items only grow: ${count} → ${n}`);
          count = n;
        },
        get requests() {
          return requests;
        },
        get served() {
          return served;
        },
        get version() {
          return version;
        },
        get servedVersion() {
          return servedVersion;
        },
        bump() {
          version++;
        },
        close: () =>
          new Promise<void>((r) => {
            server.closeAllConnections();
            server.close(() => r());
          }),
      });
    });
  });
}

export interface Producer {
  /** Resolves once the endpoint serves `target` items. */
  done: Promise<void>;
  /** Stops adding (the count stays where it is). */
  stop(): void;
}

/** Grows the endpoint by `step` items every `everyMs` until it serves `target`. */
export function produce(endpoint: ItemsEndpoint, target: number, step: number, everyMs: number): Producer {
  let timer: NodeJS.Timeout | undefined;
  let finish!: () => void;
  const done = new Promise<void>((r) => (finish = r));
  const tick = () => {
    endpoint.count = Math.min(target, endpoint.count + step);
    if (endpoint.count >= target) {
      clearInterval(timer);
      finish();
    }
  };
  timer = setInterval(tick, everyMs);
  tick();
  return {
    done,
    stop() {
      clearInterval(timer);
    },
  };
}

/**
 * Bumps the endpoint's version each time the current one has been served, until it
 * reaches `target`: every version is seen by the poller, so each item yields exactly
 * one event per version (created at 0, changed after).
 */
export function produceVersions(endpoint: ItemsEndpoint, target: number): Producer {
  let finish!: () => void;
  const done = new Promise<void>((r) => (finish = r));
  const timer = setInterval(() => {
    if (endpoint.version >= target) {
      clearInterval(timer);
      finish();
    } else if (endpoint.servedVersion === endpoint.version) {
      endpoint.bump();
    }
  }, 10);
  return {
    done,
    stop() {
      clearInterval(timer);
    },
  };
}
