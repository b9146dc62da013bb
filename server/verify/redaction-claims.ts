// A missing payload is "redacted", not "broken", only when the redaction entry the
// redactions table names exists, is a redaction, and names this very seq: a row
// inserted into that table by someone with database access proves nothing.
import { entryHash, payloadDigest, type ChainBreak, type RedactionClaim } from "../../chain/index.js";
import type { Queryable } from "../storage/database.js";
import { ENTRY_COLUMNS, PAYLOAD_COLUMNS, PAYLOAD_JOIN, rowToEntry, type EntryRow } from "../ledger/entry-row.js";
import { parseRedactionPayload, REDACTION_KIND } from "../redaction/redact-payload.js";

export async function checkRedactionClaims(q: Queryable, chain: string, claims: RedactionClaim[]): Promise<ChainBreak | null> {
  if (claims.length === 0) return null;
  const res = await q.query<EntryRow>(
    `SELECT ${ENTRY_COLUMNS}, ${PAYLOAD_COLUMNS} FROM entries e ${PAYLOAD_JOIN} WHERE e.chain = $1 AND e.seq = ANY($2::bigint[])`,
    [chain, [...new Set(claims.map((c) => c.by))]],
  );
  const bySeq = new Map(res.rows.map((r) => [Number(r.seq), rowToEntry(r)]));
  const head = await q.query<{ next_seq: number }>("SELECT next_seq FROM chains WHERE chain = $1", [chain]);
  const headSeq = Number(head.rows[0]?.next_seq ?? 0);
  for (const claim of claims) {
    const r = bySeq.get(claim.by);
    // The redaction entry must itself be intact: committed, hashing to its hash, its
    // payload matching its digest.
    const intact =
      r !== undefined &&
      claim.by < headSeq &&
      entryHash(r) === r.hash &&
      !!r.payload &&
      !!r.salt &&
      payloadDigest(r.salt, r.payload) === r.payload_digest;
    const record = intact && r.kind === REDACTION_KIND ? parseRedactionPayload(r.payload) : null;
    if (!r || claim.by <= claim.seq || !record || record.redacts_seq !== claim.seq) {
      return {
        seq: claim.seq,
        kind: "payload_mismatch",
        reason: `the payload of seq ${claim.seq} is gone and a redaction is claimed by seq ${claim.by}, but that entry is not a redaction of seq ${claim.seq}`,
      };
    }
  }
  return null;
}
