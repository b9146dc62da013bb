// Keyspace notifications: PSUBSCRIBE on a connection of its own, each notification an
// event. Redis sends them once and keeps nothing (fire-and-forget): whatever is sent
// while the source is not subscribed is lost, and nothing can be replayed. So:
// - after every reconnect, and at every start after the first, a `gap` entry says that
//   notifications may have been missed, and when;
// - they cannot be paused upstream: while the agent is slow or paused they wait in a
//   bounded buffer (max_buffered); beyond it they are dropped, counted, and one `gap`
//   entry names how many and the positions they would have had.
// Positions are `ks:<run>:<n>`: <run> is unique per start (time + random), n counts the
// notifications of that run. Nothing is ever delivered twice, so nothing needs dedup.
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { SourcePosition } from "../source.js";
import type { NotificationsConfig } from "./config.js";
import { asText, errorText, openConnection, closeConnection, pairs, RedisSourceError, send, type RedisConnection, type RedisTarget } from "./connection.js";
import { keyFields, kindFor, subjectFor } from "./event-shape.js";
import { backoffMs, type FeedHost, type Outgoing } from "./feed-host.js";
import { notificationsProblem, withFlags } from "./notify-flags.js";
import { redisGlob, type ByteMatcher } from "./redis-glob.js";

/** Notifications per emit() call. */
export const NOTIFY_EMIT_BATCH = 500;
/** Kept in the state folder: when this source last ran, to word the gap at the next start. */
export const RUN_FILE = "notifications-run.json";
/**
 * The subscription connection is PINGed this often: keeps idle-timeout proxies from
 * cutting it, and dates the last sign of life that a reconnect gap starts from.
 */
export const SUB_PING_INTERVAL_MS = 15_000;

/**
 * A notification, or a gap entry in line with them. A gap for a lost connection is queued
 * when the loss is noticed (so it follows what came before and precedes what comes after)
 * and completed once subscribed again; until then it holds the queue.
 */
type Item = { type: "event"; out: Outgoing } | GapItem;
interface GapItem {
  type: "gap";
  reason: string;
  from?: SourcePosition;
  to?: SourcePosition;
  incomplete?: boolean;
}

interface ServerCheck {
  /** Why no notification would arrive. */
  problem?: string;
  /** notifications.configure had to add flags: before that, the server sent fewer (or none). */
  configured?: { before: string; at: string };
}

interface RunRecord {
  started_at: string;
  stopped_at?: string;
}

export interface NotificationFeedDeps {
  host: FeedHost;
  target: RedisTarget;
  cmd: RedisConnection;
  stateDir: string;
  clientName: string;
  connectTimeoutMs: number;
  maxReconnectDelayMs: number;
  ctx: Parameters<typeof openConnection>[1]["ctx"];
}

export class NotificationFeed {
  private readonly host: FeedHost;
  private readonly run = `${Date.now().toString(36)}${randomBytes(3).toString("hex")}`;
  private readonly startedAt = new Date().toISOString();
  private readonly channels: string[];
  private readonly channelMatchers: ByteMatcher[];
  private readonly prefix: Buffer;
  /** Client-side key filter (keyevent channel), undefined when every key counts. */
  private readonly keyMatchers: ByteMatcher[] | undefined;
  /** Client-side event filter (keyspace channel). */
  private readonly events: Set<string> | undefined;
  private sub: RedisConnection | undefined;
  private seq = 0;
  private readonly buffer: Item[] = [];
  private buffered = 0;
  private dropped: { count: number; first: string; last: string; since: string } | undefined;
  private lost: { at: string; cause: string; lastSeq: number; lastHeard: string; gap: GapItem } | undefined;
  /** When the subscription connection last showed it works (a notification or a PING reply). */
  private lastHeard = new Date().toISOString();
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private subscribed = false;

  constructor(
    private readonly config: NotificationsConfig,
    private readonly deps: NotificationFeedDeps,
  ) {
    this.host = deps.host;
    const db = deps.target.db;
    const prefix = `__${config.channel}@${db}__:`;
    this.prefix = Buffer.from(prefix, "utf8");
    const suffixes = config.channel === "keyspace" ? config.key_patterns : (config.events ?? ["*"]);
    this.channels = [...new Set(suffixes)].map((s) => prefix + s);
    this.channelMatchers = this.channels.map(redisGlob);
    this.keyMatchers = config.channel === "keyevent" && !config.key_patterns.includes("*") ? config.key_patterns.map(redisGlob) : undefined;
    this.events = config.channel === "keyspace" && config.events !== undefined ? new Set(config.events) : undefined;
  }

  /** Notifications received in this run, dropped ones included (for tests). */
  get receivedCount(): number {
    return this.seq;
  }

  /** Notifications held, not yet handed to the sink (for tests and heartbeats). */
  get bufferedCount(): number {
    return this.buffered;
  }

  /** Checks (or configures) the server, subscribes, and notes the missed window of a restart. */
  async prepare(): Promise<void> {
    const { problem } = await this.checkServer();
    if (problem !== undefined) throw new RedisSourceError(problem);
    this.sub = await openConnection(this.deps.target, {
      clientName: this.deps.clientName,
      role: "sub",
      connectTimeoutMs: this.deps.connectTimeoutMs,
      maxReconnectDelayMs: this.deps.maxReconnectDelayMs,
      ctx: this.deps.ctx,
      pingIntervalMs: SUB_PING_INTERVAL_MS,
      events: { onLost: (cause) => this.onLost(cause), onRestored: () => this.onRestored() },
    });
    this.sub.on("ping-interval", () => {
      this.lastHeard = new Date().toISOString();
    });
    for (let i = 0; i < this.channels.length; i++) {
      await this.sub.pSubscribe(this.channels[i]!, (message: Buffer, channel: Buffer) => this.onMessage(i, message, channel), true);
    }
    this.subscribed = true;
    this.notePreviousRun();
    this.host.log.info({ source: this.host.name, channels: this.channels, redis: this.deps.target.display }, "redis_keyspace: subscribed to keyspace notifications");
  }

  start(): void {
    this.loop ??= this.drain();
  }

  async stop(): Promise<void> {
    closeConnection(this.sub);
    this.wake?.();
    await this.loop;
    if (this.subscribed) this.saveRun({ started_at: this.startedAt, stopped_at: new Date().toISOString() });
  }

  // --- the server's setting -----------------------------------------------------------

  /**
   * Reads notify-keyspace-events and, when `configure` is set, adds what is missing.
   * Returns why no notification will arrive, or undefined when they will (or CONFIG
   * cannot be read and nothing is to be configured: then assumed, with a warning).
   */
  private async checkServer(): Promise<ServerCheck> {
    const channel = this.config.channel;
    let value: string;
    try {
      value = await this.readSetting();
    } catch (err) {
      const why = `cannot read notify-keyspace-events (CONFIG GET: ${errorText(err)})`;
      if (this.config.configure !== undefined) return { problem: `${why}; notifications.configure needs CONFIG GET and CONFIG SET` };
      this.host.log.warn({ source: this.host.name, err: errorText(err) }, `redis_keyspace: ${why}; assuming notifications are enabled on the server`);
      return {};
    }
    const check: ServerCheck = {};
    if (this.config.configure !== undefined) {
      const wanted = withFlags(value, this.config.configure);
      if (wanted !== undefined) {
        try {
          await this.deps.cmd.sendCommand(["CONFIG", "SET", "notify-keyspace-events", wanted]);
        } catch (err) {
          return { problem: `cannot set notify-keyspace-events to "${wanted}" (notifications.configure): ${errorText(err)}` };
        }
        this.host.log.info({ source: this.host.name, before: value, set: wanted }, "redis_keyspace: enabled keyspace notifications on the server (notifications.configure)");
        check.configured = { before: value, at: new Date().toISOString() };
        value = await this.readSetting();
      }
    }
    const problem = notificationsProblem(value, channel);
    if (problem === undefined) return check;
    const flag = channel === "keyspace" ? "K" : "E";
    return {
      problem: `${problem}, so no ${channel} notification would arrive: enable them on the server (CONFIG SET notify-keyspace-events ${flag}A, or notify-keyspace-events in redis.conf), or set notifications.configure (e.g. "${flag}A") to let the source do it`,
    };
  }

  private async readSetting(): Promise<string> {
    const reply = await send(this.deps.cmd, ["CONFIG", "GET", "notify-keyspace-events"]);
    return asText(pairs(reply).get("notify-keyspace-events"));
  }

  // --- incoming -----------------------------------------------------------------------

  private position(seq: number): string {
    return `ks:${this.run}:${seq}`;
  }

  private onMessage(patternIndex: number, message: Buffer, channel: Buffer): void {
    if (this.host.stopped) return;
    this.lastHeard = new Date().toISOString();
    // Overlapping patterns each deliver the message: only the first matching one counts.
    for (let j = 0; j < patternIndex; j++) if (this.channelMatchers[j]!(channel)) return;
    if (!channel.subarray(0, this.prefix.length).equals(this.prefix)) return;
    const suffix = channel.subarray(this.prefix.length);
    const [key, event] = this.config.channel === "keyspace" ? [suffix, message.toString("utf8")] : [message, suffix.toString("utf8")];
    if (this.events !== undefined && !this.events.has(event)) return;
    if (this.keyMatchers !== undefined && !this.keyMatchers.some((m) => m(key))) return;

    const seq = ++this.seq;
    const position = this.position(seq);
    if (this.buffered >= this.config.max_buffered) {
      if (this.dropped === undefined) this.dropped = { count: 0, first: position, last: position, since: new Date().toISOString() };
      this.dropped.count++;
      this.dropped.last = position;
      return;
    }
    this.flushDropped();
    const db = this.deps.target.db;
    const payload = { event, ...keyFields(key), db };
    this.buffer.push({
      type: "event",
      out: {
        event: {
          kind: kindFor(this.config.kind_prefix, event),
          subject: subjectFor(db, key),
          occurredAt: new Date().toISOString(),
          position,
          payloadType: "application/json",
          payload: new TextEncoder().encode(JSON.stringify(payload)),
        },
      },
    });
    this.buffered++;
    this.wake?.();
  }

  /** Queues the gap entry for notifications dropped while the buffer was full. */
  private flushDropped(): void {
    const d = this.dropped;
    if (d === undefined) return;
    this.dropped = undefined;
    this.pushGap(
      `${d.count} keyspace notification(s) dropped between ${d.since} and ${new Date().toISOString()}: the agent was slow or paused and ` +
        `notifications cannot be paused upstream; the buffer (notifications.max_buffered = ${this.config.max_buffered}) was full`,
      d.first,
      d.last,
    );
  }

  private pushGap(reason: string, from?: SourcePosition, to?: SourcePosition): void {
    const item: Item = { type: "gap", reason };
    if (from !== undefined) item.from = from;
    if (to !== undefined) item.to = to;
    this.buffer.push(item);
    this.wake?.();
  }

  private onLost(cause: string): void {
    if (this.lost !== undefined || this.host.stopped) return;
    this.flushDropped();
    const gap: GapItem = { type: "gap", reason: "", incomplete: true };
    if (this.seq > 0) gap.from = this.position(this.seq);
    this.lost = { at: new Date().toISOString(), cause, lastSeq: this.seq, lastHeard: this.lastHeard, gap };
    this.buffer.push(gap);
  }

  private onRestored(): void {
    const lost = this.lost;
    this.lost = undefined;
    if (lost === undefined || this.host.stopped) return;
    lost.gap.reason =
      `keyspace notifications are fire-and-forget (Redis keeps none): any sent between ${lost.lastHeard} (last sign of life of the subscription; ` +
      `connection lost noticed at ${lost.at}: ${lost.cause}) and ${new Date().toISOString()} (subscribed again) were missed`;
    delete lost.gap.incomplete;
    this.wake?.();
    // The server may have restarted and forgotten a CONFIG SET.
    void this.checkServer().then(
      ({ problem, configured }) => {
        if (this.host.stopped) return;
        if (configured !== undefined) {
          this.pushGap(
            `after reconnecting, notify-keyspace-events was "${configured.before}" (the server restarted or was reconfigured?): ` +
              `the source set it again at ${configured.at} (notifications.configure); changes before that were not notified`,
          );
        }
        if (problem === undefined) return;
        this.host.log.error({ source: this.host.name }, `redis_keyspace: ${problem}`);
        this.pushGap(`after reconnecting: ${problem}; nothing is recorded until notifications are enabled again`);
      },
      (err: unknown) => this.host.log.warn({ source: this.host.name, err: errorText(err) }, "redis_keyspace: could not re-check notify-keyspace-events after reconnecting"),
    );
  }

  /** At a start after the first: notifications sent while the source was not running are gone. */
  private notePreviousRun(): void {
    const file = join(this.deps.stateDir, RUN_FILE);
    let previous: RunRecord | undefined;
    if (existsSync(file)) {
      try {
        previous = JSON.parse(readFileSync(file, "utf8")) as RunRecord;
      } catch {
        previous = { started_at: "an unknown time" };
      }
    }
    this.saveRun({ started_at: this.startedAt });
    if (previous === undefined) return;
    const since = previous.stopped_at !== undefined ? `it stopped at ${previous.stopped_at}` : `its previous run (started ${previous.started_at}) ended without stopping cleanly`;
    this.pushGap(
      `keyspace notifications are fire-and-forget (Redis keeps none): changes made while this source was not subscribed were not recorded; ${since}, subscribed again at ${new Date().toISOString()}`,
    );
  }

  private saveRun(record: RunRecord): void {
    const file = join(this.deps.stateDir, RUN_FILE);
    try {
      writeFileSync(`${file}.tmp`, JSON.stringify(record) + "\n");
      renameSync(`${file}.tmp`, file);
    } catch (err) {
      this.host.log.warn({ source: this.host.name, err: errorText(err) }, "redis_keyspace: could not save notifications-run.json");
    }
  }

  // --- to the sink ----------------------------------------------------------------------

  private async drain(): Promise<void> {
    let failures = 0;
    while (!this.host.stopped) {
      if (this.buffer.length === 0) this.flushDropped();
      const head = this.buffer[0];
      if (head === undefined || (head.type === "gap" && head.incomplete === true)) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
        continue;
      }
      await this.host.runnable();
      if (this.host.stopped) return;
      try {
        if (head.type === "gap") {
          if (!(await this.host.gap(head.reason, head.from, head.to))) return;
          this.buffer.shift();
        } else {
          let n = 0;
          while (n < this.buffer.length && n < NOTIFY_EMIT_BATCH && this.buffer[n]!.type === "event") n++;
          const out = this.buffer.slice(0, n).map((item) => (item as { out: Outgoing }).out);
          if (!(await this.host.emit(out))) return;
          this.buffer.splice(0, n);
          this.buffered -= n;
        }
        failures = 0;
      } catch (err) {
        failures++;
        const delay = backoffMs(failures, this.deps.maxReconnectDelayMs);
        this.host.log.warn({ source: this.host.name, err: errorText(err), retry_in_ms: delay }, "redis_keyspace: the agent did not take notifications; retrying");
        await this.host.sleep(delay);
      }
    }
  }
}
