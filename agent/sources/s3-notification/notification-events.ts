// One SQS message body as ledger events: each S3 event record becomes one event, an
// `s3:TestEvent` (sent by S3 when a notification configuration is saved) becomes one
// `s3.test_event`, and anything else is "malformed", with the reason, for the source to
// record as `s3.malformed_notification`. Positions come from the notification's content,
// never from the SQS delivery, so a redelivery (new receipt handle) or a duplicate that
// S3 itself sends (a second SQS message) gets the position of the first; see docs/sources/s3-notification.md.
import { createHash } from "node:crypto";
import type { SourceEvent } from "../source.js";

/** The ledger's longest subject (server/ledger/limits.ts). */
export const MAX_SUBJECT_CHARS = 1024;
/** The ledger's longest actor. */
const MAX_ACTOR_CHARS = 256;
/** How much of a malformed body is kept in its entry (the digest covers all of it). */
export const MALFORMED_BODY_KEEP_CHARS = 64 * 1024;
export const POSITION_PREFIX = "s3n1";
export const TEST_EVENT_KIND = "s3.test_event";
export const MALFORMED_KIND = "s3.malformed_notification";

/** A record of a notification that also has good records: reported on its own. */
export interface BadRecord {
  index: number;
  reason: string;
  /** The record as JSON. */
  json: string;
}

/**
 * What a message body turned into. `bad`: records that are not S3 event records, in a
 * notification that has good ones too (the good ones are in `events`). `misconfigured`:
 * the body's envelope contradicts `sns_envelope`, so every message will be like this.
 */
export type ParsedBody = { ok: true; events: SourceEvent[]; bad: BadRecord[] } | { ok: false; reason: string; misconfigured?: true };

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);
const digestOf = (parts: unknown[]): string => createHash("sha256").update(JSON.stringify(parts)).digest("hex").slice(0, 32);
const encodeJson = (value: Json): Uint8Array => new TextEncoder().encode(JSON.stringify(value));

/** Reads a message body; `snsEnvelope`: the S3 event is in an SNS notification's `Message`. */
export function eventsOfBody(body: string, snsEnvelope: boolean): ParsedBody {
  let doc: unknown;
  try {
    doc = JSON.parse(body);
  } catch {
    return { ok: false, reason: "the body is not JSON" };
  }
  if (!isObject(doc)) return { ok: false, reason: "the body is not a JSON object" };
  const looksLikeSns = typeof doc.Type === "string" && typeof doc.TopicArn === "string";
  if (snsEnvelope) {
    if (doc.Type === "SubscriptionConfirmation") {
      return { ok: false, reason: "an SNS subscription confirmation: the SQS subscription to the topic was never confirmed (open its SubscribeURL)" };
    }
    if (doc.Type !== "Notification" || typeof doc.Message !== "string") {
      return { ok: false, reason: 'not an SNS notification (no Type "Notification" with a Message string), but sns_envelope is true', misconfigured: true };
    }
    try {
      doc = JSON.parse(doc.Message);
    } catch {
      return { ok: false, reason: "the SNS notification's Message is not JSON" };
    }
    if (!isObject(doc)) return { ok: false, reason: "the SNS notification's Message is not a JSON object" };
  } else if (looksLikeSns) {
    return { ok: false, reason: "an SNS envelope (Type and TopicArn): set sns_envelope: true, or turn on raw message delivery for the SQS subscription", misconfigured: true };
  }
  if (doc.Event === "s3:TestEvent") return { ok: true, events: [testEvent(doc)], bad: [] };
  if (doc.source === "aws.s3" && "detail-type" in doc) {
    return { ok: false, reason: "an EventBridge event; this source reads S3 event notifications sent to SQS directly (or through SNS)" };
  }
  if (!("Records" in doc)) return { ok: false, reason: "no Records field (not an S3 event notification)" };
  const records = doc.Records;
  if (!Array.isArray(records) || records.length === 0) return { ok: false, reason: "Records is not a non-empty array" };
  const events: SourceEvent[] = [];
  const bad: BadRecord[] = [];
  for (let i = 0; i < records.length; i++) {
    const made = recordEvent(records[i]);
    if (typeof made === "string") bad.push({ index: i, reason: `Records[${i}]: ${made}`, json: JSON.stringify(records[i]) ?? "null" });
    else events.push(made);
  }
  // No good record at all: the message as a whole is what is wrong (one entry, its body).
  if (events.length === 0) return { ok: false, reason: bad[0]!.reason };
  // Good records are recorded as if they came alone; each bad one gets its own entry.
  return { ok: true, events, bad };
}

/** The object key as S3 writes it in notifications: URL-encoded, spaces as "+". */
export function decodeObjectKey(encoded: string): string | undefined {
  try {
    return decodeURIComponent(encoded.replace(/\+/g, " "));
  } catch {
    return undefined;
  }
}

/** `s3://<bucket>/<key>`, or, beyond the ledger's limit, a cut one and a digest of the whole. */
export function subjectOf(bucket: string, key?: string): string {
  const full = key === undefined ? `s3://${bucket}` : `s3://${bucket}/${key}`;
  if (full.length <= MAX_SUBJECT_CHARS) return full;
  const suffix = `#sha256=${createHash("sha256").update(full, "utf8").digest("hex")}`;
  let head = full.slice(0, MAX_SUBJECT_CHARS - suffix.length);
  if (/[\uD800-\uDBFF]$/.test(head)) head = head.slice(0, -1); // no half surrogate pair at the cut
  return `${head}${suffix}`;
}

/** "ObjectCreated:Put" (or MinIO's "s3:ObjectCreated:Put") → "object_created". */
export function kindOf(eventName: string): string | undefined {
  const family = eventName.replace(/^s3:/, "").split(":")[0] ?? "";
  if (!/^[A-Za-z][A-Za-z0-9]{0,100}$/.test(family)) return undefined;
  return family.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase();
}

function validTime(value: unknown): string | undefined {
  return typeof value === "string" && Number.isFinite(Date.parse(value)) ? value : undefined;
}

/** The event of one record, or what is wrong with it. */
function recordEvent(record: unknown): SourceEvent | string {
  if (!isObject(record)) return "is not an object";
  const eventName = record.eventName;
  if (typeof eventName !== "string" || eventName === "") return "eventName is missing";
  const kind = kindOf(eventName);
  if (kind === undefined) return `eventName "${eventName.slice(0, 80)}" is not an S3 event name`;
  const s3 = record.s3;
  if (!isObject(s3)) return "s3 is missing";
  const bucket = isObject(s3.bucket) ? s3.bucket.name : undefined;
  if (typeof bucket !== "string" || bucket === "") return "s3.bucket.name is missing";
  const object = s3.object;
  if (!isObject(object)) return "s3.object is missing";
  const rawKey = object.key;
  if (typeof rawKey !== "string" || rawKey === "") return "s3.object.key is missing";
  const size = object.size;
  if (size !== undefined && (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0)) return "s3.object.size is not a whole number of bytes";
  for (const field of ["eTag", "versionId", "sequencer"] as const) {
    if (object[field] !== undefined && object[field] !== null && typeof object[field] !== "string") return `s3.object.${field} is not a string`;
  }
  const str = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);
  const versionId = str(object.versionId);
  const sequencer = str(object.sequencer);
  const eventTime = str(record.eventTime);
  const principal = isObject(record.userIdentity) ? str(record.userIdentity.principalId) : undefined;
  const requestId = isObject(record.responseElements) ? str(record.responseElements["x-amz-request-id"]) : undefined;
  const sourceIp = isObject(record.requestParameters) ? str(record.requestParameters.sourceIPAddress) : undefined;
  const key = decodeObjectKey(rawKey);

  const payload: Json = { event_name: eventName, bucket, key: key ?? rawKey };
  if (key === undefined) payload.key_not_decoded = true; // not valid URL encoding: kept as sent
  if (typeof size === "number") payload.size = size;
  if (str(object.eTag) !== undefined) payload.etag = object.eTag;
  if (versionId !== undefined) payload.version_id = versionId;
  if (sequencer !== undefined) payload.sequencer = sequencer;
  if (eventTime !== undefined) payload.event_time = eventTime;
  if (str(record.awsRegion) !== undefined) payload.region = record.awsRegion;
  if (principal !== undefined) payload.principal_id = principal;
  if (sourceIp !== undefined) payload.source_ip = sourceIp;
  if (requestId !== undefined) payload.request_id = requestId;
  if (str(s3.configurationId) !== undefined) payload.configuration_id = s3.configurationId;

  // What tells one S3 event from every other, and is the same in every copy of it:
  // the sequencer orders events per key; the request id and event time tell apart
  // events that carry no sequencer (S3 gives one to creations and deletions only).
  const identity = [bucket, rawKey, versionId ?? null, eventName, sequencer ?? null, requestId ?? null, eventTime ?? null];
  const event: SourceEvent = {
    kind,
    subject: subjectOf(bucket, key ?? rawKey),
    position: `${POSITION_PREFIX}:record:${digestOf(identity)}`,
    payloadType: "application/json",
    payload: encodeJson(payload),
  };
  const occurredAt = validTime(record.eventTime);
  if (occurredAt !== undefined) event.occurredAt = occurredAt;
  if (principal !== undefined) event.actor = principal.slice(0, MAX_ACTOR_CHARS);
  return event;
}

function testEvent(doc: Json): SourceEvent {
  const bucket = typeof doc.Bucket === "string" ? doc.Bucket : "";
  const payload: Json = { event: "s3:TestEvent", bucket };
  for (const [from, to] of [["Time", "time"], ["RequestId", "request_id"], ["Service", "service"]] as const) {
    if (typeof doc[from] === "string") payload[to] = doc[from];
  }
  const event: SourceEvent = {
    kind: TEST_EVENT_KIND,
    subject: subjectOf(bucket),
    position: `${POSITION_PREFIX}:test:${digestOf([bucket, doc.RequestId ?? null, doc.Time ?? null])}`,
    payloadType: "application/json",
    payload: encodeJson(payload),
  };
  const occurredAt = validTime(doc.Time);
  if (occurredAt !== undefined) event.occurredAt = occurredAt;
  return event;
}

/**
 * The entry for a message that is not an S3 notification: why, and the body itself (up
 * to MALFORMED_BODY_KEEP_CHARS, with the digest of all of it), so the evidence is in the
 * ledger before the message is deleted. With `recordIndex`, `body` is that one bad record
 * of a notification whose other records are recorded as events. Positioned by SQS
 * message id (and record index): a redelivery is the same entry.
 */
export function malformedEvent(queueUrl: string, messageId: string, body: string, reason: string, recordIndex?: number): SourceEvent {
  const payload: Json = {
    message_id: messageId,
    ...(recordIndex !== undefined ? { record_index: recordIndex } : {}),
    reason,
    body_bytes: Buffer.byteLength(body, "utf8"),
    body_sha256: createHash("sha256").update(body, "utf8").digest("hex"),
    body: body.length > MALFORMED_BODY_KEEP_CHARS ? body.slice(0, MALFORMED_BODY_KEEP_CHARS) : body,
  };
  if (body.length > MALFORMED_BODY_KEEP_CHARS) payload.body_truncated = true;
  const queueName = queueUrl.split("/").pop() ?? queueUrl;
  return {
    kind: MALFORMED_KIND,
    subject: `sqs://${queueName}/${messageId}`.slice(0, MAX_SUBJECT_CHARS),
    // A bad record among good ones: one entry per record (same id on every redelivery).
    position: `${POSITION_PREFIX}:malformed:${messageId}${recordIndex !== undefined ? `:${recordIndex}` : ""}`,
    payloadType: "application/json",
    payload: encodeJson(payload),
  };
}
