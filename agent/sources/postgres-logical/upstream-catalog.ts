// What the source asks Postgres before streaming, on its replication connection (in
// `replication=database` mode the server takes plain SQL through the simple query
// protocol only, so values are quoted here rather than bound as parameters).
import type pg from "pg";
import { parseLsn } from "./lsn.js";

/** A SQL string literal. */
export function literal(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

/** A quoted SQL identifier, case kept. */
export function identifier(text: string): string {
  return `"${text.replace(/"/g, '""')}"`;
}

export interface SystemIdentity {
  systemIdentifier: string;
  timeline: number;
  database: string;
}

export async function identifySystem(client: pg.Client): Promise<SystemIdentity> {
  const r = await client.query<{ systemid: string; timeline: string | number; dbname: string | null }>("IDENTIFY_SYSTEM");
  const row = r.rows[0];
  if (!row || row.dbname === null) throw new Error("IDENTIFY_SYSTEM returned no database: the connection is not a logical replication connection");
  return { systemIdentifier: String(row.systemid), timeline: Number(row.timeline), database: row.dbname };
}

export async function walLevel(client: pg.Client): Promise<string> {
  const r = await client.query<{ wal_level: string }>("SHOW wal_level");
  return r.rows[0]!.wal_level;
}

export async function publicationExists(client: pg.Client, publication: string): Promise<boolean> {
  const r = await client.query(`SELECT 1 FROM pg_publication WHERE pubname = ${literal(publication)}`);
  return r.rowCount === 1;
}

/** Tables of `tables` ("schema.table") that do not exist. */
export async function missingTables(client: pg.Client, tables: { schema: string; table: string }[]): Promise<string[]> {
  const missing: string[] = [];
  for (const t of tables) {
    const r = await client.query(
      `SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ${literal(t.schema)} AND c.relname = ${literal(t.table)} AND c.relkind IN ('r', 'p')`,
    );
    if (r.rowCount === 0) missing.push(`${t.schema}.${t.table}`);
  }
  return missing;
}

export async function createPublication(client: pg.Client, publication: string, tables: { schema: string; table: string }[]): Promise<void> {
  const list = tables.map((t) => `${identifier(t.schema)}.${identifier(t.table)}`).join(", ");
  await client.query(`CREATE PUBLICATION ${identifier(publication)} FOR TABLE ${list}`);
}

/** "schema.table" → primary key column names, for every table the publication has. */
export async function primaryKeys(client: pg.Client, publication: string): Promise<Map<string, string[]>> {
  const r = await client.query<{ schemaname: string; tablename: string; columns: string[] | string | null }>(
    `SELECT pt.schemaname, pt.tablename,
            (SELECT array_agg(a.attname ORDER BY k.ord)
               FROM pg_index i
               CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
              WHERE i.indrelid = format('%I.%I', pt.schemaname, pt.tablename)::regclass AND i.indisprimary) AS columns
       FROM pg_publication_tables pt WHERE pt.pubname = ${literal(publication)}`,
  );
  const out = new Map<string, string[]>();
  for (const row of r.rows) {
    const cols = row.columns;
    // Without a type parser for name[], the array may come as its text form.
    const list = cols === null ? [] : Array.isArray(cols) ? cols : cols.replace(/^\{|\}$/g, "").split(",").filter((c) => c !== "").map((c) => c.replace(/^"|"$/g, ""));
    out.set(`${row.schemaname}.${row.tablename}`, list);
  }
  return out;
}

export interface SlotInfo {
  slotType: string;
  plugin: string | null;
  database: string | null;
  confirmedFlush: bigint | null;
  /** reserved, extended, unreserved or lost (Postgres 13+); lost: the WAL it needed is gone. */
  walStatus: string | null;
  /** Postgres 17+: why the slot was invalidated; 16: `conflicting` for standbys. */
  invalidation: string | null;
  activePid: number | null;
}

/** The slot as pg_replication_slots shows it, or undefined when it does not exist. */
export async function inspectSlot(client: pg.Client, slot: string): Promise<SlotInfo | undefined> {
  // to_jsonb: the columns differ between Postgres versions.
  const r = await client.query<{ s: Record<string, unknown> }>(`SELECT to_jsonb(s) AS s FROM pg_replication_slots s WHERE slot_name = ${literal(slot)}`);
  const s = r.rows[0]?.s;
  if (!s) return undefined;
  const text = (v: unknown) => (typeof v === "string" ? v : null);
  let invalidation = text(s.invalidation_reason);
  if (invalidation === null && s.conflicting === true) invalidation = "conflicting with recovery";
  return {
    slotType: String(s.slot_type),
    plugin: text(s.plugin),
    database: text(s.database),
    confirmedFlush: typeof s.confirmed_flush_lsn === "string" ? parseLsn(s.confirmed_flush_lsn) : null,
    walStatus: text(s.wal_status),
    invalidation,
    activePid: typeof s.active_pid === "number" ? s.active_pid : null,
  };
}

/** Creates a pgoutput slot; returns its consistent point (where its history starts). */
export async function createSlot(client: pg.Client, slot: string): Promise<bigint> {
  // NOEXPORT_SNAPSHOT: the form every Postgres from 10 on accepts.
  const r = await client.query<{ consistent_point: string }>(`CREATE_REPLICATION_SLOT ${identifier(slot)} LOGICAL pgoutput NOEXPORT_SNAPSHOT`);
  return parseLsn(r.rows[0]!.consistent_point);
}

export async function dropSlot(client: pg.Client, slot: string): Promise<void> {
  await client.query(`SELECT pg_drop_replication_slot(${literal(slot)})`);
}
