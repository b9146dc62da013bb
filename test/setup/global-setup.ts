// Once per `npm test`: Postgres up, a fresh database for this run, migrations applied.
// Test files share the database and keep apart by using chains of their own.
import type { TestProject } from "vitest/node";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { adminUrl, createDatabase, dropDatabase, ensurePostgres } from "./postgres.js";
import { PostgresDatabase } from "../../server/storage/postgres-database.js";
import { migrate } from "../../server/storage/migrate.js";

declare module "vitest" {
  export interface ProvidedContext {
    databaseUrl: string;
    /** The run's checkpoint signing keys, shared by every server (as replicas share theirs). */
    keysDir: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  await ensurePostgres();
  const name = `audit_ledger_test_${Date.now()}_${process.pid}`;
  await createDatabase(name);
  const url = adminUrl(name);
  const db = new PostgresDatabase({ connectionString: url, max: 1 });
  await migrate(db);
  await db.close();
  project.provide("databaseUrl", url);
  const keysDir = mkdtempSync(join(tmpdir(), "audit-ledger-test-keys-"));
  project.provide("keysDir", keysDir);
  return async () => {
    rmSync(keysDir, { recursive: true, force: true });
    if (process.env.KEEP_TEST_DATABASE !== "true") await dropDatabase(name);
  };
}
