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
import { SlotState, type ForeignSlotState, type SlotIdentity } from "./slot-state.js";
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
  /**
   * The slot state (slot.json) this session's events carry the epoch of, and that its
   * tracker's positions are saved to. Kept with the tracker so that feedback never saves
   * one connection's position into the state settled for another.
   */
  state: SlotState;
  /** Events of this session's transactions, tracked for acknowledgement. */
  tracker: FlushTracker;
  /** Set when closing starts: nothing more is saved or reported for this session. */
  closed: boolean;
  /**
   * Since when the reading loop has been waiting for the next message; undefined while
   * it handles one, is paused or is emitting (it reads nothing then, on purpose, and the
   * server may legitimately send nothing: the socket is full).
   */
  waitingSince: number | undefined;
  /** Checks receive_timeout_ms while this session is open. */
  watchdog: NodeJS.Timeout | undefined;
}

/** Runs `work` with connect()'s set-up timeout suspended: a wait that is not on the server, or may rightly be long. */
type Untimed = <T>(work: () => Promise<T>) => Promise<T>;

interface OpenTransaction extends TransactionContext {
  nextIndex: number;
}

/**
 * Drops the client's socket at once: no Terminate, no waiting for the server (which may
 * never answer). Whatever query is under way fails with "Connection terminated".
 */
function dropConnection(client: pg.Client): void {
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
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
  /** What slot.json holds, as last settled: where the next reconnection starts from. */
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
  /**
   * Aborted by stop(). Waits listen on it and remove their listener when they end: a
   * never-settling stop promise raced against every emit would keep one reaction per
   * transaction alive until stop, an unbounded leak.
   */
  private readonly stopping = new AbortController();

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
        const session = await this.connect();
        // stop() came while connecting: the session would be left open with nobody reading it.
        if (this.stopped) return await this.closeSession(session);
        this.session = session;
        break;
      } catch (err) {
        if (this.stopped) return;
        if (err instanceof SlotBusyError && Date.now() < deadline) {
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
    this.stopping.abort();
    clearInterval(this.statusTimer);
    for (const wake of this.resumeWaiters.splice(0)) wake();
    // The last position made durable goes to the server before the connection closes.
    await this.feedback(true);
    await this.closeSession();
    await this.running?.catch(() => undefined);
    await Promise.all([this.session?.state.settle(), this.state?.settle()]).catch(() => undefined);
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

  /**
   * Connects, checks the set-up, settles the slot and starts streaming from it.
   *
   * The whole set-up is bounded, not only the TCP connect (pg's connectionTimeoutMillis):
   * a server that accepts the connection and then never answers a catalog query or
   * START_REPLICATION would hold the reconnection loop, and so stop(), forever. Past
   * connect_timeout_ms of waiting, or at stop(), the socket is dropped, which fails the
   * query under way. Not timed: creating the slot (the server waits there for the
   * transactions running at that moment to end, which can rightly take long) and
   * recording a gap (the agent's outbox may be full).
   */
  private async connect(): Promise<Session> {
    const client = new pg.Client(this.clientConfig());
    let lastError: Error | undefined;
    client.on("error", (err) => {
      lastError = err;
      if (!this.stopped) this.ctx.log.warn({ err: describeError(err) }, "postgres_logical: connection problem");
    });
    let abandoned: Error | undefined;
    const abandon = (why: Error) => {
      abandoned ??= why;
      dropConnection(client);
    };
    const onStop = () => abandon(new Error("stopped while connecting"));
    let timer: NodeJS.Timeout | undefined;
    const timed = (on: boolean) => {
      clearTimeout(timer);
      const ms = this.config.connect_timeout_ms;
      if (on) timer = setTimeout(() => abandon(new Error(`Postgres at ${this.target} did not answer within connect_timeout_ms (${ms} ms) while the source was setting up replication`)), ms);
    };
    const untimed: Untimed = async (work) => {
      timed(false);
      try {
        return await work();
      } finally {
        timed(true);
      }
    };
    const signal = this.stopping.signal;
    if (signal.aborted) throw new Error("stopped while connecting");
    signal.addEventListener("abort", onStop, { once: true });
    timed(true);
    try {
      try {
        await client.connect();
      } catch (err) {
        await client.end().catch(() => undefined);
        if (abandoned) throw abandoned;
        const problem = this.connectProblem(lastError ?? err);
        // A failure to record it is thrown instead, and so retried.
        if (problem instanceof DatabaseGoneError) await this.recordDatabaseGone();
        throw problem;
      }
      try {
        return await this.prepare(client, untimed);
      } catch (err) {
        await client.end().catch(() => undefined);
        throw abandoned ?? err;
      }
    } finally {
      timed(false);
      signal.removeEventListener("abort", onStop);
    }
  }

  private async prepare(client: pg.Client, untimed: Untimed): Promise<Session> {
    const level = await walLevel(client);
    if (level !== "logical") {
      throw new ConfigurationError(`Postgres at ${this.target} has wal_level=${level}; logical replication needs wal_level=logical (postgresql.conf, then restart the server)`);
    }
    const system = await identifySystem(client);
    await this.ensurePublication(client);
    this.primaryKeysByTable = await primaryKeys(client, this.config.publication);
    const state = await this.settleSlot(client, { system_identifier: system.systemIdentifier, database: system.database, slot: this.config.slot }, untimed);
    return await this.startReplication(client, state);
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
   * source reported, recording a gap when it does not (see docs/sources/postgres-logical.md,
   * "Lost slots"). Returns the state the new session's events and flush reports belong to
   * (also kept in this.state, what slot.json holds, for the next reconnection).
   */
  private async settleSlot(client: pg.Client, identity: SlotIdentity, untimed: Untimed): Promise<SlotState> {
    const slotName = this.config.slot;
    const gap = (reason: string, from?: string, to?: string) => untimed(() => this.sink!.gap(reason, from, to));
    const loaded = this.state !== undefined ? { state: this.state } : await SlotState.load(this.ctx.stateDir, identity);
    let state = loaded.state;
    let foreign = loaded.foreign;
    // Each new state replaces slot.json: a foreign one's history is recorded as lost first.
    const fresh = async (flushed: bigint): Promise<SlotState> => {
      if (foreign !== undefined) await this.recordForeignState(foreign, identity, gap);
      foreign = undefined;
      return SlotState.create(this.ctx.stateDir, identity, flushed, this.config.publication);
    };
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
        await gap(reason, state ? formatLsn(state.flushed) : undefined);
        // Recorded: the next start must not record it again.
        await (state ?? (await fresh(0n))).markLost();
      }
      this.state = undefined;
      if (!this.config.create_slot) {
        const create = `create it (SELECT pg_create_logical_replication_slot('${slotName}', 'pgoutput')) or set create_slot: true`;
        if (!lost) throw new ConfigurationError(`replication slot "${slotName}" does not exist in ${this.target}; ${create}`);
        throw new ConfigurationError(`${what} (a gap entry was recorded); ${invalid ? `drop it (SELECT pg_drop_replication_slot('${slotName}')) and ` : ""}${create}`);
      }
      if (invalid) await dropSlot(client, slotName);
      // Not timed: the server waits for the transactions running now to end (connect()).
      const start = await untimed(() => createSlot(client, slotName));
      this.ctx.log.info({ slot: slotName, lsn: formatLsn(start) }, "postgres_logical: created the replication slot");
      return (this.state = await fresh(start));
    }

    const confirmed = slot.confirmedFlush ?? 0n;
    if (state === undefined) return (this.state = await fresh(confirmed));
    if (confirmed > state.flushed) {
      // The source never reported this far: another consumer, or a slot advance or re-creation.
      const reason =
        `replication slot "${slotName}" in ${this.target} is at ${formatLsn(confirmed)}, past ${formatLsn(state.flushed)}, the last position this source confirmed: ` +
        `something else consumed or advanced it, and the changes in between are lost to the ledger`;
      this.ctx.log.error({ slot: slotName }, `postgres_logical: ${reason}`);
      await gap(reason, formatLsn(state.flushed), formatLsn(confirmed));
      return (this.state = await fresh(confirmed));
    }
    if (state.publication !== undefined && state.publication !== this.config.publication) {
      // Indexes count the published changes of a transaction: under another publication
      // the unconfirmed transactions replayed now would number their changes differently,
      // and a different change could take an old one's position (and be dropped as a replay).
      this.ctx.log.warn(
        { slot: slotName, was: state.publication, now: this.config.publication },
        "postgres_logical: the publication changed; a new position epoch begins (changes not yet confirmed are recorded again under new positions)",
      );
      return (this.state = await fresh(state.flushed));
    }
    // A slot.json of an earlier version: it takes the publication, written with the next save.
    state.publication ??= this.config.publication;
    return (this.state = state);
  }

  /**
   * slot.json belongs to another slot, database or cluster: the configuration now names
   * another slot or database, or the cluster was replaced (pg_upgrade, a new server at
   * the same address). What that slot held after the position saved is not read by this
   * source, so it is recorded as a gap, once: slot.json is replaced right after. Not
   * when that slot's loss is on record already.
   */
  private async recordForeignState(foreign: ForeignSlotState, identity: SlotIdentity, gap: SourceSink["gap"]): Promise<void> {
    if (foreign.lostRecorded) return;
    const name = (i: SlotIdentity) => `slot "${i.slot}" of database "${i.database}" in the cluster with system identifier ${i.system_identifier}`;
    const reason =
      `the state folder holds the position of replication ${name(foreign.identity)}, not of ${name(identity)} (${this.target}): ` +
      `changes that slot held after ${formatLsn(foreign.flushed)} may not have been recorded (another slot or database configured, or the cluster replaced, e.g. by pg_upgrade)`;
    this.ctx.log.error({ slot: this.config.slot, was: foreign.identity, flushed: formatLsn(foreign.flushed) }, `postgres_logical: ${reason}`);
    await gap(reason, formatLsn(foreign.flushed));
  }

  private async startReplication(client: pg.Client, state: SlotState): Promise<Session> {
    const command =
      `START_REPLICATION SLOT ${identifier(this.config.slot)} LOGICAL 0/0 ` + `(proto_version '1', publication_names '${identifier(this.config.publication).replace(/'/g, "''")}')`;
    // One CopyData frame per chunk, read one at a time (the readable side holds few).
    const copy = client.query(copyBoth(command, { alignOnCopyDataFrame: true, readableObjectMode: true, readableHighWaterMark: 16 })) as unknown as Duplex;
    // A lost connection ends the stream, so the reading loop (or the wait below) notices.
    client.on("end", () => copy.destroy(new Error("the connection to Postgres closed")));
    // The CopyBothResponse is only parsed once the readable side is asked for data.
    copy.read(0);
    // The first status update is written once the server has started streaming (CopyBothResponse).
    await new Promise<void>((resolve, reject) => {
      const fail = (err: Error) => reject(err);
      copy.once("error", fail);
      copy.write(standbyStatusUpdate(state.flushed), (err) => {
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
    const session: Session = { client, copy, state, tracker: new FlushTracker(state.flushed), closed: false, waitingSince: undefined, watchdog: undefined };
    const timeout = this.config.receive_timeout_ms;
    session.watchdog = setInterval(() => this.watch(session), Math.max(10, Math.floor(timeout / 4)));
    session.watchdog.unref();
    return session;
  }

  /**
   * receive_timeout_ms: a connection that went half-open (peer gone without a FIN or RST:
   * a firewall or NAT dropping it, a host lost) would block the reading loop until TCP
   * gives up, about 15 minutes, while nothing is read. The server sends nothing on its
   * own while the source keeps reporting its status, so a quiet connection is pinged
   * (a status update asking for a reply, answered at once by a keepalive); one that
   * stays silent for receive_timeout_ms is dropped, and the source reconnects. Only time
   * spent waiting for data counts: while paused or emitting the source reads nothing on
   * purpose, and the server, its socket full, cannot send.
   */
  private watch(session: Session): void {
    if (session.closed || session.waitingSince === undefined) return;
    const quiet = Date.now() - session.waitingSince;
    const timeout = this.config.receive_timeout_ms;
    if (quiet >= timeout) {
      session.copy.destroy(new Error(`nothing received from Postgres for ${quiet} ms although pinged (receive_timeout_ms ${timeout}): the connection is taken as dead`));
    } else if (quiet >= timeout / 4 && !session.copy.destroyed && session.copy.writable) {
      session.copy.write(standbyStatusUpdate(session.state.flushed, true));
    }
  }

  /** Closes `session` (by default the current one). Idempotent. */
  private async closeSession(session = this.session): Promise<void> {
    if (!session || session.closed) return;
    session.closed = true;
    clearInterval(session.watchdog);
    session.copy.destroy();
    const ended = await Promise.race([
      session.client.end().then(
        () => true,
        () => true,
      ),
      new Promise<boolean>((r) => setTimeout(() => r(false), 2_000).unref()),
    ]);
    // No answer to the Terminate (a half-open connection): drop the socket rather than
    // leave it to TCP's own timeout.
    if (!ended) dropConnection(session.client);
    // A save for this session still under way ends before a reconnection settles (and
    // perhaps replaces) slot.json.
    await session.state.settle().catch(() => undefined);
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
          const next = await this.connect();
          // stop() came while connecting: close what nobody will read.
          if (this.stopped) return await this.closeSession(next);
          this.session = next;
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
    session.waitingSince = Date.now();
    for await (const frame of session.copy as AsyncIterable<Buffer>) {
      // Not waiting for the server while this message is handled (see watch()).
      session.waitingSince = undefined;
      try {
        while (this.paused && !this.stopped) await new Promise<void>((wake) => this.resumeWaiters.push(wake));
        if (this.stopped) return;
        const message = parseServerMessage(frame);
        if (message.type === "keepalive") {
          session.tracker.serverPosition(message.walEnd);
          if (message.replyRequested) this.sendStatus(session);
          continue;
        }
        await this.handle(session, message.dataStart, decodePgOutput(message.data));
      } finally {
        session.waitingSince = Date.now();
      }
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
    this.batch.push(toSourceEvent(change, txn, txn.nextIndex++, session.state.epoch, pk));
    if (this.batch.length >= this.config.max_batch_events) await this.emitBatch(session);
  }

  private async emitBatch(session: Session): Promise<void> {
    if (this.batch.length === 0) return;
    const events = this.batch;
    this.batch = [];
    for (const e of events) session.tracker.track(e.position);
    // A failed emit fails the session: the reconnection replays these from the slot.
    await this.untilStopped(this.sink!.emit(events));
  }

  /**
   * Waits for `work`, or for stop(), whichever comes first. The stop listener is per call
   * and removed when the wait ends, so nothing accumulates over a long run.
   */
  private async untilStopped(work: Promise<void>): Promise<void> {
    const signal = this.stopping.signal;
    if (signal.aborted) return;
    let onStop: () => void = () => undefined;
    const stopped = new Promise<void>((resolve) => {
      onStop = resolve;
      signal.addEventListener("abort", onStop, { once: true });
    });
    try {
      await Promise.race([work, stopped]);
    } finally {
      signal.removeEventListener("abort", onStop);
    }
  }

  // --- flush feedback ----------------------------------------------------------------

  /**
   * Persists the newest safe position, then tells the server. The session's own tracker
   * and state only (a reconnection settles a new state before the new session replaces
   * this.session), and nothing for a session being closed: its acknowledged events are
   * replayed by the next one, and a late save must not overwrite the next one's slot.json.
   */
  private async feedback(final = false): Promise<void> {
    const session = this.session;
    if (!session || session.closed) return;
    const state = session.state;
    if (this.persisting) {
      await this.persisting.catch(() => undefined);
      if (!final || session.closed) return;
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
    if (session !== this.session || session.closed || session.copy.destroyed || !session.copy.writable) return;
    session.copy.write(standbyStatusUpdate(session.state.flushed));
  }

  /** Waits `ms`, or until stop(); its stop listener goes when it ends (see untilStopped). */
  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const signal = this.stopping.signal;
      if (signal.aborted) return resolve();
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done, { once: true });
    });
  }
}
