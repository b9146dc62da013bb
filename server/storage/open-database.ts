import { mkdirSync } from "node:fs";
import type { Database } from "./database.js";
import { PgliteDatabase } from "./pglite-database.js";
import { PostgresDatabase } from "./postgres-database.js";

export interface StorageConfig {
  /** Postgres connection string; when empty, embedded PGlite in `dataDir`. */
  databaseUrl?: string;
  dataDir: string;
  poolSize?: number;
  /** Role the server's sessions switch to; "" keeps the login role. */
  role?: string;
  onError?: (err: Error) => void;
}

export async function openDatabase(config: StorageConfig): Promise<Database> {
  if (config.databaseUrl) {
    return new PostgresDatabase({
      connectionString: config.databaseUrl,
      max: config.poolSize,
      role: config.role,
      onError: config.onError,
    });
  }
  if (!config.dataDir.startsWith("memory://")) mkdirSync(config.dataDir, { recursive: true });
  return PgliteDatabase.open(config.dataDir);
}
