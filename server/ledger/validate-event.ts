// Turns an EventInput from any client into a PreparedEvent, or refuses it with
// InvalidArgument naming the field. Nothing is written until every event passes.
import { Code, ConnectError } from "@connectrpc/connect";
import type { EventInput } from "../../gen/auditledger/v1/entry_pb.js";
import { SALT_BYTES, SOURCE_TYPES, type Envelope } from "../../chain/index.js";
import { FIELD_MAX_LENGTH, type Limits } from "./limits.js";

/** A validated event, ready for the sequencer to give it a chain position and hash. */
export type PreparedEvent = Omit<Envelope, "v" | "chain" | "seq" | "ts" | "payload_size" | "payload_digest" | "prev_hash"> & {
  payload: Uint8Array | null;
  /** The agent's salt for the payload (Ingest only); otherwise the sequencer draws one. */
  salt?: Uint8Array;
  /** payload_digest under `salt`, when the caller already computed it (Ingest checks it). */
  saltedDigest?: string;
};

const CHAIN_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const KIND = /^[A-Za-z0-9][A-Za-z0-9._:/-]*$/;
const TRACE_ID = /^[0-9a-f]{32}$/;
const SPAN_ID = /^[0-9a-f]{16}$/;
const CAUSE = /^(?:0|[1-9][0-9]{0,15}|[0-9a-f]{64})$/;
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$/i;
const AGENT_KEY_PREFIX = /^(ZID-[0-9A-Z]{8})\//;
const SOURCE_TYPE_SET = new Set<string>(SOURCE_TYPES);
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

export function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

/** A seq or tree size from a request as a number; `field` names it in the error. */
export function seqNumber(value: bigint, field: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid(`${field}: ${value} is beyond any chain`);
  return Number(value);
}

/** Checks a chain name; `where` names the field in the error. */
export function validateChainName(chain: string, where = "chain"): string {
  if (!CHAIN_NAME.test(chain)) {
    throw invalid(`${where}: "${chain.slice(0, 80)}" is not a chain name (1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit)`);
  }
  return chain;
}

/**
 * Validates one event. `agent` is who appends (API key id or agent ZID), never taken
 * from the client. `where` prefixes error messages, e.g. "events[3]".
 */
export function prepareEvent(input: EventInput, agent: string, limits: Limits, where = "event", opts: { agentSalt?: boolean } = {}): PreparedEvent {
  const text = (field: keyof typeof FIELD_MAX_LENGTH, value: string): string | undefined => {
    if (value === "") return undefined;
    if (!value.isWellFormed()) throw invalid(`${where}.${field}: not valid UTF-8`);
    if (value.length > FIELD_MAX_LENGTH[field]) {
      throw invalid(`${where}.${field}: ${value.length} characters, at most ${FIELD_MAX_LENGTH[field]} allowed`);
    }
    return value;
  };

  const sourceType = text("source_type", input.sourceType) ?? "api";
  if (!SOURCE_TYPE_SET.has(sourceType)) {
    throw invalid(`${where}.source_type: unknown source type "${sourceType}"; expected one of ${SOURCE_TYPES.join(", ")}`);
  }
  const kind = text("kind", input.kind);
  if (kind === undefined) throw invalid(`${where}.kind: required`);
  if (!KIND.test(kind)) throw invalid(`${where}.kind: "${kind}" may hold only letters, digits and . _ : / -`);

  const event: PreparedEvent = { source_type: sourceType, agent, kind, payload: null };
  const occurredAt = text("occurred_at", input.occurredAt);
  if (occurredAt !== undefined) event.occurred_at = normaliseTime(occurredAt, `${where}.occurred_at`);
  assign(event, "subject", text("subject", input.subject));
  assign(event, "actor", text("actor", input.actor));
  assign(event, "idempotency_key", text("idempotency_key", input.idempotencyKey));
  // Keys under "<ZID>/" belong to that agent (SPEC §4: ZID + source position). Nobody
  // else may take one first: the agent's real event would be answered as a repeat.
  const zidPrefix = AGENT_KEY_PREFIX.exec(event.idempotency_key ?? "");
  if (zidPrefix && zidPrefix[1] !== agent) {
    throw new ConnectError(`${where}.idempotency_key: keys starting "${zidPrefix[1]}/" are reserved for that agent`, Code.PermissionDenied);
  }
  assign(event, "source_position", text("source_position", input.sourcePosition));

  const traceId = text("trace_id", input.traceId);
  if (traceId !== undefined && !TRACE_ID.test(traceId)) throw invalid(`${where}.trace_id: must be 32 lowercase hex characters`);
  assign(event, "trace_id", traceId);
  const spanId = text("span_id", input.spanId);
  if (spanId !== undefined && !SPAN_ID.test(spanId)) throw invalid(`${where}.span_id: must be 16 lowercase hex characters`);
  assign(event, "span_id", spanId);
  const cause = text("cause", input.cause);
  if (cause !== undefined && !CAUSE.test(cause)) throw invalid(`${where}.cause: must be a seq (decimal) or an entry hash (64 lowercase hex)`);
  assign(event, "cause", cause);

  const payloadType = text("payload_type", input.payloadType);
  if (input.payload.length > 0) {
    if (input.payload.length > limits.maxPayloadBytes) {
      throw new ConnectError(
        `${where}.payload: ${input.payload.length} bytes, at most ${limits.maxPayloadBytes} allowed`,
        Code.ResourceExhausted,
      );
    }
    event.payload = input.payload;
    event.payload_type = payloadType ?? "application/json";
    if (isJsonType(event.payload_type)) checkJson(input.payload, limits.maxJsonDepth, `${where}.payload`);
  } else if (payloadType !== undefined) {
    throw invalid(`${where}.payload_type: given without a payload`);
  }
  if (input.payloadSalt.length > 0) {
    if (!opts.agentSalt) throw invalid(`${where}.payload_salt: only agents on the Ingest stream choose salts; leave it empty`);
    if (!event.payload) throw invalid(`${where}.payload_salt: given without a payload`);
    if (input.payloadSalt.length !== SALT_BYTES) throw invalid(`${where}.payload_salt: ${input.payloadSalt.length} bytes, must be ${SALT_BYTES}`);
    event.salt = input.payloadSalt;
  } else if (opts.agentSalt && event.payload) {
    throw invalid(`${where}.payload_salt: required with a payload on the Ingest stream (the batch signature covers the salted digest)`);
  }
  return event;
}

function assign<K extends keyof PreparedEvent>(event: PreparedEvent, key: K, value: PreparedEvent[K] | undefined): void {
  if (value !== undefined) event[key] = value;
}

/** RFC 3339 to the ledger's one form: UTC with milliseconds. */
export function normaliseTime(value: string, where: string): string {
  const ms = RFC3339.test(value) ? Date.parse(value) : NaN;
  if (Number.isNaN(ms)) throw invalid(`${where}: "${value.slice(0, 40)}" is not an RFC 3339 timestamp`);
  return new Date(ms).toISOString();
}

export function isJsonType(type: string): boolean {
  const base = type.split(";")[0]!.trim().toLowerCase();
  return base === "application/json" || base.endsWith("+json");
}

function checkJson(bytes: Uint8Array, maxDepth: number, where: string): void {
  let text: string;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    throw invalid(`${where}: declared JSON but is not valid UTF-8`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw invalid(`${where}: declared JSON but does not parse: ${(err as Error).message}`);
  }
  if (depth(value, maxDepth) > maxDepth) throw invalid(`${where}: JSON nested deeper than ${maxDepth} levels`);
}

function depth(value: unknown, limit: number, level = 1): number {
  if (level > limit || value === null || typeof value !== "object") return level;
  let max = level;
  for (const child of Object.values(value as object)) {
    max = Math.max(max, depth(child, limit, level + 1));
    if (max > limit) break;
  }
  return max;
}
