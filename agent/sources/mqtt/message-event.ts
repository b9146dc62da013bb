// One MQTT message as a SourceEvent: kind from the config, subject mqtt://<topic>, the
// message bytes as the payload, and a position built by the source (see docs/sources/mqtt.md).
import { createHash } from "node:crypto";
import type { SourceEvent } from "../source.js";
import { isJsonType, jsonDepth } from "../json-payload.js";

/** The ledger's longest subject (server/ledger/limits.ts). */
export const MAX_SUBJECT_CHARS = 1024;
/** The ledger's longest payload_type. */
const MAX_PAYLOAD_TYPE_CHARS = 128;
/** The ledger's default JSON nesting limit: deeper JSON is labelled octet-stream. */
const MAX_JSON_DEPTH = 64;
const OCTET_STREAM = "application/octet-stream";
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** The parts of a received PUBLISH the event is made from. */
export interface ReceivedMessage {
  topic: string;
  payload: Uint8Array;
  qos: number;
  /** 0 for QoS 0. */
  packetId: number;
  dup: boolean;
  retain: boolean;
  /** MQTT 5 content type, when the publisher set one. */
  contentType?: string;
}

/**
 * What identifies a message's content across redeliveries: SHA-256 over the topic and
 * the payload (length-prefixed, so no two pairs collide by concatenation). Properties
 * are left out: the broker rewrites some (message expiry) when it redelivers.
 */
export function fingerprintOf(topic: string, payload: Uint8Array): string {
  const t = Buffer.from(topic, "utf8");
  const len = Buffer.alloc(4);
  len.writeUInt32BE(t.length);
  return createHash("sha256").update(len).update(t).update(payload).digest("hex");
}

/** `mqtt1:<epoch>:<seq>:<packet id>:<first 16 hex of the fingerprint>`. */
export function positionOf(epoch: string, seq: number, packetId: number, fingerprint: string): string {
  return `mqtt1:${epoch}:${seq}:${packetId}:${fingerprint.slice(0, 16)}`;
}

/** `mqtt://<topic>`, or, beyond the ledger's limit, a cut topic and a digest of the whole. */
export function subjectOf(topic: string): string {
  const full = `mqtt://${topic}`;
  if (full.length <= MAX_SUBJECT_CHARS) return full;
  const digest = createHash("sha256").update(topic, "utf8").digest("hex");
  const suffix = `#sha256=${digest}`;
  let head = full.slice(0, MAX_SUBJECT_CHARS - suffix.length);
  // Do not leave half a surrogate pair at the cut.
  if (/[\uD800-\uDBFF]$/.test(head)) head = head.slice(0, -1);
  return `${head}${suffix}`;
}

function isAcceptableJson(payload: Uint8Array): boolean {
  try {
    return jsonDepth(JSON.parse(strictUtf8.decode(payload)), MAX_JSON_DEPTH) <= MAX_JSON_DEPTH;
  } catch {
    return false;
  }
}

/**
 * The payload_type: the MQTT 5 content type when the publisher set a usable one, else
 * the configured default. A JSON type on a payload that is not JSON the ledger accepts
 * becomes application/octet-stream: the ledger would refuse the event otherwise, and
 * the bytes are kept either way.
 */
export function payloadTypeOf(message: ReceivedMessage, fallback: string): string {
  const declared = message.contentType?.trim();
  const usable = declared !== undefined && declared !== "" && declared.length <= MAX_PAYLOAD_TYPE_CHARS && declared.isWellFormed();
  const type = usable ? declared : fallback;
  if (isJsonType(type) && !isAcceptableJson(message.payload)) return OCTET_STREAM;
  return type;
}

export function toSourceEvent(message: ReceivedMessage, position: string, kind: string, fallbackPayloadType: string): SourceEvent {
  const event: SourceEvent = { kind, subject: subjectOf(message.topic), position };
  // An empty message (e.g. one clearing a retained value) has no payload in the ledger.
  if (message.payload.length > 0) {
    event.payload = message.payload;
    event.payloadType = payloadTypeOf(message, fallbackPayloadType);
  }
  return event;
}
