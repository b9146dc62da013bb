import pg from "pg";
import { from as copyFromStdin } from "pg-copy-streams";
import type { Database, Queryable, QueryResult } from "./database.js";

// bigint (int8) arrives as a decimal string by default; every bigint here (seq,
// sizes, counts) is below 2^53, so numbers are exact and far handier.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

export interface PostgresOptions {
  connectionString: string;
  /** Pool size. */
  max?: number;
  /** Role every pooled session switches to (least privilege); empty to stay as the login role. */
  role?: string;
  onError?: (err: Error) => void;
}

/** Postgres through a `pg` pool. */
export class PostgresDatabase implements Database {
  readonly kind = "postgres" as const;
  private readonly pool: pg.Pool;
  private readonly listeners = new Set<ListenConnection>();

  constructor(private readonly options: PostgresOptions) {
    this.pool = new pg.Pool({
      connectionString: options.connectionString,
      max: options.max ?? 10,
      // The role is set in the startup packet, so no query can run before it.
      options: options.role ? `-c role=${options.role}` : undefined,
    });
    // An idle client that loses its connection must not crash the process.
    this.pool.on("error", (err) => options.onError?.(err));
  }

  query<R>(sql: string, params?: unknown[]): Promise<QueryResult<R>> {
    return this.pool.query(sql, params) as unknown as Promise<QueryResult<R>>;
  }

  async exec(sql: string): Promise<void> {
    await this.pool.query(sql);
  }

  async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    // A checked-out client has no pool error listener: without this one, a connection
    // that Postgres cuts mid-transaction (a restart) would crash the process. A broken
    // client is released with its error, so the pool drops it instead of reusing it.
    let broken: Error | undefined;
    const onError = (err: Error) => {
      broken ??= err;
      this.options.onError?.(err);
    };
    client.on("error", onError);
    try {
      await client.query("BEGIN");
      const result = await fn({
        query: (sql, params) => client.query(sql, params) as never,
        exec: async (sql) => void (await client.query(sql)),
        copyFrom: (copySql, data) =>
          new Promise<void>((resolve, reject) => {
            const stream = client.query(copyFromStdin(copySql));
            stream.on("error", reject);
            stream.on("finish", resolve);
            stream.end(data);
          }),
      });
      await client.query("COMMIT");
      return result;
    } catch (err) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw err;
    } finally {
      client.removeListener("error", onError);
      client.release(broken);
    }
  }

  async listen(channel: string, onNotify: (payload: string) => void, onReconnect?: () => void): Promise<() => Promise<void>> {
    const conn = new ListenConnection(this.options, channel, onNotify, onReconnect);
    await conn.start();
    this.listeners.add(conn);
    return async () => {
      this.listeners.delete(conn);
      await conn.stop();
    };
  }

  async ping(): Promise<boolean> {
    try {
      await this.pool.query("SELECT 1");
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.listeners].map((l) => l.stop()));
    this.listeners.clear();
    await this.pool.end();
  }
}

/** A dedicated LISTEN connection that reconnects with backoff when it drops. */
class ListenConnection {
  private client: pg.Client | null = null;
  private stopped = false;
  private retryTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly options: PostgresOptions,
    private readonly channel: string,
    private readonly onNotify: (payload: string) => void,
    private readonly onReconnect?: () => void,
  ) {}

  async start(): Promise<void> {
    const client = new pg.Client({ connectionString: this.options.connectionString });
    client.on("notification", (msg) => {
      if (msg.channel === this.channel) this.onNotify(msg.payload ?? "");
    });
    client.on("error", (err) => {
      this.options.onError?.(err);
      this.reconnectLater(client, 200);
    });
    client.on("end", () => this.reconnectLater(client, 200));
    await client.connect();
    await client.query(`LISTEN ${quoteIdent(this.channel)}`);
    this.client = client;
  }

  private reconnectLater(dead: pg.Client, delayMs: number): void {
    if (this.stopped || this.client !== dead || this.retryTimer) return;
    this.client = null;
    dead.end().catch(() => undefined);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.stopped) return;
      this.start().then(
        () => this.onReconnect?.(),
        (err: Error) => {
          this.options.onError?.(err);
          this.client = dead; // so the guard above lets the retry through
          this.reconnectLater(dead, Math.min(delayMs * 2, 5000));
        },
      );
    }, delayMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    const client = this.client;
    this.client = null;
    await client?.end().catch(() => undefined);
  }
}

export function quoteIdent(name: string): string {
  return '"' + name.replace(/"/g, '""') + '"';
}
