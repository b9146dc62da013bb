import { PGlite, types } from "@electric-sql/pglite";
import type { Database, Queryable, QueryResult } from "./database.js";

/**
 * Embedded Postgres (PGlite, WebAssembly) in a local data folder: the default when no
 * DATABASE_URL is set, so `npm start` needs nothing installed. One process owns the
 * folder; PGlite runs one query at a time, so transactions are naturally serialised.
 */
export class PgliteDatabase implements Database {
  readonly kind = "pglite" as const;

  private constructor(private readonly db: PGlite) {}

  /** Opens (creating if needed) the database in `dataDir`; `memory://` for a throwaway one. */
  static async open(dataDir: string): Promise<PgliteDatabase> {
    const db = await PGlite.create(dataDir, {
      // Same number handling as the pg driver: int8 as a JS number.
      parsers: { [types.INT8]: (v: string) => Number(v) },
    });
    return new PgliteDatabase(db);
  }

  async query<R>(sql: string, params?: unknown[]): Promise<QueryResult<R>> {
    const res = await this.db.query<R>(sql, params);
    return { rows: res.rows };
  }

  async exec(sql: string): Promise<void> {
    await this.db.exec(sql);
  }

  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    return this.db.transaction(async (tx) =>
      fn({
        query: async <R>(sql: string, params?: unknown[]) => ({ rows: (await tx.query<R>(sql, params)).rows }),
        exec: async (sql: string) => void (await tx.exec(sql)),
      }),
    );
  }

  async listen(channel: string, onNotify: (payload: string) => void): Promise<() => Promise<void>> {
    const unsubscribe = await this.db.listen(channel, onNotify);
    return async () => unsubscribe();
  }

  async ping(): Promise<boolean> {
    try {
      await this.db.query("SELECT 1");
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}
