// Server configuration from the environment (and CLI flags, which set the same names).
import { DEFAULT_LIMITS, type Limits } from "./ledger/limits.js";

export interface ServerConfig {
  host: string;
  port: number;
  /** Postgres URL; empty for embedded PGlite in dataDir. */
  databaseUrl: string;
  dataDir: string;
  /** Role the server's database sessions run as (least privilege); "" for the login role. */
  dbRole: string;
  dbPoolSize: number;
  tlsCertFile: string;
  tlsKeyFile: string;
  limits: Limits;
  /** Create and print an admin key when the database holds none. */
  bootstrapAdminKey: boolean;
  /** Chain the bootstrap admin key is bound to. */
  defaultChain: string;
  /** How long shutdown waits for open requests. */
  shutdownGraceMs: number;
  logLevel: string;
  /** Folder of checkpoint signing keys (private: 0700); created with a first key. */
  keysDir: string;
  /** Name of the signing key and prefix of every checkpoint origin ("<name>/<chain>"):
   * a schema-less URL naming this ledger, e.g. "ledger.example.com". */
  ledgerName: string;
  /** How often chains whose head moved get a fresh checkpoint; 0 = only on demand. */
  checkpointIntervalMs: number;
  /** Agent silence after which it shows STALE, then DEAD. */
  agentStaleAfterMs: number;
  agentDeadAfterMs: number;
  /** Events one Ingest stream may have sent and not yet had acked. */
  ingestCreditEvents: number;
  /** How long a new Ingest stream may take to send hello before it is ended. */
  ingestHelloTimeoutMs: number;
  /** Where server-side agents (generic_polling) keep their state. */
  agentStateDir: string;
  /** Shortest interval a server-side generic_polling agent may poll at. */
  agentPollMinIntervalMs: number;
  /** How often each replica renews the leases of the server-side pollers it runs. */
  agentLeaseSweepMs: number;
}

function int(name: string, fallback: number, env: NodeJS.ProcessEnv): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name}: "${raw}" is not a non-negative integer`);
  return n;
}

export function configFromEnv(env: NodeJS.ProcessEnv = process.env): ServerConfig {
  return {
    host: env.HOST ?? "127.0.0.1",
    port: int("PORT", 8080, env),
    databaseUrl: env.DATABASE_URL ?? "",
    dataDir: env.DATA_DIR ?? ".data/ledger",
    dbRole: roleName(env.DB_ROLE ?? "audit_ledger_app"),
    dbPoolSize: int("DB_POOL_SIZE", 10, env),
    tlsCertFile: env.TLS_CERT_FILE ?? "",
    tlsKeyFile: env.TLS_KEY_FILE ?? "",
    limits: {
      maxPayloadBytes: int("MAX_PAYLOAD_BYTES", DEFAULT_LIMITS.maxPayloadBytes, env),
      maxBatchEvents: int("MAX_BATCH_EVENTS", DEFAULT_LIMITS.maxBatchEvents, env),
      maxRequestBytes: int("MAX_REQUEST_BYTES", DEFAULT_LIMITS.maxRequestBytes, env),
      maxJsonDepth: int("MAX_JSON_DEPTH", DEFAULT_LIMITS.maxJsonDepth, env),
    },
    bootstrapAdminKey: (env.BOOTSTRAP_ADMIN_KEY ?? "true") !== "false",
    defaultChain: env.DEFAULT_CHAIN ?? "default",
    shutdownGraceMs: int("SHUTDOWN_GRACE_MS", 10_000, env),
    logLevel: env.LOG_LEVEL ?? "info",
    keysDir: env.KEYS_DIR ?? ".data/keys",
    ledgerName: keyName(env.LEDGER_NAME ?? "audit-ledger.local"),
    checkpointIntervalMs: int("CHECKPOINT_INTERVAL_MS", 1000, env),
    agentStaleAfterMs: int("AGENT_STALE_AFTER_MS", 30_000, env),
    agentDeadAfterMs: int("AGENT_DEAD_AFTER_MS", 120_000, env),
    ingestCreditEvents: Math.max(1, int("INGEST_CREDIT_EVENTS", 5_000, env)),
    ingestHelloTimeoutMs: Math.max(1, int("INGEST_HELLO_TIMEOUT_MS", 10_000, env)),
    agentStateDir: env.AGENT_STATE_DIR ?? ".data/server-agents",
    agentPollMinIntervalMs: int("AGENT_POLL_MIN_INTERVAL_MS", 1000, env),
    agentLeaseSweepMs: int("AGENT_LEASE_SWEEP_MS", 5000, env),
  };
}

function roleName(role: string): string {
  if (role !== "" && !/^[a-z_][a-z0-9_]{0,62}$/.test(role)) throw new Error(`DB_ROLE: "${role}" is not a plain role name`);
  return role;
}

function keyName(name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/.test(name)) throw new Error(`LEDGER_NAME: "${name}" must be a schema-less URL such as ledger.example.com (no spaces or "+")`);
  return name;
}
