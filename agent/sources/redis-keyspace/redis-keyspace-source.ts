// The redis_keyspace source: keyspace notifications (best effort, gaps recorded) and
// Streams consumer groups (at least once, XACK after durability), one or both per source.
// Both feeds hand their events through one serialised emit, so the sink sees one call at
// a time, and acknowledge() gets positions in emission order: it XACKs the stream
// entries up to the position and forgets the notifications (nothing to tell Redis).
import { hostname } from "node:os";
import type { SourceContext } from "../source-factory.js";
import type { Source, SourcePosition, SourceSink } from "../source.js";
import type { RedisKeyspaceConfig } from "./config.js";
import { asText, closeConnection, errorText, openConnection, RedisSourceError, redisTarget, send, type RedisConnection, type RedisTarget, type Reply } from "./connection.js";
import type { FeedHost, Outgoing } from "./feed-host.js";
import { NotificationFeed } from "./notification-feed.js";
import { StreamFeed } from "./stream-feed.js";

export const SOURCE_TYPE = "redis_keyspace";
/** How long stop() lets XACKs under way finish before closing the connection. */
const STOP_ACK_GRACE_MS = 2_000;

export class RedisKeyspaceSource implements Source {
  readonly type = SOURCE_TYPE;
  private readonly target: RedisTarget;
  private readonly clientName: string;
  private sink: SourceSink | undefined;
  private cmd: RedisConnection | undefined;
  private notifications: NotificationFeed | undefined;
  private streams: StreamFeed | undefined;
  /** Handed to the sink, not yet acknowledged, in emission order. */
  private unacked: Outgoing[] = [];
  private chain: Promise<unknown> = Promise.resolve();
  private readonly acks = new Set<Promise<void>>();
  private started = false;
  private stoppedFlag = false;
  private pausedFlag = false;
  private resumeWaiters: (() => void)[] = [];
  private readonly sleepers = new Set<() => void>();
  private signalStop: () => void = () => undefined;
  private readonly stopSignal = new Promise<void>((resolve) => (this.signalStop = resolve));
  private readonly host: FeedHost;

  constructor(
    private readonly config: RedisKeyspaceConfig,
    private readonly ctx: SourceContext,
  ) {
    this.target = redisTarget(config);
    this.clientName = config.client_name ?? `audit-ledger:${ctx.name}`.replace(/[^\x21-\x7e]/g, "_");
    const self = this;
    this.host = {
      name: ctx.name,
      log: ctx.log,
      get stopped() {
        return self.stoppedFlag;
      },
      get paused() {
        return self.pausedFlag;
      },
      runnable: () => this.runnable(),
      emit: (out) => this.emit(out),
      gap: (reason, from, to) => this.gap(reason, from, to),
      sleep: (ms) => this.sleep(ms),
    };
  }

  /** The connection names in CLIENT LIST are `<this>:cmd`, `<this>:stream`, `<this>:sub`. */
  get connectionName(): string {
    return this.clientName;
  }

  /** True while the stream read loop waits for resume() (tests). */
  get streamReaderParked(): boolean {
    return this.streams?.parked ?? false;
  }

  /** Notifications received since start, dropped ones included (tests). */
  get notificationsReceived(): number {
    return this.notifications?.receivedCount ?? 0;
  }

  /** Notifications waiting for the sink (tests). */
  get bufferedNotifications(): number {
    return this.notifications?.bufferedCount ?? 0;
  }

  /**
   * `resumeFrom` is not needed: stream progress lives in Redis (the group's last
   * delivered id and this consumer's PEL); notifications cannot be resumed at all.
   */
  async start(sink: SourceSink, _resumeFrom?: SourcePosition): Promise<void> {
    if (this.started || this.stoppedFlag) throw new Error(`redis_keyspace source "${this.ctx.name}" was already started or stopped`);
    this.started = true;
    this.sink = sink;
    const common = {
      clientName: this.clientName,
      connectTimeoutMs: this.config.connect_timeout_ms,
      maxReconnectDelayMs: this.config.max_reconnect_delay_ms,
      ctx: this.ctx,
    };
    try {
      this.cmd = await openConnection(this.target, { ...common, role: "cmd" });
      const serverVersion = await this.serverVersion(this.cmd);
      if (this.config.streams !== undefined) {
        const consumer = this.config.streams.consumer ?? `${hostname()}:${this.ctx.name}`;
        this.streams = new StreamFeed(this.config.streams, { ...common, host: this.host, target: this.target, cmd: this.cmd, consumer, serverVersion });
        await this.streams.prepare();
      }
      if (this.config.notifications !== undefined) {
        this.notifications = new NotificationFeed(this.config.notifications, { ...common, host: this.host, target: this.target, cmd: this.cmd, stateDir: this.ctx.stateDir });
        await this.notifications.prepare();
      }
    } catch (err) {
      await this.stop();
      const text = err instanceof RedisSourceError ? err.message : describeUnexpected(this.target, err);
      throw new RedisSourceError(`redis_keyspace source "${this.ctx.name}" cannot start: ${text}`);
    }
    if (this.stoppedFlag) {
      // stop() came while starting: close what was opened after it ran.
      await this.streams?.stop();
      await this.notifications?.stop();
      closeConnection(this.cmd);
      throw new Error(`redis_keyspace source "${this.ctx.name}" was stopped while starting`);
    }
    this.streams?.start();
    this.notifications?.start();
    this.ctx.log.info(
      { source: this.ctx.name, redis: this.target.display, streams: this.config.streams?.keys, notifications: this.config.notifications?.channel },
      "redis_keyspace: started",
    );
  }

  pause(): void {
    if (this.pausedFlag) return;
    this.pausedFlag = true;
    this.streams?.onPause();
  }

  resume(): void {
    if (!this.pausedFlag) return;
    this.pausedFlag = false;
    for (const wake of this.resumeWaiters.splice(0)) wake();
  }

  async acknowledge(position: SourcePosition): Promise<void> {
    const at = this.unacked.findIndex((o) => o.event.position === position);
    if (at < 0) {
      this.ctx.log.warn({ source: this.ctx.name, position }, "redis_keyspace: acknowledged a position it is not waiting for; ignored");
      return;
    }
    const done = this.unacked.splice(0, at + 1);
    const entries = done.flatMap((o) => (o.entry ? [o.entry] : []));
    if (entries.length === 0 || this.streams === undefined || this.stoppedFlag) return;
    const ack = this.streams.acknowledge(entries);
    this.acks.add(ack);
    try {
      await ack;
    } finally {
      this.acks.delete(ack);
    }
  }

  async stop(): Promise<void> {
    if (this.stoppedFlag) return;
    this.stoppedFlag = true;
    this.signalStop();
    for (const wake of this.resumeWaiters.splice(0)) wake();
    for (const wake of this.sleepers) wake();
    await this.streams?.stop();
    await this.notifications?.stop();
    await this.chain;
    if (this.acks.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled([...this.acks]), new Promise((resolve) => (timer = setTimeout(resolve, STOP_ACK_GRACE_MS)))]);
      clearTimeout(timer);
    }
    closeConnection(this.cmd);
    // Not acknowledged: stream entries stay pending in Redis and come again after a restart.
    this.unacked = [];
  }

  // --- for the feeds ---------------------------------------------------------------------

  private runnable(): Promise<void> {
    if (!this.pausedFlag || this.stoppedFlag) return Promise.resolve();
    return new Promise((resolve) => this.resumeWaiters.push(resolve));
  }

  private sleep(ms: number): Promise<void> {
    if (this.stoppedFlag) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.sleepers.add(wake);
    });
  }

  /** Runs `step` after every earlier emit or gap; given up (not cancelled) when the source stops. */
  private serialise<T>(step: () => Promise<T>): Promise<T> {
    const run = this.chain.then(step, step);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private emit(out: Outgoing[]): Promise<boolean> {
    return this.serialise(async () => {
      if (this.stoppedFlag || out.length === 0) return !this.stoppedFlag;
      // Pending before the call: the agent acknowledges from inside emit().
      this.unacked.push(...out);
      const emitted = this.sink!.emit(out.map((o) => o.event));
      emitted.catch(() => undefined);
      try {
        return await Promise.race([emitted.then(() => true), this.stopSignal.then(() => false)]);
      } catch (err) {
        const failed = new Set(out);
        this.unacked = this.unacked.filter((o) => !failed.has(o));
        throw err;
      }
    });
  }

  private gap(reason: string, from?: SourcePosition, to?: SourcePosition): Promise<boolean> {
    return this.serialise(async () => {
      if (this.stoppedFlag) return false;
      const recorded = this.sink!.gap(reason, from, to);
      recorded.catch(() => undefined);
      return Promise.race([recorded.then(() => true), this.stopSignal.then(() => false)]);
    });
  }

  private async serverVersion(cmd: RedisConnection): Promise<[number, number] | undefined> {
    try {
      const info = asText(await send(cmd, ["INFO", "server"]));
      const match = /redis_version:(\d+)\.(\d+)/.exec(info);
      return match ? [Number(match[1]), Number(match[2])] : undefined;
    } catch (err) {
      this.ctx.log.warn({ source: this.ctx.name, err: errorText(err) }, "redis_keyspace: cannot read the server version (INFO); version checks skipped");
      return undefined;
    }
  }
}

function describeUnexpected(target: RedisTarget, err: unknown): string {
  const text = errorText(err);
  if (/NOPERM/.test(text)) return `the Redis user lacks a permission the source needs at ${target.display}: ${text}`;
  return `Redis at ${target.display}: ${text}`;
}
