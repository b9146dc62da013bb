// The generic_polling source against a real HTTP server on 127.0.0.1 whose answers each
// test controls, with an in-memory sink (emit resolves at once) and the test calling
// acknowledge() as the agent would. Nothing waits on a fixed sleep for something to
// happen: conditions are awaited; short sleeps only show that something does NOT happen.
import { afterEach, describe, expect, it } from "vitest";
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { z } from "zod";
import type { SourceContext } from "../source-factory.js";
import type { SourceEvent, SourceSink } from "../source.js";
import genericPolling, { GenericPollingSource, PollProblemError, type GenericPollingConfig } from "./index.js";
import type { GenericPollingConfigInput } from "./config.js";
import { nextDelayMs } from "./backoff.js";
import { STATE_FILE } from "./poll-state.js";
import { PendingPolls } from "./pending-polls.js";
import { initialState } from "./poll-state.js";
import { waitFor } from "../../../test/support/wait-for.js";

// ---------------------------------------------------------------------------------------
// Test harness

interface Reply {
  status: number;
  headers?: Record<string, string>;
  body?: string;
  /** Sent as chunks without Content-Length. */
  chunks?: string[];
  /** Never answered (until the server closes). */
  hang?: boolean;
}

interface SeenRequest {
  url: string;
  headers: IncomingHttpHeaders;
  at: number;
}

class Endpoint {
  readonly requests: SeenRequest[] = [];
  reply: (req: IncomingMessage) => Reply = () => ({ status: 200, body: "[]" });
  url = "";
  private readonly server: Server = createServer((req, res) => {
    this.requests.push({ url: req.url ?? "", headers: req.headers, at: performance.now() });
    const r = this.reply(req);
    if (r.hang) return;
    res.writeHead(r.status, r.headers ?? {});
    if (r.chunks) {
      for (const c of r.chunks) res.write(c);
      res.end();
    } else {
      res.end(r.body ?? "");
    }
  });

  async listen(path = "/items"): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}${path}`;
    return this;
  }

  /** Answers `body` as JSON with `etag`, and 304 to a request carrying that ETag. */
  serveJson(body: unknown, etag?: string, extra: Record<string, string> = {}): void {
    this.reply = (req) => {
      if (etag !== undefined && req.headers["if-none-match"] === etag) return { status: 304, headers: { etag } };
      const headers: Record<string, string> = { "content-type": "application/json", ...extra };
      if (etag !== undefined) headers.etag = etag;
      return { status: 200, headers, body: JSON.stringify(body) };
    };
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

class MemorySink implements SourceSink {
  readonly events: SourceEvent[] = [];
  readonly gaps: string[] = [];
  async emit(events: SourceEvent[]): Promise<void> {
    this.events.push(...events);
  }
  async gap(reason: string): Promise<void> {
    this.gaps.push(reason);
  }
}

interface LogLine {
  level: "info" | "warn" | "error";
  obj: Record<string, unknown>;
  msg: string;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function endpoint(path?: string): Promise<Endpoint> {
  const e = await new Endpoint().listen(path);
  cleanups.push(() => e.close());
  return e;
}

function stateDir(): string {
  const d = mkdtempSync(join(tmpdir(), "generic-polling-"));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

function context(dir: string, logs: LogLine[] = []): SourceContext {
  const line = (level: LogLine["level"]) => (obj: object, msg: string) => void logs.push({ level, obj: obj as Record<string, unknown>, msg });
  return { name: "poller", stateDir: dir, log: { info: line("info"), warn: line("warn"), error: line("error") } };
}

function parseConfig(input: GenericPollingConfigInput): GenericPollingConfig {
  return genericPolling.configSchema.parse(input);
}

interface Harness {
  source: GenericPollingSource;
  sink: MemorySink;
  logs: LogLine[];
}

/** A source through the factory (or directly, for a fixed jitter), stopped after the test. */
function makeSource(input: GenericPollingConfigInput, dir = stateDir(), random?: () => number): Harness {
  const logs: LogLine[] = [];
  const config = parseConfig(input);
  const source = random
    ? new GenericPollingSource(config, context(dir, logs), { random })
    : (genericPolling.create(config, context(dir, logs)) as GenericPollingSource);
  cleanups.push(() => source.stop());
  return { source, sink: new MemorySink(), logs };
}


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Acknowledges every event received so far, in order, as the agent does once they are durable. */
async function ackAll(h: Harness): Promise<void> {
  for (const e of h.sink.events) await h.source.acknowledge(e.position);
}

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");
const text = (e: SourceEvent) => new TextDecoder().decode(e.payload);
const brief = (e: SourceEvent) => ({ kind: e.kind, subject: e.subject, position: e.position, payload: text(e) });

const ORDERS = [
  { id: "a", total: 10, status: "open" },
  { total: 20, id: "b", status: "open" },
];

// ---------------------------------------------------------------------------------------

describe("generic_polling: items and conditional requests", () => {
  it("first poll emits every item in response order, keyed by id, with its canonical JSON as payload", async () => {
    const server = await endpoint();
    server.serveJson(ORDERS, '"v1"');
    const h = makeSource({ url: `${server.url}?token=secret`, interval_ms: 100, id_field: "id" });
    await h.source.start(h.sink);
    await waitFor("two events", () => h.sink.events.length === 2);

    const canonicalB = '{"id":"b","status":"open","total":20}';
    expect(h.sink.events.map(brief)).toEqual([
      { kind: "item.created", subject: `${server.url}#a`, position: `1:a@${sha256('{"id":"a","status":"open","total":10}')}`, payload: '{"id":"a","status":"open","total":10}' },
      { kind: "item.created", subject: `${server.url}#b`, position: `1:b@${sha256(canonicalB)}`, payload: canonicalB },
    ]);
    for (const e of h.sink.events) {
      expect(e.payloadType).toBe("application/json");
      expect(e.occurredAt).toBeUndefined();
    }
    // The query string (a token, here) is sent but never put in subjects.
    expect(server.requests[0]!.url).toBe("/items?token=secret");
    expect(server.requests[0]!.headers["if-none-match"]).toBeUndefined();
  });

  it("sends If-None-Match (and If-Modified-Since) with the last validators; a 304 emits nothing", async () => {
    const server = await endpoint();
    const lastModified = "Wed, 21 Oct 2015 07:28:00 GMT";
    server.serveJson(ORDERS, '"v1"', { "last-modified": lastModified });
    const h = makeSource({ url: server.url, interval_ms: 100, id_field: "id", headers: { Authorization: "Bearer t0ken" } });
    await h.source.start(h.sink);
    await waitFor("three polls", () => server.requests.length >= 3);

    const second = server.requests[1]!.headers;
    expect(second["if-none-match"]).toBe('"v1"');
    expect(second["if-modified-since"]).toBe(lastModified);
    expect(second.authorization).toBe("Bearer t0ken");
    expect(h.sink.events).toHaveLength(2);
  });

  it("emits a changed item once as item.changed and a new one as item.created; removals emit nothing", async () => {
    const server = await endpoint();
    server.serveJson(ORDERS, '"v1"');
    const h = makeSource({ url: server.url, interval_ms: 100, id_field: "id", kind_prefix: "order", subject_template: "orders/{id}" });
    await h.source.start(h.sink);
    await waitFor("first poll", () => h.sink.events.length === 2);
    await ackAll(h);

    // b changes (keys reordered too: only content counts), c is new, a is gone.
    server.serveJson([{ status: "paid", total: 20, id: "b" }, { id: "c", total: 5, status: "open" }], '"v2"');
    await waitFor("second poll's events", () => h.sink.events.length === 4);
    const seen = server.requests.length;
    await waitFor("two more polls", () => server.requests.length >= seen + 2);

    expect(h.sink.events.slice(2).map((e) => [e.kind, e.subject])).toEqual([
      ["order.changed", "orders/b"],
      ["order.created", "orders/c"],
    ]);
    expect(text(h.sink.events[2]!)).toBe('{"id":"b","status":"paid","total":20}');
    expect(h.sink.events[2]!.position).toMatch(/^2:b@[0-9a-f]{64}$/);
    expect(h.sink.events).toHaveLength(4);
  });

  it("does not report the same change twice while it waits for acknowledgement", async () => {
    const server = await endpoint();
    server.serveJson(ORDERS); // no ETag: every poll is a full 200
    const h = makeSource({ url: server.url, interval_ms: 100, id_field: "id" });
    await h.source.start(h.sink);
    await waitFor("four polls", () => server.requests.length >= 4);
    expect(h.sink.events).toHaveLength(2);
  });

  it("without id_field, tells items apart by content digest and emits new contents as item.seen", async () => {
    const server = await endpoint();
    server.serveJson({ items: [{ x: 1 }, { x: 2 }, { x: 1 }] }, '"v1"');
    const h = makeSource({ url: server.url, interval_ms: 100 });
    await h.source.start(h.sink);
    await waitFor("two distinct items", () => h.sink.events.length === 2);
    expect(h.sink.events.map(brief)).toEqual([
      { kind: "item.seen", subject: `${server.url}#${sha256('{"x":1}')}`, position: `1:@${sha256('{"x":1}')}`, payload: '{"x":1}' },
      { kind: "item.seen", subject: `${server.url}#${sha256('{"x":2}')}`, position: `1:@${sha256('{"x":2}')}`, payload: '{"x":2}' },
    ]);

    server.serveJson({ items: [{ x: 2 }, { x: 3 }] }, '"v2"');
    await waitFor("the new content", () => h.sink.events.length === 3);
    expect(text(h.sink.events[2]!)).toBe('{"x":3}');
    expect(h.sink.events[2]!.position).toBe(`2:@${sha256('{"x":3}')}`);
  });

  it("finds items at items_path and ids at a nested id_field", async () => {
    const server = await endpoint();
    server.serveJson({ data: { orders: [{ meta: { key: 42 }, v: 1 }, { meta: {}, v: 2 }] } });
    const h = makeSource({ url: server.url, interval_ms: 100, items_path: "data.orders", id_field: "meta.key" });
    await h.source.start(h.sink);
    await waitFor("two events", () => h.sink.events.length === 2);
    expect(h.sink.events.map((e) => e.kind)).toEqual(["item.created", "item.seen"]);
    expect(h.sink.events[0]!.position).toMatch(/^1:42@/);
    expect(h.logs.some((l) => l.level === "warn" && l.obj.without_id === 1)).toBe(true);
  });

  it("an item that goes back to an earlier version is recorded again, under a new position", async () => {
    const server = await endpoint();
    server.serveJson([{ id: "a", s: "open" }], '"1"');
    const h = makeSource({ url: server.url, interval_ms: 100, id_field: "id" });
    await h.source.start(h.sink);
    await waitFor("open", () => h.sink.events.length === 1);
    server.serveJson([{ id: "a", s: "closed" }], '"2"');
    await waitFor("closed", () => h.sink.events.length === 2);
    server.serveJson([{ id: "a", s: "open" }], '"3"');
    await waitFor("open again", () => h.sink.events.length === 3);
    const positions = h.sink.events.map((e) => e.position);
    expect(new Set(positions).size).toBe(3);
    expect(text(h.sink.events[2]!)).toBe(text(h.sink.events[0]!));
  });
});

describe("generic_polling: state across restarts", () => {
  it("after acknowledge, a restart with the same stateDir re-emits nothing and revalidates with the saved ETag", async () => {
    const server = await endpoint();
    server.serveJson(ORDERS, '"v1"');
    const dir = stateDir();
    const first = makeSource({ url: server.url, interval_ms: 100, id_field: "id" }, dir);
    await first.source.start(first.sink);
    await waitFor("first run's events", () => first.sink.events.length === 2);
    await ackAll(first);
    await first.source.stop();

    const saved = JSON.parse(readFileSync(join(dir, STATE_FILE), "utf8"));
    expect(saved).toMatchObject({ version: 1, generation: 1, etag: '"v1"' });
    expect(saved.items.map((p: [string, string]) => p[0])).toEqual(["a", "b"]);
    expect(JSON.stringify(saved)).not.toContain("127.0.0.1"); // the url (it may hold a token) is kept as a digest

    const before = server.requests.length;
    const second = makeSource({ url: server.url, interval_ms: 100, id_field: "id" }, dir);
    await second.source.start(second.sink);
    await waitFor("three polls after restart", () => server.requests.length >= before + 3);
    expect(server.requests[before]!.headers["if-none-match"]).toBe('"v1"');
    expect(second.sink.events).toEqual([]);
  });

  it("a restart without acknowledge re-emits the same events with the same positions (the idempotency key dedups them)", async () => {
    const server = await endpoint();
    server.serveJson(ORDERS, '"v1"');
    const dir = stateDir();
    const first = makeSource({ url: server.url, interval_ms: 100, id_field: "id" }, dir);
    await first.source.start(first.sink);
    await waitFor("first run's events", () => first.sink.events.length === 2);
    // Only the first event of the poll is durable: the poll is not complete, nothing is saved.
    await first.source.acknowledge(first.sink.events[0]!.position);
    await first.source.stop();

    const before = server.requests.length;
    const second = makeSource({ url: server.url, interval_ms: 100, id_field: "id" }, dir);
    await second.source.start(second.sink, first.sink.events[0]!.position);
    await waitFor("re-emitted events", () => second.sink.events.length === 2);
    // The ETag was not remembered without its items: the first request is unconditional.
    expect(server.requests[before]!.headers["if-none-match"]).toBeUndefined();
    expect(second.sink.events).toEqual(first.sink.events);
  });

  it("keeps the acknowledged poll's state while a later poll is still unacknowledged", async () => {
    const server = await endpoint();
    server.serveJson([{ id: "a", v: 1 }], '"1"');
    const dir = stateDir();
    const first = makeSource({ url: server.url, interval_ms: 100, id_field: "id" }, dir);
    await first.source.start(first.sink);
    await waitFor("poll 1", () => first.sink.events.length === 1);
    await first.source.acknowledge(first.sink.events[0]!.position);
    server.serveJson([{ id: "a", v: 2 }], '"2"');
    await waitFor("poll 2", () => first.sink.events.length === 2);
    await first.source.stop(); // poll 2 never acknowledged

    const second = makeSource({ url: server.url, interval_ms: 100, id_field: "id" }, dir);
    await second.source.start(second.sink, first.sink.events[0]!.position);
    await waitFor("poll 2 again", () => second.sink.events.length === 1);
    expect(second.sink.events[0]).toEqual(first.sink.events[1]);
  });

  it("forgets ids that leave the response, so the state stays as large as one response", async () => {
    const server = await endpoint();
    server.serveJson([{ id: "a" }, { id: "b" }], '"1"');
    const dir = stateDir();
    const h = makeSource({ url: server.url, interval_ms: 100, id_field: "id" }, dir);
    await h.source.start(h.sink);
    await waitFor("a and b", () => h.sink.events.length === 2);
    await ackAll(h);
    server.serveJson([{ id: "b" }], '"2"');
    await waitFor("state without a", () => JSON.parse(readFileSync(join(dir, STATE_FILE), "utf8")).etag === '"2"');
    expect(JSON.parse(readFileSync(join(dir, STATE_FILE), "utf8")).items.map((p: string[]) => p[0])).toEqual(["b"]);
    server.serveJson([{ id: "a" }, { id: "b" }], '"3"');
    await waitFor("a again", () => h.sink.events.length === 3);
    expect(h.sink.events[2]!.kind).toBe("item.created");
  });

  it("refuses to start on a damaged state file, naming it", async () => {
    const server = await endpoint();
    const dir = stateDir();
    writeFileSync(join(dir, STATE_FILE), "{not json");
    const h = makeSource({ url: server.url, interval_ms: 100 }, dir);
    await expect(h.source.start(h.sink)).rejects.toThrow(STATE_FILE);
  });
});

describe("generic_polling: errors", () => {
  it("backs off exponentially on server errors and polls at the interval again after a success", async () => {
    const server = await endpoint();
    server.reply = () => ({ status: 503, body: "down" });
    // Jitter fixed at its low end: waits of 100, 200, 400, 800 ms after failures 1-4.
    const h = makeSource({ url: server.url, interval_ms: 100, max_backoff_ms: 10_000 }, stateDir(), () => 0);
    await h.source.start(h.sink); // 5xx at start is passing trouble, not a configuration error
    await waitFor("four failing polls", () => server.requests.length >= 4);
    server.serveJson([{ x: 1 }]);
    await waitFor("recovery and two more polls", () => server.requests.length >= 7);

    const gaps = server.requests.slice(1).map((r, i) => r.at - server.requests[i]!.at);
    // Timers never fire early (a millisecond of rounding aside); late is possible under load.
    expect(gaps[0]).toBeGreaterThanOrEqual(95);
    expect(gaps[1]).toBeGreaterThanOrEqual(195);
    expect(gaps[2]).toBeGreaterThanOrEqual(395);
    expect(gaps[2]).toBeGreaterThan(gaps[0]!);
    // Request 5 succeeded: the next one comes after interval_ms, not after the backoff.
    expect(gaps[4]).toBeLessThan(gaps[3]!);
    expect(h.sink.events).toHaveLength(1);
    const warnings = h.logs.filter((l) => l.obj.problem === "server_error");
    expect(warnings.map((l) => l.obj.retry_in_ms).slice(0, 3)).toEqual([100, 200, 400]);
    expect(warnings[0]!.msg).toContain(server.url);
    expect(h.logs.some((l) => l.msg.includes("works again"))).toBe(true);
  });

  it("jitters within [cap/2, cap], never below the interval, capped by max_backoff_ms, honouring Retry-After", () => {
    const opts = { intervalMs: 1000, maxBackoffMs: 30_000 };
    expect(nextDelayMs(0, opts)).toBe(1000);
    expect(nextDelayMs(1, { ...opts, random: () => 0 })).toBe(1000);
    expect(nextDelayMs(1, { ...opts, random: () => 0.999999 })).toBe(2000);
    expect(nextDelayMs(3, { ...opts, random: () => 0.5 })).toBe(6000);
    expect(nextDelayMs(50, { ...opts, random: () => 0.999999 })).toBe(30_000);
    expect(nextDelayMs(50, { ...opts, random: () => 0 })).toBe(15_000);
    expect(nextDelayMs(1, { ...opts, random: () => 0 }, 20_000)).toBe(20_000);
    expect(nextDelayMs(1, { ...opts, random: () => 0 }, 999_999)).toBe(30_000);
    for (let n = 1; n < 12; n++) {
      const d = nextDelayMs(n, opts);
      expect(d).toBeGreaterThanOrEqual(1000);
      expect(d).toBeLessThanOrEqual(30_000);
    }
  });

  it("start() rejects on 404 / 401 / 403, naming the URL and the likely fix", async () => {
    const server = await endpoint("/nowhere");
    for (const [status, hint] of [
      [404, "check url"],
      [401, "credentials"],
      [403, "credentials"],
    ] as const) {
      server.reply = () => ({ status });
      const h = makeSource({ url: server.url, interval_ms: 100 });
      const err = await h.source.start(h.sink).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(PollProblemError);
      expect((err as Error).message).toContain(server.url);
      expect((err as Error).message).toContain(String(status));
      expect((err as Error).message).toContain(hint);
      expect((err as Error).message).toContain('"poller"');
    }
  });

  it("start() rejects when the URL is unreachable, naming it", async () => {
    const server = await endpoint();
    const url = server.url;
    await server.close(); // nothing listens on that port any more
    const h = makeSource({ url, interval_ms: 100 });
    await expect(h.source.start(h.sink)).rejects.toThrow(new RegExp(`${url.replace(/[.]/g, "\\.")}.*ECONNREFUSED`));
  });

  it("start() rejects when the request times out", async () => {
    const server = await endpoint();
    server.reply = () => ({ status: 200, hang: true });
    const h = makeSource({ url: server.url, interval_ms: 100, timeout_ms: 200 });
    await expect(h.source.start(h.sink)).rejects.toThrow(/within 200 ms/);
  });

  it("reports an oversize response (declared or chunked) and a non-JSON one: at start as a refusal, later as a logged error", async () => {
    const server = await endpoint();
    const big = JSON.stringify(Array.from({ length: 100 }, (_, i) => ({ i })));
    server.reply = () => ({ status: 200, body: big });
    let h = makeSource({ url: server.url, interval_ms: 100, max_response_bytes: 200 });
    await expect(h.source.start(h.sink)).rejects.toThrow(/max_response_bytes \(200\)/);

    server.reply = () => ({ status: 200, chunks: [big.slice(0, 150), big.slice(150)] });
    h = makeSource({ url: server.url, interval_ms: 100, max_response_bytes: 200 });
    await expect(h.source.start(h.sink)).rejects.toThrow(/max_response_bytes/);

    server.reply = () => ({ status: 200, headers: { "content-type": "text/html" }, body: "<html>login</html>" });
    h = makeSource({ url: server.url, interval_ms: 100 });
    await expect(h.source.start(h.sink)).rejects.toThrow(/not JSON.*text\/html/);

    server.serveJson({ results: [] });
    h = makeSource({ url: server.url, interval_ms: 100 });
    await expect(h.source.start(h.sink)).rejects.toThrow(/"items" is missing/);

    // Once running, the same problems are logged and backed off; polling goes on.
    server.serveJson([{ x: 1 }]);
    h = makeSource({ url: server.url, interval_ms: 100, max_response_bytes: 200 });
    await h.source.start(h.sink);
    server.reply = () => ({ status: 200, body: big });
    await waitFor("too_large logged", () => h.logs.some((l) => l.obj.problem === "too_large"));
    server.reply = () => ({ status: 200, body: "nope" });
    await waitFor("not_json logged", () => h.logs.some((l) => l.obj.problem === "not_json"));
    server.reply = () => ({ status: 400 });
    await waitFor("400 logged", () => h.logs.some((l) => l.obj.problem === "refused"));
    const refused = h.logs.find((l) => l.obj.problem === "refused")!;
    expect(refused.level).toBe("error");
    expect(refused.msg).toContain("configuration problem");
    server.serveJson([{ x: 1 }, { x: 2 }]);
    await waitFor("recovered", () => h.sink.events.length === 2);
  });
});

describe("generic_polling: flow control", () => {
  it("pause() stops polling and resume() starts again", async () => {
    const server = await endpoint();
    server.serveJson([{ x: 1 }], '"1"');
    const h = makeSource({ url: server.url, interval_ms: 100 });
    await h.source.start(h.sink);
    await waitFor("two polls", () => server.requests.length >= 2);
    h.source.pause();
    const atPause = server.requests.length;
    await sleep(250); // a poll already under way may still land
    const settled = server.requests.length;
    expect(settled).toBeLessThanOrEqual(atPause + 1);
    await sleep(400); // four intervals: nothing while paused
    expect(server.requests.length).toBe(settled);
    h.source.resume();
    await waitFor("polls after resume", () => server.requests.length >= settled + 2);
  });

  it("stop() aborts an in-flight request and returns without waiting for its timeout", async () => {
    const server = await endpoint();
    server.serveJson([{ x: 1 }]);
    const h = makeSource({ url: server.url, interval_ms: 100, timeout_ms: 30_000 });
    await h.source.start(h.sink);
    server.reply = () => ({ status: 200, hang: true });
    await waitFor("a hanging request", () => server.requests.length >= 2);
    const t0 = performance.now();
    await h.source.stop();
    expect(performance.now() - t0).toBeLessThan(2000);
    const after = server.requests.length;
    await sleep(300);
    expect(server.requests.length).toBe(after);
  });

  it("does not poll ahead of an emit that has not resolved, and stop() does not hang on it", async () => {
    const server = await endpoint();
    server.serveJson([{ x: 1 }]);
    const logs: LogLine[] = [];
    const source = genericPolling.create(parseConfig({ url: server.url, interval_ms: 100 }), context(stateDir(), logs));
    let emits = 0;
    const stuck: SourceSink = { emit: () => (emits++, new Promise<void>(() => undefined)), gap: async () => undefined };
    await source.start(stuck);
    await waitFor("the first emit", () => emits === 1);
    await sleep(300);
    expect(server.requests.length).toBe(1);
    await source.stop();
  });
});

describe("generic_polling: configuration", () => {
  const schema = genericPolling.configSchema;
  const problem = (input: unknown) => {
    const r = schema.safeParse(input);
    expect(r.success).toBe(false);
    return r.success ? "" : z.prettifyError(r.error);
  };

  it("applies the documented defaults", () => {
    expect(schema.parse({ url: "https://api.example.com/orders" })).toEqual({
      url: "https://api.example.com/orders",
      interval_ms: 60_000,
      kind_prefix: "item",
      timeout_ms: 10_000,
      max_backoff_ms: 300_000,
      max_response_bytes: 10 * 1024 * 1024,
    });
  });

  it("names the field of every mistake", () => {
    expect(problem({})).toMatch(/url/);
    expect(problem({ url: "ftp://example.com/x" })).toMatch(/http:\/\/ or https:\/\/[\s\S]*at url/);
    expect(problem({ url: "https://u:p@example.com/" })).toMatch(/headers[\s\S]*at url/);
    expect(problem({ url: "not a url" })).toMatch(/at url/);
    expect(problem({ url: "http://h/", interval_ms: 50 })).toMatch(/at interval_ms/);
    expect(problem({ url: "http://h/", intervall_ms: 500 })).toMatch(/intervall_ms/);
    expect(problem({ url: "http://h/", headers: { "bad name": "x" } })).toMatch(/at headers\["bad name"\]/);
    expect(problem({ url: "http://h/", headers: { "If-None-Match": "x" } })).toMatch(/at headers\.If-None-Match|at headers\["If-None-Match"\]/);
    expect(problem({ url: "http://h/", id_field: "a..b" })).toMatch(/at id_field/);
    expect(problem({ url: "http://h/", items_path: "" })).toMatch(/at items_path/);
    expect(problem({ url: "http://h/", subject_template: "orders/{name}" })).toMatch(/\{name\}[\s\S]*at subject_template/);
    expect(problem({ url: "http://h/", kind_prefix: "has space" })).toMatch(/at kind_prefix/);
    expect(problem({ url: "http://h/", max_response_bytes: 0 })).toMatch(/at max_response_bytes/);
  });
});

describe("generic_polling: acknowledgement bookkeeping", () => {
  it("commits a poll only when its last position is acknowledged, and quiet polls behind it with it", () => {
    const polls = new PendingPolls(initialState());
    const s1 = { ...initialState(), generation: 1, etag: "1" };
    const s2 = { ...initialState(), generation: 1, etag: "2" };
    const s3 = { ...initialState(), generation: 2, etag: "3" };
    polls.add({ generation: 1, lastPosition: "1:b@x", state: s1 });
    polls.add({ generation: 1, lastPosition: undefined, state: s2 });
    polls.add({ generation: 2, lastPosition: "2:c@y", state: s3 });
    expect(polls.working).toBe(s3);
    expect(polls.acknowledge("1:a@w")).toBeUndefined();
    expect(polls.acknowledge("someone-else's")).toBeUndefined();
    expect(polls.acknowledge("1:b@x")).toBe(s2);
    expect(polls.acknowledge("3:z@z")).toBe(s3); // a later position covers everything before it
    expect(polls.size).toBe(0);
  });
});
