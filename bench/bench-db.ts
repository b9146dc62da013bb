// The benchmark's own database, and SQL helpers shared by the baselines.
import pg from "pg";
import { adminUrl, createDatabase, dropDatabase, ensurePostgres } from "../test/setup/postgres.js";

export interface BenchDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

export async function createBenchDatabase(): Promise<BenchDatabase> {
  await ensurePostgres();
  const name = `audit_ledger_bench_${Date.now()}`;
  await createDatabase(name);
  return { name, url: adminUrl(name), drop: () => dropDatabase(name) };
}

/** A superuser connection to the benchmark database (the baselines write through it). */
export async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return client;
}

/**
 * A schema whose `entries` and `payloads` are created LIKE the ledger's, INCLUDING ALL:
 * same columns, defaults, constraints and indexes (the ledger's append-only triggers
 * are not copied, and they fire on UPDATE/DELETE only anyway).
 */
export async function createLikeSchema(client: pg.Client, schema: string): Promise<void> {
  await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await client.query(`CREATE SCHEMA ${schema}`);
  await client.query(`CREATE TABLE ${schema}.entries (LIKE public.entries INCLUDING ALL)`);
  await client.query(`CREATE TABLE ${schema}.payloads (LIKE public.payloads INCLUDING ALL)`);
}

/**
 * Flushes dirty buffers before a write measurement, so that no phase pays for the
 * previous one's checkpoint and each starts from the same state.
 */
export async function checkpoint(client: pg.Client): Promise<void> {
  await client.query("CHECKPOINT");
}

/** Same-sized indexes and tables: what each approach stored, for the report. */
export async function relationSizes(client: pg.Client, schema: string): Promise<{ tables: number; indexes: number }> {
  const res = await client.query<{ tables: string; indexes: string }>(
    `SELECT sum(pg_table_size(c.oid))::bigint AS tables, sum(pg_indexes_size(c.oid))::bigint AS indexes
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND c.relname IN ('entries', 'payloads')`,
    [schema],
  );
  return { tables: Number(res.rows[0]!.tables), indexes: Number(res.rows[0]!.indexes) };
}

export function quoteLiteral(s: string): string {
  return "'" + s.replace(/'/g, "''") + "'";
}
