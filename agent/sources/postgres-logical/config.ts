// The postgres_logical source's configuration (everything but `name` and `type`).
// Unknown keys are refused, and every error names the field it is about.
import { z } from "zod";

/** Replication slot names: Postgres allows lower-case letters, digits and underscores, at most 63. */
const SLOT_NAME = /^[a-z0-9_]{1,63}$/;
/** Publication, schema and table names this source accepts: plain identifiers, used as written (case kept). */
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

const connectionUrl = z.string().superRefine((text, ctx) => {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    ctx.addIssue({ code: "custom", message: "is not a URL; expected postgres://user@host:5432/database" });
    return;
  }
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
    ctx.addIssue({ code: "custom", message: `must be a postgres:// or postgresql:// URL, not ${url.protocol}//` });
  }
  if (url.hostname === "") ctx.addIssue({ code: "custom", message: "names no host" });
  if (url.pathname === "" || url.pathname === "/") ctx.addIssue({ code: "custom", message: "names no database (postgres://user@host:5432/database)" });
  if (url.searchParams.has("replication")) ctx.addIssue({ code: "custom", message: "must not set replication=...; the source opens its replication connection itself" });
});

/** "schema.table" or "table" (schema public). */
const tableName = z.string().superRefine((text, ctx) => {
  const parts = text.split(".");
  if (parts.length > 2 || !parts.every((p) => IDENTIFIER.test(p))) {
    ctx.addIssue({ code: "custom", message: `"${text.slice(0, 80)}" is not a table name; expected table or schema.table made of letters, digits, _ and $` });
  }
});

export const postgresLogicalConfigSchema = z
  .strictObject({
    /** postgres://user@host:port/database; or give host/port/user/database. */
    url: connectionUrl.optional(),
    host: z.string().min(1, "must not be empty").optional(),
    port: z.number().int().min(1).max(65_535).optional(),
    user: z.string().min(1, "must not be empty").optional(),
    database: z.string().min(1, "must not be empty").optional(),
    password: z.string().optional(),
    /** The name of an environment variable holding the password (read at start). */
    password_env: z.string().regex(ENV_NAME, "must be an environment variable name").optional(),
    /** The publication to stream (CREATE PUBLICATION ... FOR TABLE ...). */
    publication: z.string().regex(IDENTIFIER, "must be a plain identifier: letters, digits, _ and $, at most 63, not starting with a digit"),
    /** The logical replication slot (plugin pgoutput) that holds the source's place in the WAL. */
    slot: z.string().regex(SLOT_NAME, "must be lower-case letters, digits and _, at most 63 (Postgres's rule for slot names)"),
    /** Create the publication at start when it does not exist, for `tables`. */
    create_publication: z.boolean().default(false),
    /** The tables of a created publication; each must exist. */
    tables: z
      .array(tableName)
      .min(1, "list at least one table")
      .superRefine((list, ctx) => {
        const seen = new Set<string>();
        list.forEach((t, i) => {
          const canonical = t.includes(".") ? t : `public.${t}`;
          if (seen.has(canonical)) ctx.addIssue({ code: "custom", path: [i], message: `"${t}" is listed twice` });
          seen.add(canonical);
        });
      })
      .optional(),
    /**
     * Create the slot at start when it does not exist. When a slot the source used is
     * lost or invalidated, the source records a `gap` entry and, with this on, creates
     * it again and goes on; with it off, start() fails.
     */
    create_slot: z.boolean().default(false),
    /** How often the source tells the server how far it may discard WAL; keep it below the server's wal_sender_timeout. */
    status_interval_ms: z.number().int().min(100).max(3_600_000).default(10_000),
    /**
     * How long connecting and setting up replication may wait on the server (slot creation
     * excepted), and, at start, for a slot still held by a dead agent's session.
     */
    connect_timeout_ms: z.number().int().min(100).max(600_000).default(10_000),
    /**
     * A connection on which nothing at all arrives for this long while the source waits
     * for data (quiet connections are pinged first) is taken as dead, dropped and
     * reconnected: a half-open TCP connection would otherwise block for ~15 minutes.
     */
    receive_timeout_ms: z.number().int().min(100).max(3_600_000).default(120_000),
    /** Most events handed to the agent at once (a transaction's changes go in batches of this size). */
    max_batch_events: z.number().int().min(1).max(10_000).default(500),
    /** Wait before reconnecting after the connection is lost, doubled up to 30 s, in ms. */
    reconnect_delay_ms: z.number().int().min(10).max(600_000).default(1_000),
  })
  .superRefine((c, ctx) => {
    if (c.url === undefined && c.host === undefined) {
      ctx.addIssue({ code: "custom", path: ["url"], message: "give url (postgres://user@host:5432/database) or host, user and database" });
    }
    if (c.url === undefined && c.host !== undefined) {
      if (c.user === undefined) ctx.addIssue({ code: "custom", path: ["user"], message: "is needed with host" });
      if (c.database === undefined) ctx.addIssue({ code: "custom", path: ["database"], message: "is needed with host" });
    }
    if (c.url !== undefined) {
      for (const key of ["host", "port", "user", "database"] as const) {
        if (c[key] !== undefined) ctx.addIssue({ code: "custom", path: [key], message: "give it in url, or leave url out" });
      }
    }
    if (c.password !== undefined && c.password_env !== undefined) {
      ctx.addIssue({ code: "custom", path: ["password_env"], message: "give password or password_env, not both" });
    }
    if (c.create_publication && c.tables === undefined) {
      ctx.addIssue({ code: "custom", path: ["tables"], message: "list the tables of the publication to create (create_publication is on)" });
    }
    if (!c.create_publication && c.tables !== undefined) {
      ctx.addIssue({ code: "custom", path: ["tables"], message: "is only used with create_publication: true (the existing publication says which tables it has)" });
    }
  });

export type PostgresLogicalConfigInput = z.input<typeof postgresLogicalConfigSchema>;
export type PostgresLogicalConfig = z.output<typeof postgresLogicalConfigSchema>;

/** "public.orders" for "orders"; "sales.orders" as given. */
export function qualifiedTable(name: string): { schema: string; table: string } {
  const dot = name.indexOf(".");
  return dot < 0 ? { schema: "public", table: name } : { schema: name.slice(0, dot), table: name.slice(dot + 1) };
}
