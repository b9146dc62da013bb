// How Redis keys, events and stream entries become the ledger's fields: subject, kind,
// position and JSON payload. Keys are bytes: shown as UTF-8 when they are, else base64
// in the payload (and with U+FFFD in the subject).
import { isUtf8 } from "node:buffer";
import { createHash } from "node:crypto";
import type { SourceEvent } from "../source.js";

/** The ledger's longest subject (server/ledger/limits.ts). */
const SUBJECT_MAX = 1024;
const utf8 = new TextEncoder();

const sha256Hex = (data: string | Uint8Array) => createHash("sha256").update(data).digest("hex");

/** `redis://<db>/<key>`, cut with a digest of the key beyond the ledger's 1024 characters. */
export function subjectFor(db: number, key: Buffer | string): string {
  const text = typeof key === "string" ? key : key.toString("utf8");
  const whole = `redis://${db}/${text}`;
  if (whole.length <= SUBJECT_MAX) return whole;
  const tail = `…#sha256:${sha256Hex(typeof key === "string" ? key : key).slice(0, 32)}`;
  let cut = whole.slice(0, SUBJECT_MAX - tail.length);
  if (/[\ud800-\udbff]$/.test(cut)) cut = cut.slice(0, -1); // never split a surrogate pair
  return cut + tail;
}

/** `<prefix>.<event>`, with characters the ledger refuses in a kind replaced by `_`. */
export function kindFor(prefix: string, event: string): string {
  const clean = event.replace(/[^A-Za-z0-9._:/-]/g, "_").slice(0, 64) || "unknown";
  return `${prefix}.${clean}`;
}

/** The key as JSON fields: `key` when it is UTF-8, else `key_base64`. */
export function keyFields(key: Buffer): { key: string } | { key_base64: string } {
  return isUtf8(key) ? { key: key.toString("utf8") } : { key_base64: key.toString("base64") };
}

// --- stream entries ------------------------------------------------------------------

const PLAIN_STREAM = /^[\x21-\x7e]{1,100}$/;

/**
 * How a stream appears in positions: its key when short and printable (and not starting
 * with `#`), else `#` + 128 bits of its SHA-256 (the idempotency key holds 256 characters).
 */
export function streamTag(key: string): string {
  return PLAIN_STREAM.test(key) && !key.startsWith("#") ? key : `#${sha256Hex(key).slice(0, 32)}`;
}

/** `<stream tag>/<entry id>`: the same entry always gets the same position. */
export function streamPosition(key: string, id: string): string {
  return `${streamTag(key)}/${id}`;
}

/** The entry id's time, when it looks like one Redis generated (`*`): from 2000 to a day ahead. */
export function occurredAtOf(id: string, now = Date.now()): string | undefined {
  const ms = Number(id.split("-")[0]);
  if (!Number.isSafeInteger(ms) || ms < 946_684_800_000 || ms > now + 86_400_000) return undefined;
  return new Date(ms).toISOString();
}

export interface StreamEntryShape {
  stream: string;
  db: number;
  id: string;
  /** Field names and values, in order. */
  fields: Buffer[];
  kind: string;
  maxPayloadBytes: number;
}

/**
 * Payload: `{stream, id, fields: {name: value}}`; when a name repeats or a name or value
 * is not UTF-8, `fields_base64: [[name, value], ...]` instead; beyond maxPayloadBytes,
 * `fields_omitted: "too_large"` with the size and SHA-256 of the fields.
 */
export function streamEntryEvent(entry: StreamEntryShape): SourceEvent {
  const names = new Set<string>();
  let plain = entry.fields.length % 2 === 0;
  for (let i = 0; plain && i < entry.fields.length; i++) {
    const part = entry.fields[i]!;
    if (!isUtf8(part)) plain = false;
    else if (i % 2 === 0) {
      const name = part.toString("utf8");
      if (names.has(name)) plain = false;
      names.add(name);
    }
  }
  const body: Record<string, unknown> = { stream: entry.stream, id: entry.id };
  if (plain) {
    const fields: Record<string, string> = {};
    for (let i = 0; i + 1 < entry.fields.length; i += 2) {
      Object.defineProperty(fields, entry.fields[i]!.toString("utf8"), { value: entry.fields[i + 1]!.toString("utf8"), enumerable: true, writable: true, configurable: true });
    }
    body.fields = fields;
  } else {
    const list: string[][] = [];
    for (let i = 0; i < entry.fields.length; i += 2) {
      list.push([entry.fields[i]!.toString("base64"), (entry.fields[i + 1] ?? Buffer.alloc(0)).toString("base64")]);
    }
    body.fields_base64 = list;
  }
  let payload = utf8.encode(JSON.stringify(body));
  if (payload.length > entry.maxPayloadBytes) {
    const digest = createHash("sha256");
    let size = 0;
    for (const part of entry.fields) {
      digest.update(`${part.length}:`); // length-prefixed: the parts cannot be re-cut
      digest.update(part);
      size += part.length;
    }
    payload = utf8.encode(
      JSON.stringify({ stream: entry.stream, id: entry.id, fields_omitted: "too_large", field_count: Math.floor(entry.fields.length / 2), fields_bytes: size, fields_sha256: digest.digest("hex") }),
    );
  }
  const event: SourceEvent = {
    kind: entry.kind,
    subject: subjectFor(entry.db, entry.stream),
    position: streamPosition(entry.stream, entry.id),
    payloadType: "application/json",
    payload,
  };
  const at = occurredAtOf(entry.id);
  if (at !== undefined) event.occurredAt = at;
  return event;
}
