// Versioned SQL migrations, applied in order at start: each file runs once, all in one
// transaction under an advisory lock, so replicas starting together don't race.
import { readdirSync, readFileSync } from "node:fs";
import type { Database } from "./database.js";

const MIGRATIONS_DIR = new URL("./migrations/", import.meta.url);
// Arbitrary constant naming "audit-ledger migrations" in pg_advisory_xact_lock.
const MIGRATION_LOCK = 7_301_202_611;

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export function loadMigrations(): Migration[] {
  return readdirSync(MIGRATIONS_DIR)
    .filter((f) => /^\d{4}_.+\.sql$/.test(f))
    .sort()
    .map((file) => ({
      version: Number(file.slice(0, 4)),
      name: file,
      sql: readFileSync(new URL(file, MIGRATIONS_DIR), "utf8"),
    }));
}

/** Applies every migration not yet applied, in one transaction; returns the names applied now. */
export async function migrate(db: Database): Promise<string[]> {
  return db.transaction(async (tx) => {
    await tx.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
    await tx.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY,
      name text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const seen = await tx.query<{ version: number }>("SELECT version FROM schema_migrations");
    const done = new Set(seen.rows.map((r) => r.version));
    const applied: string[] = [];
    for (const m of loadMigrations()) {
      if (done.has(m.version)) continue;
      await tx.exec(m.sql);
      await tx.query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", [m.version, m.name]);
      applied.push(m.name);
    }
    return applied;
  });
}
