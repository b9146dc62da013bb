// The s3_notification source against the real SQS-compatible ElasticMQ the global setup
// starts (inject("sqs")), with a fresh queue per test. Notifications are the JSON S3
// writes to SQS. The sink records what it is given and acknowledges as the agent does
// (from inside emit, once the events are "stored"), unless a test holds it back.
// Conditions are awaited; watching for a while is only used to show that something
// does NOT happen (a message coming back, a receive while paused).
import { afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ChangeMessageVisibilityBatchCommand,
  CreateQueueCommand,
  DeleteMessageBatchCommand,
  DeleteQueueCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SQSClient,
} from "@aws-sdk/client-sqs";
import type { SourceEvent, SourceSink } from "../source.js";
import s3NotificationSource, { type S3NotificationConfigInput, type S3NotificationSource } from "./index.js";
import { decodeObjectKey, kindOf, MALFORMED_KIND, subjectOf, TEST_EVENT_KIND } from "./notification-events.js";
import { InFlightMessages } from "./in-flight-messages.js";
import { waitFor } from "../../../test/support/wait-for.js";
import { freePort } from "../../../test/support/free-port.js";
import { readCrashLines, startCrashChild } from "../../../test/support/source-crash-process.js";
import { type LogLine, recordingContext } from "../../../test/support/source-context.js";

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = "true";
const SECRET_ENV = "S3_NOTIFICATION_TEST_SECRET";
const POSITION = /^s3n1:record:[0-9a-f]{32}$/;

// ---------------------------------------------------------------------------------------
// Harness

const sqs = inject("sqs");
let admin: SQSClient;
beforeAll(() => {
  process.env[SECRET_ENV] = sqs.secretAccessKey;
  admin = new SQSClient({ endpoint: sqs.endpoint, region: sqs.region, credentials: { accessKeyId: sqs.accessKeyId, secretAccessKey: sqs.secretAccessKey } });
});

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Records events; by default acknowledges each batch from inside emit, as the agent does. */
class RecordingSink implements SourceSink {
  readonly events: SourceEvent[] = [];
  readonly gaps: string[] = [];
  /** Reasons given to fail() (the agent would stop with the first). */
  readonly failures: string[] = [];
  emitCalls = 0;
  /** ack: acknowledge inside emit; manual: the test acknowledges. */
  mode: "ack" | "manual" = "ack";
  source: S3NotificationSource | undefined;
  /** Runs inside emit after recording (e.g. the agent pausing the source when its outbox fills). */
  duringEmit: (() => void) | undefined;

  async emit(events: SourceEvent[]): Promise<void> {
    this.emitCalls++;
    this.events.push(...events);
    this.duringEmit?.();
    if (this.mode === "manual") return;
    await this.source!.acknowledge(events[events.length - 1]!.position);
  }

  async gap(reason: string): Promise<void> {
    this.gaps.push(reason);
  }

  fail(reason: string): void {
    this.failures.push(reason);
  }

  payloads(): Record<string, unknown>[] {
    return this.events.map((e) => JSON.parse(Buffer.from(e.payload!).toString("utf8")) as Record<string, unknown>);
  }
}


let counter = 0;
function unique(prefix: string): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${(counter++).toString(36)}`;
}

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "s3-notification-"));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

async function createQueue(): Promise<string> {
  const { QueueUrl } = await admin.send(new CreateQueueCommand({ QueueName: unique("s3n") }));
  cleanups.push(() => admin.send(new DeleteQueueCommand({ QueueUrl })).catch(() => undefined));
  return QueueUrl!;
}

function baseConfig(queueUrl: string, extra: Partial<S3NotificationConfigInput> = {}): S3NotificationConfigInput {
  return {
    queue_url: queueUrl,
    endpoint: sqs.endpoint,
    region: sqs.region,
    access_key_id: sqs.accessKeyId,
    secret_access_key_env: SECRET_ENV,
    wait_time_s: 1,
    visibility_timeout_s: 3,
    ...extra,
  };
}

const context = (lines: LogLine[] = []) => recordingContext("s3-test", tempDir(), lines);

function create(config: S3NotificationConfigInput, lines: LogLine[] = []): S3NotificationSource {
  const source = s3NotificationSource.create(s3NotificationSource.configSchema.parse(config), context(lines)) as S3NotificationSource;
  cleanups.push(() => source.stop());
  return source;
}

async function startSource(config: S3NotificationConfigInput, sink = new RecordingSink(), lines: LogLine[] = []) {
  const source = create(config, lines);
  sink.source = source;
  await source.start(sink);
  return { source, sink };
}

/** An S3 object key as S3 writes it in notifications: URL-encoded, spaces as "+", slashes kept. */
function s3EncodeKey(key: string): string {
  return encodeURIComponent(key).replace(/%2F/g, "/").replace(/%20/g, "+");
}

interface RecordSpec {
  bucket?: string;
  /** As it appears in the notification (already encoded). */
  key: string;
  eventName?: string;
  size?: number;
  eTag?: string;
  sequencer?: string;
  versionId?: string;
}

function s3Record(r: RecordSpec): object {
  const object: Record<string, unknown> = { key: r.key, sequencer: r.sequencer ?? "0055AED6DCD90281E5" };
  if (r.size !== undefined) object.size = r.size;
  if (r.eTag !== undefined) object.eTag = r.eTag;
  if (r.versionId !== undefined) object.versionId = r.versionId;
  return {
    eventVersion: "2.1",
    eventSource: "aws:s3",
    awsRegion: "us-east-1",
    eventTime: "2026-11-22T10:00:00.123Z",
    eventName: r.eventName ?? "ObjectCreated:Put",
    userIdentity: { principalId: "AWS:AIDAJDPLRKLG7UEXAMPLE" },
    requestParameters: { sourceIPAddress: "203.0.113.7" },
    responseElements: { "x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD" },
    s3: {
      s3SchemaVersion: "1.0",
      configurationId: "audit",
      bucket: { name: r.bucket ?? "audit-bucket", ownerIdentity: { principalId: "A3NL1KOZZKExample" }, arn: `arn:aws:s3:::${r.bucket ?? "audit-bucket"}` },
      object,
    },
  };
}

const notification = (...records: RecordSpec[]): string => JSON.stringify({ Records: records.map(s3Record) });

async function send(queueUrl: string, bodies: string[]): Promise<void> {
  for (let i = 0; i < bodies.length; i += 10) {
    const entries = bodies.slice(i, i + 10).map((body, j) => ({ Id: String(j), MessageBody: body }));
    const out = await admin.send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: entries }));
    if ((out.Failed ?? []).length > 0) throw new Error(`SendMessageBatch failed: ${JSON.stringify(out.Failed)}`);
  }
}

/** Messages waiting to be received, and received but neither deleted nor visible again. */
async function counts(queueUrl: string): Promise<{ visible: number; inFlight: number }> {
  const { Attributes: a = {} } = await admin.send(
    new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"] }),
  );
  return { visible: Number(a.ApproximateNumberOfMessages), inFlight: Number(a.ApproximateNumberOfMessagesNotVisible) };
}

async function waitForEmptyQueue(queueUrl: string): Promise<void> {
  await waitFor("the queue to be empty", async () => {
    const c = await counts(queueUrl);
    return c.visible === 0 && c.inFlight === 0;
  });
}

/** Checks for `ms` that `check` holds throughout (for showing that something does not happen). */
async function holdsFor(ms: number, what: string, check: () => Promise<boolean>): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (!(await check())) throw new Error(`no longer true: ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

// ---------------------------------------------------------------------------------------
// Events

describe("events", () => {
  it("records one event per S3 record, with bucket, decoded key, size, etag and event name, and deletes each message", async () => {
    const queueUrl = await createQueue();
    await send(queueUrl, [
      notification({ key: "reports/q1.csv", size: 1024, eTag: "d41d8cd98f00b204e9800998ecf8427e", sequencer: "0A1" }),
      notification(
        { key: "a+b%20c", size: 5, eTag: "e1", sequencer: "0B1" },
        { key: s3EncodeKey("café/über 100%.txt"), size: 7, eTag: "e2", sequencer: "0B2", versionId: "v-2" },
        { key: "a%2Bb", size: 9, eTag: "e3", sequencer: "0B3" },
      ),
      notification({ key: "reports/q1.csv", eventName: "ObjectRemoved:Delete", sequencer: "0A2" }),
    ]);
    const { sink } = await startSource(baseConfig(queueUrl));
    await waitFor("5 events", () => sink.events.length >= 5);
    await waitForEmptyQueue(queueUrl);

    const bySubject = new Map(sink.events.map((e, i) => [`${e.kind} ${e.subject}`, { event: e, payload: sink.payloads()[i]! }]));
    expect(sink.events).toHaveLength(5);
    expect([...bySubject.keys()].sort()).toEqual(
      [
        "object_created s3://audit-bucket/reports/q1.csv",
        "object_created s3://audit-bucket/a b c",
        "object_created s3://audit-bucket/café/über 100%.txt",
        "object_created s3://audit-bucket/a+b",
        "object_removed s3://audit-bucket/reports/q1.csv",
      ].sort(),
    );
    const created = bySubject.get("object_created s3://audit-bucket/reports/q1.csv")!;
    expect(created.payload).toEqual({
      event_name: "ObjectCreated:Put",
      bucket: "audit-bucket",
      key: "reports/q1.csv",
      size: 1024,
      etag: "d41d8cd98f00b204e9800998ecf8427e",
      sequencer: "0A1",
      event_time: "2026-11-22T10:00:00.123Z",
      region: "us-east-1",
      principal_id: "AWS:AIDAJDPLRKLG7UEXAMPLE",
      source_ip: "203.0.113.7",
      request_id: "C3D13FE58DE4C810",
      configuration_id: "audit",
    });
    expect(created.event).toMatchObject({ occurredAt: "2026-11-22T10:00:00.123Z", actor: "AWS:AIDAJDPLRKLG7UEXAMPLE", payloadType: "application/json" });
    expect(bySubject.get("object_created s3://audit-bucket/café/über 100%.txt")!.payload).toMatchObject({ key: "café/über 100%.txt", size: 7, etag: "e2", version_id: "v-2" });
    const removed = bySubject.get("object_removed s3://audit-bucket/reports/q1.csv")!.payload;
    expect(removed).toMatchObject({ event_name: "ObjectRemoved:Delete", key: "reports/q1.csv" });
    expect(removed).not.toHaveProperty("size");
    expect(removed).not.toHaveProperty("etag");
    // One position per event, from content.
    for (const e of sink.events) expect(e.position).toMatch(POSITION);
    expect(new Set(sink.events.map((e) => e.position)).size).toBe(5);
    expect(sink.gaps).toEqual([]);
  });

  it("records S3's s3:TestEvent (sent when notifications are configured) as s3.test_event", async () => {
    const queueUrl = await createQueue();
    const test = { Service: "Amazon S3", Event: "s3:TestEvent", Time: "2026-11-22T09:00:00.000Z", Bucket: "audit-bucket", RequestId: "5582815E1AEA5ADF", HostId: "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE" };
    await send(queueUrl, [JSON.stringify(test)]);
    const { sink } = await startSource(baseConfig(queueUrl));
    await waitFor("the test event", () => sink.events.length === 1);
    expect(sink.events[0]).toMatchObject({ kind: TEST_EVENT_KIND, subject: "s3://audit-bucket", occurredAt: "2026-11-22T09:00:00.000Z" });
    expect(sink.events[0]!.position).toMatch(/^s3n1:test:[0-9a-f]{32}$/);
    expect(sink.payloads()[0]).toEqual({ event: "s3:TestEvent", bucket: "audit-bucket", time: "2026-11-22T09:00:00.000Z", request_id: "5582815E1AEA5ADF", service: "Amazon S3" });
    await waitForEmptyQueue(queueUrl);
  });

  it("unwraps SNS envelopes when sns_envelope is set, and reports a raw one then", async () => {
    const queueUrl = await createQueue();
    const envelope = (message: string) =>
      JSON.stringify({ Type: "Notification", MessageId: unique("sns"), TopicArn: "arn:aws:sns:us-east-1:000000000000:s3-events", Subject: "Amazon S3 Notification", Message: message, Timestamp: "2026-11-22T10:00:01.000Z" });
    await send(queueUrl, [envelope(notification({ key: "via/sns.txt", size: 3, eTag: "e9" })), notification({ key: "raw.txt" })]);
    const { sink } = await startSource(baseConfig(queueUrl, { sns_envelope: true }));
    await waitFor("2 events", () => sink.events.length === 2);
    const kinds = sink.events.map((e) => `${e.kind} ${e.subject ?? ""}`).sort();
    expect(kinds[0]).toBe("object_created s3://audit-bucket/via/sns.txt");
    expect(kinds[1]).toMatch(/^s3\.malformed_notification sqs:\/\//);
    const malformed = sink.payloads().find((p) => "reason" in p)!;
    expect(malformed.reason).toMatch(/not an SNS notification.*sns_envelope is true/);
    await waitForEmptyQueue(queueUrl);
  });

  it("decodes keys as S3 encodes them and names kinds after the event family", () => {
    expect(decodeObjectKey("a+b%20c")).toBe("a b c");
    expect(decodeObjectKey("a%2Bb")).toBe("a+b");
    expect(decodeObjectKey(s3EncodeKey("x/ü y.txt"))).toBe("x/ü y.txt");
    expect(decodeObjectKey("100%")).toBeUndefined();
    expect(kindOf("ObjectCreated:CompleteMultipartUpload")).toBe("object_created");
    expect(kindOf("s3:ObjectRemoved:DeleteMarkerCreated")).toBe("object_removed");
    expect(kindOf("ObjectRestore:Completed")).toBe("object_restore");
    expect(kindOf("LifecycleExpiration:Delete")).toBe("lifecycle_expiration");
    expect(kindOf("ReducedRedundancyLostObject")).toBe("reduced_redundancy_lost_object");
    expect(kindOf("bad name")).toBeUndefined();
    const long = subjectOf("b", "k".repeat(2000));
    expect(long).toHaveLength(1024);
    expect(long).toMatch(/#sha256=[0-9a-f]{64}$/);
  });
});

// ---------------------------------------------------------------------------------------
// Acknowledgement, visibility, redelivery

describe("in-flight bookkeeping", () => {
  const event = (position: string): SourceEvent => ({ kind: "object_created", position });
  const message = (id: string) => ({ messageId: id, receiptHandle: `${id}#r`, visibleFrom: 0 });

  it("frees a message once all its events are acknowledged, and hands a repeated event over once", () => {
    const tracker = new InFlightMessages();
    const a = tracker.hold(message("a"), [event("p1"), event("p2")]);
    const b = tracker.hold(message("b"), [event("p3")]);
    // "c" repeats p2 (S3 sent it twice) and adds p4: only p4 is handed over.
    const c = tracker.hold(message("c"), [event("p2"), event("p4")]);
    expect([a, b, c].map((h) => h.fresh.map((e) => e.position))).toEqual([["p1", "p2"], ["p3"], ["p4"]]);
    expect(tracker.acknowledge("p1")).toEqual([]);
    expect(tracker.acknowledge("p3")!.map((m) => m.messageId)).toEqual(["a", "b"]); // p2 came before p3
    expect(tracker.isPending("p2")).toBe(false);
    expect(tracker.acknowledge("p4")!.map((m) => m.messageId)).toEqual(["c"]);
    expect(tracker.acknowledge("p4")).toBeUndefined(); // not pending any more
    expect(tracker.size).toBe(3); // messages stay until released (deleted)
    for (const m of tracker.all()) tracker.release(m);
    expect(tracker.size).toBe(0);
  });
});

/**
 * Puts `fake` in front of the source's SQS client: it answers the commands it wants to
 * (returning undefined passes the command on to ElasticMQ).
 */
function intercept(source: S3NotificationSource, fake: (command: object, options?: { abortSignal?: AbortSignal }) => Promise<unknown> | undefined): void {
  const client = (source as unknown as { client: SQSClient }).client;
  const send = client.send.bind(client) as (command: object, options?: object) => Promise<unknown>;
  (client as unknown as { send: typeof send }).send = (command, options) => fake(command, options as { abortSignal?: AbortSignal }) ?? send(command, options);
}

const accessDenied = () =>
  Object.assign(new Error("User: arn:aws:iam::000000000000:user/agent is not authorized to perform: sqs:deletemessage on resource: arn:aws:sqs:us-east-1:000000000000:q"), {
    name: "AccessDenied",
  });

describe("delivery", () => {
  it("records the good records of a notification one by one, and each bad record as its own malformed entry", async () => {
    const queueUrl = await createQueue();
    const bad = { eventName: "ObjectCreated:Put", s3: { bucket: { name: "b" }, object: {} } };
    const body = JSON.stringify({ Records: [s3Record({ key: "good-1", sequencer: "41" }), bad, s3Record({ key: "good-2", sequencer: "42" })] });
    await send(queueUrl, [body]);
    const lines: LogLine[] = [];
    const { sink } = await startSource(baseConfig(queueUrl), new RecordingSink(), lines);
    await waitFor("3 events", () => sink.events.length >= 3);
    await waitForEmptyQueue(queueUrl);
    expect(sink.events.map((e) => e.kind)).toEqual(["object_created", "object_created", MALFORMED_KIND]);
    expect(sink.events.slice(0, 2).map((e) => e.subject)).toEqual(["s3://audit-bucket/good-1", "s3://audit-bucket/good-2"]);
    expect(sink.events[0]!.position).toMatch(POSITION);
    const p = sink.payloads()[2]!;
    expect(p.reason).toBe("Records[1]: s3.object.key is missing");
    expect(p.record_index).toBe(1);
    expect(JSON.parse(p.body as string)).toEqual(bad);
    expect(sink.events[2]!.position).toBe(`s3n1:malformed:${p.message_id as string}:1`);
    expect(lines.filter((l) => l.level === "warn" && l.msg.includes("a record is not an S3 event record"))).toHaveLength(1);
  });

  it("a delete refused for lack of sqs:DeleteMessage: logged as an error, the source fails naming the permission, and finished messages do not hold max_in_flight", async () => {
    const queueUrl = await createQueue();
    const lines: LogLine[] = [];
    const sink = new RecordingSink();
    // One message in flight at most: before, a message that could not be deleted blocked every receive for good.
    const source = create(baseConfig(queueUrl, { visibility_timeout_s: 3, wait_time_s: 1, max_messages: 1, max_in_flight: 1 }), lines);
    sink.source = source;
    await source.start(sink);
    let deletes = 0;
    intercept(source, (command) => {
      if (!(command instanceof DeleteMessageBatchCommand)) return undefined;
      deletes++;
      return Promise.reject(accessDenied());
    });
    await send(queueUrl, [notification({ key: "d1", sequencer: "51" }), notification({ key: "d2", sequencer: "52" })]);
    await waitFor("the source to fail", () => sink.failures.length > 0, 15_000);
    expect(sink.failures).toHaveLength(1);
    expect(sink.failures[0]).toContain("sqs:DeleteMessage");
    expect(sink.failures[0]).toContain("AccessDenied");
    expect(deletes).toBeGreaterThanOrEqual(3);
    expect(lines.some((l) => l.level === "error" && l.msg.includes("lack sqs:DeleteMessage"))).toBe(true);
    // Let go, not held for good: the second message is received even with max_in_flight 1.
    await waitFor("both records", () => new Set(sink.events.map((e) => e.subject)).size === 2, 15_000);
    // What was let go comes back (nothing deleted it) with the same positions: the ledger keeps one.
    const bySubject = new Map<string, Set<string>>();
    for (const e of sink.events) bySubject.set(e.subject!, (bySubject.get(e.subject!) ?? new Set()).add(e.position));
    for (const positions of bySubject.values()) expect(positions.size).toBe(1);
  });

  it("a heartbeat call that never answers is cut at its deadline: stop() returns at once and hands the message back", async () => {
    const queueUrl = await createQueue();
    await send(queueUrl, [notification({ key: "hung" })]);
    const sink = new RecordingSink();
    sink.mode = "manual"; // held: the heartbeat keeps extending it
    const { source } = await startSource(baseConfig(queueUrl, { visibility_timeout_s: 3, wait_time_s: 1 }), sink);
    let hung = 0;
    let cut = 0;
    intercept(source, (command, options) => {
      // Extensions hang (answering only to an abort); handing back (visibility 0) goes through.
      if (!(command instanceof ChangeMessageVisibilityBatchCommand) || command.input.Entries?.[0]?.VisibilityTimeout === 0) return undefined;
      hung++;
      return new Promise((_, reject) => {
        options?.abortSignal?.addEventListener("abort", () => {
          cut++;
          reject(Object.assign(new Error("Request aborted"), { name: "AbortError" }));
        });
      });
    });
    await waitFor("the event", () => sink.events.length === 1);
    await waitFor("a heartbeat hung", () => hung > 0, 5_000);
    await waitFor("cut at its deadline (half the 1 s heartbeat)", () => cut > 0, 2_000);
    const t0 = performance.now();
    await source.stop();
    // wait_time_s (1) + at most one heartbeat deadline (0.5 s), with room for a slow machine.
    expect(performance.now() - t0).toBeLessThan(3_000);
    await waitFor("handed back", async () => (await counts(queueUrl)).visible === 1);
  });

  it("deletes a message only when every event it carries is acknowledged", async () => {
    const queueUrl = await createQueue();
    await send(queueUrl, [notification({ key: "one", sequencer: "01" }), notification({ key: "two-a", sequencer: "02" }, { key: "two-b", sequencer: "03" })]);
    const sink = new RecordingSink();
    sink.mode = "manual";
    const { source } = await startSource(baseConfig(queueUrl), sink);
    await waitFor("3 events", () => sink.events.length === 3);
    expect(await counts(queueUrl)).toEqual({ visible: 0, inFlight: 2 });

    const positions = sink.events.map((e) => e.position);
    const subjects = sink.events.map((e) => e.subject);
    const firstOfTwo = subjects.indexOf("s3://audit-bucket/two-a");
    // Acknowledging up to the first record of the two-record message finishes only "one" (when it came first).
    await source.acknowledge(positions[firstOfTwo]!);
    const expectedLeft = subjects.indexOf("s3://audit-bucket/one") < firstOfTwo ? 1 : 2;
    await waitFor(`${expectedLeft} message(s) left`, async () => (await counts(queueUrl)).inFlight === expectedLeft);
    await source.acknowledge(positions[2]!);
    await waitForEmptyQueue(queueUrl);
  });

  it("keeps extending a held message's visibility: a second consumer never gets it, even past the timeout", async () => {
    const queueUrl = await createQueue();
    await send(queueUrl, [notification({ key: "held" })]);
    const sink = new RecordingSink();
    sink.mode = "manual";
    const { source } = await startSource(baseConfig(queueUrl, { visibility_timeout_s: 3 }), sink);
    await waitFor("the event", () => sink.events.length === 1);
    // Another consumer long-polls for 3 × the visibility timeout.
    const other = new SQSClient({ endpoint: sqs.endpoint, region: sqs.region, credentials: { accessKeyId: sqs.accessKeyId, secretAccessKey: sqs.secretAccessKey } });
    cleanups.push(() => other.destroy());
    const until = Date.now() + 9_000;
    while (Date.now() < until) {
      const got = await other.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, WaitTimeSeconds: 1, VisibilityTimeout: 0 }));
      expect(got.Messages ?? []).toEqual([]);
    }
    expect(sink.events).toHaveLength(1); // and the source did not get it twice either
    await source.acknowledge(sink.events[0]!.position);
    await waitForEmptyQueue(queueUrl);
  });

  it("redelivers what was never acknowledged after a restart, with the same positions", async () => {
    const queueUrl = await createQueue();
    await send(queueUrl, [notification({ key: "r1", sequencer: "11" }), notification({ key: "r2", sequencer: "12" }, { key: "r3", sequencer: "13" })]);
    const first = new RecordingSink();
    first.mode = "manual";
    const { source } = await startSource(baseConfig(queueUrl, { visibility_timeout_s: 60 }), first);
    await waitFor("3 events", () => first.events.length === 3);
    await source.stop(); // hands the messages back at once (visibility 0) instead of after 60 s

    const { sink: second } = await startSource(baseConfig(queueUrl, { visibility_timeout_s: 60 }));
    await waitFor("3 events again", () => second.events.length === 3);
    const key = (e: SourceEvent) => `${e.subject} ${e.position}`;
    expect(second.events.map(key).sort()).toEqual(first.events.map(key).sort());
    await waitForEmptyQueue(queueUrl);
  });

  it("gives an S3 duplicate (the same notification in two messages) one position, and deletes both messages", async () => {
    const queueUrl = await createQueue();
    const body = notification({ key: "twice", sequencer: "21", size: 1, eTag: "x" });
    await send(queueUrl, [body, body, notification({ key: "after", sequencer: "22" })]);
    const { sink } = await startSource(baseConfig(queueUrl));
    await waitFor("the later notification", () => sink.events.some((e) => e.subject === "s3://audit-bucket/after"));
    await waitForEmptyQueue(queueUrl);
    const twice = sink.events.filter((e) => e.subject === "s3://audit-bucket/twice");
    expect(twice.length).toBeGreaterThanOrEqual(1); // two when they came in separate receives: the ledger keeps one
    expect(new Set(twice.map((e) => e.position)).size).toBe(1);
  });

  it("records malformed messages once as s3.malformed_notification, with the body, and deletes them", async () => {
    const queueUrl = await createQueue();
    const sns = JSON.stringify({ Type: "Notification", TopicArn: "arn:aws:sns:us-east-1:000000000000:t", Message: notification({ key: "k" }) });
    const bodies = ["not json at all", JSON.stringify({ hello: "world" }), JSON.stringify({ Records: [] }), JSON.stringify({ Records: [{ eventName: "ObjectCreated:Put", s3: { bucket: { name: "b" }, object: {} } }] }), sns];
    await send(queueUrl, bodies);
    const lines: LogLine[] = [];
    const { sink } = await startSource(baseConfig(queueUrl), new RecordingSink(), lines);
    await waitFor("5 events", () => sink.events.length >= 5);
    await waitForEmptyQueue(queueUrl);
    expect(sink.events.every((e) => e.kind === MALFORMED_KIND)).toBe(true);
    const byBody = new Map(sink.payloads().map((p) => [p.body, p]));
    expect(byBody.get("not json at all")!.reason).toBe("the body is not JSON");
    expect(byBody.get(bodies[1])!.reason).toMatch(/no Records field/);
    expect(byBody.get(bodies[2])!.reason).toMatch(/Records is not a non-empty array/);
    expect(byBody.get(bodies[3])!.reason).toBe("Records[0]: s3.object.key is missing");
    expect(byBody.get(sns)!.reason).toMatch(/SNS envelope.*sns_envelope: true/);
    for (const [i, e] of sink.events.entries()) {
      const p = sink.payloads()[i]!;
      expect(e.position).toBe(`s3n1:malformed:${p.message_id as string}`);
      expect(p.body_sha256).toMatch(/^[0-9a-f]{64}$/);
    }
    expect(lines.filter((l) => l.msg.includes("not an S3 event notification"))).toHaveLength(5);
    // A wrong sns_envelope setting spoils every message: logged as an error, the rest as warnings.
    const snsId = byBody.get(sns)!.message_id;
    for (const l of lines.filter((l) => l.msg.includes("not an S3 event notification"))) {
      expect(l.level).toBe((l.obj as { message_id: string }).message_id === snsId ? "error" : "warn");
    }
    // Not retried: nothing comes back after the visibility timeout.
    await holdsFor(4_000, "no further events", async () => sink.events.length === 5);
  });

  it("while paused, receives nothing, and keeps what it holds invisible", async () => {
    const queueUrl = await createQueue();
    await send(queueUrl, [notification({ key: "before-pause" })]);
    const sink = new RecordingSink();
    sink.mode = "manual";
    const { source } = await startSource(baseConfig(queueUrl, { visibility_timeout_s: 3, wait_time_s: 1 }), sink);
    // As the agent does when its outbox is full: pause from inside emit.
    sink.duringEmit = () => source.pause();
    await waitFor("the first event", () => sink.events.length === 1);
    await send(queueUrl, [notification({ key: "during-pause-1", sequencer: "31" }), notification({ key: "during-pause-2", sequencer: "32" })]);
    // Longer than the visibility timeout and a long poll together.
    await holdsFor(5_000, "2 messages waiting, 1 held", async () => {
      const c = await counts(queueUrl);
      return c.visible === 2 && c.inFlight === 1;
    });
    expect(sink.events).toHaveLength(1);

    sink.duringEmit = undefined;
    sink.mode = "ack";
    await source.acknowledge(sink.events[0]!.position);
    source.resume();
    await waitFor("3 events", () => sink.events.length === 3);
    await waitForEmptyQueue(queueUrl);
  });
});

// ---------------------------------------------------------------------------------------
// Crash

describe("kill -9", () => {
  const runChild = (config: S3NotificationConfigInput, outFile: string) => startCrashChild("s3_notification", config, tempDir(), outFile, "ack", cleanups);
  const readLines = (file: string) => readCrashLines<{ position: string; subject: string }>(file);

  it("killed halfway and restarted: every record recorded, each position always with the same object", async () => {
    const queueUrl = await createQueue();
    const N = 600;
    await send(
      queueUrl,
      Array.from({ length: N }, (_, i) => notification({ key: `crash/${i}`, sequencer: i.toString(16).padStart(8, "0"), size: i, eTag: `e${i}` })),
    );
    const outFile = join(tempDir(), "events.jsonl");
    const config = baseConfig(queueUrl, { visibility_timeout_s: 3, wait_time_s: 1 });
    let child = await runChild(config, outFile);
    await waitFor("some events before the kill", () => readLines(outFile).length >= 20);
    const killed = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await killed;
    expect(new Set(readLines(outFile).map((l) => l.position)).size).toBeLessThan(N);

    // What the killed child held comes back after its visibility timeout (3 s).
    child = await runChild(config, outFile);
    await waitFor(`${N} distinct positions`, () => new Set(readLines(outFile).map((l) => l.position)).size >= N, 60_000);
    await waitForEmptyQueue(queueUrl);
    const stopped = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await stopped;
    const byPosition = new Map<string, string>();
    for (const l of readLines(outFile)) {
      const seen = byPosition.get(l.position);
      if (seen === undefined) byPosition.set(l.position, l.subject);
      else expect(seen).toBe(l.subject); // a repeat carries the position of the first delivery
    }
    expect(byPosition.size).toBe(N);
    expect([...byPosition.values()].sort()).toEqual(Array.from({ length: N }, (_, i) => `s3://audit-bucket/crash/${i}`).sort());
  });
});

// ---------------------------------------------------------------------------------------
// Start failures and configuration

describe("start failures", () => {
  it("names a queue URL that does not exist", async () => {
    const url = `${sqs.endpoint}/000000000000/${unique("missing")}`;
    const source = create(baseConfig(url));
    await expect(source.start(new RecordingSink())).rejects.toThrow(`s3_notification source "s3-test": queue ${url} does not exist (the SQS endpoint ${sqs.endpoint})`);
  });

  it("names a queue name that does not exist", async () => {
    const name = unique("missing");
    const { queue_url: _, ...rest } = baseConfig("x");
    const source = create({ ...rest, queue_name: name });
    await expect(source.start(new RecordingSink())).rejects.toThrow(`queue "${name}" does not exist`);
  });

  it("names an endpoint it cannot reach", async () => {
    const endpoint = `http://127.0.0.1:${await freePort()}`;
    const source = create({ ...baseConfig(`${endpoint}/000000000000/q`), endpoint });
    await expect(source.start(new RecordingSink())).rejects.toThrow(`cannot reach the SQS endpoint ${endpoint}: connect ECONNREFUSED`);
  });

  it("names a secret variable that is not set", async () => {
    const queueUrl = await createQueue();
    const source = create(baseConfig(queueUrl, { secret_access_key_env: "NO_SUCH_VARIABLE_FOR_S3_TEST" }));
    await expect(source.start(new RecordingSink())).rejects.toThrow("secret_access_key_env: the environment variable NO_SUCH_VARIABLE_FOR_S3_TEST is not set");
  });

  it("finds a queue by name and reads from it", async () => {
    const queueUrl = await createQueue();
    await send(queueUrl, [notification({ key: "by-name" })]);
    const { queue_url: _, ...rest } = baseConfig(queueUrl);
    const { sink } = await startSource({ ...rest, queue_name: queueUrl.split("/").pop()! });
    await waitFor("the event", () => sink.events.length === 1);
    expect(sink.events[0]!.subject).toBe("s3://audit-bucket/by-name");
  });
});

describe("configuration", () => {
  const schema = s3NotificationSource.configSchema;
  const ok: S3NotificationConfigInput = { queue_url: "https://sqs.eu-west-1.amazonaws.com/123456789012/audit" };

  function problems(input: unknown): string[] {
    const r = schema.safeParse(input);
    if (r.success) return [];
    return r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
  }

  it("fills in the defaults", () => {
    expect(schema.parse(ok)).toMatchObject({ wait_time_s: 20, visibility_timeout_s: 60, max_messages: 10, max_in_flight: 100, sns_envelope: false });
    expect(s3NotificationSource.type).toBe("s3_notification");
  });

  it("names the field in every error", () => {
    expect(problems({})).toEqual(["queue_url: give queue_url or queue_name (exactly one)"]);
    expect(problems({ ...ok, queue_name: "audit" })).toEqual(["queue_url: give queue_url or queue_name (exactly one)"]);
    expect(problems({ queue_url: "sqs://x" })[0]).toMatch(/^queue_url: must be an https:\/\/ or http:\/\/ URL/);
    expect(problems({ queue_name: "bad name!" })[0]).toMatch(/^queue_name: must be an SQS queue name/);
    expect(problems({ ...ok, wait_time_s: 21 })).toEqual(["wait_time_s: at most 20 (SQS's limit)"]);
    expect(problems({ ...ok, max_messages: 11 })).toEqual(["max_messages: at most 10 (SQS's limit)"]);
    expect(problems({ ...ok, visibility_timeout_s: 1 })).toEqual(["visibility_timeout_s: at least 3"]);
    expect(problems({ ...ok, visibility_timeout_s: 50_000 })[0]).toMatch(/^visibility_timeout_s: at most 43200/);
    expect(problems({ ...ok, access_key_id: "AKIA" })).toEqual(["secret_access_key_env: access_key_id needs secret_access_key_env (the variable holding the secret)"]);
    expect(problems({ ...ok, secret_access_key_env: "S" })).toEqual(["secret_access_key_env: is used only with access_key_id"]);
    expect(problems({ ...ok, max_messages: 10, max_in_flight: 5 })).toEqual(["max_in_flight: must be at least max_messages (10)"]);
    expect(problems({ ...ok, region: "EU West" })[0]).toMatch(/^region: /);
    expect(problems({ ...ok, queue: "x" })[0]).toMatch(/queue/);
  });
});
