// The `kafka_consumer` source's upstream for the shared source scenarios: the suite's
// Kafka 3.9 broker (inject("kafkaBrokers")), a fresh 3-partition topic and consumer group
// per scenario, and per event i one message to partition i % 3 with key `k<i>`, header
// `i: <i>` and the JSON value `{"i": i, "pad": "xxx"}`. The source runs with
// value_type application/json, so the value sits in the envelope as `value_json`.
//
// Group timeouts are short, so the member a SIGKILL leaves behind is dropped after 6 s
// and the restarted agent's join does not wait longer.
import { randomBytes } from "node:crypto";
import { Kafka, logLevel, type Admin, type Message, type Producer } from "kafkajs";
import { expect, inject } from "vitest";
import { positionOf, subjectOf } from "../../agent/sources/kafka-consumer/message-event.js";
import { freePort } from "../support/free-port.js";
import type { StoredEntry } from "../../chain/index.js";
import type { ScenarioUpstream, UpstreamUnderTest } from "./upstream.js";

const PARTITIONS = 3;
/** Messages per produce request: a 1,500-event backlog of 2 KiB messages stays well under the broker's request limit. */
const MESSAGES_PER_SEND = 200;

interface Envelope {
  topic: string;
  partition: number;
  offset: string;
  timestamp: string | null;
  key: string | null;
  headers: { name: string; value?: string }[];
  value_json?: { i: number; pad: string };
}

function kafkaClient(): Kafka {
  return new Kafka({ clientId: "audit-ledger-scenarios", brokers: inject("kafkaBrokers"), logLevel: logLevel.NOTHING });
}

class KafkaScenario implements ScenarioUpstream {
  readonly config: Record<string, unknown>;
  // One producer per scenario: a kafkajs producer keeps asking for every topic it ever
  // sent to, and this one's topic is deleted at cleanup.
  private producer: Producer | undefined;

  constructor(
    private readonly kafka: Kafka,
    private readonly admin: Admin,
    private readonly topic: string,
    private readonly groupId: string,
  ) {
    this.config = {
      brokers: inject("kafkaBrokers"),
      group_id: groupId,
      topics: [topic],
      from_beginning: true,
      value_type: "application/json",
      session_timeout_ms: 6_000,
      heartbeat_interval_ms: 1_000,
      rebalance_timeout_ms: 10_000,
    };
  }

  async produce(from: number, to: number, padBytes = 0): Promise<void> {
    if (!this.producer) {
      this.producer = this.kafka.producer({ allowAutoTopicCreation: false });
      await this.producer.connect();
    }
    const pad = "x".repeat(padBytes);
    for (let start = from; start < to; start += MESSAGES_PER_SEND) {
      const messages: Message[] = [];
      for (let i = start; i < Math.min(to, start + MESSAGES_PER_SEND); i++) {
        messages.push({ partition: i % PARTITIONS, key: `k${i}`, headers: { i: String(i) }, value: JSON.stringify({ i, pad }) });
      }
      // acks -1: the broker has each message before produce() returns.
      await this.producer.send({ topic: this.topic, messages, acks: -1 });
    }
  }

  identify(entry: StoredEntry): number {
    expect(entry.kind).toBe("kafka.message");
    expect(entry.payload_type).toBe("application/json");
    expect(entry.payload).toBeDefined();
    const body = JSON.parse(Buffer.from(entry.payload!).toString("utf8")) as Envelope;
    const i = body.value_json?.i;
    expect(Number.isInteger(i), `value_json.i ${i}`).toBe(true);
    expect(body.value_json!.pad).toMatch(/^x*$/);
    expect(body).toMatchObject({ topic: this.topic, partition: i! % PARTITIONS, key: `k${i}`, headers: [{ name: "i", value: String(i) }] });
    expect(body.offset).toMatch(/^\d+$/);
    expect(entry.source_position).toBe(positionOf(this.topic, body.partition, body.offset));
    expect(entry.subject).toBe(subjectOf({ topic: this.topic, partition: body.partition, offset: body.offset, timestamp: "-1", key: Buffer.from(`k${i}`), value: null }));
    expect(entry.occurred_at).toBe(body.timestamp);
    return i!;
  }

  /** The group's lag: each partition's end offset minus its committed offset (its start when none). */
  async unconsumed(): Promise<number> {
    const [ends, [committed]] = await Promise.all([this.admin.fetchTopicOffsets(this.topic), this.admin.fetchOffsets({ groupId: this.groupId, topics: [this.topic] })]);
    let lag = 0;
    for (const end of ends) {
      const done = Number(committed!.partitions.find((p) => p.partition === end.partition)?.offset ?? -1);
      lag += Number(end.high) - (done >= 0 ? done : Number(end.low));
    }
    return lag;
  }

  /** Call with the agent stopped (a group with members cannot be deleted). */
  async cleanup(): Promise<void> {
    await this.producer?.disconnect().catch(() => undefined);
    this.producer = undefined;
    await this.admin.deleteGroups([this.groupId]).catch(() => undefined);
    await this.admin.deleteTopics({ topics: [this.topic] }).catch(() => undefined);
    await this.admin.disconnect().catch(() => undefined);
  }
}

export const kafkaConsumerUpstream: UpstreamUnderTest = {
  type: "kafka_consumer",

  async prepare(): Promise<ScenarioUpstream> {
    const id = randomBytes(6).toString("hex");
    const kafka = kafkaClient();
    const admin = kafka.admin();
    await admin.connect();
    const topic = `audit-ledger-test-${id}`;
    await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }], waitForLeaders: true });
    return new KafkaScenario(kafka, admin, topic, `audit-ledger-test-${id}`);
  },

  async badConfigs() {
    const brokers = inject("kafkaBrokers");
    const missing = `audit-ledger-no-such-topic-${randomBytes(6).toString("hex")}`;
    // Nothing listens on a port that was free a moment ago.
    const port = await freePort();
    return [
      {
        what: "unknown topic",
        config: { brokers, group_id: `audit-ledger-test-${randomBytes(6).toString("hex")}`, topics: [missing] },
        message: new RegExp(`topic "${missing}" does not exist on ${brokers.join(",").replace(/\./g, "\\.")}`),
      },
      {
        what: "unreachable broker",
        config: { brokers: [`127.0.0.1:${port}`], group_id: "audit-ledger-test", topics: ["anything"], connect_timeout_ms: 3_000 },
        message: new RegExp(`cannot (connect to|reach) the Kafka brokers 127\\.0\\.0\\.1:${port}.*ECONNREFUSED`),
      },
    ];
  },
};

export default kafkaConsumerUpstream;
