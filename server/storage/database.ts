// The one narrow storage interface. Two implementations: Postgres through `pg`
// (production, and what the tests exercise) and embedded PGlite (the zero-install
// default). Everything above this speaks plain SQL that both understand.

export interface QueryResult<R> {
  rows: R[];
}

/** A connection inside a transaction. */
export interface Queryable {
  query<R = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<QueryResult<R>>;
  /** Runs a script of several statements without parameters (migrations). */
  exec(sql: string): Promise<void>;
  /**
   * Bulk load through COPY ... FROM STDIN, where the driver supports it (pg does,
   * PGlite here does not): `data` is COPY text format, one row per line.
   */
  copyFrom?(copySql: string, data: string): Promise<void>;
}

export interface Database extends Queryable {
  readonly kind: "postgres" | "pglite";
  /** Runs `fn` in one READ COMMITTED transaction; commits when it resolves, rolls back when it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * Calls `onNotify` for each NOTIFY on `channel`, and `onReconnect` after the listening
   * connection was lost and re-established (notifications may have been missed).
   * Resolves to an unsubscribe function.
   */
  listen(channel: string, onNotify: (payload: string) => void, onReconnect?: () => void): Promise<() => Promise<void>>;
  /** True when a trivial query succeeds (readiness). */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}
