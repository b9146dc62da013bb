// The mongo_change_stream source: watches a collection, a database or the deployment
// and hands every change event to the agent in oplog order. The resume token of an
// event is written to the state folder only once the agent acknowledges the event (it
// is durable in the outbox), and a restart resumes with `startAfter` that token, so
// what was not acknowledged comes again, with the same positions (the ledger keeps it
// once). See docs/sources/mongo-change-stream.md.
//
// Reading: one loop reads a batch (tryNext, then what the driver already buffered),
// hands it to the sink and waits for the sink to take it before reading again; while
// paused it reads nothing, so the unread events wait in the oplog. Where a new cursor
// must start (after an error, or an `invalidate`) is `resumePoint`: the token of the
// last event handed over, or the server's post-batch token while idle.
import { BSON, ChangeStream, MongoClient, type ChangeStreamOptions, type Document, type MongoClientOptions } from "mongodb";
import type { SourceContext } from "../source-factory.js";
import type { Source, SourceEvent, SourcePosition, SourceSink } from "../source.js";
import { toSourceEvent, tokenText, type WatchedNamespace } from "./change-event.js";
import { hostsOfUrl, scopeOf, type MongoChangeStreamConfig } from "./config.js";
import { RESUME_FILE, ResumeState, tokenToJson, type OperationTime } from "./resume-state.js";
import { describeMongoError, isHistoryLost, isUnreadableEvent, startProblem, type Where } from "./stream-problem.js";

export const SOURCE_TYPE = "mongo_change_stream";
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 30_000;
/** How often, at most, an idle stream's post-batch token is saved (so a quiet collection's resume point stays inside the oplog window). */
const IDLE_TOKEN_SAVE_INTERVAL_MS = 10_000;
/** Least time between two reads that found nothing, for servers that answer at once instead of waiting max_await_time_ms. */
const EMPTY_READ_MIN_INTERVAL_MS = 50;

/** Where a new cursor starts: after a token, at a cluster time, or (undefined) at the current point. */
type ResumePoint = { token: Document } | { operationTime: OperationTime } | undefined;

/** An event handed to the sink whose acknowledgement has not come yet. */
interface Unacknowledged {
  position: SourcePosition;
  token: Document;
}

/**
 * The cluster time the server says a stream opened at the current point starts from:
 * the driver keeps the aggregate's operationTime as the cursor's startAtOperationTime
 * (not in its public types; undefined when absent, e.g. mongo-java-server).
 */
export function serverStartTime(stream: ChangeStream): OperationTime | undefined {
  const time = (stream as unknown as { cursor?: { startAtOperationTime?: unknown } }).cursor?.startAtOperationTime;
  if (!(time instanceof BSON.Timestamp)) return undefined;
  const t = time.t;
  return t > 0 ? { t, i: time.i } : undefined;
}

function retryDelay(attempt: number): number {
  return Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(attempt, 16));
}

export class MongoChangeStreamSource implements Source {
  readonly type = SOURCE_TYPE;
  private sink: SourceSink | undefined;
  private client: MongoClient | undefined;
  private stream: ChangeStream | undefined;
  private state: ResumeState | undefined;
  private resumePoint: ResumePoint;
  /** Read at start, not yet handed over. */
  private held: Document[] = [];
  private unacknowledged: Unacknowledged[] = [];
  private lastAcknowledged: SourcePosition | undefined;
  private lastHandedOver: SourcePosition | undefined;
  private lastIdleSave = 0;
  private readFailures = 0;
  /** Set when the source cannot go on (see failWith): it reads no more. */
  private failed: string | undefined;
  private started = false;
  private stopped = false;
  private paused = false;
  private running: Promise<void> | undefined;
  private wakers: (() => void)[] = [];
  private signalStop: () => void = () => undefined;
  private readonly stopSignal = new Promise<void>((resolve) => (this.signalStop = resolve));
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly scope: string;
  private readonly watched: WatchedNamespace;
  private readonly whereInfo: Where;

  constructor(
    private readonly config: MongoChangeStreamConfig,
    private readonly ctx: SourceContext,
  ) {
    this.scope = scopeOf(config);
    this.watched = { ...(config.database !== undefined ? { db: config.database } : {}), ...(config.collection !== undefined ? { coll: config.collection } : {}) };
    const hosts = hostsOfUrl(config.url);
    this.whereInfo = {
      hosts: "hosts" in hosts ? hosts.hosts : config.url,
      scope: this.scope,
      username: config.username,
      serverSelectionTimeoutMs: config.server_selection_timeout_ms,
    };
  }

  private get where(): string {
    return `mongo_change_stream source "${this.ctx.name}"`;
  }

  /**
   * `resumeFrom` is not needed: the state folder holds the token of the last acknowledged
   * event, and events after it come again with their first positions (the ledger dedups).
   */
  async start(sink: SourceSink, _resumeFrom?: SourcePosition): Promise<void> {
    if (this.started) throw new Error(`${this.where} was already started`);
    this.started = true;
    this.sink = sink;
    try {
      await this.connectAndOpen();
    } catch (err) {
      await this.stop();
      throw new Error(`${this.where}: ${(err as Error).message}`);
    }
    this.ctx.log.info({ scope: this.scope, hosts: this.whereInfo.hosts, resume: this.describeResumePoint() }, "mongo_change_stream: watching");
    this.running = this.run();
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.wake();
  }

  /** Writes the token of the event at `position` (and so of every earlier one) to the state folder. */
  async acknowledge(position: SourcePosition): Promise<void> {
    if (this.stopped) return;
    const i = this.unacknowledged.findIndex((u) => u.position === position);
    if (i < 0) {
      if (position !== this.lastAcknowledged) this.ctx.log.warn({ position }, "mongo_change_stream: acknowledged a position it is not waiting for; ignored");
      return;
    }
    const { token } = this.unacknowledged[i]!;
    await this.state!.save({ token: tokenToJson(token), start_at_operation_time: null, position, history_lost: null, unreadable_event: null });
    // Forgotten only once saved: if the write fails, the agent's retry finds it again.
    const done = this.unacknowledged.findIndex((u) => u.position === position);
    if (done >= 0) this.unacknowledged.splice(0, done + 1);
    this.lastAcknowledged = position;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.signalStop();
    this.wake();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await this.closeStream();
    await this.running?.catch(() => undefined);
    // An acknowledgement under way: its event is stored, let its token reach the disk.
    await this.state?.settled();
    await this.client?.close().catch(() => undefined);
  }

  // --- start -----------------------------------------------------------------------

  private async connectAndOpen(): Promise<void> {
    const password = this.password();
    const state = await ResumeState.load(this.ctx.stateDir, this.scope);
    this.state = state;
    const lost = state.record.history_lost;
    if (lost !== null && this.config.on_history_lost === "fail") throw new Error(this.historyLostFailure(lost.reason));
    const token = state.token();
    const time = state.record.start_at_operation_time;
    this.resumePoint = token !== undefined ? { token } : time !== null ? { operationTime: time } : undefined;
    this.lastHandedOver = state.record.position ?? undefined;

    const options: MongoClientOptions = {
      serverSelectionTimeoutMS: this.config.server_selection_timeout_ms,
      connectTimeoutMS: Math.min(this.config.server_selection_timeout_ms, 10_000),
      appName: "audit-ledger-agent",
      ...(this.config.username !== undefined ? { auth: { username: this.config.username, ...(password !== undefined ? { password } : {}) } } : {}),
      ...(this.config.auth_source !== undefined ? { authSource: this.config.auth_source } : {}),
    };
    try {
      this.client = new MongoClient(this.config.url, options);
      await this.client.connect();
    } catch (err) {
      throw new Error(startProblem(err, this.whereInfo, "connect"));
    }
    // The first read opens the cursor: a server that cannot watch says so here.
    for (;;) {
      try {
        this.held = await this.read();
        return;
      } catch (err) {
        await this.closeStream();
        if (isUnreadableEvent(err)) throw new Error(await this.recordUnreadableEvent(err));
        if (!isHistoryLost(err)) throw new Error(startProblem(err, this.whereInfo, "watch"));
        await this.recordHistoryLost(err); // throws with on_history_lost: fail
      }
    }
  }

  private password(): string | undefined {
    if (this.config.password_env === undefined) return this.config.password;
    const value = process.env[this.config.password_env];
    if (value === undefined) throw new Error(`password_env: the environment variable ${this.config.password_env} is not set`);
    return value;
  }

  // --- reading ---------------------------------------------------------------------

  private async run(): Promise<void> {
    while (!this.stopped && this.failed === undefined) {
      if (this.paused) {
        await this.waitForWake();
        continue;
      }
      const readAt = Date.now();
      let batch: Document[];
      try {
        batch = await this.read();
        this.readFailures = 0;
      } catch (err) {
        await this.recoverFromReadError(err);
        continue;
      }
      if (this.stopped) return;
      if (batch.length === 0) {
        await this.onIdle(readAt);
        continue;
      }
      await this.handOver(batch);
    }
  }

  /**
   * After a failed read (the driver already retried what it deems resumable): history
   * lost is recorded (and, with on_history_lost "fail", stops the source); anything
   * else is logged and the stream opened again from `resumePoint` after a pause.
   */
  private async recoverFromReadError(err: unknown): Promise<void> {
    if (this.stopped) return;
    await this.closeStream();
    if (isUnreadableEvent(err)) {
      try {
        this.failWith(await this.recordUnreadableEvent(err));
      } catch {
        // Only stop() interrupts recording the gap: nothing to report.
      }
      return;
    }
    if (isHistoryLost(err)) {
      try {
        await this.recordHistoryLost(err);
      } catch (failure) {
        // on_history_lost "fail" (already logged): tell the agent, which stops with an
        // error, rather than look healthy while reading nothing.
        if (!this.stopped) this.failWith((failure as Error).message, false);
      }
      return;
    }
    const delay = retryDelay(this.readFailures++);
    this.ctx.log.error({ err: describeMongoError(err), retryInMs: delay, resume: this.describeResumePoint() }, "mongo_change_stream: reading the change stream failed; opening it again");
    await this.sleep(delay);
  }

  /** The next events: what start() read, else one round trip's worth (at most batch_size). */
  private async read(): Promise<Document[]> {
    if (this.held.length > 0) return this.held.splice(0, this.config.batch_size);
    this.stream ??= this.openStream();
    const stream = this.stream;
    // Opening at the current point: remember where that was before anything is handed
    // over, or a crash before the first acknowledgement would lose what came meanwhile.
    const anchoring = this.resumePoint === undefined;
    let anchor: Document | undefined;
    const onToken = (token: Document) => (anchor ??= token);
    if (anchoring) stream.on(ChangeStream.RESUME_TOKEN_CHANGED, onToken);
    const openedAt = Date.now();
    let first: Document | null;
    try {
      first = await stream.tryNext();
    } finally {
      if (anchoring) stream.off(ChangeStream.RESUME_TOKEN_CHANGED, onToken);
    }
    if (anchoring && !this.stopped) {
      // The token of the first event is not a point before it.
      if (anchor !== undefined && first !== null && tokenText(anchor) === tokenText(first._id)) anchor = undefined;
      await this.saveAnchor(anchor, serverStartTime(stream) ?? { t: Math.floor(openedAt / 1000), i: 0 });
    }
    if (first === null) {
      if (stream.closed) this.stream = undefined;
      else if (stream.resumeToken != null) this.resumePoint = { token: stream.resumeToken as Document };
      return [];
    }
    const batch = [first];
    while (batch.length < this.config.batch_size && stream.bufferedCount() > 0 && first.operationType !== "invalidate") {
      const next = await stream.tryNext();
      if (next === null) break;
      batch.push(next);
      if (next.operationType === "invalidate") break;
    }
    return batch;
  }

  private openStream(): ChangeStream {
    const client = this.client!;
    const point = this.resumePoint;
    const options: ChangeStreamOptions = {
      maxAwaitTimeMS: this.config.max_await_time_ms,
      batchSize: this.config.batch_size,
      // Values as stored: Int32, Int64 and Double stay apart (canonical EJSON keeps them),
      // 64-bit integers keep every digit, regexes keep flags JavaScript lacks.
      promoteValues: false,
      bsonRegExp: true,
      ...(this.config.full_document !== "off" ? { fullDocument: this.config.full_document } : {}),
      ...(this.config.full_document_before_change !== "off" ? { fullDocumentBeforeChange: this.config.full_document_before_change } : {}),
      // startAfter, not resumeAfter: it also starts after an `invalidate` event.
      ...(point === undefined ? {} : "token" in point ? { startAfter: point.token } : { startAtOperationTime: new BSON.Timestamp(point.operationTime) }),
    };
    if (this.config.database === undefined) return client.watch([], options);
    const db = client.db(this.config.database);
    return this.config.collection === undefined ? db.watch([], options) : db.collection(this.config.collection).watch([], options);
  }

  /**
   * Saves where a stream opened at the current point starts: the server's post-batch
   * token, else `operationTime`: the cluster time the server says the stream opened at,
   * or, from a server that says neither (mongo-java-server), the opening second by the
   * agent's clock.
   */
  private async saveAnchor(anchor: Document | undefined, operationTime: OperationTime): Promise<void> {
    if (anchor !== undefined) {
      this.resumePoint = { token: anchor };
      await this.state!.save({ token: tokenToJson(anchor), start_at_operation_time: null, history_lost: null });
    } else {
      this.resumePoint = { operationTime };
      await this.state!.save({ token: null, start_at_operation_time: operationTime, history_lost: null });
    }
  }

  private async onIdle(readAt: number): Promise<void> {
    const point = this.resumePoint;
    const now = Date.now();
    if (point !== undefined && "token" in point && this.unacknowledged.length === 0 && now - this.lastIdleSave >= IDLE_TOKEN_SAVE_INTERVAL_MS) {
      const token = tokenToJson(point.token);
      if (token !== this.state!.record.token) {
        this.lastIdleSave = now;
        await this.state!.save({ token, start_at_operation_time: null }).catch((err: unknown) => this.ctx.log.warn({ err: String(err) }, "mongo_change_stream: cannot save the idle resume token"));
      }
    }
    const elapsed = Date.now() - readAt;
    if (elapsed < EMPTY_READ_MIN_INTERVAL_MS) await this.sleep(EMPTY_READ_MIN_INTERVAL_MS - elapsed);
  }

  private async handOver(batch: Document[]): Promise<void> {
    const events: SourceEvent[] = batch.map((change) => toSourceEvent(change, this.watched, this.config.payload_ejson));
    const last = batch[batch.length - 1]!;
    this.resumePoint = { token: last._id as Document };
    events.forEach((e, i) => this.unacknowledged.push({ position: e.position, token: batch[i]!._id as Document }));
    this.lastHandedOver = events[events.length - 1]!.position;
    await this.emitWithRetry(events);
    if (last.operationType === "invalidate") {
      // The collection was dropped or renamed (or the database dropped): the server ended
      // the cursor. A new one with startAfter the invalidate token watches the same name on.
      this.ctx.log.warn({ scope: this.scope, position: events[events.length - 1]!.position }, "mongo_change_stream: the change stream was invalidated (drop or rename); watching again after it");
      await this.closeStream();
    }
  }

  /** Hands `events` to the sink until it takes them (the agent may fail and recover); stops with stop(). */
  private async emitWithRetry(events: SourceEvent[]): Promise<void> {
    for (let attempt = 0; !this.stopped; attempt++) {
      try {
        await Promise.race([this.sink!.emit(events), this.stopSignal]);
        return;
      } catch (err) {
        if (this.stopped) return;
        const delay = retryDelay(attempt);
        this.ctx.log.error({ err: String(err), position: events[0]!.position, retryInMs: delay }, "mongo_change_stream: the agent did not take the events; retrying");
        await this.sleep(delay);
      }
    }
  }

  // --- history lost ----------------------------------------------------------------

  /**
   * The server no longer has the oplog the stream must resume from. Records a gap entry
   * (once: the state says when it was recorded) and logs an error; then either throws
   * (on_history_lost: fail) or sets the stream to start again at the current point.
   */
  private async recordHistoryLost(err: unknown): Promise<void> {
    const state = this.state!;
    let reason = state.record.history_lost?.reason;
    if (reason === undefined) {
      const after = this.lastHandedOver !== undefined ? `position ${this.lastHandedOver}` : `the point it started at (${this.describeResumePoint()})`;
      reason =
        `MongoDB at ${this.whereInfo.hosts} no longer has the change stream history of ${this.scope} after ${after}: ` +
        `the events since then are lost (${describeMongoError(err)}). The oplog window was shorter than the time the agent was away or behind`;
      this.ctx.log.error({ scope: this.scope, from: this.lastHandedOver }, `mongo_change_stream: ${reason}; recording a gap entry`);
      await this.recordGap(reason);
      await this.saveMarker({ history_lost: { reason } }, this.config.on_history_lost === "restart_from_now");
    }
    if (this.config.on_history_lost === "fail") {
      const failure = this.historyLostFailure(reason);
      this.ctx.log.error({ scope: this.scope }, `mongo_change_stream: ${failure}`);
      throw new Error(failure);
    }
    this.ctx.log.error({ scope: this.scope }, "mongo_change_stream: going on from the current point (on_history_lost: restart_from_now)");
    this.resumePoint = undefined;
    this.unacknowledged = [];
  }

  /**
   * Writes that a gap entry is recorded. `mustLand`: going on depends on it (else a
   * restart would not know the gap is recorded), so retry with backoff until it is
   * written or the source stops; otherwise one try, and a failure only means a restart
   * may record the gap a second time.
   */
  private async saveMarker(changes: { history_lost?: { reason: string }; unreadable_event?: { reason: string } }, mustLand: boolean): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.state!.save(changes);
        return;
      } catch (err) {
        if (!mustLand || this.stopped) {
          this.ctx.log.error({ err: String(err) }, "mongo_change_stream: cannot note in the state folder that the gap is recorded; a restart may record it again");
          if (this.stopped) throw new Error(`${this.where} stopped`);
          return;
        }
        const delay = retryDelay(attempt);
        this.ctx.log.error({ err: String(err), retryInMs: delay }, "mongo_change_stream: cannot note in the state folder that the gap is recorded; retrying");
        await this.sleep(delay);
      }
    }
  }

  /** Records a gap entry (retried until recorded or stopped; throws if stopped). */
  private async recordGap(reason: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      if (this.stopped) throw new Error(`${this.where} stopped`);
      try {
        await Promise.race([this.sink!.gap(reason, this.lastHandedOver), this.stopSignal]);
        if (this.stopped) throw new Error(`${this.where} stopped`);
        return;
      } catch (gapErr) {
        if (this.stopped) throw gapErr;
        const delay = retryDelay(attempt);
        this.ctx.log.error({ err: String(gapErr), retryInMs: delay }, "mongo_change_stream: cannot record the gap entry; retrying");
        await this.sleep(delay);
      }
    }
  }

  // --- an event that can never be read ----------------------------------------------

  /**
   * The server cannot return the next event as configured, and never will: it is over
   * 16 MB with its full document / pre-image (BSONObjectTooLarge, 10334), or a required
   * image is gone (NoMatchingDocument, 47). Reading again from the same point fails the
   * same way, so instead of retrying forever: record a gap entry (once: the state says
   * when it was recorded) from the last position handed over, and return the failure
   * (the caller fails the source). Throws only when stopped meanwhile.
   */
  private async recordUnreadableEvent(err: unknown): Promise<string> {
    let reason = this.state!.record.unreadable_event?.reason;
    if (reason === undefined) {
      const after = this.lastHandedOver !== undefined ? `position ${this.lastHandedOver}` : `the point it started at (${this.describeResumePoint()})`;
      reason =
        `MongoDB at ${this.whereInfo.hosts} cannot return the next change event of ${this.scope} after ${after} ` +
        `as configured (full_document: ${this.config.full_document}, full_document_before_change: ${this.config.full_document_before_change}): ` +
        `${describeMongoError(err)}. That event (and, once skipped, nothing else) is not recorded`;
      this.ctx.log.error({ scope: this.scope, from: this.lastHandedOver }, `mongo_change_stream: ${reason}; recording a gap entry`);
      await this.recordGap(reason);
      await this.saveMarker({ unreadable_event: { reason } }, false);
    }
    return (
      `${reason}. The gap is recorded in the ledger; the source stays stopped. To go on: turn off the full document or ` +
      `pre-image option that makes the event unreadable (or use whenAvailable instead of required) and restart, or remove ` +
      `${RESUME_FILE} in ${this.ctx.stateDir} to start from the current point (everything since the last acknowledged event is then skipped)`
    );
  }

  /**
   * The source cannot go on: reads no more, logs at error level (unless the caller
   * already did) and tells the agent, which stops with this reason.
   */
  private failWith(reason: string, log = true): void {
    if (this.failed !== undefined || this.stopped) return;
    this.failed = reason;
    if (log) this.ctx.log.error({ scope: this.scope }, `mongo_change_stream: ${reason}`);
    this.sink?.fail?.(reason);
  }

  private historyLostFailure(reason: string): string {
    return (
      `${reason}. The gap is recorded in the ledger; the source stays stopped until on_history_lost is set to ` +
      `restart_from_now (it then goes on from the current point), or ${RESUME_FILE} in ${this.ctx.stateDir} is removed`
    );
  }

  // --- helpers ---------------------------------------------------------------------

  private describeResumePoint(): string {
    const p = this.resumePoint;
    if (p === undefined) return "the current point";
    if ("token" in p) return `after token ${tokenText(p.token).slice(0, 80)}`;
    return `at cluster time ${p.operationTime.t}.${p.operationTime.i}`;
  }

  private async closeStream(): Promise<void> {
    const stream = this.stream;
    this.stream = undefined;
    await stream?.close().catch(() => undefined);
  }

  private wake(): void {
    for (const w of this.wakers.splice(0)) w();
  }

  private waitForWake(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise<void>((resolve) => this.wakers.push(resolve));
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        resolve();
      }, ms);
      this.timers.add(timer);
      void this.stopSignal.then(() => resolve());
    });
  }
}

