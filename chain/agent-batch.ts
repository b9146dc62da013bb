// Agent batch signatures (SPEC §4, docs/agent-protocol.md). An agent signs every batch
// it sends; the server checks the signature before sequencing and stores it, and an
// offline verifier re-checks it from the entries alone. So the signature must cover
// only what the entries still show after the server has sequenced them (and after a
// payload was erased): the fields the agent supplies, with the payload by its salted
// digest. The agent chooses each salt, which is how it can know the digest up front.
import sodium from "libsodium-wrappers";
import { canonicalJson } from "./canonical-json.js";
import { sha256, sha256Hex } from "#sha256";
import { toHex } from "./hex.js";
import { zidOf } from "./agent-zid.js";

/** Domain separation: a batch signature can never be replayed as any other message. */
export const BATCH_SIGNATURE_CONTEXT = "audit-ledger/agent-batch/v1\n";

/** The entry fields an agent's signature commits to, as they appear in the entry. */
export const COMMITTED_FIELDS = [
  "occurred_at", "source_type", "agent", "kind", "subject", "actor", "trace_id", "span_id", "cause",
  "idempotency_key", "source_position", "payload_type", "payload_size", "payload_digest",
] as const;

export type CommittedEvent = {
  [K in (typeof COMMITTED_FIELDS)[number]]?: K extends "payload_size" ? number : string;
};

/**
 * Hex SHA-256 of the JCS of an event's committed fields. Absent and empty fields are
 * left out, exactly as in the entry envelope, so the digest of an event and of the
 * entry it became are the same bytes.
 */
export function eventCommitment(fields: CommittedEvent): string {
  const picked: Record<string, string | number> = {};
  for (const k of COMMITTED_FIELDS) {
    const v = fields[k];
    if (v !== undefined && v !== "") picked[k] = v;
  }
  if (picked.payload_size === undefined) picked.payload_size = 0;
  return sha256Hex(new TextEncoder().encode(canonicalJson(picked)));
}

/** What an agent signs for one batch. */
export interface BatchStatement {
  agent: string;
  chain: string;
  /** Agent-local batch number (the outbox seq of the batch's first event). */
  batchNumber: number;
  /** eventCommitment of each event, in the order sent. */
  events: readonly string[];
}

/** The exact bytes signed: the context line, then the JCS of the statement. */
export function batchMessage(s: BatchStatement): Uint8Array {
  const body = canonicalJson({ agent: s.agent, batch_number: s.batchNumber, chain: s.chain, events: s.events });
  return new TextEncoder().encode(BATCH_SIGNATURE_CONTEXT + body);
}

/**
 * The `batch` field of the entries a batch became: its number and a digest of its
 * signature. A batch resent unchanged after a crash keeps its id (Ed25519 signatures
 * are deterministic); one rebuilt differently gets a new id, so ids never clash.
 */
export function batchId(batchNumber: number, signature: Uint8Array): string {
  return `${batchNumber}.${toHex(sha256(signature).subarray(0, 8))}`;
}

/**
 * True when `signature` is `publicKey`'s Ed25519 signature over the statement and the
 * key is the agent's (its ZID is derived from it). Precondition: sodiumReady() resolved.
 */
export function verifyBatchSignature(s: BatchStatement, signature: Uint8Array, publicKey: Uint8Array): boolean {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  if (zidOf(publicKey) !== s.agent) return false;
  return sodium.crypto_sign_verify_detached(signature, batchMessage(s), publicKey);
}
