// Operations (SPEC §3): /healthz, /readyz, /metrics, structured JSON logs and graceful
// shutdown, against real servers (in-process and spawned) on the run's Postgres.
import { randomBytes } from "node:crypto";
import net from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, onTestFinished, test } from "vitest";
import pg from "pg";
import { Code, ConnectError } from "@connectrpc/connect";
import type { RunningServer } from "../server/ledger-server.js";
import { PostgresDatabase } from "../server/storage/postgres-database.js";
import { verifyRange } from "../server/verify/verify-range.js";
import { KeyRing } from "../server/checkpoints/key-ring.js";
import { originOf } from "../server/checkpoints/checkpointer.js";
import { createLedgerClient, type LedgerClient } from "../clients/node/ledger-client.js";
import { adminUrl } from "./setup/postgres.js";
import { createKey, databaseUrl, keysDir, spawnServer, startTestServer, superuser, uniqueChain, type ServerProcess } from "./support/test-server.js";

/** Polls `check` until it stops throwing: for server-side effects no client event announces. */
async function eventually<T>(check: () => Promise<T>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

/** One sample of a Prometheus text exposition; labels must match exactly when given. */
function sample(text: string, name: string, labels = ""): number {
  const prefix = labels ? `${name}{${labels}} ` : `${name} `;
  const line = text.split("\n").find((l) => l.startsWith(prefix));
  if (line === undefined) throw new Error(`metric ${prefix.trim()} not exposed`);
  return Number(line.slice(prefix.length));
}

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Parses complete HTTP/1.1 responses (interim 1xx included) off a raw byte stream; the rest stays unparsed. */
function parseResponses(raw: string): RawResponse[] {
  const out: RawResponse[] = [];
  let rest = raw;
  for (;;) {
    const headEnd = rest.indexOf("\r\n\r\n");
    if (headEnd < 0) return out;
    const [statusLine, ...headerLines] = rest.slice(0, headEnd).split("\r\n");
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine!)![1]);
    const headers = Object.fromEntries(headerLines.map((l) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]));
    let body = "";
    let next = headEnd + 4;
    if (status >= 200 && headers["transfer-encoding"] === "chunked") {
      for (;;) {
        const sizeEnd = rest.indexOf("\r\n", next);
        if (sizeEnd < 0) return out;
        const size = parseInt(rest.slice(next, sizeEnd), 16);
        if (rest.length < sizeEnd + 2 + size + 2) return out;
        body += rest.slice(sizeEnd + 2, sizeEnd + 2 + size);
        next = sizeEnd + 2 + size + 2;
        if (size === 0) break;
      }
    } else if (status >= 200) {
      const length = Number(headers["content-length"] ?? 0);
      if (rest.length < next + length) return out;
      body = rest.slice(next, next + length);
      next += length;
    }
    out.push({ status, headers, body });
    rest = rest.slice(next);
  }
}

/** Resolves once the child process has printed a line matching `pattern`. */
function waitForOutput(server: ServerProcess, pattern: RegExp): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (pattern.test(server.output())) {
        server.child.stdout!.off("data", check);
        server.child.off("exit", onExit);
        resolve();
      }
    };
    const onExit = () => reject(new Error(`process exited before printing ${pattern}:\n${server.output()}`));
    server.child.stdout!.on("data", check);
    server.child.once("exit", onExit);
    check();
  });
}

describe("health, readiness and metrics (in-process server)", () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(async () => {
    await server?.close();
  });

  test("/healthz answers 200", async () => {
    const res = await fetch(`${server.url}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ok" });
  });

  test("/readyz answers 200 while the database is reachable", async () => {
    const res = await fetch(`${server.url}/readyz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: "ready", database: "reachable", shuttingDown: false });
  });

  test("unknown ops paths are 404 and non-GET methods 405", async () => {
    expect((await fetch(`${server.url}/nope`)).status).toBe(404);
    expect((await fetch(`${server.url}/healthz`, { method: "POST" })).status).toBe(405);
  });

  test("/metrics exposes the ledger metrics, and they move with appends", async () => {
    const scrape = async () => {
      const res = await fetch(`${server.url}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
      return res.text();
    };
    const before = await scrape();
    for (const name of ["audit_ledger_appended_entries_total", "audit_ledger_commit_batch_events", "audit_ledger_commit_seconds", "audit_ledger_tail_subscribers"]) {
      expect(before).toContain(`# TYPE ${name} `);
    }

    const client = createLedgerClient({ baseUrl: server.url, apiKey: await createKey(uniqueChain("metrics")), protocol: "grpc" });
    await Promise.all([1, 2, 3].map((i) => client.ledger.append({ event: { kind: "metrics.single", idempotencyKey: `k${i}` } })));
    await client.ledger.appendBatch({ events: Array.from({ length: 5 }, () => ({ kind: "metrics.batch" })) });
    const after = await scrape();

    const delta = (name: string, text = after) => sample(text, name) - sample(before, name);
    expect(delta("audit_ledger_appended_entries_total")).toBe(8);
    const commits = delta("audit_ledger_commit_batch_events_count");
    expect(commits).toBeGreaterThanOrEqual(2); // the batch commits apart from the singles that went before it
    expect(commits).toBeLessThanOrEqual(4);
    expect(delta("audit_ledger_commit_batch_events_sum")).toBe(8);
    expect(delta("audit_ledger_commit_seconds_count")).toBe(commits);
    expect(delta("audit_ledger_commit_seconds_sum")).toBeGreaterThan(0);
    // A batch of 5 lands in the "le=5" bucket and above, never in "le=2".
    expect(sample(after, "audit_ledger_commit_batch_events_bucket", 'le="5"') - sample(before, "audit_ledger_commit_batch_events_bucket", 'le="5"')).toBe(commits);

    // A repeated idempotency key is answered from the ledger: no new entry is counted.
    const repeat = await client.ledger.append({ event: { kind: "metrics.single", idempotencyKey: "k1" } });
    expect(repeat.deduplicated).toBe(true);
    const afterRepeat = await scrape();
    expect(sample(afterRepeat, "audit_ledger_appended_entries_total")).toBe(sample(after, "audit_ledger_appended_entries_total"));
    expect(sample(afterRepeat, "audit_ledger_deduplicated_events_total") - sample(after, "audit_ledger_deduplicated_events_total")).toBe(1);
  });

  test("audit_ledger_tail_subscribers counts open StreamEvents subscriptions", async () => {
    const scrape = async () => (await fetch(`${server.url}/metrics`)).text();
    const base = sample(await scrape(), "audit_ledger_tail_subscribers");
    const apiKey = await createKey(uniqueChain("subs"));
    const clients: LedgerClient[] = [
      createLedgerClient({ baseUrl: server.url, apiKey, protocol: "grpc" }),
      createLedgerClient({ baseUrl: server.url, apiKey, protocol: "connect", httpVersion: "1.1" }),
    ];
    await clients[0]!.ledger.append({ event: { kind: "subs.first" } });

    const aborts: AbortController[] = [];
    const streams: AsyncIterator<unknown>[] = [];
    for (const c of clients) {
      const abort = new AbortController();
      aborts.push(abort);
      const it = c.ledger.streamEvents({ fromSeq: 0n }, { signal: abort.signal })[Symbol.asyncIterator]();
      // The first entry has arrived: the server registered this subscriber before sending it.
      const first = await it.next();
      expect(first.done).toBe(false);
      streams.push(it);
      expect(sample(await scrape(), "audit_ledger_tail_subscribers")).toBe(base + streams.length);
    }

    for (const abort of aborts) abort.abort();
    for (const it of streams) await it.next().catch(() => undefined);
    // The server notices the cancelled streams on its own schedule.
    await eventually(async () => expect(sample(await scrape(), "audit_ledger_tail_subscribers")).toBe(base));
  });
});

describe("/readyz with an unreachable database", () => {
  const name = `audit_ledger_readyz_${randomBytes(4).toString("hex")}`;
  let admin: pg.Client;
  let server: RunningServer | undefined;

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: adminUrl() });
    await admin.connect();
    await admin.query(`CREATE DATABASE "${name}"`);
  });
  afterAll(async () => {
    await server?.close();
    await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await admin.end();
  });

  test("answers 200, then 503 once the server's database is gone; /healthz stays 200", async () => {
    const url = new URL(databaseUrl());
    url.pathname = `/${name}`;
    server = await startTestServer({ databaseUrl: url.toString() });
    const ready = await fetch(`${server.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ database: "reachable" });

    // Take the database away from under the running server (its sessions are terminated).
    await admin.query(`DROP DATABASE "${name}" WITH (FORCE)`);

    const notReady = await fetch(`${server.url}/readyz`);
    expect(notReady.status).toBe(503);
    expect(await notReady.json()).toEqual({ status: "not ready", database: "unreachable", shuttingDown: false });
    // Liveness does not depend on the database: the process itself is fine.
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  });
});

describe("spawned server process", () => {
  const spawned: ServerProcess[] = [];
  const spawn = async (env: Record<string, string> = {}) => {
    const server = await spawnServer(env);
    spawned.push(server);
    return server;
  };
  afterEach(async () => {
    // A failed test must not leave its server running.
    for (const server of spawned.splice(0)) {
      if (server.child.exitCode === null && server.child.signalCode === null) await server.kill();
    }
  });

  test("logs structured JSON lines with level, time and msg", async () => {
    const server = await spawn();
    const res = await fetch(`${server.url}/healthz`);
    expect(res.status).toBe(200);
    const stdoutEnded = new Promise((resolve) => (server.child.stdout!.readableEnded ? resolve(null) : server.child.stdout!.once("end", resolve)));
    expect(await server.stop(), server.output()).toBe(0);
    await stdoutEnded; // "exit" can come before the last lines are read from the pipe

    const lines = server.output().split("\n").filter((l) => l.trim() !== "");
    expect(lines.length).toBeGreaterThanOrEqual(4);
    const records = lines.map((line) => {
      let record: Record<string, unknown>;
      try {
        record = JSON.parse(line) as Record<string, unknown>;
      } catch {
        throw new Error(`not a JSON log line: ${line}`);
      }
      expect(typeof record.level).toBe("number");
      expect(typeof record.msg).toBe("string");
      expect(typeof record.time).toBe("string");
      expect(new Date(record.time as string).toISOString()).toBe(record.time);
      expect(record.service).toBe("audit-ledger");
      return record;
    });
    const messages = records.map((r) => r.msg as string);
    expect(messages).toContain("storage ready");
    expect(records.find((r) => (r.msg as string).startsWith("listening"))).toMatchObject({ url: server.url, tls: false, level: 30 });
    expect(messages).toContain("shutting down: finishing in-flight commits");
    expect(messages[messages.length - 1], server.output()).toBe("stopped");
  });

  test("graceful shutdown: SIGTERM during concurrent appends loses no acknowledged entry and exits 0", async () => {
    // A long grace period: the shutdown must finish because the work is done, not because time ran out.
    const server = await spawn({ SHUTDOWN_GRACE_MS: "30000" });
    const chain = uniqueChain("shutdown");
    const apiKey = await createKey(chain);
    const clients = [
      createLedgerClient({ baseUrl: server.url, apiKey, protocol: "grpc" }),
      createLedgerClient({ baseUrl: server.url, apiKey, protocol: "connect", httpVersion: "1.1" }),
      createLedgerClient({ baseUrl: server.url, apiKey, protocol: "connect", httpVersion: "2", useJson: true }),
    ];

    const WORKERS = 24;
    const SIGTERM_AFTER = 40;
    const acked = new Map<string, { seq: bigint; hash: string }>();
    const failures: { key: string; code: Code; message: string }[] = [];
    let inFlight = 0;
    let inFlightAtSigterm = -1;
    let sigtermAt = 0;
    const exited = new Promise<number | null>((resolve) => server.child.once("exit", (code) => resolve(code)));

    const worker = async (w: number) => {
      const client = clients[w % clients.length]!;
      for (let n = 0; ; n++) {
        const key = `w${w}-${n}`;
        inFlight++;
        try {
          const res = await client.ledger.append({
            event: { kind: "shutdown.append", subject: `worker/${w}`, idempotencyKey: key, payload: new TextEncoder().encode(JSON.stringify({ w, n })) },
          });
          acked.set(key, { seq: res.entry!.seq, hash: res.entry!.hash });
          if (acked.size === SIGTERM_AFTER && inFlightAtSigterm < 0) {
            inFlightAtSigterm = inFlight - 1;
            sigtermAt = Date.now();
            server.child.kill("SIGTERM");
          }
        } catch (err) {
          const ce = ConnectError.from(err);
          failures.push({ key, code: ce.code, message: ce.message });
          return;
        } finally {
          inFlight--;
        }
      }
    };
    await Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));
    const exitCode = await exited;
    const shutdownMs = Date.now() - sigtermAt;

    expect(inFlightAtSigterm).toBeGreaterThan(0); // SIGTERM really landed while appends were in flight
    expect(exitCode).toBe(0);
    expect(shutdownMs).toBeLessThan(15_000); // well inside the 30 s grace period
    expect(acked.size).toBeGreaterThanOrEqual(SIGTERM_AFTER);
    // Every worker stopped on a refusal: Unavailable from the server, or a transport-level
    // refusal of a request the server never read (an HTTP/2 stream refused after GOAWAY,
    // an HTTP/1.1 keep-alive connection closed while idle just as the next request went
    // out, the listener gone), which connect-node maps to assorted codes. The database
    // check below proves that none of these requests was committed.
    expect(failures).toHaveLength(WORKERS);
    for (const f of failures) {
      const refused = f.code === Code.Unavailable || /REFUSED_STREAM|EPIPE|ECONNRESET|ECONNREFUSED|socket hang up/.test(f.message);
      expect(refused, `${f.key}: [${Code[f.code]}] ${f.message}`).toBe(true);
    }

    const db = await superuser();
    try {
      const rows = (
        await db.query<{ seq: number; hash: string; prev_hash: string; idempotency_key: string; payload_size: number; stored_payload: number | null }>(
          `SELECT e.seq, encode(e.hash, 'hex') AS hash, encode(e.prev_hash, 'hex') AS prev_hash, e.idempotency_key, e.payload_size,
                  length(p.payload) AS stored_payload
           FROM entries e LEFT JOIN payloads p ON p.chain = e.chain AND p.seq = e.seq
           WHERE e.chain = $1 ORDER BY e.seq`,
          [chain],
        )
      ).rows;
      const head = (await db.query<{ next_seq: number; head_hash: string }>("SELECT next_seq, encode(head_hash, 'hex') AS head_hash FROM chains WHERE chain = $1", [chain])).rows[0]!;

      // Every acknowledged append is there, exactly as acknowledged.
      const byKey = new Map(rows.map((r) => [r.idempotency_key, r]));
      for (const [key, ack] of acked) {
        expect(byKey.get(key), key).toMatchObject({ seq: Number(ack.seq), hash: ack.hash });
      }
      // Nothing half-written: gapless seqs, intact links, every payload beside its entry, head in step.
      expect(rows.map((r) => r.seq)).toEqual(rows.map((_, i) => i));
      for (let i = 1; i < rows.length; i++) expect(rows[i]!.prev_hash).toBe(rows[i - 1]!.hash);
      for (const r of rows) expect(r.stored_payload).toBe(r.payload_size);
      expect(head.next_seq).toBe(rows.length);
      expect(head.head_hash).toBe(rows[rows.length - 1]!.hash);
      // No entry was committed behind the back of a client that was told it failed.
      for (const f of failures) expect(byKey.has(f.key), f.key).toBe(false);
      expect(rows.length).toBe(acked.size);
    } finally {
      await db.end();
    }

    // And the chain verifies end to end (hashes, links, payload digests).
    const store = new PostgresDatabase({ connectionString: databaseUrl(), max: 1 });
    try {
      const keys = await KeyRing.open(keysDir(), "audit-ledger.local");
      const walk = verifyRange(store, chain, undefined, undefined, { keys: keys.verifiers(), origin: originOf(keys.name, chain) });
      let step = await walk.next();
      while (!step.done) step = await walk.next();
      expect(step.value).toMatchObject({ valid: true, checked: acked.size, firstBreak: null });
    } finally {
      await store.close();
    }
  });

  test("during shutdown: an append blocked mid-commit still succeeds, /readyz answers 503, new connections are refused, exit 0", async () => {
    // One pooled database connection: while an append holds it (blocked on a row lock a
    // superuser holds), /readyz waits for it too, so both are provably in flight at SIGTERM.
    const server = await spawn({ SHUTDOWN_GRACE_MS: "30000", DB_POOL_SIZE: "1" });
    const chain = uniqueChain("drain");
    const client = createLedgerClient({ baseUrl: server.url, apiKey: await createKey(chain), protocol: "connect", httpVersion: "1.1" });
    await client.ledger.append({ event: { kind: "drain.first" } }); // the chain row exists
    const exited = new Promise<number | null>((resolve) => server.child.once("exit", (code) => resolve(code)));

    const locker = await superuser();
    const watcher = await superuser();
    onTestFinished(async () => {
      await locker.end().catch(() => undefined);
      await watcher.end();
    });
    await locker.query("BEGIN");
    await locker.query("SELECT next_seq FROM chains WHERE chain = $1 FOR UPDATE", [chain]);

    let appendSettled = false;
    const blocked = client.ledger.append({ event: { kind: "drain.blocked" } }).finally(() => (appendSettled = true));
    await eventually(async () => {
      const waiting = await watcher.query(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FROM chains WHERE chain = $1 FOR UPDATE%'",
      );
      expect(waiting.rows[0].n).toBe(1);
    });

    // GET /readyz on a raw connection: its ping queues behind the blocked append.
    const socket = net.connect(server.port, "127.0.0.1");
    onTestFinished(() => void socket.destroy());
    await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
    let received = "";
    const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    socket.on("data", (d: Buffer) => (received += d.toString("latin1")));
    socket.write("GET /readyz HTTP/1.1\r\nHost: ledger\r\n\r\n");
    // A later round trip on another connection: the server has read the /readyz request by now.
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    expect(received).toBe("");

    server.child.kill("SIGTERM");
    await waitForOutput(server, /"msg":"shutting down/);

    // The listener closes right after that line is logged: new connections are refused.
    const connectOutcome = () =>
      new Promise<string>((resolve) => {
        const probe = net.connect(server.port, "127.0.0.1");
        probe.once("connect", () => {
          probe.destroy();
          resolve("connected");
        });
        probe.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? String(err)));
      });
    await eventually(async () => expect(await connectOutcome()).toBe("ECONNREFUSED"), 5000);
    // Shutdown waits for the in-flight work: nothing has been answered yet.
    expect(appendSettled).toBe(false);
    expect(received).toBe("");
    expect(server.child.exitCode).toBe(null);

    // Release the lock: the append commits and is acknowledged, then /readyz gets the pool.
    await locker.query("COMMIT");
    const { entry } = await blocked;
    expect(entry).toMatchObject({ seq: 1n, kind: "drain.blocked" });
    await closed; // the server closes the connection after answering
    const [readyz, ...more] = parseResponses(received);
    expect(more).toEqual([]);
    expect(readyz!.status).toBe(503);
    expect(readyz!.headers.connection).toBe("close");
    expect(JSON.parse(readyz!.body)).toEqual({ status: "not ready", database: "reachable", shuttingDown: true });

    const started = Date.now();
    expect(await exited).toBe(0);
    expect(Date.now() - started).toBeLessThan(15_000); // done because the work is done, not the 30 s grace
    const stored = await watcher.query("SELECT encode(hash, 'hex') AS hash FROM entries WHERE chain = $1 AND seq = 1", [chain]);
    expect(stored.rows).toEqual([{ hash: entry!.hash }]);
  });
});
