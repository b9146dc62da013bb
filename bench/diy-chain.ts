// What a user would build instead of the ledger: the same tables and indexes, plus a
// BEFORE INSERT trigger that takes the chain head under a row lock (SELECT ... FOR
// UPDATE), sets seq and prev_hash, hashes the row with Postgres' own sha256() and
// moves the head. Fed the ledger's rows with multi-row INSERTs of 1,000, each batch
// with its payloads in one committed transaction.
import pg from "pg";
import type { ThroughputResult } from "./append-batch.js";
import { checkpoint, connect, createLikeSchema, quoteLiteral } from "./bench-db.js";
import { secondsSince } from "./stats.js";
import { noMeter, type Meter } from "./resource-meter.js";

export const DIY_SCHEMA = "bench_diy";

/** Columns the writer supplies; the trigger fills seq, prev_hash and hash. */
const FED_COLUMNS = [
  "chain", "v", "ts", "occurred_at", "source_type", "agent", "kind", "subject", "actor", "trace_id", "span_id",
  "cause", "idempotency_key", "source_position", "payload_type", "payload_size", "payload_digest", "batch",
] as const;

const TRIGGER_SQL = `
CREATE TABLE ${DIY_SCHEMA}.heads (
  chain     text COLLATE "C" PRIMARY KEY,
  next_seq  bigint NOT NULL DEFAULT 0,
  head_hash bytea  NOT NULL DEFAULT '\\x0000000000000000000000000000000000000000000000000000000000000000'
);

CREATE FUNCTION ${DIY_SCHEMA}.chain_entry() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  head ${DIY_SCHEMA}.heads%ROWTYPE;
BEGIN
  SELECT * INTO head FROM ${DIY_SCHEMA}.heads WHERE chain = NEW.chain FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no head for chain %', NEW.chain;
  END IF;
  NEW.seq := head.next_seq;
  NEW.prev_hash := head.head_hash;
  NEW.hash := NULL;
  -- The row's text form (every column, seq and prev_hash included) hashed after the previous hash.
  NEW.hash := sha256(head.head_hash || convert_to(NEW::text, 'UTF8'));
  UPDATE ${DIY_SCHEMA}.heads SET next_seq = head.next_seq + 1, head_hash = NEW.hash WHERE chain = NEW.chain;
  RETURN NEW;
END
$$;

CREATE TRIGGER entries_chain BEFORE INSERT ON ${DIY_SCHEMA}.entries
  FOR EACH ROW EXECUTE FUNCTION ${DIY_SCHEMA}.chain_entry();
`;

type Row = Record<(typeof FED_COLUMNS)[number], unknown> & { payload: Buffer | null; salt: Buffer | null };

function valuesList(rows: number, columns: number, offset = 0): string {
  const out: string[] = [];
  for (let r = 0; r < rows; r++) {
    const params: string[] = [];
    for (let c = 1; c <= columns; c++) params.push(`$${offset + r * columns + c}`);
    out.push(`(${params.join(",")})`);
  }
  return out.join(",");
}

/** One batch: the entries (chained by the trigger), then their payloads under the seqs it gave. */
async function insertBatch(client: pg.Client, rows: Row[]): Promise<void> {
  const n = rows.length;
  await client.query("BEGIN");
  try {
    const inserted = await client.query<{ seq: string | number; idempotency_key: string }>({
      name: `diy-entries-${n}`,
      text: `INSERT INTO ${DIY_SCHEMA}.entries (${FED_COLUMNS.join(", ")}) VALUES ${valuesList(n, FED_COLUMNS.length)} RETURNING seq, idempotency_key`,
      values: rows.flatMap((r) => FED_COLUMNS.map((c) => r[c])),
    });
    const seqOf = new Map(inserted.rows.map((r) => [r.idempotency_key, r.seq]));
    const withPayload = rows.filter((r) => r.payload);
    if (withPayload.length > 0) {
      await client.query({
        name: `diy-payloads-${withPayload.length}`,
        text: `INSERT INTO ${DIY_SCHEMA}.payloads (chain, seq, salt, payload) VALUES ${valuesList(withPayload.length, 4)}`,
        values: withPayload.flatMap((r) => [r.chain, seqOf.get(r.idempotency_key as string), r.salt, r.payload]),
      });
    }
    await client.query("COMMIT");
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  }
}

/**
 * Writes the first `limit` of the ledger's rows of `chain` through the DIY chain,
 * `batchSize` rows per INSERT, from `writers` concurrent connections. They serialize on
 * the head lock, and one writer is the DIY's best case: with several, each row costs
 * Postgres 2-3x the CPU (lock waits, and longer version chains of the one hot head row
 * to walk). Rows are read into memory before the clock starts.
 */
export async function diyChain(
  admin: pg.Client,
  url: string,
  chain: string,
  limit: number,
  batchSize: number,
  writers: number,
  meter: Meter = noMeter,
): Promise<ThroughputResult> {
  await createLikeSchema(admin, DIY_SCHEMA);
  await admin.query(TRIGGER_SQL);
  await admin.query(`INSERT INTO ${DIY_SCHEMA}.heads (chain) VALUES (${quoteLiteral(chain)})`);
  const { rows } = await admin.query<Row>(
    `SELECT ${FED_COLUMNS.map((c) => `e.${c}`).join(", ")}, p.payload, p.salt
     FROM public.entries e LEFT JOIN public.payloads p ON p.chain = e.chain AND p.seq = e.seq
     WHERE e.chain = $1 ORDER BY e.seq LIMIT $2`,
    [chain, limit],
  );
  const batches: Row[][] = [];
  for (let i = 0; i < rows.length; i += batchSize) batches.push(rows.slice(i, i + batchSize));
  const clients = await Promise.all(Array.from({ length: writers }, () => connect(url)));
  try {
    await checkpoint(admin);
    let next = 0;
    await meter.start();
    const started = performance.now();
    await Promise.all(
      clients.map(async (client) => {
        for (let i = next++; i < batches.length; i = next++) await insertBatch(client, batches[i]!);
      }),
    );
    const seconds = secondsSince(started);
    const usage = await meter.stop();
    const count = await admin.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${DIY_SCHEMA}.entries`);
    if (count.rows[0]!.n !== rows.length) throw new Error(`DIY chain stored ${count.rows[0]!.n} of ${rows.length} rows`);
    return { rows: rows.length, seconds, rowsPerSecond: rows.length / seconds, usage };
  } finally {
    await Promise.all(clients.map((c) => c.end()));
  }
}
