// The mongo_change_stream source against the suite's MongoDB-compatible server
// (mongo-java-server, test/services/README.md), a fresh collection per test. The sink
// records what it is given and acknowledges as the agent does (from inside emit, once
// the event is "stored"), unless a test holds it back.
// Conditions are awaited; short sleeps only show that something does NOT happen.
// What only a real replica set shows (invalidate, history lost sent by the server,
// database- and deployment-wide watches, auth) is listed in docs/sources/mongo-change-stream.md, "Tested".
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BSON, MongoClient, MongoServerError, MongoNetworkError, type Collection, type Document } from "mongodb";
import type { SourceEvent, SourceSink } from "../source.js";
import mongoChangeStreamSource, { type MongoChangeStreamConfigInput, type MongoChangeStreamSource } from "./index.js";
import { nestsDeeperThan, positionOf, subjectOf, toSourceEvent } from "./change-event.js";
import { RESUME_FILE, type ResumeRecord } from "./resume-state.js";
import { serverStartTime } from "./mongo-change-stream-source.js";
import { isHistoryLost, isUnreadableEvent, startProblem } from "./stream-problem.js";
import { waitFor } from "../../../test/support/wait-for.js";
import { freePort } from "../../../test/support/free-port.js";
import { readCrashLines, startCrashChild } from "../../../test/support/source-crash-process.js";
import { type LogLine, recordingContext } from "../../../test/support/source-context.js";

const url = inject("mongoUrl");
const POSITION = /^mongo1:(\d+)\.(\d+):([0-9a-f]{32})$/;

// ---------------------------------------------------------------------------------------
// Harness

/** Records events; by default acknowledges each batch from inside emit, as the agent does. */
class RecordingSink implements SourceSink {
  readonly events: SourceEvent[] = [];
  readonly batches: number[] = [];
  readonly gaps: { reason: string; from?: string }[] = [];
  /** Reasons given to fail() (the agent would stop with the first). */
  readonly failures: string[] = [];
  /** ack: acknowledge inside emit; manual: the test acknowledges; hang: emit never resolves. */
  mode: "ack" | "manual" | "hang" = "ack";
  source: MongoChangeStreamSource | undefined;

  async emit(events: SourceEvent[]): Promise<void> {
    this.events.push(...events);
    this.batches.push(events.length);
    if (this.mode === "hang") return new Promise<void>(() => undefined);
    if (this.mode === "manual") return;
    await this.source!.acknowledge(events[events.length - 1]!.position);
  }

  async gap(reason: string, from?: string): Promise<void> {
    this.gaps.push({ reason, ...(from !== undefined ? { from } : {}) });
  }

  fail(reason: string): void {
    this.failures.push(reason);
  }

  bodies(): Document[] {
    return this.events.map((e) => BSON.EJSON.parse(Buffer.from(e.payload!).toString("utf8"), { relaxed: true }) as Document);
  }
}


const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

let mongo: MongoClient;
beforeAll(async () => {
  mongo = new MongoClient(url, { serverSelectionTimeoutMS: 5_000 });
  await mongo.connect();
});
afterAll(async () => {
  await mongo?.close();
});

let counter = 0;
/**
 * A collection no other test (or earlier run) uses, in a database of its own (dropped
 * afterwards): mongo-java-server hands a collection's watchers the drop of any collection
 * in the same database.
 */
function freshCollection(db = `al_src_${process.pid}_${Date.now().toString(36)}_${(counter++).toString(36)}`): Collection {
  const name = `c_${(counter++).toString(36)}`;
  const coll = mongo.db(db).collection(name);
  cleanups.push(() => coll.drop().catch(() => undefined));
  return coll;
}

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "mongo-source-"));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

const context = (stateDir: string, lines: LogLine[] = []) => recordingContext("mongo-test", stateDir, lines);

function configFor(coll: Collection, extra: Partial<MongoChangeStreamConfigInput> = {}): MongoChangeStreamConfigInput {
  return { url, database: coll.dbName, collection: coll.collectionName, server_selection_timeout_ms: 5_000, max_await_time_ms: 100, ...extra };
}

function create(config: MongoChangeStreamConfigInput, stateDir: string, lines: LogLine[] = []): MongoChangeStreamSource {
  const source = mongoChangeStreamSource.create(mongoChangeStreamSource.configSchema.parse(config), context(stateDir, lines)) as MongoChangeStreamSource;
  cleanups.push(() => source.stop());
  return source;
}

async function startSource(config: MongoChangeStreamConfigInput, stateDir: string, sink = new RecordingSink(), lines: LogLine[] = []) {
  const source = create(config, stateDir, lines);
  sink.source = source;
  await source.start(sink);
  return { source, sink };
}

async function insert(coll: Collection, from: number, to: number): Promise<void> {
  for (let i = from; i < to; i += 100) {
    await coll.insertMany(Array.from({ length: Math.min(100, to - i) }, (_, k) => ({ _id: i + k, n: i + k })) as Document[]);
  }
}

function readState(stateDir: string): ResumeRecord {
  return JSON.parse(readFileSync(join(stateDir, RESUME_FILE), "utf8")) as ResumeRecord;
}

const idOf = (e: SourceEvent) => Number(e.subject!.slice(e.subject!.indexOf("/") + 1));

// ---------------------------------------------------------------------------------------
// Events

describe("events", () => {
  it("records insert, update and delete as mongo.<operationType> with subject, EJSON payload, occurred_at and position", async () => {
    const coll = freshCollection();
    const { sink } = await startSource(configFor(coll, { full_document: "updateLookup" }), tempDir());
    const at = new Date("2026-01-02T03:04:05.678Z");
    await coll.insertOne({ _id: 1 as never, name: "one", at, big: BSON.Long.fromString("9007199254740993") });
    await coll.updateOne({ _id: 1 as never }, { $set: { name: "uno" } });
    await coll.deleteOne({ _id: 1 as never });
    const oid = new BSON.ObjectId();
    await coll.insertOne({ _id: oid, name: "oid" });
    await waitFor("4 events", () => sink.events.length >= 4);

    expect(sink.events.map((e) => e.kind)).toEqual(["mongo.insert", "mongo.update", "mongo.delete", "mongo.insert"]);
    const ns = `${coll.dbName}.${coll.collectionName}`;
    // mongo-java-server puts an update's operators in its documentKey (a real server: {_id}).
    expect(sink.events.map((e) => e.subject)).toEqual([`${ns}/1`, `${ns}/{"$set":{"name":"uno"}}`, `${ns}/1`, `${ns}/{"$oid":"${oid.toHexString()}"}`]);
    for (const e of sink.events) {
      expect(e.payloadType).toBe("application/json");
      expect(e.position).toMatch(POSITION);
      // mongo-java-server gives no wallTime: the cluster time's second.
      expect(e.occurredAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/);
    }
    expect(new Set(sink.events.map((e) => e.position)).size).toBe(4);

    const [inserted, updated, deleted] = sink.bodies();
    expect(inserted).toMatchObject({ operationType: "insert", ns: { db: coll.dbName, coll: coll.collectionName }, documentKey: { _id: 1 } });
    expect(inserted!.fullDocument).toMatchObject({ _id: 1, name: "one", at });
    expect(inserted!.clusterTime).toBeInstanceOf(BSON.Timestamp);
    // The payload is relaxed Extended JSON text: plain numbers, typed values kept.
    // 64-bit integers beyond 2^53 keep every digit.
    const text = Buffer.from(sink.events[0]!.payload!).toString("utf8");
    expect(text).toContain('"at":{"$date":"2026-01-02T03:04:05.678Z"}');
    expect(text).toContain('"big":{"$numberLong":"9007199254740993"}');
    expect(text).toContain('"documentKey":{"_id":1}');
    // The change reaches the payload (mongo-java-server sends it as fullDocument; a real server as updateDescription).
    expect(updated).toMatchObject({ operationType: "update", fullDocument: { name: "uno" } });
    expect(deleted).toMatchObject({ operationType: "delete", documentKey: { _id: 1 } });
    // The position is the token's: the cluster time in it matches the event's.
    const ts = inserted!.clusterTime as BSON.Timestamp;
    expect(sink.events[0]!.position.startsWith(`mongo1:${ts.t}.${ts.i}:`)).toBe(true);
  });

  it("records a drop of the watched collection as mongo.drop and goes on", async () => {
    const coll = freshCollection();
    const { sink } = await startSource(configFor(coll), tempDir());
    await coll.insertOne({ _id: 1 as never });
    await coll.drop();
    await coll.insertOne({ _id: 2 as never });
    await waitFor("3 events", () => sink.events.length >= 3);
    expect(sink.events.map((e) => e.kind)).toEqual(["mongo.insert", "mongo.drop", "mongo.insert"]);
    expect(sink.events[1]!.subject).toBe(`${coll.dbName}.${coll.collectionName}`);
  });

  it("canonical EJSON keeps every BSON type", async () => {
    const coll = freshCollection();
    const { sink } = await startSource(configFor(coll, { payload_ejson: "canonical" }), tempDir());
    await coll.insertOne({ _id: 7 as never, d: new BSON.Double(2), l: BSON.Long.fromNumber(3), r: new BSON.BSONRegExp("^a", "imsux") });
    await waitFor("1 event", () => sink.events.length >= 1);
    const text = Buffer.from(sink.events[0]!.payload!).toString("utf8");
    expect(text).toContain('"documentKey":{"_id":{"$numberInt":"7"}}');
    expect(text).toContain('"d":{"$numberDouble":"2.0"}');
    expect(text).toContain('"l":{"$numberLong":"3"}');
    expect(text).toContain('"r":{"$regularExpression":{"pattern":"^a","options":"imsux"}}');
  });

  it(`turns N inserts into exactly N events, in order, in batches of at most batch_size`, async () => {
    const coll = freshCollection();
    const { sink } = await startSource(configFor(coll, { batch_size: 40 }), tempDir());
    const N = 500;
    await insert(coll, 0, N);
    await waitFor(`${N} events`, () => sink.events.length >= N);
    await new Promise((r) => setTimeout(r, 200)); // nothing more comes
    expect(sink.events.map(idOf)).toEqual(Array.from({ length: N }, (_, i) => i));
    expect(new Set(sink.events.map((e) => e.position)).size).toBe(N);
    expect(Math.max(...sink.batches)).toBeLessThanOrEqual(40);
    expect(sink.batches.length).toBeLessThan(N); // batched, not one by one
  });
});

// ---------------------------------------------------------------------------------------
// Resume token, restarts

describe("resume token", () => {
  it("is written only on acknowledge; a restart resumes after it, with the same positions for what comes again", async () => {
    const coll = freshCollection();
    const stateDir = tempDir();
    const held = new RecordingSink();
    held.mode = "manual";
    const first = await startSource(configFor(coll), stateDir, held);
    const anchor = readState(stateDir);
    expect(anchor.position).toBeNull();
    await insert(coll, 0, 6);
    await waitFor("6 events", () => held.events.length >= 6);
    await new Promise((r) => setTimeout(r, 100));
    expect(readState(stateDir)).toEqual(anchor); // emitted is not acknowledged

    await first.source.acknowledge(held.events[2]!.position);
    const saved = readState(stateDir);
    expect(saved.position).toBe(held.events[2]!.position);
    expect(saved.token).not.toBeNull();
    await first.source.stop();

    const { sink } = await startSource(configFor(coll), stateDir);
    await waitFor("3 redelivered events", () => sink.events.length >= 3);
    expect(sink.events.map((e) => e.position)).toEqual(held.events.slice(3).map((e) => e.position));
    await insert(coll, 6, 7);
    await waitFor("the new event", () => sink.events.length >= 4);
    expect(sink.events.map(idOf)).toEqual([3, 4, 5, 6]);
    await waitFor("its token saved", () => readState(stateDir).position === sink.events[3]!.position);
  });

  it("redelivers everything not acknowledged when emit never returned", async () => {
    const coll = freshCollection();
    const stateDir = tempDir();
    const hung = new RecordingSink();
    hung.mode = "hang";
    const first = await startSource(configFor(coll, { batch_size: 2 }), stateDir, hung);
    await insert(coll, 0, 5);
    await waitFor("the first batch", () => hung.events.length === 2);
    await new Promise((r) => setTimeout(r, 200)); // emit has not returned: nothing more is read
    expect(hung.batches).toEqual([2]);
    await first.source.stop();

    const { sink } = await startSource(configFor(coll, { batch_size: 2 }), stateDir);
    await waitFor("5 events", () => sink.events.length >= 5);
    expect(sink.events.map(idOf)).toEqual([0, 1, 2, 3, 4]);
    expect(sink.events.slice(0, 2).map((e) => e.position)).toEqual(hung.events.map((e) => e.position));
  });

  it("a first start remembers where it began: inserts made before its first acknowledgement, while it was down, are not missed", async () => {
    const coll = freshCollection();
    const stateDir = tempDir();
    const first = await startSource(configFor(coll), stateDir);
    // mongo-java-server gives no post-batch token: the anchor is the opening second.
    const anchor = readState(stateDir);
    expect(anchor.token !== null || anchor.start_at_operation_time !== null).toBe(true);
    await first.source.stop();
    await insert(coll, 0, 3);
    const { sink } = await startSource(configFor(coll), stateDir);
    await waitFor("3 events", () => sink.events.length >= 3);
    expect(sink.events.map(idOf)).toEqual([0, 1, 2]);
  });

  it("a first start prefers the cluster time the server says the stream opened at over the agent's clock", () => {
    // The driver keeps the aggregate's operationTime as the cursor's startAtOperationTime
    // (a real replica set sends one; mongo-java-server does not, so the clock is used there).
    const streamWith = (cursor: object | undefined) => ({ cursor }) as unknown as Parameters<typeof serverStartTime>[0];
    expect(serverStartTime(streamWith({ startAtOperationTime: new BSON.Timestamp({ t: 1795377224, i: 7 }) }))).toEqual({ t: 1795377224, i: 7 });
    expect(serverStartTime(streamWith({}))).toBeUndefined();
    expect(serverStartTime(streamWith(undefined))).toBeUndefined();
  });

  it("refuses a state folder that belongs to a watch of another collection", async () => {
    const a = freshCollection();
    const b = freshCollection();
    const stateDir = tempDir();
    const first = await startSource(configFor(a), stateDir);
    await first.source.stop();
    const source = create(configFor(b), stateDir);
    await expect(source.start(new RecordingSink())).rejects.toThrow(
      `is the resume point of a change stream on ${a.dbName}.${a.collectionName}, but the source now watches ${b.dbName}.${b.collectionName}`,
    );
  });

  it("a damaged resume token fails start naming the server's complaint", async () => {
    const coll = freshCollection();
    const stateDir = tempDir();
    const record: ResumeRecord = { v: 1, scope: `${coll.dbName}.${coll.collectionName}`, token: '{"_data":"not-hex"}', start_at_operation_time: null, position: null, history_lost: null };
    writeFileSync(join(stateDir, RESUME_FILE), JSON.stringify(record));
    const source = create(configFor(coll), stateDir);
    // A real MongoDB answers InvalidResumeToken (260), which is recorded as a gap (see "history lost");
    // mongo-java-server answers without a code.
    await expect(source.start(new RecordingSink())).rejects.toThrow(
      new RegExp(`mongo_change_stream source "mongo-test": cannot watch ${coll.dbName}\\.${coll.collectionName} on MongoDB at 127\\.0\\.0\\.1:\\d+: .*not-hex`),
    );
    writeFileSync(join(stateDir, RESUME_FILE), "{ torn");
    await expect(create(configFor(coll), stateDir).start(new RecordingSink())).rejects.toThrow(`${RESUME_FILE} is damaged`);
  });
});

// ---------------------------------------------------------------------------------------
// Backpressure

describe("pause", () => {
  it("stops reading the change stream while paused; resume() delivers in order", async () => {
    const coll = freshCollection();
    const { source, sink } = await startSource(configFor(coll), tempDir());
    // Count the source's reads of its cursor (tryNext is how it pulls).
    let reads = 0;
    const stream = (source as unknown as { stream: { tryNext: () => Promise<unknown> } }).stream;
    const tryNext = stream.tryNext.bind(stream);
    stream.tryNext = () => (reads++, tryNext());
    await waitFor("the source reading", () => reads > 0);
    source.pause();
    await new Promise((r) => setTimeout(r, 150)); // a read under way at pause() finishes
    const readsWhenPaused = reads;
    await insert(coll, 0, 30);
    await new Promise((r) => setTimeout(r, 400)); // paused: no read, no event
    expect(reads).toBe(readsWhenPaused);
    expect(sink.events).toHaveLength(0);
    source.resume();
    await waitFor("30 events after resume", () => sink.events.length >= 30);
    expect(sink.events.map(idOf)).toEqual(Array.from({ length: 30 }, (_, i) => i));
  });
});

// ---------------------------------------------------------------------------------------
// Crashes (kill -9 of a process running the source)

describe("kill -9", () => {
  // "ack": acknowledge each batch and write {"acked": position} once that resolved.
  const runChild = (config: MongoChangeStreamConfigInput, stateDir: string, outFile: string, mode: "ack" | "hold") =>
    startCrashChild("mongo_change_stream", config, stateDir, outFile, mode === "ack" ? "ack-logged" : "hold", cleanups);

  async function kill9(child: ChildProcess): Promise<void> {
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await exited;
  }

  type Line = { position?: string; subject?: string; acked?: string; gap?: string };
  const readLines = (file: string) => readCrashLines<Line>(file);
  const events = (file: string) => readLines(file).filter((l) => l.position !== undefined);

  it("killed before acknowledging: the events come again with the same positions; killed after: they do not", async () => {
    const coll = freshCollection();
    const stateDir = tempDir();
    const dir = tempDir();
    const config = configFor(coll);

    const holding = await runChild(config, stateDir, join(dir, "1.jsonl"), "hold");
    await insert(coll, 0, 5);
    await waitFor("5 events stored, none acknowledged", () => events(join(dir, "1.jsonl")).length >= 5);
    await kill9(holding);

    const acking = await runChild(config, stateDir, join(dir, "2.jsonl"), "ack");
    await waitFor("5 events again, acknowledged", () => readLines(join(dir, "2.jsonl")).some((l) => l.acked === events(join(dir, "1.jsonl"))[4]!.position));
    expect(events(join(dir, "2.jsonl")).map((l) => l.position)).toEqual(events(join(dir, "1.jsonl")).map((l) => l.position));
    await kill9(acking);

    const third = await runChild(config, stateDir, join(dir, "3.jsonl"), "ack");
    await insert(coll, 5, 6);
    await waitFor("the new event", () => events(join(dir, "3.jsonl")).length >= 1);
    await new Promise((r) => setTimeout(r, 200)); // and nothing else
    expect(events(join(dir, "3.jsonl")).map((l) => l.subject)).toEqual([`${coll.dbName}.${coll.collectionName}/5`]);
    third.kill("SIGTERM");
  });

  it("killed halfway and restarted: every insert exactly once by position, in order", async () => {
    const coll = freshCollection();
    const stateDir = tempDir();
    const outFile = join(tempDir(), "events.jsonl");
    const config = configFor(coll, { batch_size: 20 });
    const N = 600;
    let child = await runChild(config, stateDir, outFile, "ack");
    const producing = insert(coll, 0, N);
    await waitFor("some events before the kill", () => events(outFile).length >= 60);
    await kill9(child);
    await producing;
    const beforeKill = events(outFile).length;
    expect(beforeKill).toBeLessThan(N);

    child = await runChild(config, stateDir, outFile, "ack");
    await waitFor(`${N} distinct positions`, () => new Set(events(outFile).map((l) => l.position)).size >= N, 30_000);
    child.kill("SIGTERM");
    const byPosition = new Map<string, string>();
    const order: string[] = [];
    for (const l of events(outFile)) {
      const seen = byPosition.get(l.position!);
      if (seen === undefined) {
        byPosition.set(l.position!, l.subject!);
        order.push(l.subject!);
      } else {
        expect(seen).toBe(l.subject); // a replay has the position of the first delivery
      }
    }
    expect(byPosition.size).toBe(N);
    expect(order).toEqual(Array.from({ length: N }, (_, i) => `${coll.dbName}.${coll.collectionName}/${i}`));
  });
});

// ---------------------------------------------------------------------------------------
// History lost

describe("history lost", () => {
  const serverError = (code: number, codeName: string, errmsg: string) => new MongoServerError({ ok: 0, code, codeName, errmsg });

  it("is recognised from the server's error codes, and only from those", () => {
    expect(isHistoryLost(serverError(286, "ChangeStreamHistoryLost", "Resume of change stream was not possible, as the resume point may no longer be in the oplog."))).toBe(true);
    expect(isHistoryLost(serverError(280, "ChangeStreamFatalError", "cannot resume stream; the resume token was not found."))).toBe(true);
    expect(isHistoryLost(serverError(136, "CappedPositionLost", "CollectionScan died due to position in capped collection being deleted."))).toBe(true);
    expect(isHistoryLost(serverError(260, "InvalidResumeToken", "Invalid resume token"))).toBe(true);
    expect(isHistoryLost(serverError(43, "CursorNotFound", "cursor id 1 not found"))).toBe(false);
    expect(isHistoryLost(serverError(11600, "InterruptedAtShutdown", "interrupted at shutdown"))).toBe(false);
    expect(isHistoryLost(new MongoNetworkError("connection closed"))).toBe(false);
  });

  /**
   * Hands the source's read-error handling the error a real server sends when the resume
   * point has left the oplog (mongo-java-server never truncates its oplog).
   */
  async function loseHistory(source: MongoChangeStreamSource): Promise<void> {
    const inside = source as unknown as { wakers: unknown[]; recoverFromReadError(err: unknown): Promise<void> };
    // In place of a read of the source's loop: with the loop parked by pause().
    source.pause();
    await waitFor("the read loop parked", () => inside.wakers.length > 0);
    await inside.recoverFromReadError(serverError(286, "ChangeStreamHistoryLost", "Resume of change stream was not possible, as the resume point may no longer be in the oplog."));
    source.resume();
  }

  it("on_history_lost fail: one gap entry from the last position, a loud error, and start() refuses until told to go on", async () => {
    const coll = freshCollection();
    const stateDir = tempDir();
    const lines: LogLine[] = [];
    const { source, sink } = await startSource(configFor(coll), stateDir, new RecordingSink(), lines);
    await insert(coll, 0, 2);
    await waitFor("2 events", () => sink.events.length >= 2);
    await loseHistory(source);
    expect(sink.gaps).toHaveLength(1);
    expect(sink.gaps[0]!.from).toBe(sink.events[1]!.position);
    expect(sink.gaps[0]!.reason).toContain(`no longer has the change stream history of ${coll.dbName}.${coll.collectionName} after position ${sink.events[1]!.position}`);
    expect(sink.gaps[0]!.reason).toContain("(ChangeStreamHistoryLost, code 286)");
    expect(lines.some((l) => l.level === "error" && l.msg.includes("no longer has the change stream history"))).toBe(true);
    expect(lines.some((l) => l.level === "error" && l.msg.includes("the source stays stopped until on_history_lost is set to restart_from_now"))).toBe(true);
    // The agent is told (it stops and exits 1), once, after the gap entry.
    expect(sink.failures).toHaveLength(1);
    expect(sink.failures[0]).toContain("no longer has the change stream history");
    expect(sink.failures[0]).toContain("the source stays stopped until on_history_lost is set to restart_from_now");
    // Stopped reading: what comes now waits upstream.
    await insert(coll, 2, 3);
    await new Promise((r) => setTimeout(r, 300));
    expect(sink.events).toHaveLength(2);
    expect(readState(stateDir).history_lost).not.toBeNull();
    await source.stop();

    // A restart in "fail" mode refuses, without a second gap entry.
    const again = new RecordingSink();
    await expect(create(configFor(coll), stateDir).start(again)).rejects.toThrow(/The gap is recorded in the ledger; the source stays stopped until on_history_lost is set to restart_from_now/);
    expect(again.gaps).toHaveLength(0);

    // Told to go on: no second gap entry, a new starting point, events flow.
    const { sink: goingOn } = await startSource(configFor(coll, { on_history_lost: "restart_from_now" }), stateDir);
    expect(goingOn.gaps).toHaveLength(0);
    await insert(coll, 10, 12);
    await waitFor("2 new events", () => goingOn.events.some((e) => idOf(e) === 11));
    // mongo-java-server gives no post-batch token: "now" is the current second by the agent's
    // clock, so events of that second may come again (same positions: the ledger keeps one).
    expect(goingOn.events.map(idOf).slice(-2)).toEqual([10, 11]);
    await waitFor("the marker cleared by the acknowledgement", () => readState(stateDir).history_lost === null);
  });

  it("on_history_lost restart_from_now: a gap entry, then the source goes on from the current point", async () => {
    const coll = freshCollection();
    const stateDir = tempDir();
    const { source, sink } = await startSource(configFor(coll, { on_history_lost: "restart_from_now" }), stateDir);
    await insert(coll, 0, 1);
    await waitFor("1 event", () => sink.events.length >= 1);
    await loseHistory(source);
    expect(sink.gaps).toHaveLength(1);
    expect(sink.gaps[0]!.from).toBe(sink.events[0]!.position);
    await waitFor("a new starting point saved", () => readState(stateDir).history_lost === null);
    await insert(coll, 1, 2);
    await waitFor("the next event", () => sink.events.some((e) => idOf(e) === 1));
    expect(new Set(sink.events.map(idOf))).toEqual(new Set([0, 1])); // 0 again at most, as above
    expect(sink.gaps).toHaveLength(1);
    expect(sink.failures).toHaveLength(0);
  });

  it("on_history_lost restart_from_now: a failing state write is retried (logged), not a silent stop", async () => {
    const coll = freshCollection();
    const stateDir = tempDir();
    const lines: LogLine[] = [];
    const { source, sink } = await startSource(configFor(coll, { on_history_lost: "restart_from_now" }), stateDir, new RecordingSink(), lines);
    await insert(coll, 0, 1);
    await waitFor("1 event", () => sink.events.length >= 1);
    // The disk refuses the first two writes of the history-lost marker.
    const state = (source as unknown as { state: { save(c: Partial<ResumeRecord>): Promise<void> } }).state;
    const save = state.save.bind(state);
    let refused = 0;
    let landed = false;
    state.save = async (changes) => {
      if (changes.history_lost != null && refused < 2) {
        refused++;
        throw new Error("cannot write resume-token.json: EIO (test)");
      }
      await save(changes);
      if (changes.history_lost != null) landed = true;
    };
    await loseHistory(source);
    expect(refused).toBe(2);
    expect(landed).toBe(true); // written on the third try, before going on
    expect(lines.filter((l) => l.level === "error" && l.msg.includes("cannot note in the state folder that the gap is recorded; retrying"))).toHaveLength(2);
    expect(sink.gaps).toHaveLength(1);
    expect(sink.failures).toHaveLength(0);
    // Going on from the current point (opened and anchored before the insert, or it would be before "now").
    await waitFor("a new starting point saved", () => readState(stateDir).history_lost === null);
    await insert(coll, 1, 2);
    await waitFor("the next event", () => sink.events.some((e) => idOf(e) === 1));
  });
});

// ---------------------------------------------------------------------------------------
// An event that can never be read

describe("an event that can never be read", () => {
  const serverError = (code: number, codeName: string, errmsg: string) => new MongoServerError({ ok: 0, code, codeName, errmsg });
  const tooLarge = () => serverError(10334, "BSONObjectTooLarge", "BSONObj size: 17825792 (0x1100000) is invalid. Size must be between 0 and 16793600(16MB)");

  it("is recognised from codes 10334 and 47, apart from history lost", () => {
    expect(isUnreadableEvent(tooLarge())).toBe(true);
    expect(isUnreadableEvent(serverError(47, "NoMatchingDocument", "Change stream was configured to require a post-image for all update, delete and replace events, but the post-image was not found"))).toBe(true);
    expect(isHistoryLost(tooLarge())).toBe(false);
    expect(isUnreadableEvent(serverError(286, "ChangeStreamHistoryLost", "Resume of change stream was not possible"))).toBe(false);
    expect(isUnreadableEvent(serverError(43, "CursorNotFound", "cursor id 1 not found"))).toBe(false);
    expect(isUnreadableEvent(new MongoNetworkError("connection closed"))).toBe(false);
  });

  it("records one gap entry from the last position, fails the source loudly, and is not recorded again after a restart", async () => {
    const coll = freshCollection();
    const stateDir = tempDir();
    const lines: LogLine[] = [];
    // on_history_lost restart_from_now does not apply: skipping would hide the lost event.
    const { source, sink } = await startSource(configFor(coll, { on_history_lost: "restart_from_now" }), stateDir, new RecordingSink(), lines);
    await insert(coll, 0, 2);
    await waitFor("2 events", () => sink.events.length >= 2);
    // The error a real server sends for an event over 16 MB with its images (mongo-java-server has no such limit).
    const inside = source as unknown as { wakers: unknown[]; recoverFromReadError(err: unknown): Promise<void> };
    source.pause();
    await waitFor("the read loop parked", () => inside.wakers.length > 0);
    await inside.recoverFromReadError(tooLarge());
    source.resume();
    expect(sink.gaps).toHaveLength(1);
    expect(sink.gaps[0]!.from).toBe(sink.events[1]!.position);
    expect(sink.gaps[0]!.reason).toContain(`cannot return the next change event of ${coll.dbName}.${coll.collectionName} after position ${sink.events[1]!.position}`);
    expect(sink.gaps[0]!.reason).toContain("(BSONObjectTooLarge, code 10334)");
    expect(sink.failures).toHaveLength(1);
    expect(sink.failures[0]).toContain("The gap is recorded in the ledger; the source stays stopped");
    expect(lines.some((l) => l.level === "error" && l.msg.includes("the source stays stopped"))).toBe(true);
    expect(readState(stateDir).unreadable_event?.reason).toBe(sink.gaps[0]!.reason);
    // Not retried from the same point: nothing more is read.
    await insert(coll, 2, 3);
    await new Promise((r) => setTimeout(r, 300));
    expect(sink.events).toHaveLength(2);
    await source.stop();

    // Restarted (say, with the image option changed): the marker keeps a second gap entry
    // out if the event fails again; here it reads, and the acknowledgement clears the marker.
    const { sink: again } = await startSource(configFor(coll), stateDir);
    await waitFor("the event after", () => again.events.some((e) => idOf(e) === 2));
    expect(again.gaps).toHaveLength(0);
    expect(again.failures).toHaveLength(0);
    await waitFor("the marker cleared by the acknowledgement", () => readState(stateDir).unreadable_event == null);
  });
});

// ---------------------------------------------------------------------------------------
// Bad configuration at start

describe("start() fails naming the problem", () => {
  it("unreachable server, within server_selection_timeout_ms", async () => {
    const port = await freePort();
    const coll = freshCollection();
    const source = create({ ...configFor(coll), url: `mongodb://127.0.0.1:${port}/`, server_selection_timeout_ms: 500 }, tempDir());
    const began = Date.now();
    await expect(source.start(new RecordingSink())).rejects.toThrow(
      new RegExp(`mongo_change_stream source "mongo-test": cannot reach MongoDB at 127\\.0\\.0\\.1:${port} within server_selection_timeout_ms \\(500 ms\\): connect ECONNREFUSED`),
    );
    expect(Date.now() - began).toBeLessThan(5_000);
  });

  it("a URL the driver refuses", async () => {
    const coll = freshCollection();
    const source = create({ ...configFor(coll), url: `${url}?noSuchOption=1` }, tempDir());
    await expect(source.start(new RecordingSink())).rejects.toThrow(/url: option nosuchoption is not supported/i);
  });

  it("credentials the server cannot check", async () => {
    const coll = freshCollection();
    const source = create({ ...configFor(coll), username: "agent", password: "secret" }, tempDir());
    // mongo-java-server has no authentication; a real server answers AuthenticationFailed (18).
    await expect(source.start(new RecordingSink())).rejects.toThrow(/cannot connect to MongoDB at 127\.0\.0\.1:\d+: .*saslStart/);
  });

  it("a deployment the server cannot watch", async () => {
    const source = create({ url, server_selection_timeout_ms: 5_000 }, tempDir());
    await expect(source.start(new RecordingSink())).rejects.toThrow(/cannot watch the deployment on MongoDB at 127\.0\.0\.1:\d+: .*aggregate/);
  });

  it("password_env naming a variable that is not set", async () => {
    const coll = freshCollection();
    const source = create({ ...configFor(coll), username: "u", password_env: "NO_SUCH_VARIABLE_FOR_MONGO_TEST" }, tempDir());
    await expect(source.start(new RecordingSink())).rejects.toThrow("password_env: the environment variable NO_SUCH_VARIABLE_FOR_MONGO_TEST is not set");
  });

  it("words the server's refusals", () => {
    const where = { hosts: "db1:27017,db2:27017", scope: "shop.orders", username: "agent", serverSelectionTimeoutMs: 1000 };
    const err = (code: number, codeName: string, errmsg: string) => new MongoServerError({ ok: 0, code, codeName, errmsg });
    expect(startProblem(err(18, "AuthenticationFailed", "Authentication failed."), where, "connect")).toBe(
      'MongoDB at db1:27017,db2:27017 refused the credentials of user "agent": Authentication failed. (AuthenticationFailed, code 18)',
    );
    expect(startProblem(err(13, "Unauthorized", "not authorized on shop to execute command"), where, "watch")).toMatch(
      /^user "agent" may not watch shop\.orders on db1:27017,db2:27017: it needs the changeStream and find actions there/,
    );
    expect(startProblem(err(40573, "Location40573", "The $changeStream stage is only supported on replica sets"), where, "watch")).toMatch(
      /^change streams need a replica set or a sharded cluster, and MongoDB at db1:27017,db2:27017 is a standalone server/,
    );
  });
});

// ---------------------------------------------------------------------------------------
// Shapes and configuration

describe("event shape", () => {
  it("derives a stable position from the resume token", () => {
    const token = { _data: "8263F0A1B2000000012B022C0100296E5A1004" };
    const ts = new BSON.Timestamp({ t: 1_700_000_000, i: 3 });
    expect(positionOf(token, ts)).toBe(positionOf({ ...token }, ts));
    expect(positionOf(token, ts)).toMatch(/^mongo1:1700000000\.3:[0-9a-f]{32}$/);
    expect(positionOf({ _data: "8263F0A1B2000000012B022C0100296E5A1005" }, ts)).not.toBe(positionOf(token, ts));
    expect(positionOf(token, undefined)).toMatch(/^mongo1:0\.0:/);
  });

  it("uses ns and wallTime when the server gives them (a real replica set does)", () => {
    const wallTime = new Date("2026-05-06T07:08:09.123Z");
    const e = toSourceEvent(
      {
        _id: { _data: "82" },
        operationType: "rename",
        ns: { db: "shop", coll: "orders" },
        to: { db: "shop", coll: "orders_old" },
        clusterTime: new BSON.Timestamp({ t: 1, i: 1 }),
        wallTime,
      },
      { db: "other", coll: "x" },
      "relaxed",
    );
    expect(e.kind).toBe("mongo.rename");
    expect(e.subject).toBe("shop.orders");
    expect(e.occurredAt).toBe("2026-05-06T07:08:09.123Z");
    expect(JSON.parse(Buffer.from(e.payload!).toString("utf8"))).toMatchObject({ ns: { db: "shop", coll: "orders" }, to: { coll: "orders_old" } });
    const dropped = toSourceEvent({ _id: { _data: "83" }, operationType: "dropDatabase", ns: { db: "shop" } }, { db: "shop" }, "relaxed");
    expect(dropped.subject).toBe("shop");
    // An invalidate carries no ns: it is about what is watched.
    const invalidated = toSourceEvent({ _id: { _data: "86" }, operationType: "invalidate", clusterTime: new BSON.Timestamp({ t: 2, i: 1 }) }, { db: "shop", coll: "orders" }, "relaxed");
    expect([invalidated.kind, invalidated.subject, invalidated.occurredAt]).toEqual(["mongo.invalidate", "shop.orders", "1970-01-01T00:00:02.000Z"]);
  });

  it("cuts long subjects with a digest and labels over-deep JSON as octet-stream", () => {
    const subject = subjectOf({ db: "d", coll: "c" }, "x".repeat(2000));
    expect(subject.length).toBeLessThanOrEqual(1024);
    expect(subject).toMatch(/^d\.c\/"xxx.*#sha256=[0-9a-f]{64}$/);
    const sharded = toSourceEvent({ _id: { _data: "85" }, operationType: "delete", documentKey: { _id: 5, region: "eu" } }, { db: "d", coll: "c" }, "relaxed");
    expect(sharded.subject).toBe("d.c/5");
    expect(nestsDeeperThan('{"a":[{"b":"}}}}"}]}', 3)).toBe(false);
    expect(nestsDeeperThan('{"a":[{"b":{"c":1}}]}', 3)).toBe(true);
    let deep: Document = { leaf: 1 };
    for (let i = 0; i < 70; i++) deep = { d: deep };
    const e = toSourceEvent({ _id: { _data: "84" }, operationType: "insert", documentKey: { _id: 1 }, fullDocument: deep }, { db: "d", coll: "c" }, "relaxed");
    expect(e.payloadType).toBe("application/octet-stream");
  });
});

describe("configuration", () => {
  const schema = mongoChangeStreamSource.configSchema;
  const ok: MongoChangeStreamConfigInput = { url: "mongodb://db1:27017,db2:27017/?replicaSet=rs0", database: "shop", collection: "orders" };

  function problems(input: unknown): string[] {
    const r = schema.safeParse(input);
    if (r.success) return [];
    return r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
  }

  it("fills in the defaults", () => {
    expect(schema.parse(ok)).toMatchObject({
      full_document: "off",
      full_document_before_change: "off",
      on_history_lost: "fail",
      batch_size: 100,
      max_await_time_ms: 1_000,
      server_selection_timeout_ms: 10_000,
      payload_ejson: "relaxed",
    });
    expect(mongoChangeStreamSource.type).toBe("mongo_change_stream");
    expect(problems({ url: "mongodb+srv://cluster0.example.net/?tls=true" })).toEqual([]);
  });

  it("names the field in every error", () => {
    expect(problems({ ...ok, url: "http://db1" })[0]).toMatch(/^url: "http:\/\/db1" is not a MongoDB URL/);
    expect(problems({ ...ok, url: "mongodb://agent:pw@db1" })[0]).toMatch(/^url: must not contain user:password/);
    expect(problems({ ...ok, url: "mongodb://" })).toEqual(["url: names no host"]);
    expect(problems({ ...ok, url: "mongodb+srv://a.example,b.example" })).toEqual(["url: mongodb+srv:// takes exactly one host name"]);
    expect(problems({ url: ok.url, collection: "orders" })).toEqual(["collection: needs `database` (the database the collection is in)"]);
    expect(problems({ ...ok, database: "sh.op" })[0]).toMatch(/^database: may not contain/);
    expect(problems({ ...ok, collection: "system.profile" })[0]).toMatch(/^collection: system collections/);
    expect(problems({ ...ok, full_document: "always" })[0]).toMatch(/^full_document: /);
    expect(problems({ ...ok, on_history_lost: "ignore" })[0]).toMatch(/^on_history_lost: /);
    expect(problems({ ...ok, password: "x" })).toEqual(["username: a password needs a username"]);
    expect(problems({ ...ok, username: "u", password: "p", password_env: "P" })).toEqual(["password_env: give password or password_env, not both"]);
    expect(problems({ ...ok, batch_size: 0 })[0]).toMatch(/^batch_size: /);
    expect(problems({ ...ok, colection: "x" })[0]).toMatch(/colection/);
  });
});
