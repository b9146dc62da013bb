// The postgres_logical source: streams a publication's row changes from a logical
// replication slot (pgoutput, protocol 1) over one replication connection, and reports
// a WAL position to the slot as flushed only once the agent has acknowledged every event
// before it (flush-tracker.ts) and the source has written it to its state folder
// (slot-state.ts). The slot keeps everything after that position, so a restart, a crash
// or a lost connection replays it, with the same positions (change-event.ts).
//
// Backpressure: the source reads the CopyBoth stream one message at a time and stops
// reading while paused or while an emit is under way. The server's send buffer and the
// socket fill up, and the WAL waits in the slot. Status updates still go out every
// status_interval_ms, so the server does not time the connection out meanwhile.
import type { Duplex } from "node:stream";
import pg from "pg";
import * as copyStreams from "pg-copy-streams";
import type { SourceContext } from "../source-factory.js";
import type { Source, SourceEvent, SourcePosition, SourceSink } from "../source.js";
import { toSourceEvent, type ChangeOp, type RowChange, type TransactionContext } from "./change-event.js";
import { qualifiedTable, type PostgresLogicalConfig } from "./config.js";
import { FlushTracker } from "./flush-tracker.js";
import { formatLsn } from "./lsn.js";
import { decodePgOutput, type PgOutputMessage, type RelationMessage } from "./pgoutput-decoder.js";
import { parseServerMessage, standbyStatusUpdate } from "./replication-messages.js";
import { SlotState, type SlotIdentity } from "./slot-state.js";
import {
  createPublication,
  createSlot,
  dropSlot,
  identifier,
  identifySystem,
  inspectSlot,
  missingTables,
  primaryKeys,
  publicationExists,
  walLevel,
} from "./upstream-catalog.js";

export const SOURCE_TYPE = "postgres_logical";
/** pg-copy-streams' CopyBoth query; its published types describe only COPY TO and FROM. */
const copyBoth = (copyStreams as unknown as { both(text: string, options: object): pg.Submittable }).both;
const RECONNECT_MAX_MS = 30_000;
/** Between attempts while the slot is still held by a session that is going away. */
const SLOT_BUSY_RETRY_MS = 100;

/**
 * A problem the configuration or the upstream set-up must fix: retrying will not help.
 * At start it fails start(); while running it fails the source (SourceSink.fail).
 */
class ConfigurationError extends Error {}
/** The database does not exist (3D000). Postgres drops a database's slots with it. */
class DatabaseGoneError extends ConfigurationError {}
/** The slot is held by another session (often the walsender of a killed agent, about to exit). */
class SlotBusyError extends Error {}

interface Session {
  client: pg.Client;
  copy: Duplex;
  /** Events of this session's transactions, tracked for acknowledgement. */
  tracker: FlushTracker;
}

interface OpenTransaction extends TransactionContext {
  nextIndex: number;
}

function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === "string" && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
  }
  return String(err);
}

export class PostgresLogicalSource implements Source {
  readonly type = SOURCE_TYPE;
  private sink: SourceSink | undefined;
  private state: SlotState | undefined;
  private session: Session | undefined;
  private relations = new Map<number, RelationMessage>();
  private primaryKeysByTable = new Map<string, string[]>();
  private txn: OpenTransaction | undefined;
  private batch: SourceEvent[] = [];
  private started = false;
  private stopped = false;
  private paused = false;
  private resumeWaiters: (() => void)[] = [];
  private persisting: Promise<void> | undefined;
  private statusTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private signalStop: () => void = () => undefined;
  private readonly stopSignal = new Promise<void>((resolveStop) => (this.signalStop = resolveStop));

  constructor(
    private readonly config: PostgresLogicalConfig,
    private readonly ctx: SourceContext,
  ) {}

  private get where(): string {
    return `postgres_logical source "${this.ctx.name}"`;
  }

  /** The server, without the password, for messages. */
  private get target(): string {
    if (this.config.url !== undefined) {
      const u = new URL(this.config.url);
      u.password = "";
      return u.toString();
    }
    return `postgres://${this.config.user}@${this.config.host}:${this.config.port ?? 5432}/${this.config.database}`;
  }

  /**
   * `resumeFrom` is not needed: the slot holds the place, and the state folder the
   * position epoch and what was reported flushed.
   */
  async start(sink: SourceSink, _resumeFrom?: SourcePosition): Promise<void> {
    if (this.started) throw new Error(`${this.where} was already started`);
    this.started = true;
    this.sink = sink;
    const deadline = Date.now() + this.config.connect_timeout_ms;
    for (;;) {
      try {
        this.session = await this.connect();
        break;
      } catch (err) {
        if (err instanceof SlotBusyError && Date.now() < deadline && !this.stopped) {
          await this.sleep(SLOT_BUSY_RETRY_MS);
          continue;
        }
        throw new Error(`${this.where}: ${(err as Error).message}`);
      }
    }
    this.statusTimer = setInterval(() => void this.feedback(), this.config.status_interval_ms);
    this.running = this.run();
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    for (const wake of this.resumeWaiters.splice(0)) wake();
  }

  acknowledge(position: SourcePosition): Promise<void> {
    const session = this.session;
    // An event of a session that has since been replaced: the new one replays it.
    if (session && !session.tracker.acknowledge(position)) this.ctx.log.info({ position }, "postgres_logical: acknowledged an event of an earlier connection; it is being replayed");
    return Promise.resolve();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.signalStop();
    clearInterval(this.statusTimer);
    for (const wake of this.resumeWaiters.splice(0)) wake();
    // The last position made durable goes to the server before the connection closes.
    await this.feedback(true);
    await this.closeSession();
    await this.running?.catch(() => undefined);
    await this.state?.settle().catch(() => undefined);
  }

  // --- connecting --------------------------------------------------------------------

  private password(): string | undefined {
    if (this.config.password_env === undefined) return this.config.password;
    const value = process.env[this.config.password_env];
    if (value === undefined) throw new ConfigurationError(`password_env: the environment variable ${this.config.password_env} is not set`);
    return value;
  }

  private clientConfig(): pg.ClientConfig {
    const password = this.password();
    const base: pg.ClientConfig =
      this.config.url !== undefined
        ? { connectionString: this.config.url }
        : { host: this.config.host, port: this.config.port ?? 5432, user: this.config.user, database: this.config.database };
    return {
      ...base,
      ...(password !== undefined ? { password } : {}),
      connectionTimeoutMillis: this.config.connect_timeout_ms,
      keepAlive: true,
      // pg passes it on in the startup packet: a logical replication connection to the database.
      ...({ replication: "database" } as object),
    };
  }

  /**
   * Why a connection attempt failed: a ConfigurationError when only a change upstream or
   * in the configuration can help (login refused, REPLICATION revoked, database gone),
   * else a plain Error (server down or restarting, too many connections): worth retrying.
   */
  private connectProblem(err: unknown): Error {
    const code = (err as { code?: unknown }).code;
    const text = describeError(err);
    if (code === "28P01" || code === "28000") return new ConfigurationError(`Postgres at ${this.target} refused the login: ${text}`);
    if (code === "42501") return new ConfigurationError(`Postgres at ${this.target} refused a replication connection: ${text}; the role needs the REPLICATION attribute (ALTER ROLE ... REPLICATION)`);
    if (code === "3D000") return new DatabaseGoneError(`Postgres at ${this.target}: ${text}`);
    if (/client password must be a string/.test(text)) return new ConfigurationError(`Postgres at ${this.target} asks for a password and none is configured (password or password_env)`);
    return new Error(`cannot connect to Postgres at ${this.target}: ${text}`);
  }

  /**
   * The publication was dropped after the source started streaming: the server's pgoutput
   * raises `publication "..." does not exist` (42704) on the stream when it decodes the
   * next change. It decodes with the catalog as it was at that change, so the error comes
   * back on every replay, even once the publication exists again: reconnecting cannot help.
   */
  private publicationGone(err: unknown): ConfigurationError | undefined {
    if ((err as { code?: unknown }).code !== "42704" || !/publication .* does not exist/.test(describeError(err))) return undefined;
    const pub = this.config.publication;
    const slot = this.config.slot;
    return new ConfigurationError(
      `publication "${pub}" does not exist in ${this.target} (dropped while the source was streaming?): the server cannot decode the slot's changes after the drop (${describeError(err)}); ` +
        `create the publication again (CREATE PUBLICATION ${identifier(pub)} FOR TABLE ...), then move slot "${slot}" past the drop (SELECT pg_replication_slot_advance('${slot}', pg_current_wal_lsn())) ` +
        `or drop it; the changes skipped are recorded as a gap entry at the next start`,
    );
  }

  /** Connects, checks the set-up, settles the slot and starts streaming from it. */
  private async connect(): Promise<Session> {
    const client = new pg.Client(this.clientConfig());
    let lastError: Error | undefined;
    client.on("error", (err) => {
      lastError = err;
      if (!this.stopped) this.ctx.log.warn({ err: describeError(err) }, "postgres_logical: connection problem");
    });
    try {
      await client.connect();
    } catch (err) {
      await client.end().catch(() => undefined);
      const problem = this.connectProblem(lastError ?? err);
      // A failure to record it is thrown instead, and so retried.
      if (problem instanceof DatabaseGoneError) await this.recordDatabaseGone();
      throw problem;
    }
    try {
      const session = await this.prepare(client);
      return session;
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
  }

  private async prepare(client: pg.Client): Promise<Session> {
    const level = await walLevel(client);
    if (level !== "logical") {
      throw new ConfigurationError(`Postgres at ${this.target} has wal_level=${level}; logical replication needs wal_level=logical (postgresql.conf, then restart the server)`);
    }
    const system = await identifySystem(client);
    await this.ensurePublication(client);
    this.primaryKeysByTable = await primaryKeys(client, this.config.publication);
    await this.settleSlot(client, { system_identifier: system.systemIdentifier, database: system.database, slot: this.config.slot });
    return await this.startReplication(client);
  }

  private async ensurePublication(client: pg.Client): Promise<void> {
    const pub = this.config.publication;
    if (await publicationExists(client, pub)) return;
    if (!this.config.create_publication) {
      throw new ConfigurationError(`publication "${pub}" does not exist in ${this.target}; create it (CREATE PUBLICATION ${identifier(pub)} FOR TABLE ...) or set create_publication: true with tables`);
    }
    const tables = (this.config.tables ?? []).map(qualifiedTable);
    const missing = await missingTables(client, tables);
    if (missing.length > 0) throw new ConfigurationError(`tables: unknown table${missing.length > 1 ? "s" : ""} ${missing.join(", ")} in ${this.target}; cannot create publication "${pub}"`);
    await createPublication(client, pub, tables);
    this.ctx.log.info({ publication: pub, tables: this.config.tables }, "postgres_logical: created the publication");
  }

  /**
   * Makes sure the slot exists and still has the history after the last position the
   * source reported, recording a gap when it does not (see docs/sources/postgres-logical.md, "Lost slots").
   */
  private async settleSlot(client: pg.Client, identity: SlotIdentity): Promise<void> {
    const slotName = this.config.slot;
    const state = this.state ?? (await SlotState.load(this.ctx.stateDir, identity));
    const slot = await inspectSlot(client, slotName);

    if (slot !== undefined) {
      if (slot.slotType !== "logical" || slot.plugin !== "pgoutput") {
        throw new ConfigurationError(`slot "${slotName}" is a ${slot.slotType} slot with plugin ${slot.plugin ?? "none"}; the source needs a logical slot with plugin pgoutput`);
      }
      if (slot.database !== identity.database) {
        throw new ConfigurationError(`slot "${slotName}" belongs to database "${slot.database}", not "${identity.database}"`);
      }
    }
    const invalid = slot !== undefined && (slot.walStatus === "lost" || slot.invalidation !== null);
    if (slot === undefined || invalid) {
      const what =
        slot === undefined
          ? `replication slot "${slotName}" no longer exists in ${this.target}`
          : `replication slot "${slotName}" in ${this.target} was invalidated (${slot.invalidation ?? "wal_status lost: the WAL it needed was removed, e.g. past max_slot_wal_keep_size"})`;
      // Known history: the source used this slot, or the slot itself shows it was used.
      const lost = state !== undefined || invalid;
      if (lost && state?.lostRecorded !== true) {
        const reason = `${what}: changes after ${formatLsn(state?.flushed ?? 0n)} may be lost`;
        this.ctx.log.error({ slot: slotName, flushed: state ? formatLsn(state.flushed) : undefined }, `postgres_logical: ${reason}`);
        await this.sink!.gap(reason, state ? formatLsn(state.flushed) : undefined);
        // Recorded: the next start must not record it again.
        await (state ?? (await SlotState.create(this.ctx.stateDir, identity, 0n))).markLost();
      }
      this.state = undefined;
      if (!this.config.create_slot) {
        const create = `create it (SELECT pg_create_logical_replication_slot('${slotName}', 'pgoutput')) or set create_slot: true`;
        if (!lost) throw new ConfigurationError(`replication slot "${slotName}" does not exist in ${this.target}; ${create}`);
        throw new ConfigurationError(`${what} (a gap entry was recorded); ${invalid ? `drop it (SELECT pg_drop_replication_slot('${slotName}')) and ` : ""}${create}`);
      }
      if (invalid) await dropSlot(client, slotName);
      const start = await createSlot(client, slotName);
      this.ctx.log.info({ slot: slotName, lsn: formatLsn(start) }, "postgres_logical: created the replication slot");
      this.state = await SlotState.create(this.ctx.stateDir, identity, start);
      return;
    }

    const confirmed = slot.confirmedFlush ?? 0n;
    if (state === undefined) {
      this.state = await SlotState.create(this.ctx.stateDir, identity, confirmed);
      return;
    }
    if (confirmed > state.flushed) {
      // The source never reported this far: another consumer, or a slot advance or re-creation.
      const reason =
        `replication slot "${slotName}" in ${this.target} is at ${formatLsn(confirmed)}, past ${formatLsn(state.flushed)}, the last position this source confirmed: ` +
        `something else consumed or advanced it, and the changes in between are lost to the ledger`;
      this.ctx.log.error({ slot: slotName }, `postgres_logical: ${reason}`);
      await this.sink!.gap(reason, formatLsn(state.flushed), formatLsn(confirmed));
      this.state = await SlotState.create(this.ctx.stateDir, identity, confirmed);
      return;
    }
    this.state = state;
  }

  private async startReplication(client: pg.Client): Promise<Session> {
    const command =
      `START_REPLICATION SLOT ${identifier(this.config.slot)} LOGICAL 0/0 ` + `(proto_version '1', publication_names '${identifier(this.config.publication).replace(/'/g, "''")}')`;
    // One CopyData frame per chunk, read one at a time (the readable side holds few).
    const copy = client.query(copyBoth(command, { alignOnCopyDataFrame: true, readableObjectMode: true, readableHighWaterMark: 16 })) as unknown as Duplex;
    const tracker = new FlushTracker(this.state!.flushed);
    // The CopyBothResponse is only parsed once the readable side is asked for data.
    copy.read(0);
    // The first status update is written once the server has started streaming (CopyBothResponse).
    await new Promise<void>((resolve, reject) => {
      const fail = (err: Error) => reject(err);
      copy.once("error", fail);
      copy.write(standbyStatusUpdate(this.state!.flushed), (err) => {
        copy.off("error", fail);
        if (err) reject(err);
        else resolve();
      });
    }).catch((err: unknown) => {
      const text = describeError(err);
      const gone = this.publicationGone(err);
      if (gone) throw gone;
      if ((err as { code?: unknown }).code === "55006") throw new SlotBusyError(`replication slot "${this.config.slot}" is in use by another session: ${text}`);
      throw new Error(`START_REPLICATION on slot "${this.config.slot}" failed: ${text}`);
    });
    copy.on("error", () => undefined); // reported by the reading loop
    // A lost connection ends the stream, so the reading loop notices.
    client.on("end", () => copy.destroy(new Error("the connection to Postgres closed")));
    return { client, copy, tracker };
  }

  private async closeSession(): Promise<void> {
    const session = this.session;
    if (!session) return;
    session.copy.destroy();
    await Promise.race([session.client.end().catch(() => undefined), new Promise((r) => setTimeout(r, 2_000).unref())]);
  }

  // --- streaming ---------------------------------------------------------------------

  /**
   * Reads until stopped, reconnecting (with growing waits) when the connection fails.
   * A problem reconnecting cannot fix (slot lost with create_slot off, publication
   * dropped, REPLICATION revoked, database gone) fails the source instead of looping.
   */
  private async run(): Promise<void> {
    let delay = this.config.reconnect_delay_ms;
    while (!this.stopped) {
      const session = this.session!;
      let permanent: ConfigurationError | undefined;
      try {
        await this.consume(session);
        if (!this.stopped) throw new Error("the server ended the replication stream");
      } catch (err) {
        if (this.stopped) return;
        permanent = this.publicationGone(err);
        if (!permanent) this.ctx.log.warn({ err: describeError(err) }, "postgres_logical: replication stopped; reconnecting (unconfirmed changes are replayed)");
      }
      await this.closeSession();
      if (permanent && this.giveUp(permanent)) return;
      for (;;) {
        await this.sleep(delay);
        if (this.stopped) return;
        try {
          this.session = await this.connect();
          delay = this.config.reconnect_delay_ms;
          this.ctx.log.info({ slot: this.config.slot }, "postgres_logical: reconnected");
          break;
        } catch (err) {
          if (this.stopped) return;
          if (err instanceof ConfigurationError && this.giveUp(err)) return;
          const level = err instanceof ConfigurationError ? "error" : "warn";
          this.ctx.log[level]({ err: describeError(err), retryInMs: delay }, "postgres_logical: cannot resume replication");
          delay = Math.min(RECONNECT_MAX_MS, delay * 2);
        }
      }
    }
  }

  /**
   * The database this source streamed from was dropped while it ran (only then is a
   * state loaded), and DROP DATABASE dropped the slot with it: what the slot held after
   * the last confirmed position is gone. Recorded once (slot.json), as for a lost slot:
   * no start can see the slot missing while the database is absent.
   */
  private async recordDatabaseGone(): Promise<void> {
    const state = this.state;
    if (state === undefined || state.lostRecorded) return;
    const reason =
      `database "${state.identity.database}" no longer exists in ${this.target}, and replication slot "${this.config.slot}" went with it: ` +
      `changes after ${formatLsn(state.flushed)} may be lost`;
    this.ctx.log.error({ slot: this.config.slot, flushed: formatLsn(state.flushed) }, `postgres_logical: ${reason}`);
    await this.sink!.gap(reason, formatLsn(state.flushed));
    await state.markLost();
  }

  /**
   * Fails the source for good (the agent stops and exits with an error a supervisor
   * sees) rather than reconnecting forever while reading nothing. Any gap was recorded
   * before the error was thrown. False when the sink has no fail(): retrying is all
   * that is left then (an operator may still fix the problem upstream).
   */
  private giveUp(problem: ConfigurationError): boolean {
    if (this.sink?.fail === undefined) return false;
    clearInterval(this.statusTimer);
    this.ctx.log.error({ slot: this.config.slot, publication: this.config.publication, err: problem.message }, "postgres_logical: cannot go on; the source stops");
    this.sink.fail(problem.message);
    return true;
  }

  private async consume(session: Session): Promise<void> {
    this.relations.clear();
    this.txn = undefined;
    this.batch = [];
    for await (const frame of session.copy as AsyncIterable<Buffer>) {
      while (this.paused && !this.stopped) await new Promise<void>((wake) => this.resumeWaiters.push(wake));
      if (this.stopped) return;
      const message = parseServerMessage(frame);
      if (message.type === "keepalive") {
        session.tracker.serverPosition(message.walEnd);
        if (message.replyRequested) this.sendStatus(session);
        continue;
      }
      await this.handle(session, message.dataStart, decodePgOutput(message.data));
    }
  }

  private async handle(session: Session, lsn: bigint, m: PgOutputMessage): Promise<void> {
    switch (m.tag) {
      case "begin":
        if (this.txn) throw new Error(`pgoutput Begin of xid ${m.xid} inside transaction ${this.txn.xid}`);
        this.txn = { xid: m.xid, commitLsn: m.finalLsn, commitTime: m.commitTime, nextIndex: 0 };
        session.tracker.begin();
        return;
      case "relation":
        this.relations.set(m.relationId, m);
        return;
      case "insert":
        return this.add(session, { op: "insert", relation: this.relation(m.relationId), lsn, newTuple: m.newTuple });
      case "update":
        return this.add(session, {
          op: "update",
          relation: this.relation(m.relationId),
          lsn,
          newTuple: m.newTuple,
          ...(m.oldTuple ? { oldTuple: m.oldTuple, oldKind: m.oldKind! } : {}),
        });
      case "delete":
        return this.add(session, { op: "delete", relation: this.relation(m.relationId), lsn, oldTuple: m.oldTuple, oldKind: m.oldKind });
      case "truncate":
        for (const id of m.relationIds) {
          await this.add(session, { op: "truncate", relation: this.relation(id), lsn, truncate: { cascade: m.cascade, restartIdentity: m.restartIdentity } });
        }
        return;
      case "commit":
        if (!this.txn) throw new Error("pgoutput Commit outside a transaction");
        await this.emitBatch(session);
        session.tracker.commit(m.endLsn);
        this.txn = undefined;
        return;
      default:
        // Type, Origin and logical decoding messages carry nothing the ledger records.
        return;
    }
  }

  private relation(id: number): RelationMessage {
    const r = this.relations.get(id);
    if (!r) throw new Error(`pgoutput change for relation ${id} before its Relation message`);
    return r;
  }

  private async add(session: Session, change: RowChange & { op: ChangeOp }): Promise<void> {
    const txn = this.txn;
    if (!txn) throw new Error(`pgoutput ${change.op} outside a transaction`);
    const pk = this.primaryKeysByTable.get(`${change.relation.schema}.${change.relation.table}`);
    this.batch.push(toSourceEvent(change, txn, txn.nextIndex++, this.state!.epoch, pk));
    if (this.batch.length >= this.config.max_batch_events) await this.emitBatch(session);
  }

  private async emitBatch(session: Session): Promise<void> {
    if (this.batch.length === 0) return;
    const events = this.batch;
    this.batch = [];
    for (const e of events) session.tracker.track(e.position);
    // A failed emit fails the session: the reconnection replays these from the slot.
    await Promise.race([this.sink!.emit(events), this.stopSignal]);
  }

  // --- flush feedback ----------------------------------------------------------------

  /** Persists the newest safe position, then tells the server. */
  private async feedback(final = false): Promise<void> {
    const session = this.session;
    const state = this.state;
    if (!session || !state) return;
    if (this.persisting) {
      await this.persisting.catch(() => undefined);
      if (!final) return;
    }
    const want = session.tracker.flushable;
    if (want > state.flushed) {
      this.persisting = state.save(want);
      try {
        await this.persisting;
      } catch (err) {
        this.ctx.log.error({ err: describeError(err) }, "postgres_logical: cannot write the slot state; the slot is not advanced");
      } finally {
        this.persisting = undefined;
      }
    }
    this.sendStatus(session);
  }

  /** Reports what is written to the state folder as flushed: never more. */
  private sendStatus(session: Session): void {
    if (session !== this.session || session.copy.destroyed || !session.copy.writable) return;
    session.copy.write(standbyStatusUpdate(this.state!.flushed));
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      void this.stopSignal.then(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
