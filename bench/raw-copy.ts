// The physical limit: raw COPY of the very rows the ledger wrote (read back from it,
// so byte-identical) into tables with the same columns and indexes. No hashing, no
// sequencing, no RPC: only what Postgres must do to store and index the rows durably.
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type pg from "pg";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import { checkpoint, createLikeSchema, quoteLiteral } from "./bench-db.js";
import type { ThroughputResult } from "./append-batch.js";
import { secondsSince } from "./stats.js";
import { noMeter, type Meter } from "./resource-meter.js";

export const COPY_SCHEMA = "bench_copy";

/** Reads `sql` (a SELECT) out through COPY TO, into memory. */
async function exportRows(client: pg.Client, sql: string): Promise<Buffer[]> {
  const chunks: Buffer[] = [];
  const stream = client.query(copyTo(`COPY (${sql}) TO STDOUT (FORMAT binary)`));
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return chunks;
}

async function importRows(client: pg.Client, table: string, chunks: Buffer[]): Promise<number> {
  const stream = client.query(copyFrom(`COPY ${table} FROM STDIN (FORMAT binary)`));
  await pipeline(Readable.from(chunks), stream);
  return stream.rowCount;
}

/**
 * COPYs the ledger's rows of `chain` into the like-for-like schema, in one transaction
 * (one stream per table: the cheapest way Postgres has to store them), and commits.
 * Binary COPY format: the fastest form for bytea and timestamps.
 */
export async function rawCopy(client: pg.Client, chain: string, meter: Meter = noMeter): Promise<ThroughputResult> {
  await createLikeSchema(client, COPY_SCHEMA);
  const where = `chain = ${quoteLiteral(chain)} ORDER BY seq`;
  const entries = await exportRows(client, `SELECT * FROM public.entries WHERE ${where}`);
  const payloads = await exportRows(client, `SELECT * FROM public.payloads WHERE ${where}`);
  await checkpoint(client);

  await meter.start();
  const started = performance.now();
  await client.query("BEGIN");
  const rows = await importRows(client, `${COPY_SCHEMA}.entries`, entries);
  await importRows(client, `${COPY_SCHEMA}.payloads`, payloads);
  await client.query("COMMIT");
  const seconds = secondsSince(started);
  const usage = await meter.stop();
  return { rows, seconds, rowsPerSecond: rows / seconds, usage };
}
