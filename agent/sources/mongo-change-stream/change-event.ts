// One change stream event as a SourceEvent: kind mongo.<operationType>, subject
// <db>.<coll>/<_id>, the change as Extended JSON, and a position derived from the
// event's resume token (see docs/sources/mongo-change-stream.md, "Events" and "Positions").
import { createHash } from "node:crypto";
import { BSON, type Document } from "mongodb";
import type { SourceEvent } from "../source.js";

/** The ledger's longest subject (server/ledger/limits.ts). */
const MAX_SUBJECT_CHARS = 1024;
/** The ledger's JSON nesting limit: deeper payloads are labelled octet-stream. */
const MAX_JSON_DEPTH = 64;
/** Fields of a change event copied into the payload, in this order, when present. */
const PAYLOAD_FIELDS = [
  "operationType",
  "ns",
  "to",
  "documentKey",
  "updateDescription",
  "fullDocument",
  "fullDocumentBeforeChange",
  "clusterTime",
  "wallTime",
  "txnNumber",
  "lsid",
] as const;

export type EjsonMode = "relaxed" | "canonical";

/** Where the source falls back to when an event carries no `ns` (mongo-java-server's do not). */
export interface WatchedNamespace {
  db?: string;
  coll?: string;
}

/** The resume token as text: `_data` (a hex string on MongoDB 4.2+), else its canonical EJSON. */
export function tokenText(token: unknown): string {
  const data = (token as { _data?: unknown } | null)?._data;
  return typeof data === "string" ? data : BSON.EJSON.stringify(token as Document, { relaxed: false });
}

/**
 * `mongo1:<clusterTime seconds>.<increment>:<32 hex of SHA-256 of the token>`. The token
 * identifies the event in the oplog and is the same on every redelivery; the hash keeps
 * the position short (tokens can carry a whole document key), the cluster time makes it
 * readable. A missing clusterTime reads 0.0.
 */
export function positionOf(token: unknown, clusterTime: unknown): string {
  const ts = clusterTime instanceof BSON.Timestamp ? `${clusterTime.t}.${clusterTime.i}` : "0.0";
  const digest = createHash("sha256").update(tokenText(token), "utf8").digest("hex").slice(0, 32);
  return `mongo1:${ts}:${digest}`;
}

function namespaceOf(change: Document, watched: WatchedNamespace): { db?: string; coll?: string } {
  const ns = change.ns as { db?: unknown; coll?: unknown } | undefined;
  const db = typeof ns?.db === "string" ? ns.db : watched.db;
  const coll = typeof ns?.coll === "string" ? ns.coll : ns === undefined ? watched.coll : undefined;
  return { ...(db !== undefined ? { db } : {}), ...(coll !== undefined ? { coll } : {}) };
}

/**
 * The document's _id: documentKey._id (sharded collections add the shard key to
 * documentKey; _id alone names the document), else the documentKey as it is
 * (mongo-java-server puts an update's operators there).
 */
function documentIdOf(change: Document): unknown {
  const key = change.documentKey as Document | null | undefined;
  if (key === null || typeof key !== "object") return undefined;
  return "_id" in key ? key._id : key;
}

/** `<db>.<coll>/<_id as relaxed EJSON>`, `<db>.<coll>` or `<db>`; cut with a digest beyond the ledger's limit. */
export function subjectOf(ns: { db?: string; coll?: string }, documentId: unknown): string {
  let subject = ns.db === undefined ? "?" : ns.coll === undefined ? ns.db : `${ns.db}.${ns.coll}`;
  if (documentId !== undefined) subject += `/${BSON.EJSON.stringify(documentId, { relaxed: true })}`;
  if (subject.length <= MAX_SUBJECT_CHARS) return subject;
  const suffix = `#sha256=${createHash("sha256").update(subject, "utf8").digest("hex")}`;
  let head = subject.slice(0, MAX_SUBJECT_CHARS - suffix.length);
  if (/[\uD800-\uDBFF]$/.test(head)) head = head.slice(0, -1); // no half surrogate pair at the cut
  return `${head}${suffix}`;
}

/**
 * `value` with every 64-bit integer beyond ±2^53 written as {"$numberLong": "..."}:
 * relaxed Extended JSON would turn it into a JSON number and lose its last digits.
 * Copies only the objects on the way to such a value.
 */
export function keepLongPrecision(value: unknown): unknown {
  if (value === null || typeof value !== "object") return value;
  const bsonType = (value as { _bsontype?: unknown })._bsontype;
  if (bsonType === "Long") {
    const long = value as BSON.Long;
    const safe = long.lessThanOrEqual(Number.MAX_SAFE_INTEGER) && long.greaterThanOrEqual(Number.MIN_SAFE_INTEGER);
    return safe ? value : { $numberLong: long.toString() };
  }
  if (bsonType !== undefined) return value; // ObjectId, Binary, Timestamp...: EJSON writes them whole
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    value.forEach((item, i) => {
      const kept = keepLongPrecision(item);
      if (kept !== item) (copy ??= [...value])[i] = kept;
    });
    return copy ?? value;
  }
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) return value; // Date and the like
  let copy: Document | undefined;
  for (const [key, item] of Object.entries(value)) {
    const kept = keepLongPrecision(item);
    if (kept !== item) (copy ??= { ...(value as Document) })[key] = kept;
  }
  return copy ?? value;
}

/** Whether JSON text nests deeper than `limit`, counted without parsing it. */
export function nestsDeeperThan(json: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > limit) return true;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return false;
}

function occurredAtOf(change: Document): string | undefined {
  if (change.wallTime instanceof Date && !Number.isNaN(change.wallTime.getTime())) return change.wallTime.toISOString();
  if (change.clusterTime instanceof BSON.Timestamp && change.clusterTime.t > 0) return new Date(change.clusterTime.t * 1000).toISOString();
  return undefined;
}

/** The event for one change stream document (its `_id` is the resume token). */
export function toSourceEvent(change: Document, watched: WatchedNamespace, mode: EjsonMode): SourceEvent {
  const operationType = typeof change.operationType === "string" && change.operationType !== "" ? change.operationType : "unknown";
  const ns = namespaceOf(change, watched);
  const body: Document = {};
  for (const field of PAYLOAD_FIELDS) {
    if (change[field] !== undefined) body[field] = change[field];
  }
  body.operationType = operationType;
  if (change.ns === undefined && ns.db !== undefined) body.ns = ns;
  const json = mode === "relaxed" ? BSON.EJSON.stringify(keepLongPrecision(body) as Document, { relaxed: true }) : BSON.EJSON.stringify(body, { relaxed: false });
  const event: SourceEvent = {
    kind: `mongo.${operationType}`,
    subject: subjectOf(ns, documentIdOf(change)),
    position: positionOf(change._id, change.clusterTime),
    payload: Buffer.from(json, "utf8"),
    // The ledger refuses JSON nested deeper than its limit: keep the bytes, unlabelled.
    payloadType: nestsDeeperThan(json, MAX_JSON_DEPTH) ? "application/octet-stream" : "application/json",
  };
  const occurredAt = occurredAtOf(change);
  if (occurredAt !== undefined) event.occurredAt = occurredAt;
  return event;
}
