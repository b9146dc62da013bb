// The mqtt source: subscribes at QoS 1 in a persistent session and sends each message's
// PUBACK only once the agent has the event in its outbox, in arrival order.
//
// How the PUBACK is held back: mqtt.js hands incoming PUBLISH packets, one at a time,
// to `client.handleMessage(packet, callback)` and sends the PUBACK when the callback is
// called (for MQTT 3.1.1 and 5 alike; `customHandleAcks` only chooses a reason code
// before that). The source overrides handleMessage and calls the callback from
// acknowledge(). Until then mqtt.js reads nothing more from that connection, so the
// source holds at most one unacknowledged message and the broker's in-flight window
// (MQTT 5 receive maximum) bounds what waits in the socket: that is the backpressure.
//
// Connections: every message remembers the connection (mqtt.js stream) it came on.
// A PUBACK is only sent on that same connection while it is up. If the connection is
// lost first, the broker redelivers the message on the next one (DUP set) and the copy
// gets the same position (see docs/sources/mqtt.md, "Positions"), so the ledger keeps one.
import { connect, type IClientOptions, type IConnackPacket, type IPublishPacket, type MqttClient } from "mqtt";
import type { SourceContext } from "../source-factory.js";
import type { Source, SourceEvent, SourcePosition, SourceSink } from "../source.js";
import { SESSION_NEVER_EXPIRES, type MqttConfig } from "./config.js";
import { fingerprintOf, positionOf, toSourceEvent, type ReceivedMessage } from "./message-event.js";
import { SessionState, type AckedMessage } from "./session-state.js";

export const SOURCE_TYPE = "mqtt";
/** MQTT 5 receive maximum when not configured. */
export const DEFAULT_RECEIVE_MAXIMUM = 20;
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 30_000;

/** One PUBLISH as mqtt.js handed it over, with what releases it. */
interface Delivery {
  message: ReceivedMessage;
  /** The connection it came on (mqtt.js replaces `client.stream` on each reconnect). */
  stream: unknown;
  /** mqtt.js's callback: sends the PUBACK (QoS 1) and lets the next packet in. */
  release: () => void;
}

type Job = { type: "message"; delivery: Delivery } | { type: "gap"; reason: string };

/** The message handed to the sink and not yet acknowledged. */
interface InFlight {
  position: SourcePosition;
  record: AckedMessage;
  delivery: Delivery;
  acknowledging?: Promise<void>;
  settle: () => void;
  settled: Promise<void>;
}

function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return code !== undefined && !err.message.includes(String(code)) ? `${err.message} (${String(code)})` : err.message;
  }
  return String(err);
}

function toMessage(packet: IPublishPacket): ReceivedMessage {
  const payload = typeof packet.payload === "string" ? Buffer.from(packet.payload, "utf8") : packet.payload;
  const message: ReceivedMessage = {
    topic: packet.topic,
    payload,
    qos: packet.qos,
    packetId: packet.qos > 0 ? (packet.messageId ?? 0) : 0,
    dup: packet.dup,
    retain: packet.retain,
  };
  if (packet.properties?.contentType !== undefined) message.contentType = packet.properties.contentType;
  return message;
}

export class MqttSource implements Source {
  readonly type = SOURCE_TYPE;
  private sink: SourceSink | undefined;
  private client: MqttClient | undefined;
  private state: SessionState | undefined;
  private jobs: Job[] = [];
  /** The job being worked on (jobs[0] while it runs). */
  private active: Job | undefined;
  private inflight: InFlight | undefined;
  private lastAcknowledged: SourcePosition | undefined;
  private draining: Promise<void> | undefined;
  private started = false;
  private stopped = false;
  private paused = false;
  private connectedOnce = false;
  /** Set when stop() closes the connection: no PUBACK after that. */
  private ending = false;
  /** Set by start() once its first connection is up and its subscriptions confirmed (or pending behind messages). */
  private running = false;
  private signalStop: () => void = () => undefined;
  private readonly stopSignal = new Promise<void>((resolveStop) => (this.signalStop = resolveStop));
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly config: MqttConfig,
    private readonly ctx: SourceContext,
  ) {}

  private get where(): string {
    return `mqtt source "${this.ctx.name}"`;
  }

  /**
   * `resumeFrom` is not needed: the broker session holds what is not acknowledged, and
   * the state folder holds what positions continue from.
   */
  async start(sink: SourceSink, _resumeFrom?: SourcePosition): Promise<void> {
    if (this.started) throw new Error(`${this.where} was already started`);
    this.started = true;
    const password = this.password();
    const state = await SessionState.load(this.ctx.stateDir, {
      url: this.config.url,
      client_id: this.config.client_id,
      protocol_version: this.config.protocol_version,
    });
    this.state = state;
    if (state.fresh) this.ctx.log.info({ epoch: state.session.epoch, client_id: this.config.client_id }, "mqtt: new position epoch for this broker session");
    this.sink = sink;
    // A session loss seen just before a crash, not yet in the outbox: record it now.
    if (state.session.pending_gap !== null) this.jobs.push({ type: "gap", reason: state.session.pending_gap });

    const v5 = this.config.protocol_version === 5;
    const options: IClientOptions = {
      clientId: this.config.client_id,
      clean: false,
      protocolVersion: v5 ? 5 : 4,
      keepalive: this.config.keepalive_s,
      // Past our own limit, so start() reports its own message; also bounds each reconnection.
      connectTimeout: this.config.connect_timeout_ms + 1_000,
      // Only after the first connection: a bad address or credentials fail start().
      reconnectPeriod: 0,
      // Subscriptions are the source's business (they live in the session).
      resubscribe: false,
      ...(this.config.username !== undefined ? { username: this.config.username } : {}),
      ...(password !== undefined ? { password } : {}),
      ...(v5
        ? {
            properties: {
              sessionExpiryInterval: this.config.session_expiry_s ?? SESSION_NEVER_EXPIRES,
              receiveMaximum: this.config.receive_maximum ?? DEFAULT_RECEIVE_MAXIMUM,
            },
          }
        : {}),
    };

    let firstConnected!: () => void;
    let firstFailed!: (problem: string) => void;
    const firstConnection = new Promise<void>((resolve, reject) => {
      firstConnected = resolve;
      firstFailed = (problem) => reject(new Error(problem));
    });
    let lastError: string | undefined;
    const client = connect(this.config.url, options);
    this.client = client;
    client.handleMessage = (packet, callback) => this.onPublish(packet, () => callback());
    client.on("packetreceive", (packet) => {
      if (packet.cmd === "connack") this.onConnack(packet);
    });
    client.on("connect", (connack) => {
      if (!this.connectedOnce) {
        this.connectedOnce = true;
        firstConnected();
      } else {
        this.ctx.log.info({ session_present: connack.sessionPresent }, "mqtt: reconnected");
        this.subscribeAfterReconnect(connack.sessionPresent);
      }
    });
    client.on("error", (err) => {
      lastError = describeError(err);
      if (this.running && !this.stopped) this.ctx.log.warn({ err: lastError }, "mqtt: connection problem");
      // A CONNACK refusal: mqtt.js closes the connection itself.
      if (!this.connectedOnce) firstFailed(this.connectProblem(err));
    });
    client.on("close", () => {
      if (!this.connectedOnce) firstFailed(`cannot connect to ${this.config.url}: ${lastError ?? "the connection closed before the broker's CONNACK"}`);
      this.onClose();
    });
    client.on("disconnect", (packet) => {
      const code = packet.reasonCode ?? 0;
      const why = code === 142 ? `another client connected with client id "${this.config.client_id}" and took the session over` : `reason code ${code}`;
      this.ctx.log.error({ reason_code: code, reason: packet.properties?.reasonString }, `mqtt: the broker closed the connection: ${why}`);
    });

    try {
      await this.withTimeout(firstConnection, () => `no CONNACK from ${this.config.url} within connect_timeout_ms (${this.config.connect_timeout_ms} ms)`);
      await this.subscribeAtStart();
    } catch (err) {
      await this.stop();
      throw new Error(`${this.where}: ${(err as Error).message}`);
    }
    if (this.stopped) return;
    this.running = true;
    client.options.reconnectPeriod = this.config.reconnect_period_ms;
    client.options.reconnectOnConnackError = true;
    // Lost in the moment before reconnecting was switched on: nothing else would reconnect.
    if (!client.connected && !client.reconnecting) client.reconnect();
    this.ctx.log.info({ url: this.config.url, client_id: this.config.client_id, topics: this.config.topics }, "mqtt: subscribed");
    this.kick();
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.kick();
  }

  /**
   * Records the message as acknowledged (durably, so the next one gets the next
   * sequence number), then sends its PUBACK: mqtt.js then reads the next message.
   */
  acknowledge(position: SourcePosition): Promise<void> {
    if (this.stopped) return Promise.resolve();
    const f = this.inflight;
    if (!f || f.position !== position) {
      if (position !== this.lastAcknowledged) this.ctx.log.warn({ position }, "mqtt: acknowledged a position it is not waiting for; ignored");
      return Promise.resolve();
    }
    f.acknowledging ??= (async () => {
      const state = this.state!;
      if (f.record.seq !== state.acked.seq) await state.saveAcked(f.record);
      this.lastAcknowledged = f.position;
      this.release(f.delivery);
      f.settle();
    })();
    f.acknowledging.catch(() => {
      f.acknowledging = undefined; // let the agent try again
    });
    return f.acknowledging;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.signalStop();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    // Nothing more is released: what was not acknowledged stays in the broker session.
    this.jobs = [];
    // Except an acknowledgement under way: its event is stored, let its PUBACK out.
    const acknowledging = this.inflight?.acknowledging;
    if (acknowledging) {
      await acknowledging.catch(() => undefined);
      // mqtt-packet corks the socket until the next tick: let the PUBACK out before closing.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    this.ending = true;
    const client = this.client;
    if (client) await new Promise<void>((resolve) => client.end(true, {}, () => resolve()));
    await this.state?.close();
  }

  // --- connection ------------------------------------------------------------------

  private password(): string | undefined {
    if (this.config.password_env === undefined) return this.config.password;
    const value = process.env[this.config.password_env];
    if (value === undefined) throw new Error(`${this.where}: password_env: the environment variable ${this.config.password_env} is not set`);
    return value;
  }

  private connectProblem(err: Error): string {
    const code = (err as { code?: unknown }).code;
    if (typeof code === "number") return `the broker at ${this.config.url} refused the connection: ${err.message.replace(/^Connection refused: /, "")} (reason code ${code})`;
    return `cannot connect to ${this.config.url}: ${describeError(err)}`;
  }

  /**
   * Waits for `promise` at most connect_timeout_ms, then fails with problem(), unless
   * `goOn` says to stop waiting and carry on without it.
   */
  private withTimeout(promise: Promise<void>, problem: () => string, goOn?: () => boolean): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        if (goOn?.()) resolve();
        else reject(new Error(problem()));
      }, this.config.connect_timeout_ms);
      this.timers.add(timer);
      promise.then(
        () => {
          clearTimeout(timer);
          this.timers.delete(timer);
          resolve();
        },
        (err: unknown) => {
          clearTimeout(timer);
          this.timers.delete(timer);
          reject(err as Error);
        },
      );
    });
  }

  /**
   * Seen before any PUBLISH of the new connection: if the broker lost a session the
   * source had, what it queued is gone. Say so, ahead of the messages that follow.
   */
  private onConnack(connack: IConnackPacket): void {
    const code = this.config.protocol_version === 5 ? connack.reasonCode : connack.returnCode;
    if (code !== 0 && code !== undefined) return;
    const state = this.state!;
    if (connack.sessionPresent || state.session.subscribed === null) return;
    const reason =
      `the MQTT broker at ${this.config.url} no longer has the session of client id "${this.config.client_id}" ` +
      `(it expired, or the broker lost it, e.g. restarted without persistence): messages published to ` +
      `${this.config.topics.join(", ")} while the agent was disconnected may be lost`;
    this.ctx.log.error({ client_id: this.config.client_id }, `mqtt: ${reason}`);
    // Also written to session.json: a crash before the gap entry is stored records it at the next start.
    state.session = { ...state.session, subscribed: null, pending_gap: reason };
    this.jobs.push({ type: "gap", reason });
    void state.saveSession({ subscribed: null, pending_gap: reason }).catch((err: unknown) => this.ctx.log.error({ err: String(err) }, "mqtt: cannot save the session state"));
    this.kick();
  }

  private onClose(): void {
    if (this.stopped) return;
    if (this.running) this.ctx.log.warn({ url: this.config.url }, "mqtt: connection lost; unacknowledged messages will be redelivered on the next one");
    // Messages not yet handed to the sink: the broker redelivers them (QoS 0 is never redelivered: kept).
    this.jobs = this.jobs.filter((j) => j === this.active || j.type === "gap" || j.delivery.message.qos === 0);
  }

  /**
   * Subscribes to every configured filter (also when the session holds them already:
   * a crash may have come between a session loss and its record) and drops filters
   * that are no longer configured. Waits for the SUBACKs, except when they are held up
   * behind queued messages the agent has not stored yet (its outbox may be waiting for
   * the ingest stream, which starts after every source): then the outcome is logged.
   */
  private async subscribeAtStart(): Promise<void> {
    const state = this.state!;
    const removed = (state.session.subscribed ?? []).filter((t) => !this.config.topics.includes(t));
    const work = (async () => {
      if (removed.length > 0) await this.unsubscribe(removed);
      await this.subscribeAll();
    })();
    let detached = false;
    work.catch((err: unknown) => {
      if (detached && !this.stopped) this.ctx.log.error({ err: (err as Error).message }, "mqtt: subscribing failed");
    });
    await this.withTimeout(
      work,
      () => `no SUBACK from ${this.config.url} within connect_timeout_ms (${this.config.connect_timeout_ms} ms)`,
      () => {
        if (!this.inflight && this.jobs.length === 0) return false;
        detached = true;
        this.ctx.log.warn({}, "mqtt: the SUBACK waits behind queued messages not yet stored; starting, subscription problems will be logged");
        return true;
      },
    );
  }

  private subscribeAfterReconnect(sessionPresent: boolean | undefined): void {
    if (sessionPresent || this.stopped) return;
    this.subscribeAll().then(
      () => this.ctx.log.info({ topics: this.config.topics }, "mqtt: subscribed again in the new session"),
      (err: unknown) => {
        if (!this.stopped) this.ctx.log.error({ err: (err as Error).message }, "mqtt: resubscribing after a session loss failed; no messages will arrive");
      },
    );
  }

  private async subscribeAll(): Promise<void> {
    const client = this.client!;
    const v5 = this.config.protocol_version === 5;
    const include = this.config.include_retained;
    // MQTT 5 retain handling: 1 = retained messages only for a new subscription, 2 = never.
    const opts = v5 ? { qos: 1 as const, rh: include ? 1 : 2 } : { qos: 1 as const };
    await Promise.all(
      this.config.topics.map(
        (topic) =>
          new Promise<void>((resolve, reject) => {
            client.subscribe(topic, opts, (err, granted) => {
              if (err) {
                reject(new Error(`the broker refused topic filter "${topic}": ${describeError(err).replace(/^Subscribe error: /, "")}`));
                return;
              }
              const qos = granted?.[0]?.qos;
              if (qos !== 1 && qos !== 2) {
                reject(new Error(`the broker granted QoS ${String(qos)} for topic filter "${topic}"; QoS 1 is needed for at-least-once delivery`));
                return;
              }
              resolve();
            });
          }),
      ),
    );
    await this.state!.saveSession({ subscribed: [...this.config.topics] });
  }

  private unsubscribe(topics: string[]): Promise<void> {
    const client = this.client!;
    return new Promise<void>((resolve, reject) => {
      client.unsubscribe(topics, (err) => (err ? reject(new Error(`unsubscribing from ${topics.join(", ")} failed: ${describeError(err)}`)) : resolve()));
    });
  }

  // --- delivery --------------------------------------------------------------------

  private onPublish(packet: IPublishPacket, release: () => void): void {
    if (this.stopped) return; // never released: the broker keeps it
    this.jobs.push({ type: "message", delivery: { message: toMessage(packet), stream: this.client?.stream, release } });
    this.kick();
  }

  /** Whether a PUBACK can still go on the connection the message came on. */
  private isCurrent(d: Delivery): boolean {
    const client = this.client;
    if (this.ending || client === undefined || !client.connected || client.stream !== d.stream) return false;
    return (client.stream as { destroyed?: boolean }).destroyed !== true;
  }

  private release(d: Delivery): void {
    if (this.isCurrent(d)) d.release();
  }

  private kick(): void {
    if (this.draining || this.stopped || this.paused || !this.sink) return;
    if (this.jobs.length === 0) return;
    this.draining = this.drain()
      .catch((err: unknown) => {
        if (!this.stopped) this.ctx.log.error({ err: String(err) }, "mqtt: delivery stopped unexpectedly");
      })
      .finally(() => {
        this.draining = undefined;
        this.active = undefined;
        if (!this.stopped && !this.paused && this.jobs.length > 0) this.kick();
      });
  }

  private async drain(): Promise<void> {
    while (!this.stopped && !this.paused && this.jobs.length > 0) {
      const job = this.jobs[0]!;
      this.active = job;
      if (job.type === "gap") await this.recordGap(job.reason);
      else await this.deliver(job.delivery);
      if (this.stopped) return;
      this.active = undefined;
      const i = this.jobs.indexOf(job);
      if (i >= 0) this.jobs.splice(i, 1);
    }
  }

  private async deliver(d: Delivery): Promise<void> {
    const m = d.message;
    if (m.retain && !this.config.include_retained) {
      // Sent because a subscription was made: a value published before, not a new message.
      this.release(d);
      return;
    }
    // Its connection is gone: the broker sends it again on the next one.
    if (m.qos > 0 && !this.isCurrent(d)) return;
    const state = this.state!;
    const fingerprint = fingerprintOf(m.topic, m.payload);
    const last = state.acked;
    // A redelivery of the message last acknowledged (its PUBACK was lost) keeps its number;
    // anything else is the next message. See docs/sources/mqtt.md, "Positions".
    const again = m.dup && last.seq > 0 && m.packetId === last.packetId && fingerprint === last.fingerprint;
    const record: AckedMessage = { seq: again ? last.seq : last.seq + 1, packetId: m.packetId, fingerprint };
    const position = positionOf(state.session.epoch, record.seq, m.packetId, fingerprint);
    const event = toSourceEvent(m, position, this.config.kind, this.config.payload_type);
    let settle!: () => void;
    const settled = new Promise<void>((resolve) => (settle = resolve));
    const f: InFlight = { position, record, delivery: d, settle, settled };
    this.inflight = f;
    try {
      if (!(await this.emitWithRetry(event))) return;
      await Promise.race([settled, this.stopSignal]);
    } finally {
      if (this.inflight === f) this.inflight = undefined;
    }
  }

  /** Hands `event` to the sink until it takes it; false when stopped first. */
  private async emitWithRetry(event: SourceEvent): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      if (this.stopped) return false;
      try {
        await Promise.race([this.sink!.emit([event]), this.stopSignal]);
        return !this.stopped;
      } catch (err) {
        if (this.stopped) return false;
        const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(attempt, 16));
        this.ctx.log.error({ err: String(err), position: event.position, retryInMs: delay }, "mqtt: the agent did not take the event; retrying");
        await this.sleep(delay);
      }
    }
  }

  private async recordGap(reason: string): Promise<void> {
    for (let attempt = 0; !this.stopped; attempt++) {
      try {
        await Promise.race([this.sink!.gap(reason, this.lastAcknowledged), this.stopSignal]);
        if (this.stopped) return;
        await this.state!.saveSession({ pending_gap: null });
        return;
      } catch (err) {
        if (this.stopped) return;
        const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(attempt, 16));
        this.ctx.log.error({ err: String(err), retryInMs: delay }, "mqtt: cannot record the gap entry; retrying");
        await this.sleep(delay);
      }
    }
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
