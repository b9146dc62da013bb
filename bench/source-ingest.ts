// Per-source sustained ingest (issue 5): a backlog of M events waits upstream; then
//   raw:    the source system's own client reads all M (nothing else done with them)
//   ledger: an `audit-ledger agent` process reads the same M through the source, and
//           each counts once Postgres has committed its entry in the ledger
// both as events per second from the first event to the last, side by side, and their
// ratio (ledger / raw). Start-up (group join, replication connection) is outside both
// windows. Sources: kafka_consumer (Kafka 3.9, test/services) and postgres_logical (a
// scratch cluster with wal_level=logical), the ledger on the bench's own Postgres.
import { randomBytes } from "node:crypto";
import { Kafka, logLevel } from "kafkajs";
import pg from "pg";
import { services } from "../test/services/index.mjs";
import { startScratchPostgres } from "../test/support/scratch-postgres.js";
import { committedCount, enrolmentToken, memorySample, startAgentProcess, treeCpuMs, type AgentProcess } from "./agent-ingest.js";
import { sleep } from "./stats.js";

export interface SourceIngestOptions {
  /** Events in each source's backlog. */
  events: number;
  /** Bytes of filler in each event (a realistic row or message). */
  padBytes: number;
}

export interface SourceRate {
  source: string;
  events: number;
  /** The source system's own client reading the backlog. */
  raw: { seconds: number; eventsPerSecond: number; how: string };
  /** Through the agent into the ledger, committed. */
  ledger: { seconds: number; eventsPerSecond: number; agentCpuMsPer1000: number; agentPeakRssMB: number };
  ratio: number;
}

export interface SourceIngestResult {
  options: SourceIngestOptions;
  sources: SourceRate[];
}

interface Deps {
  admin: pg.Client;
  serverUrl: string;
  log: (msg: string) => void;
}

/**
 * Runs the agent with `source` on a fresh chain until `events` entries are committed;
 * the window opens at the first committed entry.
 */
async function ledgerRate(deps: Deps, name: string, source: Record<string, unknown> & { type: string }, events: number): Promise<SourceRate["ledger"]> {
  const chain = `bench-src-${name}-${randomBytes(3).toString("hex")}`;
  const token = await enrolmentToken(deps.admin, deps.serverUrl, chain);
  const agent: AgentProcess = startAgentProcess({ serverUrl: deps.serverUrl, token, name: `bench-${name}`, fsync: "per-batch", sources: [{ name, ...source }] });
  try {
    let first = 0;
    let t0 = 0;
    let cpu0 = 0;
    let peak = 0;
    const deadline = Date.now() + 600_000;
    for (;;) {
      const n = await committedCount(deps.admin, chain);
      const now = performance.now();
      peak = Math.max(peak, memorySample(agent.pid).rssBytes);
      if (n > 0 && t0 === 0) {
        first = n;
        t0 = now;
        cpu0 = treeCpuMs(agent.pid);
      }
      if (n >= events) {
        const seconds = (now - t0) / 1000;
        const counted = events - first;
        return {
          seconds,
          eventsPerSecond: counted / seconds,
          agentCpuMsPer1000: ((treeCpuMs(agent.pid) - cpu0) / counted) * 1000,
          agentPeakRssMB: peak / 1e6,
        };
      }
      if (Date.now() > deadline) throw new Error(`${name}: ${n} of ${events} entries after 10 minutes; agent log:\n${agent.logTail()}`);
      await sleep(10);
    }
  } finally {
    await agent.stop();
  }
}

async function kafkaRate(deps: Deps, o: SourceIngestOptions): Promise<SourceRate> {
  const handle = await services.kafka.start();
  const kafka = new Kafka({ clientId: "audit-ledger-bench", brokers: handle.brokers, logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const topic = `bench-${randomBytes(4).toString("hex")}`;
  try {
    await admin.createTopics({ topics: [{ topic, numPartitions: 3, replicationFactor: 1 }], waitForLeaders: true });
    deps.log(`kafka: producing ${o.events} messages of ${o.padBytes} bytes to ${topic}`);
    const producer = kafka.producer();
    await producer.connect();
    const pad = "x".repeat(o.padBytes);
    for (let i = 0; i < o.events; i += 1000) {
      const messages = Array.from({ length: Math.min(1000, o.events - i) }, (_, k) => ({ key: `order-${i + k}`, value: JSON.stringify({ order: i + k, pad }) }));
      await producer.send({ topic, messages });
    }
    await producer.disconnect();

    // Raw: a plain kafkajs consumer group reading every message, auto-committing.
    const consumer = kafka.consumer({ groupId: `${topic}-raw`, sessionTimeout: 10_000, heartbeatInterval: 1000 });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    let seen = 0;
    let t0 = 0;
    // The window opens when the group is joined (the first fetch is part of consuming).
    consumer.on(consumer.events.GROUP_JOIN, () => (t0 = performance.now()));
    const done = new Promise<number>((resolve) => {
      void consumer.run({
        eachBatch: async ({ batch }) => {
          if (t0 === 0) t0 = performance.now();
          seen += batch.messages.length;
          if (seen >= o.events) resolve(performance.now());
        },
      });
    });
    const t1 = await done;
    await consumer.disconnect();
    const rawSeconds = (t1 - t0) / 1000;
    deps.log(`kafka raw: ${o.events} in ${rawSeconds.toFixed(2)} s`);

    const ledger = await ledgerRate(deps, "kafka", { type: "kafka_consumer", brokers: handle.brokers, group_id: `${topic}-ledger`, topics: [topic], from_beginning: true, session_timeout_ms: 10_000, heartbeat_interval_ms: 1000 }, o.events);
    deps.log(`kafka ledger: ${ledger.eventsPerSecond.toFixed(0)} events/s`);
    const raw = { seconds: rawSeconds, eventsPerSecond: o.events / rawSeconds, how: "kafkajs consumer group, eachBatch, from joining the group to the last batch" };
    return { source: "kafka_consumer", events: o.events, raw, ledger, ratio: ledger.eventsPerSecond / raw.eventsPerSecond };
  } finally {
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.disconnect();
    await handle.stop();
  }
}

async function postgresRate(deps: Deps, o: SourceIngestOptions): Promise<SourceRate> {
  const cluster = await startScratchPostgres({ wal_level: "logical", max_replication_slots: 10, max_wal_senders: 10 });
  const upstream = new pg.Client({ connectionString: cluster.url() });
  await upstream.connect();
  try {
    await upstream.query("CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL, pad text NOT NULL)");
    await upstream.query("CREATE PUBLICATION bench_pub FOR TABLE orders");
    // Both slots exist before the backlog is written, so both see all of it.
    await upstream.query("SELECT pg_create_logical_replication_slot('bench_raw', 'pgoutput')");
    await upstream.query("SELECT pg_create_logical_replication_slot('bench_ledger', 'pgoutput')");
    deps.log(`postgres: inserting ${o.events} rows of ${o.padBytes} bytes, 100 per transaction`);
    for (let i = 0; i < o.events; i += 100) {
      await upstream.query("INSERT INTO orders SELECT g, 'customer-' || (g % 97), repeat('x', $3) FROM generate_series($1::bigint, $2::bigint) g", [i, Math.min(i + 100, o.events) - 1, o.padBytes]);
    }
    // Raw: Postgres decoding the WAL through pgoutput and handing every change to a client.
    const t0 = performance.now();
    const res = await upstream.query<{ data: Buffer }>(
      "SELECT data FROM pg_logical_slot_get_binary_changes('bench_raw', NULL, NULL, 'proto_version', '1', 'publication_names', 'bench_pub')",
    );
    const inserts = res.rows.filter((r) => r.data[0] === 0x49).length; // 'I'
    const rawSeconds = (performance.now() - t0) / 1000;
    if (inserts !== o.events) throw new Error(`postgres raw: ${inserts} insert messages, expected ${o.events}`);
    deps.log(`postgres raw: ${res.rows.length} pgoutput messages (${inserts} inserts) in ${rawSeconds.toFixed(2)} s`);

    const ledger = await ledgerRate(deps, "postgres", { type: "postgres_logical", url: cluster.url(), publication: "bench_pub", slot: "bench_ledger" }, o.events);
    deps.log(`postgres ledger: ${ledger.eventsPerSecond.toFixed(0)} events/s`);
    const raw = { seconds: rawSeconds, eventsPerSecond: o.events / rawSeconds, how: "pg_logical_slot_get_binary_changes over pgoutput (server-side decode, rows to the client)" };
    return { source: "postgres_logical", events: o.events, raw, ledger, ratio: ledger.eventsPerSecond / raw.eventsPerSecond };
  } finally {
    await upstream.end().catch(() => undefined);
    await cluster.destroy();
  }
}

export async function sourceIngest(deps: Deps, o: SourceIngestOptions): Promise<SourceIngestResult> {
  const sources = [await kafkaRate(deps, o), await postgresRate(deps, o)];
  return { options: o, sources };
}
