// One Kafka message as a SourceEvent: its position (topic/partition/offset), subject,
// occurred_at (the message timestamp) and payload (a JSON envelope or the bare value).
// See docs/sources/kafka-consumer.md, "Events" and "Positions".
import { createHash } from "node:crypto";
import type { SourceEvent, SourcePosition } from "../source.js";
import { isJsonType, jsonDepth } from "../json-payload.js";

/** The ledger's longest subject (server/ledger/limits.ts). */
const MAX_SUBJECT_CHARS = 1024;
/**
 * Deepest value embedded as JSON: the ledger refuses JSON nested deeper than 64 levels
 * by default, and the envelope adds one. A deeper value is kept as text.
 */
const MAX_JSON_DEPTH = 60;
/**
 * Longest topic written as is in a position. The idempotency key (ZID/source/position)
 * may hold 256 characters: 12 + 1 + a 64-character source name + 1 leaves 178 for the
 * position, of which "/<partition>/<offset>" takes at most 31.
 */
export const MAX_TOPIC_IN_POSITION = 140;
const OCTET_STREAM = "application/octet-stream";
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** The parts of a kafkajs message the event is made from. */
export interface ReceivedMessage {
  topic: string;
  partition: number;
  offset: string;
  /** Milliseconds since the epoch, as kafkajs gives it (a string). */
  timestamp: string;
  key: Buffer | null;
  value: Buffer | null;
  headers?: Record<string, Buffer | string | (Buffer | string)[] | undefined>;
}

export interface EventShape {
  kind: string;
  payload: "envelope" | "value";
  valueType: string;
}

/** The topic as a position writes it: the name, or `sha256:<32 hex>` for a very long one. */
export function topicToken(topic: string): string {
  if (topic.length <= MAX_TOPIC_IN_POSITION) return topic;
  return `sha256:${createHash("sha256").update(topic, "utf8").digest("hex").slice(0, 32)}`;
}

/** `<topic>/<partition>/<offset>`: unique per message, the same on every redelivery. */
export function positionOf(topic: string, partition: number, offset: string): SourcePosition {
  return `${topicToken(topic)}/${partition}/${offset}`;
}

/** The partition (as `<topic token>/<partition>`) and offset a position names; undefined when it is not one. */
export function parsePosition(position: SourcePosition): { partitionKey: string; offset: bigint } | undefined {
  const m = /^(.+\/\d+)\/(\d+)$/.exec(position);
  return m ? { partitionKey: m[1]!, offset: BigInt(m[2]!) } : undefined;
}

export function partitionKeyOf(topic: string, partition: number): string {
  return `${topicToken(topic)}/${partition}`;
}

function utf8Text(bytes: Buffer): string | undefined {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return undefined;
  }
}

/** Printable text: no control characters, so the key can sit in a subject. */
function printable(text: string): boolean {
  return !/[\u0000-\u001f\u007f]/.test(text);
}

/** `<topic>/<partition>/<key>`, or `<topic>/<partition>/@<offset>` for a message without a text key. */
export function subjectOf(m: ReceivedMessage): string {
  const key = m.key && m.key.length > 0 ? utf8Text(m.key) : undefined;
  const last = key !== undefined && printable(key) ? key : `@${m.offset}`;
  const full = `${m.topic}/${m.partition}/${last}`;
  if (full.length <= MAX_SUBJECT_CHARS) return full;
  const suffix = `#sha256=${createHash("sha256").update(full, "utf8").digest("hex")}`;
  let head = full.slice(0, MAX_SUBJECT_CHARS - suffix.length);
  if (/[\uD800-\uDBFF]$/.test(head)) head = head.slice(0, -1); // no half surrogate pair at the cut
  return `${head}${suffix}`;
}

/** The message timestamp as RFC 3339, or undefined when the message has none (-1). */
export function occurredAtOf(m: ReceivedMessage): string | undefined {
  const ms = Number(m.timestamp);
  if (!Number.isFinite(ms) || ms < 0) return undefined;
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString();
}

/** The value as JSON the ledger accepts, or undefined. */
function parseJson(bytes: Buffer): { value: unknown } | undefined {
  const text = utf8Text(bytes);
  if (text === undefined) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return jsonDepth(value, MAX_JSON_DEPTH) <= MAX_JSON_DEPTH ? { value } : undefined;
  } catch {
    return undefined;
  }
}

/** Bytes as `{<name>: text}` when they are UTF-8, else `{<name>_base64: ...}`; null stays null. */
function bytesField(name: string, bytes: Buffer | string | null | undefined): Record<string, string | null> {
  if (bytes === null || bytes === undefined) return { [name]: null };
  if (typeof bytes === "string") return { [name]: bytes };
  const text = utf8Text(bytes);
  return text !== undefined ? { [name]: text } : { [`${name}_base64`]: bytes.toString("base64") };
}

function headerList(headers: ReceivedMessage["headers"]): Record<string, string | null>[] {
  const list: Record<string, string | null>[] = [];
  for (const [name, raw] of Object.entries(headers ?? {})) {
    for (const one of Array.isArray(raw) ? raw : [raw]) list.push({ name, ...bytesField("value", one) });
  }
  return list;
}

/** The JSON envelope (docs/sources/kafka-consumer.md, "Events"). */
export function envelopeOf(m: ReceivedMessage, valueType: string): Uint8Array {
  const body: Record<string, unknown> = {
    topic: m.topic,
    partition: m.partition,
    offset: m.offset,
    timestamp: occurredAtOf(m) ?? null,
    ...bytesField("key", m.key),
    headers: headerList(m.headers),
  };
  const json = m.value !== null && isJsonType(valueType) ? parseJson(m.value) : undefined;
  Object.assign(body, json ? { value_json: json.value } : bytesField("value", m.value));
  return Buffer.from(JSON.stringify(body), "utf8");
}

export function toSourceEvent(m: ReceivedMessage, shape: EventShape): SourceEvent {
  const event: SourceEvent = { kind: shape.kind, subject: subjectOf(m), position: positionOf(m.topic, m.partition, m.offset) };
  const occurredAt = occurredAtOf(m);
  if (occurredAt !== undefined) event.occurredAt = occurredAt;
  if (shape.payload === "envelope") {
    event.payload = envelopeOf(m, shape.valueType);
    event.payloadType = "application/json";
  } else if (m.value !== null && m.value.length > 0) {
    // A value declared JSON that is not JSON the ledger accepts is kept as bytes, not refused.
    event.payload = m.value;
    event.payloadType = isJsonType(shape.valueType) && !parseJson(m.value) ? OCTET_STREAM : shape.valueType;
  }
  return event;
}
