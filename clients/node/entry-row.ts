// An Entry message back in the ledger's row form (SPEC §2): numbers as numbers,
// absent fields left out. This is the shape the chain module hashes and verifies.
import type { Entry } from "../../gen/auditledger/v1/entry_pb.js";
import type { StoredEntry } from "../../chain/index.js";
import { fromHex } from "../../chain/index.js";

export function entryToRow(e: Entry): StoredEntry {
  const row: StoredEntry = {
    v: e.v,
    chain: e.chain,
    seq: Number(e.seq),
    ts: e.ts,
    source_type: e.sourceType,
    agent: e.agent,
    kind: e.kind,
    payload_size: Number(e.payloadSize),
    prev_hash: e.prevHash,
    hash: e.hash,
  };
  const optional = {
    occurred_at: e.occurredAt,
    subject: e.subject,
    actor: e.actor,
    trace_id: e.traceId,
    span_id: e.spanId,
    cause: e.cause,
    idempotency_key: e.idempotencyKey,
    source_position: e.sourcePosition,
    payload_type: e.payloadType,
    payload_digest: e.payloadDigest,
    batch: e.batch,
  };
  for (const [k, v] of Object.entries(optional)) if (v !== "") (row as unknown as Record<string, string>)[k] = v;
  if (e.payload.length > 0) row.payload = e.payload;
  if (e.payloadSalt !== "") row.salt = fromHex(e.payloadSalt);
  if (e.redacted) row.redacted = true;
  return row;
}

/** The row as JSON: payload as UTF-8 text when it is, else base64; salt as hex. */
export function rowJson(row: StoredEntry): Record<string, unknown> {
  const { payload, salt, ...rest } = row;
  const out: Record<string, unknown> = { ...rest };
  if (payload && payload.length > 0) {
    try {
      out.payload = new TextDecoder("utf-8", { fatal: true }).decode(payload);
    } catch {
      out.payload_base64 = Buffer.from(payload).toString("base64");
    }
  }
  if (salt) out.payload_salt = Buffer.from(salt).toString("hex");
  return out;
}
