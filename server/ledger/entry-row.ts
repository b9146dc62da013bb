// Entries as the database returns them, and their conversion to the chain's envelope.
import type { StoredEntry } from "../../chain/index.js";

/** Columns of an entry, with hashes as hex; payload columns only when joined. */
export const ENTRY_COLUMNS = `e.chain, e.seq, e.v, e.ts, e.occurred_at, e.source_type, e.agent, e.kind,
  e.subject, e.actor, e.trace_id, e.span_id, e.cause, e.idempotency_key, e.source_position,
  e.payload_type, e.payload_size, encode(e.payload_digest, 'hex') AS payload_digest, e.batch,
  encode(e.prev_hash, 'hex') AS prev_hash, encode(e.hash, 'hex') AS hash`;

export const PAYLOAD_COLUMNS = `p.payload, p.salt, rd.redaction_seq`;
/** Payload and salt, plus the redaction that erased them, if any. */
export const PAYLOAD_JOIN = `LEFT JOIN payloads p ON p.chain = e.chain AND p.seq = e.seq
  LEFT JOIN redactions rd ON rd.chain = e.chain AND rd.seq = e.seq`;

export interface EntryRow {
  chain: string;
  seq: number;
  v: number;
  ts: Date;
  occurred_at: Date | null;
  source_type: string;
  agent: string;
  kind: string;
  subject: string | null;
  actor: string | null;
  trace_id: string | null;
  span_id: string | null;
  cause: string | null;
  idempotency_key: string | null;
  source_position: string | null;
  payload_type: string | null;
  payload_size: number;
  payload_digest: string | null;
  batch: string | null;
  prev_hash: string;
  hash: string;
  payload?: Uint8Array | null;
  salt?: Uint8Array | null;
  redaction_seq?: string | number | null;
}

/** Row to stored entry: NULLs become absent fields, timestamps RFC 3339 with ms. */
export function rowToEntry(r: EntryRow): StoredEntry {
  const e: StoredEntry = {
    v: r.v,
    chain: r.chain,
    seq: r.seq,
    ts: r.ts.toISOString(),
    source_type: r.source_type,
    agent: r.agent,
    kind: r.kind,
    payload_size: r.payload_size,
    prev_hash: r.prev_hash,
    hash: r.hash,
  };
  if (r.occurred_at) e.occurred_at = r.occurred_at.toISOString();
  if (r.subject !== null) e.subject = r.subject;
  if (r.actor !== null) e.actor = r.actor;
  if (r.trace_id !== null) e.trace_id = r.trace_id;
  if (r.span_id !== null) e.span_id = r.span_id;
  if (r.cause !== null) e.cause = r.cause;
  if (r.idempotency_key !== null) e.idempotency_key = r.idempotency_key;
  if (r.source_position !== null) e.source_position = r.source_position;
  if (r.payload_type !== null) e.payload_type = r.payload_type;
  if (r.payload_digest !== null) e.payload_digest = r.payload_digest;
  if (r.batch !== null) e.batch = r.batch;
  if (r.payload !== undefined) e.payload = r.payload;
  if (r.salt !== undefined) e.salt = r.salt;
  if (r.redaction_seq !== undefined && r.redaction_seq !== null) {
    e.redacted = true;
    e.redacted_by = Number(r.redaction_seq);
  }
  return e;
}
