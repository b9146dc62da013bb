import { create } from "@bufbuild/protobuf";
import { EntrySchema, type Entry } from "../../gen/auditledger/v1/entry_pb.js";
import type { StoredEntry } from "../../chain/index.js";

/** A stored entry as the API returns it; payload and salt only when asked for. */
export function toEntryMessage(e: StoredEntry, withPayload: boolean): Entry {
  const hex = (b: Uint8Array | null | undefined) => (b ? Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex") : "");
  return create(EntrySchema, {
    v: e.v,
    chain: e.chain,
    seq: BigInt(e.seq),
    ts: e.ts,
    occurredAt: e.occurred_at ?? "",
    sourceType: e.source_type,
    agent: e.agent,
    kind: e.kind,
    subject: e.subject ?? "",
    actor: e.actor ?? "",
    traceId: e.trace_id ?? "",
    spanId: e.span_id ?? "",
    cause: e.cause ?? "",
    idempotencyKey: e.idempotency_key ?? "",
    sourcePosition: e.source_position ?? "",
    payloadType: e.payload_type ?? "",
    payloadSize: BigInt(e.payload_size),
    payloadDigest: e.payload_digest ?? "",
    batch: e.batch ?? "",
    prevHash: e.prev_hash,
    hash: e.hash,
    // Never serve bytes beside an erased payload, whoever put them there.
    payload: withPayload && e.payload && !e.redacted ? e.payload : new Uint8Array(0),
    payloadSalt: withPayload && !e.redacted ? hex(e.salt) : "",
    redacted: e.redacted ?? false,
  });
}
