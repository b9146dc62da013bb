// The s3_notification source: reads S3 event notifications from an SQS queue and
// records one event per S3 event record. A message is deleted only once every event it
// carries is acknowledged (durable in the agent's outbox); until then a heartbeat keeps
// extending its visibility timeout, so normally no other consumer (or a later receive)
// sees it; when an extension fails it comes back, and its positions make it one entry.
// A message that is not an S3 notification is recorded as `s3.malformed_notification`
// (with its body) and then deleted like any other, so it is reported once and never
// loops. See docs/sources/s3-notification.md for the options, events, positions and guarantee.
import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ReceiveMessageCommand,
  SQSClient,
  type Message,
} from "@aws-sdk/client-sqs";
import type { SourceContext } from "../source-factory.js";
import type { Source, SourceEvent, SourcePosition, SourceSink } from "../source.js";
import type { S3NotificationConfig } from "./config.js";
import { InFlightMessages, type HeldMessage } from "./in-flight-messages.js";
import { eventsOfBody, malformedEvent } from "./notification-events.js";
import { performance } from "node:perf_hooks";
import { describeSqsProblem, errorCode, errorMessage, type SqsTarget } from "./sqs-problem.js";

export const SOURCE_TYPE = "s3_notification";
/** How long start() waits for SQS to confirm the queue. */
export const START_TIMEOUT_MS = 20_000;
/** How long stop() spends handing unfinished messages back (visibility 0). */
const STOP_RELEASE_TIMEOUT_MS = 5_000;
/** How much longer than wait_time_s stop() lets a long poll under way run before cutting it. */
const STOP_POLL_MARGIN_MS = 5_000;
/**
 * Deadline of the DeleteMessageBatch calls of one acknowledge(). The SDK alone would wait
 * (wait_time_s + 15) s per attempt, 3 attempts; a delete cut short is retried at the next
 * heartbeat, and stop() waits at most this long for acknowledgements under way.
 */
const ACK_DELETE_DEADLINE_MS = 10_000;
/** Most time one heartbeat spends on its calls (also bounded by half the heartbeat period). */
const HEARTBEAT_DEADLINE_MAX_MS = 10_000;
/** Failed delete attempts after which a finished message is let go (it comes back and is recorded once). */
const MAX_DELETE_ATTEMPTS = 5;
/** Delete attempts refused for lack of permission, in a row, after which the source fails. */
const DELETE_REFUSALS_TO_FAIL = 3;
/** Codes that say the credentials may not do this: retrying does not help until IAM changes. */
const PERMISSION_CODES = new Set(["AccessDenied", "AccessDeniedException"]);
/** SQS's most entries per batch request. */
const SQS_BATCH = 10;
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 30_000;
/** SQS's region-specific host, e.g. sqs.eu-west-1.amazonaws.com. */
const AWS_QUEUE_HOST = /^sqs\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$/;

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

function sdkLogText(value: unknown): string {
  if (typeof value === "string") return value;
  if (value instanceof Error) return value.message;
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

function backoffMs(failures: number): number {
  return Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(failures, 16));
}

export class S3NotificationSource implements Source {
  readonly type = SOURCE_TYPE;
  private client: SQSClient | undefined;
  private queueUrl = "";
  private sink: SourceSink | undefined;
  private readonly inFlight = new InFlightMessages();
  private started = false;
  private stopped = false;
  /** Set by stop() just before the client goes: acknowledgements until then still delete. */
  private closed = false;
  private paused = false;
  private loop: Promise<void> | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private beating: Promise<void> | undefined;
  /** The ReceiveMessage under way, aborted by stop(). */
  private receiving: AbortController | undefined;
  private readonly acknowledging = new Set<Promise<void>>();
  /** Resolved (and replaced) whenever the receive loop may go on: resume, room, stop. */
  private wakeUp!: Promise<void>;
  private wake!: () => void;
  private signalStop: () => void = () => undefined;
  private readonly stopSignal = new Promise<void>((resolveStop) => (this.signalStop = resolveStop));
  private readonly timers = new Set<NodeJS.Timeout>();
  /** Positions acknowledged last, to tell a repeated acknowledgement from a wrong one. */
  private lastAcknowledged: SourcePosition | undefined;
  /** Delete attempts refused for lack of permission since the last delete that worked. */
  private deleteRefusals = 0;
  /** Set once the source told the agent it cannot go on (SourceSink.fail). */
  private failed: string | undefined;

  constructor(
    private readonly config: S3NotificationConfig,
    private readonly ctx: SourceContext,
  ) {
    this.rearm();
  }

  private get where(): string {
    return `s3_notification source "${this.ctx.name}"`;
  }

  private get heartbeatMs(): number {
    return (this.config.visibility_timeout_s * 1000) / 3;
  }

  /** One heartbeat's calls end by then: before the next is due, so an extension never waits behind a hung call. */
  private get heartbeatDeadlineMs(): number {
    return Math.min(this.heartbeatMs / 2, HEARTBEAT_DEADLINE_MAX_MS);
  }

  private target(): SqsTarget {
    const queue = this.config.queue_url ?? `"${this.config.queue_name}"`;
    const region = this.region() ?? process.env.AWS_REGION ?? "the default region";
    const service = this.config.endpoint !== undefined ? `the SQS endpoint ${this.config.endpoint}` : `AWS SQS in ${region}`;
    return { queue, service };
  }

  /** The configured region, else the one an AWS queue URL names. */
  private region(): string | undefined {
    if (this.config.region !== undefined) return this.config.region;
    if (this.config.queue_url === undefined) return undefined;
    return AWS_QUEUE_HOST.exec(new URL(this.config.queue_url).hostname)?.[1];
  }

  /**
   * `resumeFrom` is not needed: the queue holds every message not yet deleted, and
   * positions come from the notifications themselves.
   */
  async start(sink: SourceSink, _resumeFrom?: SourcePosition): Promise<void> {
    if (this.started) throw new Error(`${this.where} was already started`);
    this.started = true;
    try {
      this.client = this.createClient();
      this.queueUrl = await this.findQueue();
    } catch (err) {
      await this.stop();
      throw new Error(`${this.where}: ${errorMessage(err)}`);
    }
    this.sink = sink;
    this.heartbeat = setInterval(() => this.beat(), this.heartbeatMs);
    this.loop = this.receiveLoop().catch((err: unknown) => {
      if (!this.stopped) this.ctx.log.error({ err: errorMessage(err) }, "s3_notification: the receive loop stopped unexpectedly");
    });
    this.ctx.log.info({ queue_url: this.queueUrl, visibility_timeout_s: this.config.visibility_timeout_s }, "s3_notification: reading the queue");
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.wake();
  }

  /**
   * Every event up to `position` is durable: deletes the messages that now wait on
   * nothing. Resolves once the delete has been tried; a failed delete is retried at the
   * next heartbeat (and the message kept invisible meanwhile), never reported to the
   * agent, whose events are safe either way.
   */
  acknowledge(position: SourcePosition): Promise<void> {
    if (this.closed || this.client === undefined) return Promise.resolve();
    const complete = this.inFlight.acknowledge(position);
    if (complete === undefined) {
      if (position !== this.lastAcknowledged) this.ctx.log.warn({ position }, "s3_notification: acknowledged a position it is not waiting for; ignored");
      return Promise.resolve();
    }
    this.lastAcknowledged = position;
    if (complete.length === 0) return Promise.resolve();
    const deleting = this.deleteMessages(complete, AbortSignal.timeout(ACK_DELETE_DEADLINE_MS));
    this.acknowledging.add(deleting);
    void deleting.finally(() => this.acknowledging.delete(deleting));
    return deleting;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.signalStop();
    this.wake();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    // A long poll cut short on the client may still take messages on the server, which
    // then stay invisible for a whole visibility timeout: let it finish (at most
    // wait_time_s), so what it brings is handed back below like the rest.
    const polled = await Promise.race([this.loop?.then(() => true), this.delay(this.config.wait_time_s * 1000 + STOP_POLL_MARGIN_MS).then(() => false)]);
    if (!polled) this.receiving?.abort();
    await this.loop;
    // The heartbeat ran until now: held messages stayed invisible while the poll finished.
    if (this.heartbeat) clearInterval(this.heartbeat);
    await this.beating;
    await Promise.all([...this.acknowledging]);
    const client = this.client;
    if (!client) return;
    // Hand back what is not finished, so a restart gets it at once instead of after the
    // visibility timeout; a failure here only delays it.
    const signal = AbortSignal.timeout(STOP_RELEASE_TIMEOUT_MS);
    const retry = this.inFlight.all().filter((m) => m.state === "delete_failed");
    if (retry.length > 0) await this.deleteMessages(retry, signal);
    const unfinished = this.inFlight.all().filter((m) => m.state === "waiting" && !m.handleLost);
    if (unfinished.length > 0) await this.setVisibility(unfinished, 0, signal);
    this.closed = true;
    await Promise.all([...this.acknowledging]);
    client.destroy();
  }

  // --- set-up ------------------------------------------------------------------------

  private createClient(): SQSClient {
    const c = this.config;
    let credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string } | undefined;
    if (c.access_key_id !== undefined) {
      const secret = this.fromEnv("secret_access_key_env", c.secret_access_key_env!);
      credentials = { accessKeyId: c.access_key_id, secretAccessKey: secret };
      if (c.session_token_env !== undefined) credentials.sessionToken = this.fromEnv("session_token_env", c.session_token_env);
    }
    const region = this.region();
    const log = this.ctx.log;
    return new SQSClient({
      ...(region !== undefined ? { region } : {}),
      ...(c.endpoint !== undefined ? { endpoint: c.endpoint } : {}),
      ...(credentials !== undefined ? { credentials } : {}),
      maxAttempts: 3,
      // A long poll lasts wait_time_s: allow that and a margin before calling the request dead.
      requestHandler: { connectionTimeout: 10_000, requestTimeout: (c.wait_time_s + 15) * 1000 },
      // The SDK's own warnings (e.g. a queue URL on another host than the endpoint) go to our log, not the console.
      logger: {
        debug: () => undefined,
        info: () => undefined,
        warn: (...args: unknown[]) => log.warn({ sdk: args.map(sdkLogText).join(" ") }, "s3_notification: AWS SDK warning"),
        // Failed commands: the source logs those itself, with what it will do about them.
        error: () => undefined,
      },
    });
  }

  private fromEnv(field: string, name: string): string {
    const value = process.env[name];
    if (value === undefined || value === "") throw new Error(`${field}: the environment variable ${name} is not set`);
    return value;
  }

  /** Resolves the queue URL and checks the queue answers; fails naming what is wrong. */
  private async findQueue(): Promise<string> {
    const client = this.client!;
    const abortSignal = AbortSignal.timeout(START_TIMEOUT_MS);
    try {
      let url = this.config.queue_url;
      if (url === undefined) {
        const found = await client.send(new GetQueueUrlCommand({ QueueName: this.config.queue_name! }), { abortSignal });
        url = found.QueueUrl!;
      }
      const { Attributes: attributes = {} } = await client.send(
        new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ["QueueArn", "RedrivePolicy", "MessageRetentionPeriod"] }),
        { abortSignal },
      );
      if (attributes.RedrivePolicy === undefined) {
        this.ctx.log.warn({ queue_url: url }, "s3_notification: the queue has no redrive policy (dead-letter queue); see docs/sources/s3-notification.md");
      }
      return url;
    } catch (err) {
      if (abortSignal.aborted) throw new Error(`no answer from ${this.target().service} within ${START_TIMEOUT_MS / 1000} s`);
      throw new Error(describeSqsProblem(err, this.target()));
    }
  }

  // --- receiving ---------------------------------------------------------------------

  private rearm(): void {
    this.wakeUp = new Promise<void>((resolveWake) => {
      this.wake = () => {
        this.rearm();
        resolveWake();
      };
    });
  }

  private async receiveLoop(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      const room = this.config.max_in_flight - this.inFlight.size;
      // Backpressure: no ReceiveMessage while paused or while enough is unfinished.
      if (this.paused || room <= 0) {
        await this.wakeUp;
        continue;
      }
      let messages: Message[];
      const sentAt = performance.now();
      try {
        messages = await this.receive(Math.min(room, this.config.max_messages));
        failures = 0;
      } catch (err) {
        if (this.stopped) return;
        const delay = backoffMs(failures++);
        this.ctx.log.error({ err: describeSqsProblem(err, this.target()), retry_in_ms: delay }, "s3_notification: ReceiveMessage failed; retrying");
        await this.sleep(delay);
        continue;
      }
      const fresh = this.holdAll(messages, sentAt);
      // Stopped meanwhile: stop() hands the messages back.
      if (this.stopped) return;
      if (fresh.length > 0) await this.emitWithRetry(fresh);
    }
  }

  private async receive(max: number): Promise<Message[]> {
    const controller = new AbortController();
    this.receiving = controller;
    try {
      const out = await this.client!.send(
        new ReceiveMessageCommand({
          QueueUrl: this.queueUrl,
          MaxNumberOfMessages: max,
          WaitTimeSeconds: this.config.wait_time_s,
          VisibilityTimeout: this.config.visibility_timeout_s,
        }),
        { abortSignal: controller.signal },
      );
      return out.Messages ?? [];
    } finally {
      this.receiving = undefined;
    }
  }

  /** Holds each message until its events are acknowledged; returns the events to hand over. */
  private holdAll(messages: Message[], receivedAt: number): SourceEvent[] {
    const fresh: SourceEvent[] = [];
    for (const m of messages) {
      if (m.MessageId === undefined || m.ReceiptHandle === undefined) continue; // SQS always sends both
      const body = m.Body ?? "";
      const parsed = eventsOfBody(body, this.config.sns_envelope);
      let events: SourceEvent[];
      if (parsed.ok) {
        events = [...parsed.events];
        for (const bad of parsed.bad) {
          this.ctx.log.warn({ message_id: m.MessageId, reason: bad.reason }, "s3_notification: a record is not an S3 event record; recording the good records, and this one as s3.malformed_notification");
          events.push(malformedEvent(this.queueUrl, m.MessageId, bad.json, bad.reason, bad.index));
        }
      } else {
        // A wrong sns_envelope setting makes every message malformed: an operator must act.
        const level = parsed.misconfigured ? "error" : "warn";
        this.ctx.log[level]({ message_id: m.MessageId, reason: parsed.reason }, "s3_notification: not an S3 event notification; recording it as s3.malformed_notification, then deleting it");
        events = [malformedEvent(this.queueUrl, m.MessageId, body, parsed.reason)];
      }
      const held = this.inFlight.hold({ messageId: m.MessageId, receiptHandle: m.ReceiptHandle, visibleFrom: receivedAt }, events);
      fresh.push(...held.fresh);
    }
    return fresh;
  }

  /** Hands `events` to the sink until it takes them (the messages stay invisible meanwhile). */
  private async emitWithRetry(events: SourceEvent[]): Promise<void> {
    for (let attempt = 0; !this.stopped; attempt++) {
      try {
        await Promise.race([this.sink!.emit(events), this.stopSignal]);
        return;
      } catch (err) {
        if (this.stopped) return;
        const delay = backoffMs(attempt);
        this.ctx.log.error({ err: errorMessage(err), events: events.length, retry_in_ms: delay }, "s3_notification: the agent did not take the events; retrying");
        await this.sleep(delay);
      }
    }
  }

  // --- finishing messages ------------------------------------------------------------

  private async deleteMessages(messages: HeldMessage[], abortSignal?: AbortSignal): Promise<void> {
    for (const m of messages) m.state = "deleting";
    for (const batch of chunks(messages, SQS_BATCH)) {
      try {
        const out = await this.client!.send(
          new DeleteMessageBatchCommand({ QueueUrl: this.queueUrl, Entries: batch.map((m, i) => ({ Id: String(i), ReceiptHandle: m.receiptHandle })) }),
          abortSignal ? { abortSignal } : {},
        );
        for (const ok of out.Successful ?? []) this.inFlight.release(batch[Number(ok.Id)]!);
        if ((out.Successful ?? []).length > 0) this.deleteRefusals = 0;
        for (const failed of out.Failed ?? []) {
          const m = batch[Number(failed.Id)]!;
          if (failed.SenderFault && !PERMISSION_CODES.has(failed.Code ?? "")) {
            // SQS no longer knows this receipt: the message came back (or is gone). Its
            // events are durable, so a copy received again is deduplicated by position.
            this.inFlight.release(m);
            this.ctx.log.warn({ message_id: m.messageId, code: failed.Code, err: failed.Message }, "s3_notification: cannot delete a finished message; if it comes back, its events are recorded once");
          } else {
            this.deleteFailed([m], failed.Code ?? "Error", failed.Message ?? "");
          }
        }
      } catch (err) {
        this.deleteFailed(
          batch.filter((m) => m.state === "deleting"),
          errorCode(err),
          describeSqsProblem(err, this.target()),
        );
      }
    }
    this.wake(); // room for more
  }

  /**
   * Finished messages SQS did not delete. Retried at the next heartbeat, but not forever:
   * after MAX_DELETE_ATTEMPTS (or when the credentials may not delete at all) they are let
   * go, so messages whose events are durable never hold max_in_flight's room for good;
   * they come back after their visibility timeout and are recorded once (same positions).
   * A permission refusal that persists fails the source: nothing could ever be deleted.
   */
  private deleteFailed(messages: HeldMessage[], code: string, err: string): void {
    if (messages.length === 0) return;
    const refused = PERMISSION_CODES.has(code);
    for (const m of messages) {
      m.state = "delete_failed";
      m.deleteFailures++;
    }
    if (refused) this.deleteRefusals++;
    const giveUp = messages.filter((m) => m.deleteFailures >= MAX_DELETE_ATTEMPTS || (refused && this.deleteRefusals >= DELETE_REFUSALS_TO_FAIL));
    for (const m of giveUp) this.inFlight.release(m);
    const ids = messages.map((m) => m.messageId);
    if (refused) {
      this.ctx.log.error(
        { messages: ids, code, err, refusals_in_a_row: this.deleteRefusals },
        "s3_notification: SQS refused to delete finished messages: the agent's credentials lack sqs:DeleteMessage on the queue",
      );
    } else {
      this.ctx.log.warn({ messages: ids, code, err }, "s3_notification: deleting finished messages failed; retrying at the next heartbeat");
    }
    if (giveUp.length > 0) {
      this.ctx.log.error(
        { messages: giveUp.map((m) => m.messageId), code },
        "s3_notification: giving up deleting finished messages; they come back after their visibility timeout and their events are recorded once",
      );
    }
    if (refused && this.deleteRefusals >= DELETE_REFUSALS_TO_FAIL) {
      this.fail(
        `SQS refused to delete messages from queue ${this.queueUrl} ${this.deleteRefusals} times in a row (${code}: ${err}): ` +
          "the agent's credentials need sqs:DeleteMessage on the queue. Without it every message comes back after its visibility timeout and is received again and again",
      );
    }
  }

  /** Tells the agent the source cannot go on (once); the agent stops with `reason`. */
  private fail(reason: string): void {
    if (this.failed !== undefined || this.stopped) return;
    this.failed = reason;
    this.ctx.log.error({ reason }, "s3_notification: the source cannot go on");
    this.sink?.fail?.(reason);
  }

  /**
   * Keeps unfinished messages invisible (before their timeout runs out), then retries
   * failed deletes: extending first, so a slow or failing delete never makes a message
   * miss its extension. The whole beat has a deadline (heartbeatDeadlineMs), so a hung
   * call neither delays the next beat nor holds stop() up.
   */
  private beat(): void {
    if (this.beating || this.closed) return;
    this.beating = (async () => {
      const signal = AbortSignal.timeout(this.heartbeatDeadlineMs);
      const now = performance.now();
      const due = this.inFlight
        .all()
        .filter((m) => (m.state === "waiting" || m.state === "delete_failed") && !m.handleLost && now - m.visibleFrom >= this.heartbeatMs / 2);
      if (due.length > 0) await this.setVisibility(due, this.config.visibility_timeout_s, signal);
      const retry = this.inFlight.all().filter((m) => m.state === "delete_failed");
      if (retry.length > 0) await this.deleteMessages(retry, signal);
    })()
      .catch((err: unknown) => this.ctx.log.error({ err: errorMessage(err) }, "s3_notification: heartbeat failed"))
      .finally(() => (this.beating = undefined));
  }

  private async setVisibility(messages: HeldMessage[], seconds: number, abortSignal?: AbortSignal): Promise<void> {
    for (const batch of chunks(messages, SQS_BATCH)) {
      const sentAt = performance.now();
      try {
        const out = await this.client!.send(
          new ChangeMessageVisibilityBatchCommand({
            QueueUrl: this.queueUrl,
            Entries: batch.map((m, i) => ({ Id: String(i), ReceiptHandle: m.receiptHandle, VisibilityTimeout: seconds })),
          }),
          abortSignal ? { abortSignal } : {},
        );
        for (const ok of out.Successful ?? []) batch[Number(ok.Id)]!.visibleFrom = sentAt;
        for (const failed of out.Failed ?? []) {
          const m = batch[Number(failed.Id)]!;
          // Sender faults do not heal by retrying: the receipt is stale (the message became
          // visible again) or past SQS's 12-hour limit. The message will be received again;
          // its position makes the copy one entry.
          if (failed.SenderFault) m.handleLost = true;
          const what = seconds > 0 ? "cannot extend a message's visibility; it will be received again and recorded once" : "cannot hand a message back; it comes back after its visibility timeout";
          this.ctx.log.warn({ message_id: m.messageId, code: failed.Code, err: failed.Message }, `s3_notification: ${what}`);
        }
      } catch (err) {
        if (this.stopped && seconds > 0) return;
        this.ctx.log.warn({ messages: batch.length, err: describeSqsProblem(err, this.target()) }, "s3_notification: ChangeMessageVisibilityBatch failed");
      }
    }
  }

  /** A timer stop() does not cut short; unref'd, so it never keeps the process alive. */
  private delay(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      timer.unref();
    });
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

