// The agent's half of chain/agent-batch.ts: the commitment of each EventInput as the
// server will see it, and the batch signature over them.
import { batchMessage, eventCommitment, payloadDigest } from "../../chain/index.js";
import type { EventInput } from "../../gen/auditledger/v1/entry_pb.js";

/**
 * Precondition: `input` is in the form the entry will hold (toEventInput makes it so):
 * UTC-millisecond occurred_at, explicit source and payload types, the agent's salt.
 */
export function commitmentOf(input: EventInput, zid: string): string {
  return eventCommitment({
    occurred_at: input.occurredAt,
    source_type: input.sourceType,
    agent: zid,
    kind: input.kind,
    subject: input.subject,
    actor: input.actor,
    trace_id: input.traceId,
    span_id: input.spanId,
    cause: input.cause,
    idempotency_key: input.idempotencyKey,
    source_position: input.sourcePosition,
    payload_type: input.payloadType,
    payload_size: input.payload.length,
    payload_digest: input.payload.length > 0 ? payloadDigest(input.payloadSalt, input.payload) : undefined,
  });
}

export function signBatch(
  sign: (message: Uint8Array) => Uint8Array,
  zid: string,
  chain: string,
  batchNumber: number,
  inputs: readonly EventInput[],
): Uint8Array {
  return sign(batchMessage({ agent: zid, chain, batchNumber, events: inputs.map((i) => commitmentOf(i, zid)) }));
}
