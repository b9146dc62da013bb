// The entry envelope of SPEC §2: every field that the entry hash commits to.

/** prev_hash of seq 0. */
export const ZERO_HASH = "0".repeat(64);

/** The envelope version this code writes and verifies. */
export const ENVELOPE_VERSION = 1;

/** Source types of SPEC §2. */
export const SOURCE_TYPES = [
  "http_webhook",
  "filesystem_watch",
  "generic_polling",
  "mongo_change_stream",
  "postgres_logical",
  "s3_notification",
  "mqtt",
  "redis_keyspace",
  "kafka_consumer",
  "host_tap",
  "api",
] as const;

export type SourceType = (typeof SOURCE_TYPES)[number];

/**
 * The hashed part of an entry. Optional fields that are absent (or empty strings)
 * are left out of the canonical JSON entirely; there is no null in the encoding.
 */
export interface Envelope {
  v: number;
  chain: string;
  seq: number;
  ts: string;
  occurred_at?: string;
  source_type: string;
  agent: string;
  kind: string;
  subject?: string;
  actor?: string;
  trace_id?: string;
  span_id?: string;
  cause?: string;
  idempotency_key?: string;
  source_position?: string;
  payload_type?: string;
  payload_size: number;
  payload_digest?: string;
  batch?: string;
  prev_hash: string;
}

/** An envelope with its hash: what the ledger stores and what the verifier reads. */
export interface HashedEnvelope extends Envelope {
  hash: string;
}
