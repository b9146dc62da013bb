// The kafka_consumer source against the suite's real Kafka 3.9 broker (KRaft, started by
// the global setup), with fresh topics and consumer groups per test. The sink records
// what it is given and acknowledges as the agent does (from inside emit, once the
// event is "stored"), unless a test holds it back. Committed offsets are read back with
// the Kafka admin client. Conditions are awaited; short sleeps only show that something
// does NOT happen.
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { getEventListeners } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Kafka, logLevel, type Admin, type Message, type Producer } from "kafkajs";
import type { SourceEvent, SourceSink } from "../source.js";
import kafkaConsumerSource, { type KafkaConsumerConfigInput, type KafkaConsumerSource } from "./index.js";
import { untilAborted } from "./kafka-consumer-source.js";
import { positionOf, subjectOf, toSourceEvent, topicToken, MAX_TOPIC_IN_POSITION, type ReceivedMessage } from "./message-event.js";
import { PartitionProgress } from "./partition-progress.js";
import { waitFor } from "../../../test/support/wait-for.js";
import { freePort } from "../../../test/support/free-port.js";
import { readCrashLines, startCrashChild } from "../../../test/support/source-crash-process.js";
import { type LogLine, recordingContext } from "../../../test/support/source-context.js";

const BROKERS = inject("kafkaBrokers");

// ---------------------------------------------------------------------------------------
// Harness

/** Records events; by default acknowledges each emit's last event from inside emit, as the agent does. */
class RecordingSink implements SourceSink {
  readonly events: SourceEvent[] = [];
  readonly gaps: string[] = [];
  readonly failures: string[] = [];
  emitCalls = 0;
  /** ack: acknowledge inside emit; manual: the test acknowledges; hang: emit never resolves. */
  mode: "ack" | "manual" | "hang" = "ack";
  /** When set, emit waits for it before storing (a slow ledger). */
  held: Promise<void> | undefined;
  source: KafkaConsumerSource | undefined;

  async emit(events: SourceEvent[]): Promise<void> {
    this.emitCalls++;
    if (this.held) await this.held;
    this.events.push(...events);
    if (this.mode === "hang") return new Promise<void>(() => undefined);
    if (this.mode === "manual") return;
    await this.source!.acknowledge(events[events.length - 1]!.position);
  }

  async gap(reason: string): Promise<void> {
    this.gaps.push(reason);
  }

  fail(reason: string): void {
    this.failures.push(reason);
  }

  positions(): string[] {
    return this.events.map((e) => e.position);
  }

  values(): string[] {
    return this.events.map((e) => (JSON.parse(Buffer.from(e.payload!).toString("utf8")) as { value: string }).value);
  }
}


const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

let admin: Admin;
let producer: Producer;
beforeAll(async () => {
  const kafka = new Kafka({ clientId: "kafka-consumer-test", brokers: BROKERS, logLevel: logLevel.NOTHING });
  admin = kafka.admin();
  producer = kafka.producer({ allowAutoTopicCreation: false });
  await admin.connect();
  await producer.connect();
});
/** Deleted at the end only: a kafkajs producer keeps asking for every topic it ever sent to. */
const topicsMade: string[] = [];
afterAll(async () => {
  await producer?.disconnect();
  if (topicsMade.length > 0) await admin?.deleteTopics({ topics: topicsMade }).catch(() => undefined);
  await admin?.disconnect();
});

let counter = 0;
/** A name no other test (or earlier run) uses. */
function unique(prefix: string): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${(counter++).toString(36)}`;
}

async function createTopic(partitions = 3): Promise<string> {
  const topic = unique("al-test");
  await admin.createTopics({ topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }], waitForLeaders: true });
  topicsMade.push(topic);
  return topic;
}

/** Sends `count` messages, message i to partition i % partitions, value `v<i>`, key `k<i>`. */
async function produce(topic: string, from: number, to: number, partitions = 3): Promise<void> {
  const messages: Message[] = [];
  for (let i = from; i < to; i++) messages.push({ partition: i % partitions, key: `k${i}`, value: `v${i}`, headers: { seq: String(i) } });
  await producer.send({ topic, messages, acks: -1 });
}

/** The group's committed offset per partition (-1: none). */
async function committed(groupId: string, topic: string): Promise<number[]> {
  const [t] = await admin.fetchOffsets({ groupId, topics: [topic] });
  return t!.partitions.sort((a, b) => a.partition - b.partition).map((p) => Number(p.offset));
}

/** End offset minus committed offset, summed over the partitions. */
async function lag(groupId: string, topic: string): Promise<number> {
  const ends = (await admin.fetchTopicOffsets(topic)).sort((a, b) => a.partition - b.partition).map((p) => Number(p.high));
  const done = await committed(groupId, topic);
  return ends.reduce((sum, end, i) => sum + end - Math.max(0, done[i] ?? 0), 0);
}

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "kafka-source-"));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

const context = (lines: LogLine[] = []) => recordingContext("kafka-test", tempDir(), lines);

/** Short group timeouts: joins and rebalances take seconds, not tens of seconds. */
function base(topic: string, groupId = unique("al-group")): KafkaConsumerConfigInput & { group_id: string } {
  return { brokers: BROKERS, group_id: groupId, topics: [topic], from_beginning: true, session_timeout_ms: 3_000, heartbeat_interval_ms: 300, rebalance_timeout_ms: 5_000 };
}

function create(config: KafkaConsumerConfigInput, lines: LogLine[] = []): KafkaConsumerSource {
  const source = kafkaConsumerSource.create(kafkaConsumerSource.configSchema.parse(config), context(lines)) as KafkaConsumerSource;
  cleanups.push(() => source.stop());
  return source;
}

async function startSource(config: KafkaConsumerConfigInput, sink = new RecordingSink(), lines: LogLine[] = []) {
  const source = create(config, lines);
  sink.source = source;
  await source.start(sink);
  return { source, sink };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------
// Delivery

describe("delivery", () => {
  it("records N messages across partitions as exactly N events, in offset order per partition, then commits them all", async () => {
    const topic = await createTopic(3);
    const config = base(topic);
    const N = 90;
    await produce(topic, 0, N);
    const { sink } = await startSource(config);
    await waitFor(`${N} events`, () => sink.events.length >= N);
    await waitFor("every partition committed to its end", async () => (await lag(config.group_id, topic)) === 0);
    expect(sink.events).toHaveLength(N);
    expect(new Set(sink.positions()).size).toBe(N);

    const lastOffset = new Map<number, number>();
    for (const e of sink.events) {
      const body = JSON.parse(Buffer.from(e.payload!).toString("utf8")) as Record<string, unknown>;
      const i = Number((body.value as string).slice(1));
      const partition = i % 3;
      expect(e.kind).toBe("kafka.message");
      expect(e.payloadType).toBe("application/json");
      expect(body).toMatchObject({ topic, partition, key: `k${i}`, headers: [{ name: "seq", value: String(i) }], value: `v${i}` });
      expect(e.position).toBe(`${topic}/${partition}/${body.offset as string}`);
      expect(e.subject).toBe(`${topic}/${partition}/k${i}`);
      expect(e.occurredAt).toBe(body.timestamp);
      expect(Date.now() - Date.parse(e.occurredAt!)).toBeLessThan(60_000);
      const offset = Number(body.offset);
      expect(offset).toBe(Math.floor(i / 3)); // in order, nothing skipped
      expect(offset).toBeGreaterThan(lastOffset.get(partition) ?? -1);
      lastOffset.set(partition, offset);
    }
    expect(await committed(config.group_id, topic)).toEqual([30, 30, 30]);
  });

  it("commits only each partition's durable prefix: acknowledgements in one partition leave the others uncommitted", async () => {
    const topic = await createTopic(3);
    const config = base(topic);
    await produce(topic, 0, 12); // 4 per partition, offsets 0-3
    const sink = new RecordingSink();
    sink.mode = "manual";
    const first = await startSource(config, sink);
    await waitFor("12 events", () => sink.events.length >= 12);

    await first.source.acknowledge(positionOf(topic, 1, "2"));
    await waitFor("partition 1 committed up to offset 2", async () => (await committed(config.group_id, topic))[1] === 3);
    await first.source.acknowledge(positionOf(topic, 0, "0"));
    await waitFor("partition 0 committed up to offset 0", async () => (await committed(config.group_id, topic))[0] === 1);
    // A late acknowledgement of an earlier message does not move a commit back.
    await first.source.acknowledge(positionOf(topic, 1, "1"));
    await sleep(300);
    expect(await committed(config.group_id, topic)).toEqual([1, 3, -1]);
    expect(await lag(config.group_id, topic)).toBe(12 - 4);
    await first.source.stop();

    // A restart reads again exactly what was not acknowledged, with the same positions.
    const { sink: again } = await startSource(config);
    await waitFor("8 events again", () => again.events.length >= 8);
    await waitFor("everything committed", async () => (await lag(config.group_id, topic)) === 0);
    const expected = [
      ...[1, 2, 3].map((o) => positionOf(topic, 0, String(o))),
      positionOf(topic, 1, "3"),
      ...[0, 1, 2, 3].map((o) => positionOf(topic, 2, String(o))),
    ];
    expect(again.positions().sort()).toEqual(expected.sort());
    const firstPayloads = new Map(sink.events.map((e) => [e.position, Buffer.from(e.payload!).toString("utf8")]));
    for (const e of again.events) expect(Buffer.from(e.payload!).toString("utf8")).toBe(firstPayloads.get(e.position));
  });

  it("stops while emit never returns, commits nothing of it, and the next start reads it again", async () => {
    const topic = await createTopic(1);
    const config = base(topic);
    await produce(topic, 0, 5, 1);
    const hung = new RecordingSink();
    hung.mode = "hang";
    const first = await startSource(config, hung);
    await waitFor("the first emit", () => hung.emitCalls === 1);
    await sleep(300);
    expect(hung.emitCalls).toBe(1); // one emit at a time: nothing more is pulled
    await first.source.stop();
    expect(await committed(config.group_id, topic)).toEqual([-1]);

    const { sink } = await startSource(config);
    await waitFor("5 events", () => sink.events.length >= 5);
    expect(sink.positions()).toEqual([0, 1, 2, 3, 4].map((o) => positionOf(topic, 0, String(o))));
    expect(sink.values()).toEqual(["v0", "v1", "v2", "v3", "v4"]);
  });

  it("without from_beginning: starts at the partitions' end as read at start, and keeps that start across a restart", async () => {
    const topic = await createTopic(2);
    await produce(topic, 0, 4, 2); // before the source: not recorded
    const { sink } = await startSource({ ...base(topic), from_beginning: false });
    await produce(topic, 4, 6, 2); // right after start() returns: recorded
    await waitFor("2 events", () => sink.events.length >= 2);
    await sleep(200);
    expect(sink.values().sort()).toEqual(["v4", "v5"]);

    // Another new group: its start offsets are committed at once, so messages produced
    // while it is stopped, before it ever saw one, are recorded after the restart.
    const config = { ...base(topic), from_beginning: false };
    const first = await startSource(config);
    await waitFor("the start offsets committed", async () => (await committed(config.group_id, topic)).join() === "3,3");
    await first.source.stop();
    await produce(topic, 6, 8, 2);
    const again = await startSource(config);
    await waitFor("2 events", () => again.sink.events.length >= 2);
    await sleep(200);
    expect(again.sink.values().sort()).toEqual(["v6", "v7"]);
  });

  it("without from_beginning: the first fetch starts at the start offset, not at the earliest (no backlog read to be dropped)", async () => {
    const topic = await createTopic(2);
    await produce(topic, 0, 400, 2); // 200 per partition before the source
    const source = create({ ...base(topic), from_beginning: false });
    const sink = new RecordingSink();
    sink.source = source;
    const firstOffsets: number[] = [];
    const spy = source as unknown as { onBatch(p: { batch: { firstOffset(): string | null } }): Promise<void> };
    const onBatch = spy.onBatch.bind(source);
    spy.onBatch = (p) => {
      const first = p.batch.firstOffset();
      if (first !== null) firstOffsets.push(Number(first));
      return onBatch(p);
    };
    await source.start(sink);
    await produce(topic, 400, 404, 2);
    await waitFor("4 events", () => sink.events.length >= 4);
    expect(sink.values().sort()).toEqual(["v400", "v401", "v402", "v403"]);
    expect(firstOffsets.length).toBeGreaterThan(0);
    expect(Math.min(...firstOffsets)).toBe(200); // never fetched below the start offset
  });

  it("subscribes to the topics a /regex/ matches at start", async () => {
    const a = await createTopic(1);
    const b = await createTopic(1);
    await producer.send({ topic: a, messages: [{ value: "in-a" }] });
    await producer.send({ topic: b, messages: [{ value: "in-b" }] });
    const config = { ...base(a), topics: [`/^(${a}|${b})$/`] };
    const { sink } = await startSource(config);
    await waitFor("2 events", () => sink.events.length >= 2);
    expect(sink.values().sort()).toEqual(["in-a", "in-b"]);
    expect(sink.events.map((e) => e.subject!).sort()).toEqual([`${a}/0/@0`, `${b}/0/@0`]);
  });
});

// ---------------------------------------------------------------------------------------
// Consumer group

describe("consumer group", () => {
  it("members joining and leaving while messages flow: every message recorded, repeats only with identical positions and payloads", async () => {
    const topic = await createTopic(4);
    const config = base(topic);
    const a = await startSource(config);
    // Messages flow through both rebalances: until the first member has left and the
    // second has recorded messages since.
    let produced = 0;
    let flowing = true;
    const producing = (async () => {
      while (flowing || produced < 200) {
        await produce(topic, produced, produced + 10, 4);
        produced += 10;
        await sleep(10);
      }
    })();
    await waitFor("some events at the first member", () => a.sink.events.length >= 40);
    const bLines: LogLine[] = [];
    const b = await startSource(config, new RecordingSink(), bLines);
    await waitFor("events at the second member (the join rebalanced the partitions)", () => b.sink.events.length >= 40, 30_000);
    // Two agents in one group do not dedup each other's replays: the source says so.
    await waitFor("a warning about the other member", () => bLines.some((l) => l.level === "warn" && l.msg.includes("the consumer group has other members")));
    const atLeave = b.sink.events.length;
    await a.source.stop(); // leaves the group: the second member takes every partition
    await waitFor("more events at the second member after the first left", () => b.sink.events.length >= atLeave + 100, 30_000);
    flowing = false;
    await producing;
    const N = produced;
    const all = () => [...a.sink.events, ...b.sink.events];
    await waitFor(`${N} distinct positions`, () => new Set(all().map((e) => e.position)).size >= N, 30_000);
    await waitFor("everything committed", async () => (await lag(config.group_id, topic)) === 0, 30_000);

    const byPosition = new Map<string, string>();
    for (const e of all()) {
      const payload = Buffer.from(e.payload!).toString("utf8");
      const seen = byPosition.get(e.position);
      if (seen !== undefined) expect(payload).toBe(seen);
      byPosition.set(e.position, payload);
    }
    const values = new Set([...byPosition.values()].map((p) => (JSON.parse(p) as { value: string }).value));
    expect(values.size).toBe(N);
    for (let i = 0; i < N; i++) expect(values.has(`v${i}`)).toBe(true);
    // Partitions 0-3 all went to the second member in the end.
    expect(new Set(b.sink.events.slice(atLeave).map((e) => e.position.split("/")[1])).size).toBe(4);
  }, 90_000);

  it("stays in the group while the agent holds a batch longer than the session timeout", async () => {
    const topic = await createTopic(2);
    const config = base(topic); // session_timeout_ms 3000
    const lines: LogLine[] = [];
    const sink = new RecordingSink();
    let release!: () => void;
    sink.held = new Promise<void>((r) => (release = r));
    await startSource(config, sink, lines);
    await produce(topic, 0, 10, 2);
    await waitFor("the first emit", () => sink.emitCalls === 1);
    await sleep(4_500); // a slow ledger, longer than the session
    expect(sink.emitCalls).toBe(1);
    expect(await lag(config.group_id, topic)).toBe(10);
    release();
    sink.held = undefined;
    await waitFor("10 events", () => sink.events.length >= 10);
    await waitFor("everything committed", async () => (await lag(config.group_id, topic)) === 0);
    expect(new Set(sink.positions()).size).toBe(sink.events.length); // no redelivery: never left the group
    expect(lines.filter((l) => l.msg === "kafka: joined the consumer group")).toHaveLength(1);
  });
});

// ---------------------------------------------------------------------------------------
// Backpressure

describe("pause", () => {
  it("pulls nothing while paused (the lag stays), and everything after resume", async () => {
    const topic = await createTopic(3);
    const config = base(topic);
    const { source, sink } = await startSource(config);
    await produce(topic, 0, 9);
    await waitFor("9 events", () => sink.events.length >= 9);
    await waitFor("committed", async () => (await lag(config.group_id, topic)) === 0);

    source.pause();
    source.pause(); // idempotent
    await produce(topic, 9, 30);
    await sleep(2_500); // more than two fetch waits
    expect(sink.events).toHaveLength(9);
    expect(await lag(config.group_id, topic)).toBe(21);

    source.resume();
    source.resume();
    await waitFor("30 events", () => sink.events.length >= 30);
    await waitFor("committed", async () => (await lag(config.group_id, topic)) === 0);
    expect(new Set(sink.positions()).size).toBe(30);
  });

  it("pause() during an emit leaves the rest of the batch for after resume()", async () => {
    const topic = await createTopic(1);
    const config = base(topic);
    await produce(topic, 0, 1200, 1); // more than one emit's worth in a batch
    const sink = new RecordingSink();
    let release!: () => void;
    sink.held = new Promise<void>((r) => (release = r));
    const { source } = await startSource(config, sink);
    await waitFor("the first emit", () => sink.emitCalls === 1);
    source.pause();
    sink.held = undefined;
    release();
    await waitFor("the first emit stored", () => sink.events.length > 0);
    const firstEmit = sink.events.length;
    await waitFor("the first emit committed", async () => (await committed(config.group_id, topic))[0] === firstEmit);
    await sleep(1_500);
    expect(sink.emitCalls).toBe(1);
    expect(firstEmit).toBeLessThan(1200);
    source.resume();
    await waitFor("1200 events", () => sink.events.length >= 1200);
    expect(sink.positions()).toEqual(Array.from({ length: 1200 }, (_, o) => positionOf(topic, 0, String(o))));
  });
});

// ---------------------------------------------------------------------------------------
// Crash

describe("kill -9", () => {
  // A fresh state folder per child, as the source keeps no state there.
  const runChild = (config: KafkaConsumerConfigInput, outFile: string) => startCrashChild("kafka_consumer", config, tempDir(), outFile, "ack", cleanups);
  const readLines = (file: string) => readCrashLines<{ position: string; payload: string }>(file);

  it("killed while consuming and restarted: every message recorded, repeats only with identical positions", async () => {
    const topic = await createTopic(3);
    const config = base(topic);
    const outFile = join(tempDir(), "events.jsonl");
    const N = 3000;
    let child = await runChild(config, outFile);
    for (let i = 0; i < N; i += 100) await produce(topic, i, i + 100);
    await waitFor("some events before the kill", () => readLines(outFile).length >= 100);
    const killed = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await killed;
    const beforeKill = readLines(outFile).length;
    expect(beforeKill).toBeLessThan(N);

    child = await runChild(config, outFile);
    await waitFor(`${N} distinct positions`, () => new Set(readLines(outFile).map((l) => l.position)).size >= N, 30_000);
    await waitFor("everything committed", async () => (await lag(config.group_id, topic)) === 0);
    child.kill("SIGTERM");
    const byPosition = new Map<string, string>();
    for (const l of readLines(outFile)) {
      const seen = byPosition.get(l.position);
      if (seen !== undefined) expect(l.payload).toBe(seen);
      byPosition.set(l.position, l.payload);
    }
    expect(byPosition.size).toBe(N);
    const values = new Set([...byPosition.values()].map((p) => (JSON.parse(p) as { value: string }).value));
    expect(values.size).toBe(N);
  }, 90_000);
});

// ---------------------------------------------------------------------------------------
// Upstream history lost

describe("retention", () => {
  it("records a gap when the committed offset was deleted before the agent read on", async () => {
    const topic = await createTopic(1);
    const config = base(topic);
    await produce(topic, 0, 5, 1);
    const first = await startSource(config);
    await waitFor("5 events", () => first.sink.events.length >= 5);
    await waitFor("committed", async () => (await committed(config.group_id, topic))[0] === 5);
    await first.source.stop();

    await produce(topic, 5, 10, 1);
    await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: "8" }] }); // as retention would
    const lines: LogLine[] = [];
    const { sink } = await startSource(config, new RecordingSink(), lines);
    await waitFor("the messages still there", () => sink.events.length >= 2);
    await waitFor("a gap entry", () => sink.gaps.length >= 1);
    expect(sink.gaps[0]).toContain(`topic "${topic}" partition 0: the committed offset is no longer in the partition`);
    expect(sink.values()).toEqual(["v8", "v9"]);
  });

  it("after a reset to an empty partition, commits the real earliest offset (not kafkajs's -2), so a restart without from_beginning reads what came since", async () => {
    const topic = await createTopic(1);
    const config = { ...base(topic), from_beginning: false };
    const first = await startSource(config);
    await produce(topic, 0, 5, 1);
    await waitFor("5 events", () => first.sink.events.length >= 5);
    await waitFor("committed", async () => (await committed(config.group_id, topic))[0] === 5);
    await first.source.stop();

    await produce(topic, 5, 10, 1);
    await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: "10" }] }); // all of them
    const second = await startSource(config);
    await waitFor("a gap entry", () => second.sink.gaps.length >= 1);
    expect(second.sink.gaps[0]).toContain("no longer in the partition");
    // kafkajs committed -2 ("earliest"); the source replaces it with the offset it means.
    await waitFor("the earliest offset committed", async () => (await committed(config.group_id, topic))[0] === 10);
    expect(second.sink.events).toHaveLength(0);
    expect(second.sink.failures).toEqual([]);
    await second.source.stop();

    // Before the fix a -2 left here was taken for "no offset": the restart skipped to the end.
    await produce(topic, 10, 12, 1);
    const third = await startSource(config);
    await waitFor("2 events", () => third.sink.events.length >= 2);
    expect(third.sink.values()).toEqual(["v10", "v11"]);
    expect(third.sink.gaps).toEqual([]);
  });

  it("a committed offset -2 (left by a kafkajs reset) is read from the earliest offset, not skipped as a new partition", async () => {
    const topic = await createTopic(1);
    const groupId = unique("al-group");
    await produce(topic, 0, 3, 1);
    await admin.setOffsets({ groupId, topic, partitions: [{ partition: 0, offset: "-2" }] });
    const { sink } = await startSource({ ...base(topic, groupId), from_beginning: false });
    await waitFor("3 events", () => sink.events.length >= 3);
    expect(sink.values()).toEqual(["v0", "v1", "v2"]);
  });

  it("refuses to start when the committed offset is past the partition's end (topic recreated or truncated)", async () => {
    const topic = await createTopic(2);
    const groupId = unique("al-group");
    await produce(topic, 0, 4, 2); // 2 per partition
    await admin.setOffsets({ groupId, topic, partitions: [{ partition: 0, offset: "1" }, { partition: 1, offset: "7" }] });
    const source = create(base(topic, groupId));
    const sink = new RecordingSink();
    await expect(source.start(sink)).rejects.toThrow(
      `topic "${topic}" partition 1: the source is at offset 7 but the partition ends at 2, so the topic was recreated or truncated`,
    );
    expect(sink.events).toHaveLength(0);
    expect(await committed(groupId, topic)).toEqual([1, 7]); // nothing reset: every restart says it again
  });

  it("topic recreated while the source runs: records a gap and fails, naming the partition", async () => {
    const topic = await createTopic(1);
    const config = base(topic);
    await produce(topic, 0, 5, 1);
    const { sink } = await startSource(config);
    await waitFor("5 events", () => sink.events.length >= 5);
    await waitFor("committed", async () => (await committed(config.group_id, topic))[0] === 5);
    await admin.deleteTopics({ topics: [topic] });
    await waitFor(
      "the topic recreated",
      () =>
        admin.createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor: 1 }], waitForLeaders: true }).then(
          () => true,
          () => false, // still being deleted
        ),
      30_000,
    );
    await waitFor("a failure", () => sink.failures.length >= 1, 30_000);
    const problem = `topic "${topic}" partition 0: the source is at offset 5 but the partition ends at 0, so the topic was recreated or truncated`;
    expect(sink.failures[0]).toContain(problem);
    expect(sink.gaps[0]).toContain(problem); // the gap first, then the failure
  }, 60_000);
});

// ---------------------------------------------------------------------------------------
// Start errors

describe("start() fails naming the problem", () => {
  it("unknown topic", async () => {
    const topic = await createTopic(1);
    const missing = unique("no-such-topic");
    const source = create({ ...base(topic), topics: [topic, missing] });
    await expect(source.start(new RecordingSink())).rejects.toThrow(`kafka_consumer source "kafka-test": topic "${missing}" does not exist on ${BROKERS.join(",")}`);
  });

  it("a pattern that matches no topic", async () => {
    const source = create({ ...base("x"), topics: ["/^no-such-topic-.*$/"] });
    await expect(source.start(new RecordingSink())).rejects.toThrow(`no topic on ${BROKERS.join(",")} matches /^no-such-topic-.*$/`);
  });

  it("unreachable broker, within connect_timeout_ms", async () => {
    const port = await freePort();
    const source = create({ ...base("x"), brokers: [`127.0.0.1:${port}`], connect_timeout_ms: 3_000 });
    const began = Date.now();
    await expect(source.start(new RecordingSink())).rejects.toThrow(new RegExp(`cannot (connect to|reach) the Kafka brokers 127\\.0\\.0\\.1:${port}.*ECONNREFUSED`));
    expect(Date.now() - began).toBeLessThan(6_000);
  });

  it("sasl.password_env naming a variable that is not set", async () => {
    const source = create({ ...base("x"), sasl: { mechanism: "plain", username: "agent", password_env: "NO_SUCH_VARIABLE_FOR_KAFKA_TEST" } });
    await expect(source.start(new RecordingSink())).rejects.toThrow("sasl.password_env: the environment variable NO_SUCH_VARIABLE_FOR_KAFKA_TEST is not set");
  });

  it("SASL credentials against a broker that does not speak SASL", async () => {
    const source = create({ ...base("x"), connect_timeout_ms: 5_000, sasl: { mechanism: "plain", username: "agent", password: "secret" } });
    const brokers = BROKERS.join(",").replace(/\./g, "\\.");
    await expect(source.start(new RecordingSink())).rejects.toThrow(new RegExp(`kafka_consumer source "kafka-test": cannot connect to the Kafka brokers ${brokers}: .*SASL`));
  });
});

// ---------------------------------------------------------------------------------------
// Events and configuration (no broker)

describe("events", () => {
  const message = (over: Partial<ReceivedMessage> = {}): ReceivedMessage => ({
    topic: "orders",
    partition: 2,
    offset: "41",
    timestamp: "1700000000123",
    key: Buffer.from("order-7"),
    value: Buffer.from('{"total":12}'),
    headers: { trace: Buffer.from("abc"), multi: [Buffer.from("a"), Buffer.from([0xff, 0xfe])] },
    ...over,
  });
  const shape = { kind: "kafka.message", payload: "envelope" as const, valueType: "application/octet-stream" };

  it("envelope: text as text, other bytes as base64, JSON embedded when value_type says so", () => {
    const e = toSourceEvent(message(), shape);
    expect(e).toMatchObject({ kind: "kafka.message", subject: "orders/2/order-7", position: "orders/2/41", occurredAt: "2023-11-14T22:13:20.123Z", payloadType: "application/json" });
    expect(JSON.parse(Buffer.from(e.payload!).toString())).toEqual({
      topic: "orders",
      partition: 2,
      offset: "41",
      timestamp: "2023-11-14T22:13:20.123Z",
      key: "order-7",
      headers: [
        { name: "trace", value: "abc" },
        { name: "multi", value: "a" },
        { name: "multi", value_base64: "//4=" },
      ],
      value: '{"total":12}',
    });
    const json = JSON.parse(Buffer.from(toSourceEvent(message(), { ...shape, valueType: "application/json" }).payload!).toString());
    expect(json.value_json).toEqual({ total: 12 });
    const binary = JSON.parse(Buffer.from(toSourceEvent(message({ key: Buffer.from([0x80]), value: Buffer.from([0, 0xff]) }), shape).payload!).toString());
    expect(binary).toMatchObject({ key_base64: "gA==", value_base64: "AP8=" });
    const tombstone = JSON.parse(Buffer.from(toSourceEvent(message({ key: null, value: null }), shape).payload!).toString());
    expect(tombstone).toMatchObject({ key: null, value: null });
  });

  it("value payload: the bare bytes, JSON-declared values that are not JSON as octet-stream, no payload when empty", () => {
    const v = { ...shape, payload: "value" as const, valueType: "application/json" };
    expect(toSourceEvent(message(), v)).toMatchObject({ payloadType: "application/json", payload: Buffer.from('{"total":12}') });
    expect(toSourceEvent(message({ value: Buffer.from("nope") }), v).payloadType).toBe("application/octet-stream");
    const empty = toSourceEvent(message({ value: null }), v);
    expect(empty.payload).toBeUndefined();
    expect(empty.payloadType).toBeUndefined();
  });

  it("subjects: the key, or @offset without a text key; cut with a digest beyond 1024 characters", () => {
    expect(subjectOf(message({ key: null }))).toBe("orders/2/@41");
    expect(subjectOf(message({ key: Buffer.from([0xc3]) }))).toBe("orders/2/@41");
    expect(subjectOf(message({ key: Buffer.from("a\nb") }))).toBe("orders/2/@41");
    const long = subjectOf(message({ key: Buffer.from("k".repeat(2000)) }));
    expect(long.length).toBeLessThanOrEqual(1024);
    expect(long).toMatch(/^orders\/2\/kkk.*#sha256=[0-9a-f]{64}$/);
  });

  it("positions: a topic too long for the idempotency key is replaced by its digest", () => {
    const topic = "t".repeat(MAX_TOPIC_IN_POSITION + 1);
    expect(topicToken(topic)).toMatch(/^sha256:[0-9a-f]{32}$/);
    expect(positionOf(topic, 3, "9")).toMatch(/^sha256:[0-9a-f]{32}\/3\/9$/);
    expect(positionOf("t".repeat(MAX_TOPIC_IN_POSITION), 3, "9").length).toBe(MAX_TOPIC_IN_POSITION + 4);
    // ZID (12) + "/" + 64-character source name + "/" + the longest position fits the ledger's 256.
    expect(12 + 1 + 64 + 1 + positionOf("t".repeat(MAX_TOPIC_IN_POSITION), 2_147_483_647, "9223372036854775807").length).toBeLessThanOrEqual(256);
  });

  it("occurred_at is left out when the message has no timestamp", () => {
    expect(toSourceEvent(message({ timestamp: "-1" }), shape).occurredAt).toBeUndefined();
  });
});

describe("waiting on the sink until stop", () => {
  it("leaves no listener on the stop signal per call (100k emits do not grow memory), and ends pending waits at stop", async () => {
    const stop = new AbortController();
    for (let i = 0; i < 100_000; i++) await untilAborted(Promise.resolve(i), stop.signal);
    await expect(untilAborted(Promise.reject(new Error("refused")), stop.signal)).rejects.toThrow("refused");
    expect(getEventListeners(stop.signal, "abort")).toHaveLength(0);

    const pending = untilAborted(new Promise<number>(() => undefined), stop.signal);
    expect(getEventListeners(stop.signal, "abort")).toHaveLength(1);
    stop.abort();
    await expect(pending).resolves.toBeUndefined();
    expect(getEventListeners(stop.signal, "abort")).toHaveLength(0);
    await expect(untilAborted(Promise.resolve(1), stop.signal)).resolves.toBeUndefined();
  });
});

describe("partition progress", () => {
  it("commits per partition the offset after the last durable message, never back, never for revoked partitions", () => {
    const p = new PartitionProgress();
    p.track("t", 0, "10"); // resumed at the group's offset 10
    p.track("t", 1, "0");
    expect(p.due()).toEqual([]);
    expect(p.acknowledge("t/1/4")).toBe(true);
    expect(p.due()).toEqual([{ topic: "t", partition: 1, offset: "5" }]);
    p.committed(p.due());
    expect(p.acknowledge("t/1/2")).toBe(false); // earlier: nothing new
    expect(p.acknowledge("t/0/9")).toBe(false); // below where this assignment began
    expect(p.acknowledge("t/0/12")).toBe(true);
    expect(p.due()).toEqual([{ topic: "t", partition: 0, offset: "13" }]);
    p.retain({ t: [1] }); // partition 0 went to another member
    expect(p.due()).toEqual([]);
    expect(p.acknowledge("t/0/20")).toBe(false);
    expect(() => p.acknowledge("not-a-position")).toThrow(/is not a kafka_consumer position/);
  });

  it("skipBelow commits a start offset as if the messages before it were durable", () => {
    const p = new PartitionProgress();
    p.track("t", 0, "0");
    expect(p.skipBelow("t", 0, 7n)).toBe(true);
    expect(p.due()).toEqual([{ topic: "t", partition: 0, offset: "7" }]);
    expect(p.skipBelow("t", 0, 3n)).toBe(false);
  });
});

describe("configuration", () => {
  const schema = kafkaConsumerSource.configSchema;
  const ok: KafkaConsumerConfigInput = { brokers: ["kafka-1:9092"], group_id: "audit-ledger", topics: ["orders", "/^audit\\..*$/"] };

  function problems(input: unknown): string[] {
    const r = schema.safeParse(input);
    if (r.success) return [];
    return r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
  }

  it("fills in the defaults", () => {
    expect(schema.parse(ok)).toMatchObject({
      from_beginning: false,
      client_id: "audit-ledger-agent",
      ssl: false,
      connect_timeout_ms: 10_000,
      session_timeout_ms: 30_000,
      heartbeat_interval_ms: 3_000,
      kind: "kafka.message",
      payload: "envelope",
      value_type: "application/octet-stream",
    });
    expect(kafkaConsumerSource.type).toBe("kafka_consumer");
  });

  it("names the field in every error", () => {
    expect(problems({ ...ok, brokers: [] })).toEqual(["brokers: list at least one broker (host:port)"]);
    expect(problems({ ...ok, brokers: ["kafka://x:9092"] })[0]).toMatch(/^brokers\.0: "kafka:\/\/x:9092" is not host:port/);
    expect(problems({ ...ok, group_id: "" })).toEqual(["group_id: must not be empty"]);
    expect(problems({ ...ok, topics: [] })).toEqual(["topics: list at least one topic"]);
    expect(problems({ ...ok, topics: ["bad topic"] })[0]).toMatch(/^topics\.0: "bad topic" is not a Kafka topic name/);
    expect(problems({ ...ok, topics: ["/(/"] })[0]).toMatch(/^topics\.0: "\/\(\/" is not a valid regular expression/);
    expect(problems({ ...ok, topics: ["a", "a"] })).toEqual(['topics.1: "a" is listed twice']);
    expect(problems({ ...ok, topic: "x" })[0]).toMatch(/topic/);
    expect(problems({ ...ok, session_timeout_ms: 3_000, heartbeat_interval_ms: 3_000 })[0]).toMatch(/^heartbeat_interval_ms: must be below session_timeout_ms/);
    expect(problems({ ...ok, sasl: { mechanism: "gssapi", username: "u", password: "p" } })[0]).toMatch(/^sasl\.mechanism: /);
    expect(problems({ ...ok, sasl: { mechanism: "plain", username: "u" } })).toEqual(["sasl.password: give password or password_env"]);
    expect(problems({ ...ok, sasl: { mechanism: "plain", username: "u", password: "p", password_env: "P" } })).toEqual(["sasl.password_env: give password or password_env, not both"]);
    expect(problems({ ...ok, ssl_ca_file: "/ca.pem" })).toEqual(["ssl_ca_file: is used only with ssl: true"]);
    expect(problems({ ...ok, payload: "raw" })[0]).toMatch(/^payload: must be envelope or value/);
    expect(problems({ ...ok, kind: "bad kind" })[0]).toMatch(/^kind: /);
    expect(problems({ ...ok, value_type: "json" })[0]).toMatch(/^value_type: must be a media type/);
  });
});
