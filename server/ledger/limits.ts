// Size limits on what the ledger accepts (SPEC §9). Each can be raised by config,
// none can be switched off.
export interface Limits {
  /** Largest payload of one event, in bytes. */
  maxPayloadBytes: number;
  /** Most events in one AppendBatch. */
  maxBatchEvents: number;
  /** Largest request message, in bytes (whole AppendBatch). */
  maxRequestBytes: number;
  /** Deepest nesting of a JSON payload. */
  maxJsonDepth: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxPayloadBytes: 1024 * 1024,
  maxBatchEvents: 10_000,
  maxRequestBytes: 32 * 1024 * 1024,
  maxJsonDepth: 64,
};

/** Longest value, in characters, of each string field of an event. */
export const FIELD_MAX_LENGTH = {
  occurred_at: 40,
  source_type: 32,
  kind: 128,
  subject: 1024,
  actor: 256,
  trace_id: 32,
  span_id: 16,
  cause: 64,
  idempotency_key: 256,
  source_position: 512,
  payload_type: 128,
  agent: 128,
  batch: 128,
} as const;
