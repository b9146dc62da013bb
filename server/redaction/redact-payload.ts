// Crypto-shredding (SPEC §2): erase one entry's payload and salt, and append a
// `redaction` entry saying who asked and why, in ONE transaction. The entry itself
// stays: its hash commits to the salted digest, which without the salt reveals
// nothing about the erased bytes, so the chain still verifies and reports "redacted".
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { EventInputSchema } from "../../gen/auditledger/v1/entry_pb.js";
import { canonicalJson, type StoredEntry } from "../../chain/index.js";
import type { Database, Queryable } from "../storage/database.js";
import type { Sequencer } from "../ledger/sequencer.js";
import type { Limits } from "../ledger/limits.js";
import { invalid, prepareEvent } from "../ledger/validate-event.js";
import { readEntry } from "../ledger/ledger-reader.js";

export { REDACTION_KIND } from "../../chain/index.js";
import { REDACTION_KIND } from "../../chain/index.js";
const MAX_REASON = 2000;

/** The payload of a redaction entry (canonical JSON). */
export interface RedactionRecord {
  redacts_seq: number;
  reason: string;
  requested_by: string;
}

export function redactionPayload(r: RedactionRecord): Uint8Array {
  return new TextEncoder().encode(canonicalJson(r));
}

/** Parses a redaction entry's payload; null when it is not one. */
export function parseRedactionPayload(payload: Uint8Array | null | undefined): RedactionRecord | null {
  if (!payload) return null;
  try {
    const r = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(payload)) as Partial<RedactionRecord>;
    if (!Number.isSafeInteger(r.redacts_seq) || typeof r.reason !== "string" || typeof r.requested_by !== "string") return null;
    return r as RedactionRecord;
  } catch {
    return null;
  }
}

export interface RedactionResult {
  redaction: StoredEntry;
  /** True when the payload had already been erased (the original redaction is returned). */
  already: boolean;
}

export async function redactPayload(
  db: Database,
  sequencer: Sequencer,
  limits: Limits,
  chain: string,
  seq: number,
  reason: string,
  requestedBy: string,
): Promise<RedactionResult> {
  if (reason.trim() === "") throw invalid("reason: required (say why the payload is erased)");
  if (reason.length > MAX_REASON || !reason.isWellFormed()) throw invalid(`reason: at most ${MAX_REASON} characters of valid UTF-8`);
  const target = await readEntry(db, chain, seq, true);
  if (!target) throw new ConnectError(`chain "${chain}" has no entry at seq ${seq}`, Code.NotFound);
  if (target.redacted && target.redacted_by !== undefined) {
    const original = await readEntry(db, chain, target.redacted_by, false);
    if (original) return { redaction: original, already: true };
  }
  if (target.kind === REDACTION_KIND) {
    throw new ConnectError(`seq ${seq} is a redaction entry: its payload is the record of an erasure and stays`, Code.FailedPrecondition);
  }
  if (target.payload_size === 0) throw new ConnectError(`seq ${seq} has no payload to erase`, Code.FailedPrecondition);

  const event = prepareEvent(
    create(EventInputSchema, {
      sourceType: "api",
      kind: REDACTION_KIND,
      subject: target.subject ?? "",
      actor: requestedBy,
      cause: String(seq),
      payloadType: "application/json",
      payload: redactionPayload({ redacts_seq: seq, reason, requested_by: requestedBy }),
    }),
    requestedBy,
    limits,
  );
  const erase = async (tx: Queryable, written: StoredEntry[]) => {
    const redaction = written[0]!;
    // The redactions row, not an idempotency key (which any appender could squat),
    // makes a second erasure of one seq impossible: a racing one rolls back whole.
    const recorded = await tx.query(
      "INSERT INTO redactions (chain, seq, redaction_seq, actor, reason) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING seq",
      [chain, seq, redaction.seq, requestedBy, reason],
    );
    if (recorded.rows.length !== 1) throw new ConnectError(`seq ${seq} was redacted by a concurrent request`, Code.AlreadyExists);
    const deleted = await tx.query("DELETE FROM payloads WHERE chain = $1 AND seq = $2 RETURNING seq", [chain, seq]);
    if (deleted.rows.length !== 1) throw new ConnectError(`seq ${seq} has no stored payload to erase`, Code.FailedPrecondition);
  };
  try {
    const [result] = await sequencer.append(chain, [event], erase);
    return { redaction: result!.entry, already: false };
  } catch (err) {
    if (!(err instanceof ConnectError && err.code === Code.AlreadyExists)) throw err;
    // Lost a race with another erasure of the same seq: answer with that one.
    const again = await readEntry(db, chain, seq, true);
    const original = again?.redacted_by !== undefined ? await readEntry(db, chain, again.redacted_by, false) : null;
    if (!original) throw err;
    return { redaction: original, already: true };
  }
}
