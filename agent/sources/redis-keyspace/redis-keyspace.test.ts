// The redis_keyspace source against the real Redis on 127.0.0.1:6379 (REDIS_URL to
// change it), with an in-memory sink that records what it is given (the sink is not
// under test). Tests acknowledge positions themselves, as the agent does once events are
// in its outbox (or, with `ackInEmit`, from inside emit() as the daemon does). Each test
// uses keys of its own prefix, deleted afterwards; tests that need keyspace notifications
// set notify-keyspace-events themselves, and the value found at the start is restored.
// Conditions are awaited; the one check that nothing is read while paused needs a short
// sleep, said where.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "redis";
import { z } from "zod";
import type { SourceContext } from "../source-factory.js";
import type { SourceEvent, SourceSink } from "../source.js";
import redisKeyspace, { RedisSourceError, type RedisKeyspaceConfigInput, type RedisKeyspaceSource } from "./index.js";
import { flagSet, notificationsProblem, withFlags } from "./notify-flags.js";
import { redisGlob } from "./redis-glob.js";
import { streamEntryEvent, streamPosition, subjectFor } from "./event-shape.js";
import { RUN_FILE } from "./notification-feed.js";
import { waitFor } from "../../../test/support/wait-for.js";
import { freePort } from "../../../test/support/free-port.js";
import { type LogLine } from "../../../test/support/source-context.js";

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

// ---------------------------------------------------------------------------------------
// Harness

interface Recorded {
  kind: string;
  subject: string | undefined;
  position: string;
  occurredAt: string | undefined;
  payload: Record<string, unknown>;
}

interface Gap {
  reason: string;
  from: string | undefined;
  to: string | undefined;
}

class RecordingSink implements SourceSink {
  readonly events: Recorded[] = [];
  readonly gaps: Gap[] = [];
  /** Everything in order: "e:<position>" or "gap". */
  readonly order: string[] = [];
  inFlight = 0;
  maxInFlight = 0;
  /** While set, emit() waits for it (a slow agent). */
  gate: Promise<void> | undefined;
  /** Acknowledge from inside emit(), as the daemon does. */
  ackInEmit: RedisKeyspaceSource | undefined;
  /** The next this many emit() calls reject (the agent failing to store them). */
  failNext = 0;

  async emit(events: SourceEvent[]): Promise<void> {
    this.maxInFlight = Math.max(this.maxInFlight, ++this.inFlight);
    try {
      if (this.gate) await this.gate;
      if (this.failNext > 0) {
        this.failNext--;
        throw new Error("outbox write failed");
      }
      for (const e of events) {
        this.events.push({
          kind: e.kind,
          subject: e.subject,
          position: e.position,
          occurredAt: e.occurredAt,
          payload: JSON.parse(new TextDecoder().decode(e.payload)) as Record<string, unknown>,
        });
        this.order.push(`e:${e.position}`);
      }
      if (this.ackInEmit) await this.ackInEmit.acknowledge(events.at(-1)!.position);
    } finally {
      this.inFlight--;
    }
  }

  async gap(reason: string, from?: string, to?: string): Promise<void> {
    this.gaps.push({ reason, from, to });
    this.order.push("gap");
  }

  positions(): string[] {
    return this.events.map((e) => e.position);
  }
}


const admin = createClient({ url: REDIS_URL, RESP: 2 });
admin.on("error", () => undefined);
let originalNotify = "";
let prefixCounter = 0;
let prefix = "";
const running: RedisKeyspaceSource[] = [];
const dirs: string[] = [];

async function cmd(...args: string[]): Promise<unknown> {
  return admin.sendCommand(args);
}

async function setNotify(value: string): Promise<void> {
  await cmd("CONFIG", "SET", "notify-keyspace-events", value);
}

async function getNotify(): Promise<string> {
  const reply = (await cmd("CONFIG", "GET", "notify-keyspace-events")) as string[];
  return reply[1] ?? "";
}

beforeAll(async () => {
  try {
    await admin.connect();
  } catch (err) {
    throw new Error(`these tests need Redis at ${REDIS_URL} (set REDIS_URL to use another): ${String(err)}`);
  }
  originalNotify = await getNotify();
});

afterAll(async () => {
  await setNotify(originalNotify);
  admin.destroy();
});

afterEach(async () => {
  for (const s of running.splice(0)) await s.stop();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  let cursor = "0";
  do {
    const [next, keys] = (await cmd("SCAN", cursor, "MATCH", `${prefix}*`, "COUNT", "1000")) as [string, string[]];
    cursor = next;
    if (keys.length > 0) await cmd("DEL", ...keys);
  } while (cursor !== "0");
  await setNotify(originalNotify);
});

/** A fresh key prefix for the test about to run. */
function newPrefix(): string {
  prefix = `alk-test:${process.pid}:${Date.now().toString(36)}:${++prefixCounter}:`;
  return prefix;
}

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "redis-keyspace-test-"));
  dirs.push(d);
  return d;
}


function makeContext(stateDir: string, lines: LogLine[] = [], name = "redis"): SourceContext {
  return {
    name,
    stateDir,
    log: {
      info: (obj, msg) => lines.push({ level: "info", msg, obj }),
      warn: (obj, msg) => lines.push({ level: "warn", msg, obj }),
      error: (obj, msg) => lines.push({ level: "error", msg, obj }),
    },
  };
}

function createSource(config: Omit<RedisKeyspaceConfigInput, "url"> & { url?: string }, stateDir = tempDir(), lines: LogLine[] = []): RedisKeyspaceSource {
  const parsed = redisKeyspace.configSchema.parse({ url: REDIS_URL, ...config });
  const source = redisKeyspace.create(parsed, makeContext(stateDir, lines)) as RedisKeyspaceSource;
  running.push(source);
  return source;
}

async function startSource(config: Omit<RedisKeyspaceConfigInput, "url"> & { url?: string }, sink = new RecordingSink(), stateDir = tempDir(), lines: LogLine[] = []) {
  const source = createSource(config, stateDir, lines);
  await source.start(sink);
  return { source, sink, stateDir, lines };
}

async function stopSource(source: RedisKeyspaceSource): Promise<void> {
  await source.stop();
  running.splice(running.indexOf(source), 1);
}

async function xadd(stream: string, ...fields: string[]): Promise<string> {
  return (await cmd("XADD", stream, "*", ...fields)) as string;
}

/** XPENDING summary count for the group. */
async function pendingCount(stream: string, group: string): Promise<number> {
  const reply = (await cmd("XPENDING", stream, group)) as [number, ...unknown[]];
  return Number(reply[0]);
}

async function groupInfo(stream: string, group: string): Promise<Record<string, unknown>> {
  const groups = (await cmd("XINFO", "GROUPS", stream)) as unknown[][];
  for (const g of groups) {
    const map: Record<string, unknown> = {};
    for (let i = 0; i + 1 < g.length; i += 2) map[String(g[i])] = g[i + 1];
    if (map.name === group) return map;
  }
  throw new Error(`no group ${group} on ${stream}`);
}

/** The id of a connection of this source, by its name in CLIENT LIST. */
async function clientIdByName(name: string): Promise<string> {
  const list = String(await cmd("CLIENT", "LIST"));
  const line = list.split("\n").find((l) => l.includes(` name=${name} `));
  if (!line) throw new Error(`no connection named ${name}`);
  return /(?:^|\s)id=(\d+)/.exec(line)![1]!;
}


// ---------------------------------------------------------------------------------------
// Streams

describe("redis_keyspace streams", () => {
  it("delivers N entries with their positions, subject and payload, and XACKs them on acknowledge", async () => {
    const p = newPrefix();
    const stream = `${p}orders`;
    const { source, sink } = await startSource({ streams: { keys: [stream], group: "ledger", consumer: "c1", create_group: true, batch_size: 7 } });
    const N = 25;
    const ids: string[] = [];
    for (let i = 0; i < N; i++) ids.push(await xadd(stream, "n", String(i), "who", "alice"));

    await waitFor(`${N} events`, () => sink.events.length >= N);
    expect(sink.events.length).toBe(N);
    expect(sink.positions()).toEqual(ids.map((id) => `${stream}/${id}`));
    sink.events.forEach((e, i) => {
      expect(e.kind).toBe("redis.stream_entry");
      expect(e.subject).toBe(`redis://0/${stream}`);
      expect(e.payload).toEqual({ stream, id: ids[i], fields: { n: String(i), who: "alice" } });
      expect(e.occurredAt).toBe(new Date(Number(ids[i]!.split("-")[0])).toISOString());
    });
    expect(sink.maxInFlight).toBe(1);
    expect(sink.gaps).toEqual([]);

    expect(await pendingCount(stream, "ledger")).toBe(N);
    await source.acknowledge(sink.events[9]!.position);
    expect(await pendingCount(stream, "ledger")).toBe(N - 10);
    await source.acknowledge(sink.events.at(-1)!.position);
    expect(await pendingCount(stream, "ledger")).toBe(0);
  });

  it("after a restart without acknowledge, redelivers the same entries from its PEL with the same positions", async () => {
    const p = newPrefix();
    const stream = `${p}events`;
    const config = { streams: { keys: [stream], group: "ledger", consumer: "stable", create_group: true, batch_size: 4 } };
    const first = await startSource(config);
    const N = 10;
    for (let i = 0; i < N; i++) await xadd(stream, "i", String(i));
    await waitFor("all entries", () => first.sink.events.length === N);
    await first.source.acknowledge(first.sink.events[2]!.position); // the first 3 are recorded
    await stopSource(first.source);
    expect(await pendingCount(stream, "ledger")).toBe(N - 3);

    const second = await startSource(config);
    await waitFor("redelivered entries", () => second.sink.events.length === N - 3);
    expect(second.sink.positions()).toEqual(first.sink.positions().slice(3));
    expect(second.sink.events.map((e) => e.payload)).toEqual(first.sink.events.slice(3).map((e) => e.payload));

    // New entries follow the redelivered ones.
    const later = await xadd(stream, "i", "late");
    await waitFor("the new entry", () => second.sink.events.length === N - 2);
    expect(second.sink.events.at(-1)!.position).toBe(`${stream}/${later}`);
    await second.source.acknowledge(second.sink.events.at(-1)!.position);
    expect(await pendingCount(stream, "ledger")).toBe(0);
  });

  it("acknowledged from inside emit (as the daemon does) leaves nothing pending", async () => {
    const p = newPrefix();
    const stream = `${p}s`;
    const sink = new RecordingSink();
    const source = createSource({ streams: { keys: [stream], group: "g", consumer: "c", create_group: true } });
    sink.ackInEmit = source;
    await source.start(sink);
    for (let i = 0; i < 30; i++) await xadd(stream, "i", String(i));
    await waitFor("30 events", () => sink.events.length === 30);
    await waitFor("an empty PEL", async () => (await pendingCount(stream, "g")) === 0);
  });

  it("pause() stops reading: new entries stay in the stream until resume()", async () => {
    const p = newPrefix();
    const stream = `${p}paused`;
    const { source, sink } = await startSource({ streams: { keys: [stream], group: "g", consumer: "c", create_group: true, block_ms: 5_000 } });
    await xadd(stream, "before", "pause");
    await waitFor("the first entry", () => sink.events.length === 1);

    source.pause();
    // The blocking XREADGROUP is cut short (CLIENT UNBLOCK) well before block_ms.
    await waitFor("the reader to park", () => source.streamReaderParked, 3_000);
    const lastDelivered = (await groupInfo(stream, "g"))["last-delivered-id"];
    for (let i = 0; i < 5; i++) await xadd(stream, "while", "paused");
    // Nothing to await for "nothing happens": a short sleep shows no read is made.
    await new Promise((r) => setTimeout(r, 300));
    expect(sink.events.length).toBe(1);
    expect((await groupInfo(stream, "g"))["last-delivered-id"]).toBe(lastDelivered);
    expect(Number(await cmd("XLEN", stream))).toBe(6);

    source.resume();
    await waitFor("the entries added while paused", () => sink.events.length === 6);
    expect(sink.events.slice(1).every((e) => (e.payload.fields as Record<string, string>).while === "paused")).toBe(true);
  });

  it("slows down with the agent: one emit at a time, the next read only after it resolves", async () => {
    const p = newPrefix();
    const stream = `${p}slow`;
    const sink = new RecordingSink();
    let open: () => void = () => undefined;
    sink.gate = new Promise((r) => (open = r));
    for (let i = 0; i < 20; i++) await xadd(stream, "i", String(i));
    const { source } = await startSource({ streams: { keys: [stream], group: "g", consumer: "c", create_group: true, batch_size: 5 } }, sink);
    await waitFor("the first emit to wait", () => sink.inFlight === 1);
    // Only the first batch was read: the rest is still undelivered in the group.
    expect(await pendingCount(stream, "g")).toBe(5);
    sink.gate = undefined;
    open();
    await waitFor("all 20", () => sink.events.length === 20);
    expect(sink.maxInFlight).toBe(1);
    await source.acknowledge(sink.events.at(-1)!.position);
    expect(await pendingCount(stream, "g")).toBe(0);
  });

  it("redelivers entries the agent failed to store, with the same positions", async () => {
    const p = newPrefix();
    const stream = `${p}fail`;
    const sink = new RecordingSink();
    sink.failNext = 1;
    const { source } = await startSource({ streams: { keys: [stream], group: "g", consumer: "c", create_group: true, batch_size: 3 } }, sink);
    const ids = [await xadd(stream, "a", "1"), await xadd(stream, "a", "2"), await xadd(stream, "a", "3")];
    await waitFor("the entries after the failed emit", () => sink.events.length === 3);
    expect(sink.positions()).toEqual(ids.map((id) => streamPosition(stream, id)));
    await source.acknowledge(sink.events.at(-1)!.position);
    expect(await pendingCount(stream, "g")).toBe(0);
  });

  it("keeps reading across a killed connection (entries delivered once, none lost)", async () => {
    const p = newPrefix();
    const stream = `${p}kill`;
    const { source, sink } = await startSource({ streams: { keys: [stream], group: "g", consumer: "c", create_group: true, block_ms: 10_000 } });
    await xadd(stream, "n", "1");
    await waitFor("the first entry", () => sink.events.length === 1);
    await cmd("CLIENT", "KILL", "ID", await clientIdByName(`${source.connectionName}:stream`));
    await xadd(stream, "n", "2");
    await xadd(stream, "n", "3");
    await waitFor("the entries after the reconnect", () => sink.events.length >= 3);
    expect(sink.events.map((e) => (e.payload.fields as Record<string, string>).n)).toEqual(["1", "2", "3"]);
    expect(sink.gaps).toEqual([]);
  });

  it("records a gap for pending entries deleted from the stream before they were recorded", async () => {
    const p = newPrefix();
    const stream = `${p}deleted`;
    const config = { streams: { keys: [stream], group: "g", consumer: "c", create_group: true } };
    const first = await startSource(config);
    const ids = [await xadd(stream, "n", "1"), await xadd(stream, "n", "2"), await xadd(stream, "n", "3")];
    await waitFor("3 entries", () => first.sink.events.length === 3);
    await stopSource(first.source);
    await cmd("XDEL", stream, ids[1]!);

    const second = await startSource(config);
    await waitFor("the gap", () => second.sink.gaps.length === 1);
    await waitFor("the 2 remaining entries", () => second.sink.events.length === 2);
    expect(second.sink.positions()).toEqual([streamPosition(stream, ids[0]!), streamPosition(stream, ids[2]!)]);
    expect(second.sink.gaps[0]).toMatchObject({ from: streamPosition(stream, ids[1]!), to: streamPosition(stream, ids[1]!) });
    expect(second.sink.gaps[0]!.reason).toMatch(/deleted from the stream/);
    await second.source.acknowledge(second.sink.events.at(-1)!.position);
    expect(await pendingCount(stream, "g")).toBe(0); // the deleted one was XACKed after its gap
  });

  it("claims entries left pending by a dead consumer (claim_idle_ms)", async () => {
    const p = newPrefix();
    const stream = `${p}claim`;
    await cmd("XGROUP", "CREATE", stream, "g", "0", "MKSTREAM");
    const ids = [await xadd(stream, "n", "1"), await xadd(stream, "n", "2")];
    await cmd("XREADGROUP", "GROUP", "g", "dead", "COUNT", "10", "STREAMS", stream, ">"); // then it dies
    const { source, sink } = await startSource({ streams: { keys: [stream], group: "g", consumer: "alive", claim_idle_ms: 1_000 } });
    await waitFor("the claimed entries", () => sink.events.length === 2);
    expect(sink.positions()).toEqual(ids.map((id) => streamPosition(stream, id)));
    await source.acknowledge(sink.events.at(-1)!.position);
    expect(await pendingCount(stream, "g")).toBe(0);
  });

  it("fails start naming a missing stream, a missing group, or a key of another type", async () => {
    const p = newPrefix();
    await expect(startSource({ streams: { keys: [`${p}none`] } })).rejects.toThrow(new RegExp(`stream "${p}none".*does not exist.*create_group`));

    await cmd("XADD", `${p}s`, "*", "a", "1");
    await expect(startSource({ streams: { keys: [`${p}s`], group: "nope" } })).rejects.toThrow(/consumer group "nope" \(streams.group\) does not exist/);

    await cmd("SET", `${p}str`, "x");
    await expect(startSource({ streams: { keys: [`${p}str`] } })).rejects.toThrow(/holds a string, not a stream/);
  });

  it("shapes entries: binary or repeated fields in base64, oversized ones as a digest", () => {
    const plain = streamEntryEvent({ stream: "s", db: 2, id: "1-1", fields: [Buffer.from("a"), Buffer.from("1")], kind: "k", maxPayloadBytes: 1024 });
    expect(plain).toMatchObject({ kind: "k", subject: "redis://2/s", position: "s/1-1" });
    expect(plain.occurredAt).toBeUndefined(); // 1-1 is not a time Redis generated
    const binary = streamEntryEvent({ stream: "s", db: 0, id: "1-2", fields: [Buffer.from("a"), Buffer.from([0xff]), Buffer.from("a"), Buffer.from("x")], kind: "k", maxPayloadBytes: 1024 });
    expect(JSON.parse(new TextDecoder().decode(binary.payload))).toEqual({ stream: "s", id: "1-2", fields_base64: [["YQ==", "/w=="], ["YQ==", "eA=="]] });
    const big = streamEntryEvent({ stream: "s", db: 0, id: "1-3", fields: [Buffer.from("a"), Buffer.alloc(5000, 0x61)], kind: "k", maxPayloadBytes: 1024 });
    expect(JSON.parse(new TextDecoder().decode(big.payload))).toMatchObject({ fields_omitted: "too_large", field_count: 1, fields_bytes: 5001 });
    const proto = streamEntryEvent({ stream: "s", db: 0, id: "1-4", fields: [Buffer.from("__proto__"), Buffer.from("x")], kind: "k", maxPayloadBytes: 1024 });
    expect(JSON.parse(new TextDecoder().decode(proto.payload)).fields).toEqual(JSON.parse('{"__proto__":"x"}'));
    expect(streamPosition("with space", "1-0")).toMatch(/^#[0-9a-f]{32}\/1-0$/);
    expect(subjectFor(0, "k".repeat(5000)).length).toBe(1024);
  });
});

// ---------------------------------------------------------------------------------------
// Keyspace notifications

describe("redis_keyspace notifications", () => {
  it("reports SET, DEL, EXPIRE and expiry as events with kind, subject, payload and unique positions", async () => {
    const p = newPrefix();
    await setNotify("KEA");
    const { sink } = await startSource({ notifications: { key_patterns: [`${p}*`] } });
    await cmd("SET", `${p}a`, "1");
    await cmd("DEL", `${p}a`);
    await cmd("SET", `${p}b`, "2");
    await cmd("PEXPIRE", `${p}b`, "20");
    await waitFor("redis.expired", () => sink.events.find((e) => e.kind === "redis.expired"));
    expect(sink.events.map((e) => `${e.kind} ${e.subject}`)).toEqual([
      `redis.set redis://0/${p}a`,
      `redis.del redis://0/${p}a`,
      `redis.set redis://0/${p}b`,
      `redis.expire redis://0/${p}b`,
      `redis.expired redis://0/${p}b`,
    ]);
    expect(sink.events[0]!.payload).toEqual({ event: "set", key: `${p}a`, db: 0 });
    const positions = sink.positions();
    expect(new Set(positions).size).toBe(positions.length);
    for (const pos of positions) expect(pos).toMatch(/^ks:[0-9a-z]+:\d+$/);
    expect(sink.gaps).toEqual([]); // the first start of this source: nothing to say
  });

  it("records a gap after its connection is killed, and keeps reporting once resubscribed", async () => {
    const p = newPrefix();
    await setNotify("KA");
    const { source, sink } = await startSource({ notifications: { key_patterns: [`${p}*`] } });
    await cmd("SET", `${p}before`, "1");
    await waitFor("the first event", () => sink.events.length === 1);

    await cmd("CLIENT", "KILL", "ID", await clientIdByName(`${source.connectionName}:sub`));
    await waitFor("the reconnect gap", () => sink.gaps.length === 1);
    expect(sink.gaps[0]!.reason).toMatch(/fire-and-forget.*connection lost.*subscribed again.*missed/);
    expect(sink.gaps[0]!.from).toBe(sink.events[0]!.position);

    await cmd("SET", `${p}after`, "2");
    await waitFor("an event after the reconnect", () => sink.events.length === 2);
    expect(sink.events[1]!.subject).toBe(`redis://0/${p}after`);
    expect(sink.order).toEqual([`e:${sink.events[0]!.position}`, "gap", `e:${sink.events[1]!.position}`]);
  });

  it("with notifications.configure, sets the flags again after a reconnect that finds them gone, and says so", async () => {
    const p = newPrefix();
    await setNotify("");
    const { source, sink } = await startSource({ notifications: { key_patterns: [`${p}*`], configure: "KA" } });
    await setNotify(""); // as after a server restart
    await cmd("CLIENT", "KILL", "ID", await clientIdByName(`${source.connectionName}:sub`));
    await waitFor("two gaps", () => sink.gaps.length === 2);
    expect(sink.gaps[0]!.reason).toMatch(/subscribed again/);
    expect(sink.gaps[1]!.reason).toMatch(/notify-keyspace-events was "".*set it again/);
    expect(notificationsProblem(await getNotify(), "keyspace")).toBeUndefined();
    await cmd("SET", `${p}k`, "v");
    await waitFor("an event", () => sink.events.length === 1);
  });

  it("fails start naming notify-keyspace-events when notifications are off and not configured", async () => {
    newPrefix();
    await setNotify("");
    const err = await startSource({ notifications: {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RedisSourceError);
    expect((err as Error).message).toMatch(/cannot start: notify-keyspace-events is "" on the server.*notifications\.configure/);
    await setNotify("Eg"); // keyevent only: the keyspace channel still gets nothing
    await expect(startSource({ notifications: {} })).rejects.toThrow(/notify-keyspace-events is "[gE]+".*lacks "K"/);
  });

  it("with notifications.configure, adds the missing flags (and only adds)", async () => {
    const p = newPrefix();
    await setNotify("Ex");
    const { sink } = await startSource({ notifications: { key_patterns: [`${p}*`], configure: "KA" } });
    const now = flagSet(await getNotify());
    for (const f of "KEgx$") expect(now.has(f)).toBe(true);
    await cmd("SET", `${p}k`, "v");
    await waitFor("an event", () => sink.events.length === 1);
  });

  it("keyevent channel: server-side event filter, client-side key filter; overlapping patterns count once", async () => {
    const p = newPrefix();
    await setNotify("KEA");
    const a = await startSource({ notifications: { channel: "keyevent", events: ["del", "hset"], key_patterns: [`${p}keep*`] } });
    const b = await startSource({ notifications: { key_patterns: [`${p}*`, `${p}x*`], events: ["set"] } });
    await cmd("SET", `${p}keep1`, "v"); // not an event a asks for
    await cmd("HSET", `${p}keep2`, "f", "v");
    await cmd("HSET", `${p}other`, "f", "v"); // not a key a asks for
    await cmd("DEL", `${p}keep1`);
    await cmd("SET", `${p}x1`, "v"); // matches both of b's patterns
    await waitFor("a's events", () => a.sink.events.length === 2);
    await waitFor("b's events", () => b.sink.events.length === 2);
    expect(a.sink.events.map((e) => `${e.kind} ${String(e.payload.key)}`)).toEqual([`redis.hset ${p}keep2`, `redis.del ${p}keep1`]);
    expect(b.sink.events.map((e) => `${e.kind} ${String(e.payload.key)}`)).toEqual([`redis.set ${p}keep1`, `redis.set ${p}x1`]);
  });

  it("buffers while the agent is slow, drops beyond max_buffered and records one gap naming how many", async () => {
    const p = newPrefix();
    await setNotify("KA");
    const sink = new RecordingSink();
    let open: () => void = () => undefined;
    sink.gate = new Promise((r) => (open = r));
    const { source } = await startSource({ notifications: { key_patterns: [`${p}*`], max_buffered: 5 } }, sink);
    for (let i = 0; i < 20; i++) await cmd("SET", `${p}k${i}`, "v");
    await waitFor("20 notifications received", () => source.notificationsReceived === 20);
    expect(source.bufferedNotifications).toBe(5);
    sink.gate = undefined;
    open();
    await waitFor("the gap", () => sink.gaps.length === 1);
    expect(sink.events.map((e) => e.payload.key)).toEqual([0, 1, 2, 3, 4].map((i) => `${p}k${i}`));
    expect(sink.gaps[0]!.reason).toMatch(/^15 keyspace notification\(s\) dropped .*max_buffered = 5/);
    const run = sink.events[0]!.position.split(":")[1];
    expect(sink.gaps[0]).toMatchObject({ from: `ks:${run}:6`, to: `ks:${run}:20` });
    await cmd("SET", `${p}later`, "v");
    await waitFor("a later event", () => sink.events.length === 6);
    expect(sink.order.indexOf("gap")).toBe(5);
  });

  it("records a gap at a restart: notifications sent while it was down are gone", async () => {
    const p = newPrefix();
    await setNotify("KA");
    const stateDir = tempDir();
    const first = await startSource({ notifications: { key_patterns: [`${p}*`] } }, new RecordingSink(), stateDir);
    await stopSource(first.source);
    await cmd("SET", `${p}missed`, "v");
    const second = await startSource({ notifications: { key_patterns: [`${p}*`] } }, new RecordingSink(), stateDir);
    await waitFor("the restart gap", () => second.sink.gaps.length === 1);
    expect(second.sink.gaps[0]!.reason).toMatch(/not subscribed were not recorded; it stopped at /);
    expect(second.sink.events).toEqual([]);
    expect(RUN_FILE).toBe("notifications-run.json");
  });
});

// ---------------------------------------------------------------------------------------
// Both at once, connections, configuration

describe("redis_keyspace source", () => {
  it("runs notifications and streams together; acknowledge XACKs only the stream entries", async () => {
    const p = newPrefix();
    await setNotify("KA");
    const stream = `${p}both`;
    const sink = new RecordingSink();
    const source = createSource({ notifications: { key_patterns: [`${p}k*`] }, streams: { keys: [stream], group: "g", consumer: "c", create_group: true } });
    sink.ackInEmit = source;
    await source.start(sink);
    await cmd("SET", `${p}k1`, "v");
    await xadd(stream, "a", "1");
    await cmd("SET", `${p}k2`, "v");
    await xadd(stream, "a", "2");
    await waitFor("4 events", () => sink.events.length === 4);
    expect(sink.events.filter((e) => e.kind === "redis.set")).toHaveLength(2);
    expect(sink.events.filter((e) => e.kind === "redis.stream_entry")).toHaveLength(2);
    expect(sink.maxInFlight).toBe(1);
    await waitFor("an empty PEL", async () => (await pendingCount(stream, "g")) === 0);
  });

  it("fails start naming the address when nothing listens there", async () => {
    const port = await freePort();
    const err = await startSource({ url: `redis://127.0.0.1:${port}`, streams: { keys: ["x"] } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RedisSourceError);
    expect((err as Error).message).toMatch(new RegExp(`cannot start: cannot connect to Redis at 127\\.0\\.0\\.1:${port}/0.*ECONNREFUSED`));
  });

  it("fails start naming the credentials when they are refused", async () => {
    await expect(startSource({ username: "no-such-user", password: "wrong", streams: { keys: ["x"] } })).rejects.toThrow(/refused the credentials \(check username and password\)/);
    await expect(startSource({ url: `${REDIS_URL.replace("redis://", "redis://:wrong@")}`, streams: { keys: ["x"] } })).rejects.toThrow(/refused the credentials/);
  });

  it("fails start naming a database that does not exist", async () => {
    await expect(startSource({ db: 99, streams: { keys: ["x"] } })).rejects.toThrow(/database 99 does not exist/);
  });

  it("names its connections <client_name>:<role> and closes them on stop", async () => {
    const p = newPrefix();
    await setNotify("KA");
    const { source } = await startSource({ client_name: `${p}conn`, notifications: {}, streams: { keys: [`${p}s`], create_group: true } });
    for (const role of ["cmd", "stream", "sub"]) expect(await clientIdByName(`${p}conn:${role}`)).toMatch(/^\d+$/);
    await stopSource(source);
    const list = String(await cmd("CLIENT", "LIST"));
    expect(list).not.toContain(`name=${p}conn:`);
  });

  describe("configuration", () => {
    const schema = redisKeyspace.configSchema;
    function problem(input: unknown) {
      const r = schema.safeParse(input);
      expect(r.success).toBe(false);
      return { issues: r.error!.issues, text: z.prettifyError(r.error!) };
    }

    it("applies defaults", () => {
      const c = schema.parse({ streams: { keys: ["s"] }, notifications: {} });
      expect(c).toMatchObject({ url: "redis://127.0.0.1:6379", connect_timeout_ms: 5000 });
      expect(c.streams).toMatchObject({ group: "audit-ledger", create_group: false, group_start_id: "0", batch_size: 100, block_ms: 2000, kind: "redis.stream_entry" });
      expect(c.notifications).toMatchObject({ channel: "keyspace", key_patterns: ["*"], max_buffered: 10000, kind_prefix: "redis" });
      expect(c.notifications!.configure).toBeUndefined();
    });

    it("names the field of every error", () => {
      expect(problem({}).issues[0]!.path).toEqual(["notifications"]);
      expect(problem({}).text).toMatch(/notifications, streams, or both/);
      expect(problem({ streams: { keys: [] } }).issues[0]!.path).toEqual(["streams", "keys"]);
      expect(problem({ streams: { keys: ["a", "a"] } }).issues[0]!.path).toEqual(["streams", "keys", 1]);
      expect(problem({ streams: { keys: ["s"], block_ms: 0 } }).issues[0]!.path).toEqual(["streams", "block_ms"]);
      expect(problem({ streams: { keys: ["s"], group_start_id: "latest" } }).issues[0]!.path).toEqual(["streams", "group_start_id"]);
      expect(problem({ notifications: { configure: "KZ" } }).issues[0]!.path).toEqual(["notifications", "configure"]);
      expect(problem({ notifications: { configure: "A" } }).text).toMatch(/must include "K"/);
      expect(problem({ notifications: { channel: "keyevent", configure: "K" } }).issues.map((i) => i.path)).toContainEqual(["notifications", "configure"]);
      expect(problem({ notifications: { events: ["set me"] } }).issues[0]!.path).toEqual(["notifications", "events", 0]);
      expect(problem({ notifications: { kind_prefix: "-x" } }).issues[0]!.path).toEqual(["notifications", "kind_prefix"]);
      expect(problem({ url: "http://h:1", notifications: {} }).issues[0]!.path).toEqual(["url"]);
      expect(problem({ url: "redis://h:1/2", db: 3, notifications: {} }).issues[0]!.path).toEqual(["db"]);
      expect(problem({ client_name: "has space", notifications: {} }).issues[0]!.path).toEqual(["client_name"]);
      const unknown = problem({ notifications: {}, notify: true }).issues[0]!;
      expect(unknown).toMatchObject({ code: "unrecognized_keys", keys: ["notify"] });
      expect(problem({ streams: { keys: ["s"], grup: "x" } }).issues[0]).toMatchObject({ code: "unrecognized_keys", keys: ["grup"], path: ["streams"] });
    });
  });

  describe("helpers", () => {
    it("notify-keyspace-events: problems and added flags", () => {
      expect(notificationsProblem("", "keyspace")).toMatch(/lacks "K" \(keyspace channel\) and an event class/);
      expect(notificationsProblem("KA", "keyspace")).toBeUndefined();
      expect(notificationsProblem("KA", "keyevent")).toMatch(/lacks "E"/);
      expect(notificationsProblem("AKE", "keyevent")).toBeUndefined();
      expect(withFlags("KEA", "KA")).toBeUndefined();
      expect(withFlags("", "KEA")).toBe("AKE");
      expect(withFlags("Ex", "Kg")).toBe("ExKg");
      expect(withFlags("gx", "KA")).toBe("gxAK"); // A stays A: its meaning depends on the server version
    });

    it("redis glob patterns", () => {
      const m = (pattern: string, name: string) => redisGlob(pattern)(Buffer.from(name));
      expect(m("user:*", "user:1")).toBe(true);
      expect(m("user:*", "users:1")).toBe(false);
      expect(m("h?llo", "hello")).toBe(true);
      expect(m("h[ae]llo", "hallo")).toBe(true);
      expect(m("h[^e]llo", "hello")).toBe(false);
      expect(m("h[a-b]llo", "hbllo")).toBe(true);
      expect(m("h\\*llo", "h*llo")).toBe(true);
      expect(m("h\\*llo", "hello")).toBe(false);
      expect(m("a.b", "axb")).toBe(false);
      expect(redisGlob("k*")(Buffer.from([0x6b, 0xff]))).toBe(true);
    });
  });
});
