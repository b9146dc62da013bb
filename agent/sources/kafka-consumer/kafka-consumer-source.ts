// The kafka_consumer source: a member of a consumer group (kafkajs) that hands each
// fetched batch to the agent, partition by partition, in offset order, and commits a
// partition's offset only up to the last message the agent has acknowledged as durable.
//
// Why eachBatch with autoCommit off and nothing auto-resolved: kafkajs fetches again
// only once every batch of the previous fetch is handled, so while `emit` waits (the
// outbox is full, the ledger slow) nothing more is pulled, and a batch left half-way
// (pause, stop, rebalance) is fetched again from the first message not handed over.
//
// Why the source heartbeats itself while `emit` waits: kafkajs sends heartbeats only
// between batches; a member silent for session_timeout_ms is dropped from the group.
import { readFileSync } from "node:fs";
import { Kafka, logLevel, type Admin, type Consumer, type EachBatchPayload, type KafkaConfig, type LogEntry, type SASLOptions } from "kafkajs";
import type { SourceContext } from "../source-factory.js";
import type { Source, SourceEvent, SourcePosition, SourceSink } from "../source.js";
import { topicPattern, type KafkaConsumerConfig } from "./config.js";
import { partitionKeyOf, toSourceEvent, type EventShape, type ReceivedMessage } from "./message-event.js";
import { PartitionProgress } from "./partition-progress.js";

export const SOURCE_TYPE = "kafka_consumer";
/** Most messages handed to the agent in one emit (one partition's, in offset order). */
export const MAX_EVENTS_PER_EMIT = 500;
/** How long a fetch waits on the broker for new messages; also bounds how long stop() waits for it. */
const FETCH_WAIT_MS = 1_000;
/** Wait before committing again what a commit did not confirm. */
const COMMIT_RETRY_MS = 1_000;
/** How long stop() waits for the last commit. */
const STOP_COMMIT_TIMEOUT_MS = 5_000;
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 30_000;
/** kafkajs's log message when a committed offset is no longer in the partition (consumerGroup.js). */
const OFFSET_RESET_MESSAGE = "Offset out of range, resetting to default offset";

function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = (err as { cause?: unknown }).cause;
  const inner = cause instanceof Error && !err.message.includes(cause.message) ? `: ${cause.message}` : "";
  return `${err.message}${inner}`;
}

/**
 * Settles as `work` does, or resolves `undefined` as soon as `signal` aborts.
 *
 * Why not `Promise.race([work, aPromiseSettledAtStop])`: every race adds a reaction to
 * that long-lived promise, which holds it until stop (hundreds of bytes per emit, without
 * bound). Here the only thing attached to the long-lived signal is one listener, removed
 * when the call settles.
 */
export async function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  if (signal.aborted) {
    work.catch(() => undefined); // nobody awaits it any more
    return undefined;
  }
  let onAbort!: () => void;
  const aborted = new Promise<undefined>((resolve) => (onAbort = () => resolve(undefined)));
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    return await Promise.race([work, aborted]);
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/** Rejects with `problem` after `ms` unless `work` settles first. */
async function within<T>(work: Promise<T>, ms: number, problem: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(problem())), ms)));
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs `work` again while it fails with an error Kafka calls retriable (a coordinator
 * still loading or just moved, a leader election), for up to `ms`: a broker that has just
 * started answers NOT_COORDINATOR to the first group requests, which is no reason to fail.
 */
async function retryingTransient<T>(work: () => Promise<T>, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  for (let delay = 100; ; delay = Math.min(delay * 2, 1000)) {
    try {
      return await work();
    } catch (err) {
      if ((err as { retriable?: unknown }).retriable !== true || Date.now() + delay > deadline) throw err;
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

export class KafkaConsumerSource implements Source {
  readonly type = SOURCE_TYPE;
  private sink: SourceSink | undefined;
  private kafka: Kafka | undefined;
  private consumer: Consumer | undefined;
  /** The topics subscribed to (names, patterns resolved at start). */
  private topics: string[] = [];
  /**
   * With from_beginning off: the end offset, read at start, of each partition the group
   * had no committed offset for (-1; not -2, see readGroupOffsets). Older messages are
   * skipped, newer ones all recorded. Used at the first join only, then cleared.
   */
  private readonly startOffsets = new Map<string, { topic: string; partition: number; offset: bigint }>();
  /**
   * Start offsets applied at the first join, kept while the partition stays assigned and
   * until the group has them committed: a consumer restarted by kafkajs before that forgets
   * the seek and fetches from the earliest offset, and what is below predates the source.
   * Never applied to a partition that came from another member (it has its own offset).
   */
  private readonly pendingStarts = new Map<string, bigint>();
  /**
   * Per partition, the offset the source reads next as far as it knows (the committed
   * offset at start, then after each batch). Above the partition's end means the topic
   * was recreated or truncated (see onOffsetReset).
   */
  private readonly readFrom = new Map<string, bigint>();
  /** Partitions found recreated or truncated (reported once, no longer read). */
  private readonly recreated = new Set<string>();
  /** The partitions of the current assignment (partition keys). */
  private assigned = new Set<string>();
  private readonly progress = new PartitionProgress();
  private readonly shape: EventShape;
  private started = false;
  /** True once start() has joined the group: later crashes are logged and recovered from. */
  private running = false;
  private stopped = false;
  private paused = false;
  private joinedOnce = false;
  /** A heartbeat failed (the group is rebalancing): leave the batch so kafkajs can rejoin. */
  private mustYield = false;
  /** The crash that ended start()'s first join, if any. */
  private startCrash: Error | undefined;
  /** The last connection problem kafkajs logged, for start()'s timeout message. */
  private lastConnectionProblem: string | undefined;
  private commitRun: Promise<void> | undefined;
  private commitAgain = false;
  private commitRetry: NodeJS.Timeout | undefined;
  private restartAttempts = 0;
  private stopping: Promise<void> | undefined;
  private readonly timers = new Set<NodeJS.Timeout>();
  /** Aborted by stop(): ends waits on the sink and retry sleeps (see untilAborted). */
  private readonly stopController = new AbortController();

  constructor(
    private readonly config: KafkaConsumerConfig,
    private readonly ctx: SourceContext,
  ) {
    this.shape = { kind: config.kind, payload: config.payload, valueType: config.value_type };
  }

  private get where(): string {
    return `kafka_consumer source "${this.ctx.name}"`;
  }

  private get brokerList(): string {
    return this.config.brokers.join(",");
  }

  /**
   * `resumeFrom` is not needed: the consumer group's committed offsets say where to
   * resume, and they only ever cover what the agent made durable.
   */
  async start(sink: SourceSink, _resumeFrom?: SourcePosition): Promise<void> {
    if (this.started) throw new Error(`${this.where} was already started`);
    this.started = true;
    this.sink = sink;
    this.kafka = new Kafka(this.clientConfig());
    try {
      this.topics = await within(this.resolveTopics(), this.config.connect_timeout_ms, () => {
        const last = this.lastConnectionProblem ? `: ${this.lastConnectionProblem}` : "";
        return `${this.where}: cannot reach the Kafka brokers ${this.brokerList} within connect_timeout_ms (${this.config.connect_timeout_ms} ms)${last}`;
      });
      await this.joinGroup();
    } catch (err) {
      this.stopped = true;
      this.stopController.abort();
      await this.consumer?.disconnect().catch(() => undefined);
      throw err;
    }
    this.running = true;
    this.ctx.log.info({ group_id: this.config.group_id, topics: this.topics }, "kafka: consuming");
  }

  private clientConfig(): KafkaConfig {
    const c = this.config;
    const config: KafkaConfig = {
      clientId: c.client_id,
      brokers: c.brokers,
      connectionTimeout: Math.min(c.connect_timeout_ms, 10_000),
      logLevel: logLevel.WARN,
      logCreator: () => (entry) => this.onKafkaLog(entry),
    };
    if (c.ssl) {
      config.ssl = c.ssl_ca_file !== undefined ? { ca: [this.readCaFile(c.ssl_ca_file)] } : true;
    }
    if (c.sasl) {
      const password = c.sasl.password ?? process.env[c.sasl.password_env!];
      if (password === undefined) throw new Error(`${this.where}: sasl.password_env: the environment variable ${c.sasl.password_env} is not set`);
      config.sasl = { mechanism: c.sasl.mechanism, username: c.sasl.username, password } as SASLOptions;
    }
    return config;
  }

  private readCaFile(path: string): string {
    try {
      return readFileSync(path, "utf8");
    } catch (err) {
      throw new Error(`${this.where}: ssl_ca_file: cannot read ${path}: ${(err as Error).message}`);
    }
  }

  /** The topic names to subscribe to; every name must exist and every pattern match one. */
  private async resolveTopics(): Promise<string[]> {
    // Few retries: start() has its own deadline, and a wrong address should fail fast.
    const admin = this.kafka!.admin({ retry: { retries: 3, initialRetryTime: 250, maxRetryTime: 2_000 } });
    try {
      try {
        await admin.connect();
      } catch (err) {
        throw new Error(this.connectProblem(err));
      }
      const existing = (await admin.listTopics()).filter((t) => !t.startsWith("__"));
      const chosen = new Set<string>();
      const missing: string[] = [];
      for (const entry of this.config.topics) {
        const pattern = topicPattern(entry);
        if (pattern) {
          const matches = existing.filter((t) => pattern.test(t));
          if (matches.length === 0) throw new Error(`${this.where}: no topic on ${this.brokerList} matches ${entry} (it is matched against the topics that exist at start)`);
          for (const t of matches) chosen.add(t);
        } else if (existing.includes(entry)) {
          chosen.add(entry);
        } else {
          missing.push(entry);
        }
      }
      if (missing.length > 0) {
        const list = missing.map((t) => `"${t}"`).join(", ");
        throw new Error(`${this.where}: topic ${list} ${missing.length > 1 ? "do" : "does"} not exist on ${this.brokerList} (or this client may not Describe it)`);
      }
      const topics = [...chosen].sort();
      await retryingTransient(() => this.readGroupOffsets(admin, topics), this.config.connect_timeout_ms);
      return topics;
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
  }

  /**
   * Reads the group's committed offsets and the partitions' ends. Refuses to start when a
   * committed offset is past its partition's end; with from_beginning off, notes the start
   * offset (the end) of each partition without a committed offset.
   *
   * Why not kafkajs's own "latest": it reads the end offset at the first fetch, some
   * time after start() returns, and skips what was produced meanwhile.
   */
  private async readGroupOffsets(admin: Admin, topics: string[]): Promise<void> {
    const committedOffsets = await admin.fetchOffsets({ groupId: this.config.group_id, topics });
    for (const { topic, partitions } of committedOffsets) {
      const ends = new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, BigInt(p.high)]));
      for (const { partition, offset } of partitions) {
        const key = partitionKeyOf(topic, partition);
        const end = ends.get(partition);
        const committed = BigInt(offset);
        if (end === undefined) continue;
        if (committed >= 0n) {
          // The topic was recreated or truncated since the group committed this. Going on
          // would read the new messages at positions the ledger already holds, where they
          // are dropped as repeats: stop here, before kafkajs resets the offset.
          if (committed > end) throw new Error(`${this.where}: ${this.recreatedProblem(topic, partition, committed, end)}`);
          this.readFrom.set(key, committed);
        } else if (committed === -1n && !this.config.from_beginning) {
          // Only -1 means "no offset". kafkajs commits -2 ("earliest") itself after an
          // out-of-range reset (even with autoCommit off): that partition is not new, and
          // kafkajs reads it from its earliest offset, as the reset meant.
          this.startOffsets.set(key, { topic, partition, offset: end });
          this.readFrom.set(key, end);
        }
      }
    }
  }

  private recreatedProblem(topic: string, partition: number, at: bigint, end: bigint): string {
    return (
      `topic "${topic}" partition ${partition}: the source is at offset ${at} but the partition ends at ${end}, so the topic was recreated or truncated. ` +
      `Messages of the old partition from offset ${at} on were not recorded, and the new messages reuse offsets (positions) the ledger already holds, so they would be dropped as repeats. ` +
      `Give the new topic a new name, or this source a new name and a new group_id`
    );
  }

  private connectProblem(err: unknown): string {
    const name = err instanceof Error ? err.name : "";
    if (name === "KafkaJSSASLAuthenticationError") {
      return `${this.where}: the Kafka brokers ${this.brokerList} refused the SASL credentials of "${this.config.sasl?.username}": ${describeError(err)}`;
    }
    return `${this.where}: cannot connect to the Kafka brokers ${this.brokerList}: ${describeError(err)}`;
  }

  /** Joins the consumer group; rejects, naming the problem, when the first join fails. */
  private async joinGroup(): Promise<void> {
    const c = this.config;
    const consumer = this.kafka!.consumer({
      groupId: c.group_id,
      sessionTimeout: c.session_timeout_ms,
      rebalanceTimeout: c.rebalance_timeout_ms,
      heartbeatInterval: c.heartbeat_interval_ms,
      maxBytesPerPartition: c.max_bytes_per_partition,
      maxWaitTimeInMs: FETCH_WAIT_MS,
      allowAutoTopicCreation: false,
    });
    this.consumer = consumer;
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => this.onJoin(payload.memberAssignment, payload.memberId));
    consumer.on(consumer.events.HEARTBEAT, () => (this.mustYield = false));
    consumer.on(consumer.events.CRASH, ({ payload }) => this.onCrash(payload.error, payload.restart));
    // Only this event says a commit reached the coordinator: kafkajs's commitOffsets
    // resolves without committing while its runner is not running (joining, restarting).
    consumer.on(consumer.events.COMMIT_OFFSETS, ({ payload }) => {
      const commits = payload.topics.flatMap((t) => t.partitions.map((p) => ({ topic: t.topic, partition: Number(p.partition), offset: String(p.offset) })));
      this.progress.committed(commits);
      for (const c of commits) {
        const key = partitionKeyOf(c.topic, c.partition);
        const start = this.pendingStarts.get(key);
        if (start !== undefined && BigInt(c.offset) >= start) this.pendingStarts.delete(key);
      }
    });
    try {
      await consumer.connect();
    } catch (err) {
      throw new Error(this.connectProblem(err));
    }
    // From the beginning either way: with from_beginning off, onJoin seeks to the start
    // offsets; and after an out-of-range reset kafkajs goes to the earliest offset.
    await consumer.subscribe({ topics: this.topics, fromBeginning: true });
    // Resolves once the first join is done, or failed (then the CRASH handler has run).
    await this.runConsumer();
    if (this.startCrash) {
      throw new Error(`${this.where}: cannot join consumer group "${c.group_id}" on ${this.brokerList}: ${describeError(this.startCrash)}`);
    }
  }

  private runConsumer(): Promise<void> {
    return this.consumer!.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: 1,
      eachBatch: (payload) => this.onBatch(payload),
    });
  }

  private onJoin(assignment: Record<string, number[]>, memberId: string): void {
    this.mustYield = false;
    this.restartAttempts = 0;
    this.progress.retain(assignment);
    this.assigned = new Set(Object.entries(assignment).flatMap(([topic, parts]) => parts.map((p) => partitionKeyOf(topic, p))));
    // A partition that went to another member may come back with that member's offset.
    for (const key of this.pendingStarts.keys()) if (!this.assigned.has(key)) this.pendingStarts.delete(key);
    // A consumer restarted after a crash has forgotten the pause.
    if (this.paused) this.applyPause();
    // Start offsets, at the first join only (later, another member may have committed
    // past them), and then never again. Seek there, so the first fetch does not read the
    // whole topic to drop it, and commit them at once: a restart before the first message
    // must not read the end offsets again, later, and skip what came in between.
    let skipped = false;
    const firstJoin = !this.joinedOnce;
    this.joinedOnce = true;
    for (const [topic, partitions] of firstJoin ? Object.entries(assignment) : []) {
      for (const partition of partitions) {
        const key = partitionKeyOf(topic, partition);
        const start = this.startOffsets.get(key);
        if (!start) continue;
        this.pendingStarts.set(key, start.offset);
        try {
          // Applied at the next fetch (GROUP_JOIN comes before it). A seek left pending for
          // a partition revoked before that fetch only makes kafkajs read again, never skip.
          this.consumer!.seek({ topic, partition, offset: start.offset.toString() });
        } catch (err) {
          this.ctx.log.warn({ err: describeError(err), topic, partition }, "kafka: cannot seek to the start offset; older messages are fetched and skipped");
        }
        this.progress.track(topic, partition, start.offset.toString());
        if (this.progress.skipBelow(topic, partition, start.offset)) skipped = true;
      }
    }
    if (firstJoin) this.startOffsets.clear();
    else void this.checkNotRecreated(assignment);
    if (skipped) void this.flushCommits();
    this.ctx.log.info({ group_id: this.config.group_id, assignment }, "kafka: joined the consumer group");
    void this.warnIfGroupShared(memberId);
  }

  /**
   * Idempotency keys start with the agent's ZID, so two agents in one group do not dedup
   * each other's replays after a rebalance: say so when the group has other members.
   */
  private async warnIfGroupShared(memberId: string): Promise<void> {
    try {
      const group = await this.consumer!.describeGroup();
      const others = group.members.filter((m) => m.memberId !== memberId);
      if (others.length === 0 || this.stopped) return;
      this.ctx.log.warn(
        { group_id: this.config.group_id, others: others.map((m) => ({ clientId: m.clientId, clientHost: m.clientHost })) },
        "kafka: the consumer group has other members; run exactly one agent per group_id (another agent's replays after a rebalance are recorded again, and another consumer takes messages away)",
      );
    } catch {
      // Only a warning: the group may be rebalancing again.
    }
  }

  private onCrash(error: Error, restart: boolean): void {
    if (this.stopped) return;
    if (!this.running) {
      this.startCrash = error;
      return;
    }
    if (restart) {
      this.ctx.log.error({ err: describeError(error), group_id: this.config.group_id }, "kafka: the consumer crashed; kafkajs restarts it (unacknowledged messages are read again)");
      return;
    }
    const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(this.restartAttempts++, 16));
    this.ctx.log.error(
      { err: describeError(error), group_id: this.config.group_id, restartInMs: delay },
      "kafka: the consumer crashed and kafkajs will not restart it; the source restarts it (unacknowledged messages are read again)",
    );
    void this.sleep(delay).then(async () => {
      if (this.stopped) return;
      try {
        await this.consumer!.connect();
        await this.runConsumer();
      } catch (err) {
        this.onCrash(err as Error, false);
      }
    });
  }

  /** kafkajs's own log lines, at warn and error, go to the agent's log. */
  private onKafkaLog(entry: LogEntry): void {
    const { message, timestamp: _timestamp, logger: _logger, ...extra } = entry.log;
    if (entry.namespace === "Connection" || entry.namespace === "BrokerPool") this.lastConnectionProblem = message;
    if (message === OFFSET_RESET_MESSAGE && extra.groupId === this.config.group_id && !this.stopped) {
      void this.onOffsetReset(String(extra.topic), Number(extra.partition));
    }
    const line = { kafkajs: entry.namespace, ...extra };
    if (entry.level === logLevel.ERROR) this.ctx.log.error(line, `kafkajs: ${message}`);
    else this.ctx.log.warn(line, `kafkajs: ${message}`);
  }

  /**
   * kafkajs found the offset it was to fetch out of the partition's range, and commits
   * -2 ("earliest") to the group (even with autoCommit off) before reading on from the
   * earliest offset. Below the start of the partition: retention deleted messages the
   * agent had not read; record a gap, then commit the real earliest offset so the -2 does
   * not stay (the next reset would have nothing to detect). Past its end: the topic was
   * recreated or truncated, and reading on would record nothing (the new messages' positions
   * are taken for repeats): record a gap and fail.
   */
  private async onOffsetReset(topic: string, partition: number): Promise<void> {
    const key = partitionKeyOf(topic, partition);
    const at = this.readFrom.get(key);
    const bounds = await this.partitionBounds(topic, partition);
    if (this.stopped) return;
    if (bounds && at !== undefined && at > bounds.high) {
      await this.onRecreated(topic, partition, at, bounds.high);
      return;
    }
    const recorded = await this.recordGap(
      `topic "${topic}" partition ${partition}: the committed offset is no longer in the partition (messages deleted by retention before the agent read them); the source goes on from the earliest offset still there${bounds ? ` (${bounds.low})` : ""}, so messages in between were not recorded`,
    );
    // Only once the gap is durable, and sent well after kafkajs's own commit of -2.
    if (!recorded || !bounds || this.stopped || !this.assigned.has(key)) return;
    this.progress.track(topic, partition, bounds.low.toString());
    if (this.progress.skipBelow(topic, partition, bounds.low)) await this.flushCommits();
  }

  /**
   * The partition now ends below where the source has read: the topic was recreated or
   * truncated, and reading on would record nothing (the new messages' positions are taken
   * for repeats). Records a gap and fails, once per partition, and stops fetching it.
   */
  private async onRecreated(topic: string, partition: number, at: bigint, end: bigint): Promise<void> {
    const key = partitionKeyOf(topic, partition);
    if (this.recreated.has(key)) return;
    this.recreated.add(key);
    this.consumer?.pause([{ topic, partitions: [partition] }]);
    const reason = this.recreatedProblem(topic, partition, at, end);
    await this.recordGap(reason);
    if (this.stopped) return;
    if (this.sink!.fail) this.sink!.fail(reason);
    else this.ctx.log.error({ reason }, "kafka: the topic was recreated or truncated; stop the agent");
  }

  /**
   * After a rejoin: a partition that now ends below where the source had read was
   * recreated or truncated. Kafka deletes a deleted topic's group offsets, so kafkajs
   * then reads the new topic from its start without any out-of-range reset to notice.
   */
  private async checkNotRecreated(assignment: Record<string, number[]>): Promise<void> {
    for (const [topic, partitions] of Object.entries(assignment)) {
      for (const partition of partitions) {
        const at = this.readFrom.get(partitionKeyOf(topic, partition));
        if (at === undefined || at === 0n) continue;
        const bounds = await this.partitionBounds(topic, partition);
        if (this.stopped) return;
        if (bounds && at > bounds.high) await this.onRecreated(topic, partition, at, bounds.high);
      }
    }
  }

  /** The partition's earliest offset and end, or undefined (logged) when they cannot be read. */
  private async partitionBounds(topic: string, partition: number): Promise<{ low: bigint; high: bigint } | undefined> {
    const admin = this.kafka!.admin({ retry: { retries: 3, initialRetryTime: 250, maxRetryTime: 2_000 } });
    try {
      await admin.connect();
      const p = (await admin.fetchTopicOffsets(topic)).find((o) => o.partition === partition);
      return p ? { low: BigInt(p.low), high: BigInt(p.high) } : undefined;
    } catch (err) {
      this.ctx.log.warn({ err: describeError(err), topic, partition }, "kafka: cannot read the partition's offsets");
      return undefined;
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
  }

  private async onBatch({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> {
    if (this.stopped) return;
    const fetchedOffset = (batch as { fetchedOffset?: string }).fetchedOffset ?? batch.firstOffset() ?? "0";
    const key = partitionKeyOf(batch.topic, batch.partition);
    // Caught here as well as by kafkajs's out-of-range reset: when the group lost its
    // offset with the deleted topic, kafkajs reads the new one from the start, no reset.
    const known = this.readFrom.get(key);
    if (known !== undefined && BigInt(batch.highWatermark) < known) {
      await this.onRecreated(batch.topic, batch.partition, known, BigInt(batch.highWatermark));
      return;
    }
    if (this.recreated.has(key)) return;
    this.progress.track(batch.topic, batch.partition, fetchedOffset);
    let messages = batch.messages;
    if (messages.length > 0) this.readFrom.set(key, BigInt(messages[messages.length - 1]!.offset) + 1n);
    const start = this.pendingStarts.get(key);
    if (start !== undefined && messages.length > 0 && BigInt(messages[0]!.offset) < start) {
      const skip = messages.filter((m) => BigInt(m.offset) < start);
      resolveOffset(skip[skip.length - 1]!.offset);
      this.progress.skipBelow(batch.topic, batch.partition, start);
      messages = messages.slice(skip.length);
    }
    for (let i = 0; i < messages.length; ) {
      if (this.paused) {
        this.applyPause(); // the rest of the batch is fetched again after resume()
        break;
      }
      if (this.stopped || this.mustYield || !isRunning() || isStale()) break;
      const chunk = messages.slice(i, i + MAX_EVENTS_PER_EMIT);
      const events = chunk.map((m) => toSourceEvent({ ...m, topic: batch.topic, partition: batch.partition } as ReceivedMessage, this.shape));
      if (!(await this.emitKeepingMembership(events, heartbeat))) break;
      resolveOffset(chunk[chunk.length - 1]!.offset);
      i += chunk.length;
    }
    // Before kafkajs fetches again, or rejoins a rebalancing group: commit what is durable.
    if (!this.stopped) await this.flushCommits();
  }

  /** Hands `events` to the sink until it takes them, heartbeating meanwhile; false when stopped first. */
  private async emitKeepingMembership(events: SourceEvent[], heartbeat: () => Promise<void>): Promise<boolean> {
    const beat = setInterval(() => {
      heartbeat().catch((err: unknown) => {
        if (this.stopped) return;
        this.mustYield = true;
        this.ctx.log.warn({ err: describeError(err) }, "kafka: heartbeat failed while the agent held a batch; the source rejoins the group after it");
      });
    }, this.config.heartbeat_interval_ms);
    try {
      for (let attempt = 0; ; attempt++) {
        if (this.stopped) return false;
        try {
          await untilAborted(this.sink!.emit(events), this.stopController.signal);
          return !this.stopped;
        } catch (err) {
          if (this.stopped) return false;
          const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(attempt, 16));
          this.ctx.log.error({ err: String(err), position: events[0]!.position, retryInMs: delay }, "kafka: the agent did not take the events; retrying");
          await this.sleep(delay);
        }
      }
    } finally {
      clearInterval(beat);
    }
  }

  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.applyPause();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.applyPause();
  }

  /** Tells kafkajs to (stop) fetch(ing) the subscribed topics, when it has a running consumer. */
  private applyPause(): void {
    const consumer = this.consumer;
    if (!consumer || this.topics.length === 0) return;
    const topics = this.topics.map((topic) => ({ topic }));
    try {
      if (this.paused) consumer.pause(topics);
      else consumer.resume(topics);
    } catch {
      // Not running (starting, or restarting after a crash): onJoin applies it.
    }
  }

  async acknowledge(position: SourcePosition): Promise<void> {
    if (this.stopped) return;
    if (this.progress.acknowledge(position)) void this.flushCommits();
  }

  /** Commits every partition's durable prefix; one commit at a time, the latest wins. */
  private flushCommits(): Promise<void> {
    if (this.commitRun) {
      this.commitAgain = true;
      return this.commitRun;
    }
    const run = (async () => {
      do {
        this.commitAgain = false;
        await this.commitOnce();
      } while (this.commitAgain);
    })().finally(() => (this.commitRun = undefined));
    this.commitRun = run;
    return run;
  }

  /** `final`: the commit stop() makes before leaving the group. */
  private async commitOnce(final = false): Promise<void> {
    const due = this.progress.due();
    if (due.length === 0 || !this.consumer || (this.stopped && !final)) return;
    try {
      await this.consumer.commitOffsets(due);
    } catch (err) {
      // Not fatal: those messages are read again later, and their positions dedup them.
      this.ctx.log.warn({ err: describeError(err), offsets: due }, "kafka: committing offsets failed; retrying");
    }
    // Not confirmed by COMMIT_OFFSETS (failed, or kafkajs was not running): try again soon.
    if (this.progress.due().length > 0 && !this.stopped && this.commitRetry === undefined) {
      this.commitRetry = setTimeout(() => {
        this.commitRetry = undefined;
        void this.flushCommits();
      }, COMMIT_RETRY_MS);
    }
  }

  /** Records a gap entry, retrying until the sink takes it (true) or the source stops (false). */
  private async recordGap(reason: string): Promise<boolean> {
    for (let attempt = 0; !this.stopped; attempt++) {
      try {
        await untilAborted(this.sink!.gap(reason), this.stopController.signal);
        return !this.stopped;
      } catch (err) {
        const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(attempt, 16));
        this.ctx.log.error({ err: String(err), retryInMs: delay }, "kafka: cannot record the gap entry; retrying");
        await this.sleep(delay);
      }
    }
    return false;
  }

  async stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.stopped = true;
      this.stopController.abort();
      for (const t of this.timers) clearTimeout(t);
      this.timers.clear();
      clearTimeout(this.commitRetry);
      const consumer = this.consumer;
      if (!consumer) return;
      // While the consumer still runs: kafkajs drops commits once it is stopping.
      if (this.running) {
        const lastCommit = (async () => {
          await this.commitRun;
          await this.commitOnce(true);
        })();
        await within(lastCommit, STOP_COMMIT_TIMEOUT_MS, () => "timed out").catch((err: unknown) =>
          this.ctx.log.warn({ err: describeError(err) }, "kafka: the last commit before stopping did not finish; those messages are read again"),
        );
      }
      // Leaves the group, so the other members take the partitions over at once.
      await consumer.disconnect().catch((err: unknown) => this.ctx.log.warn({ err: describeError(err) }, "kafka: disconnecting failed"));
    })();
    return this.stopping;
  }

  /** Waits `ms`, or until stop(); leaves nothing attached to the stop signal afterwards. */
  private sleep(ms: number): Promise<void> {
    const signal = this.stopController.signal;
    if (signal.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.timers.delete(timer);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.timers.add(timer);
      signal.addEventListener("abort", done, { once: true });
    });
  }
}
