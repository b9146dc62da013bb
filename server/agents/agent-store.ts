// The agent registry in Postgres: enrolment tokens, registration, credentials,
// heartbeats and counters. Secrets are stored as SHA-256 only and compared in
// constant time, like API keys.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Queryable } from "../storage/database.js";

export interface AgentRecord {
  zid: string;
  chain: string;
  name: string;
  sourceTypes: string[];
  publicKey: Uint8Array;
  serverSide: boolean;
  /** Server-side agents only, secrets included: never hand this to a client as is. */
  config: Record<string, unknown> | null;
  registeredAt: Date;
  deregisteredAt: Date | null;
  lastHeartbeatAt: Date | null;
  lastEventAt: Date | null;
  eventsTotal: number;
  outboxDepth: number;
  lags: { source: string; lag_ms: number }[];
  memoryBytes: number;
  updatedAt: Date;
}

export interface Heartbeat {
  outboxDepth: number;
  lags: { source: string; lag_ms: number }[];
  memoryBytes: number;
}

const ENROLMENT_TOKEN = /^ale_([0-9a-f]{16})\.([A-Za-z0-9_-]{43})$/;
const CREDENTIAL = /^alc_(ZID-[0-9A-Z]{8})\.([A-Za-z0-9_-]{43})$/;

const AGENT_COLUMNS = `zid, chain, name, source_types, public_key, server_side, config, registered_at, deregistered_at,
  last_heartbeat_at, last_event_at, events_total::float8 AS events_total, outbox_depth::float8 AS outbox_depth, lags,
  memory_bytes::float8 AS memory_bytes, updated_at`;

interface AgentRow {
  zid: string;
  chain: string;
  name: string;
  source_types: string[];
  public_key: Uint8Array;
  server_side: boolean;
  config: Record<string, unknown> | null;
  registered_at: Date;
  deregistered_at: Date | null;
  last_heartbeat_at: Date | null;
  last_event_at: Date | null;
  events_total: number;
  outbox_depth: number;
  lags: { source: string; lag_ms: number }[];
  memory_bytes: number;
  updated_at: Date;
}

function toRecord(r: AgentRow): AgentRecord {
  return {
    zid: r.zid,
    chain: r.chain,
    name: r.name,
    sourceTypes: r.source_types,
    publicKey: new Uint8Array(r.public_key),
    serverSide: r.server_side,
    config: r.config,
    registeredAt: r.registered_at,
    deregisteredAt: r.deregistered_at,
    lastHeartbeatAt: r.last_heartbeat_at,
    lastEventAt: r.last_event_at,
    eventsTotal: r.events_total,
    outboxDepth: r.outbox_depth,
    lags: r.lags,
    memoryBytes: r.memory_bytes,
    updatedAt: r.updated_at,
  };
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

function secretMatches(stored: Uint8Array | null, secret: string): boolean {
  if (!stored) return false;
  const given = sha256(secret);
  return stored.length === given.length && timingSafeEqual(stored, given);
}

export async function createEnrolmentToken(db: Queryable, chain: string, ttlSeconds: number): Promise<{ token: string; expiresAt: Date }> {
  const tokenId = randomBytes(8).toString("hex");
  const secret = randomBytes(32).toString("base64url");
  const res = await db.query<{ expires_at: Date }>(
    "INSERT INTO enrolment_tokens (token_id, chain, secret_hash, expires_at) VALUES ($1, $2, $3, now() + make_interval(secs => $4)) RETURNING expires_at",
    [tokenId, chain, sha256(secret), ttlSeconds],
  );
  return { token: `ale_${tokenId}.${secret}`, expiresAt: res.rows[0]!.expires_at };
}

export interface NewAgent {
  zid: string;
  chain: string;
  name: string;
  sourceTypes: string[];
  publicKey: Uint8Array;
}

/**
 * Spends `token` (once, before it expires) and registers the agent on the token's
 * chain; returns the agent's credential, shown this once. Runs in one transaction so
 * a token can never register two agents.
 */
export async function registerWithToken(
  tx: Queryable,
  token: string,
  agent: Omit<NewAgent, "chain">,
): Promise<{ chain: string; credential: string }> {
  const m = ENROLMENT_TOKEN.exec(token);
  if (!m) throw new ConnectError("enrolment token malformed (expected ale_<id>.<secret>)", Code.Unauthenticated);
  const found = await tx.query<{ chain: string; secret_hash: Uint8Array; expired: boolean; used_at: Date | null }>(
    "SELECT chain, secret_hash, expires_at <= now() AS expired, used_at FROM enrolment_tokens WHERE token_id = $1 FOR UPDATE",
    [m[1]],
  );
  const row = found.rows[0];
  if (!row || !secretMatches(row.secret_hash, m[2]!)) throw new ConnectError("enrolment token unknown", Code.Unauthenticated);
  if (row.used_at) throw new ConnectError("enrolment token already used: ask an admin for a new one", Code.Unauthenticated);
  if (row.expired) throw new ConnectError("enrolment token expired: ask an admin for a new one", Code.Unauthenticated);
  const existing = await tx.query<{ zid: string; deregistered: boolean }>(
    "SELECT zid, deregistered_at IS NOT NULL AS deregistered FROM agents WHERE zid = $1 OR public_key = $2",
    [agent.zid, agent.publicKey],
  );
  if (existing.rows[0]) {
    const why = existing.rows[0].deregistered ? "was deregistered; an agent that comes back needs a new identity (delete identity.json)" : "is already registered";
    throw new ConnectError(`agent ${existing.rows[0].zid} ${why}`, Code.AlreadyExists);
  }
  const secret = randomBytes(32).toString("base64url");
  await tx
    .query(
      `INSERT INTO agents (zid, chain, name, source_types, public_key, credential_hash, last_heartbeat_at)
       VALUES ($1, $2, $3, $4, $5, $6, now())`,
      [agent.zid, row.chain, agent.name, agent.sourceTypes, agent.publicKey, sha256(secret)],
    )
    .catch((err: { code?: string }) => {
      // Two tokens racing to register one key: the loser is told plainly.
      if (err?.code === "23505") throw new ConnectError(`agent ${agent.zid} is already registered`, Code.AlreadyExists);
      throw err;
    });
  await tx.query("UPDATE enrolment_tokens SET used_at = now(), used_by = $2 WHERE token_id = $1", [m[1], agent.zid]);
  return { chain: row.chain, credential: `alc_${agent.zid}.${secret}` };
}

/**
 * Registers a server-side agent (no credential: it runs inside the server), leased to
 * `runner` (the replica that spawned it) for `leaseMs`.
 */
export async function insertServerSideAgent(db: Queryable, agent: NewAgent, config: Record<string, unknown>, runner: string, leaseMs: number): Promise<AgentRecord> {
  const res = await db.query<AgentRow>(
    `INSERT INTO agents (zid, chain, name, source_types, public_key, server_side, config, last_heartbeat_at, runner, runner_lease_until)
     VALUES ($1, $2, $3, $4, $5, true, $6, now(), $7, now() + make_interval(secs => $8)) RETURNING ${AGENT_COLUMNS}`,
    [agent.zid, agent.chain, agent.name, agent.sourceTypes, agent.publicKey, JSON.stringify(config), runner, leaseMs / 1000],
  );
  return toRecord(res.rows[0]!);
}

/**
 * Renews `runner`'s leases on the registered server-side pollers it holds and takes
 * every one whose lease is free or has lapsed (its replica stopped or died). Returns
 * the ZIDs `runner` now holds: a poller not among them must not run on this replica.
 */
export async function leasePollers(db: Queryable, runner: string, leaseMs: number): Promise<string[]> {
  const res = await db.query<{ zid: string }>(
    `UPDATE agents SET runner = $1, runner_lease_until = now() + make_interval(secs => $2)
     WHERE server_side AND deregistered_at IS NULL AND 'generic_polling' = ANY(source_types)
       AND (runner IS NULL OR runner = $1 OR runner_lease_until < now())
     RETURNING zid`,
    [runner, leaseMs / 1000],
  );
  return res.rows.map((r) => r.zid);
}

/** Gives up `runner`'s leases, so another replica (or this one restarted) takes them at once. */
export async function releasePollers(db: Queryable, runner: string): Promise<void> {
  await db.query("UPDATE agents SET runner = NULL, runner_lease_until = NULL WHERE runner = $1", [runner]);
}

/** The agent a credential belongs to, if it is valid and the agent is registered. */
export async function authenticateAgent(db: Queryable, zid: string, credential: string): Promise<AgentRecord> {
  const m = CREDENTIAL.exec(credential);
  if (!m || m[1] !== zid) throw new ConnectError("agent credential malformed or not this agent's", Code.Unauthenticated);
  const res = await db.query<AgentRow & { credential_hash: Uint8Array | null }>(`SELECT ${AGENT_COLUMNS}, credential_hash FROM agents WHERE zid = $1`, [zid]);
  const row = res.rows[0];
  if (!row || !secretMatches(row.credential_hash, m[2]!)) throw new ConnectError(`agent ${zid}: credential unknown`, Code.Unauthenticated);
  if (row.deregistered_at) throw new ConnectError(`agent ${zid} was deregistered`, Code.Unauthenticated);
  return toRecord(row);
}

/** True when the agent is gone (deregistered, or no such agent). */
export async function isDeregistered(db: Queryable, zid: string): Promise<boolean> {
  const res = await db.query<{ gone: boolean }>("SELECT deregistered_at IS NOT NULL AS gone FROM agents WHERE zid = $1", [zid]);
  return res.rows[0]?.gone ?? true;
}

export async function getAgent(db: Queryable, zid: string): Promise<AgentRecord | null> {
  const res = await db.query<AgentRow>(`SELECT ${AGENT_COLUMNS} FROM agents WHERE zid = $1`, [zid]);
  return res.rows[0] ? toRecord(res.rows[0]) : null;
}

/** Registered (not deregistered) agents of a chain, by ZID. */
export async function listAgents(db: Queryable, chain: string): Promise<AgentRecord[]> {
  const res = await db.query<AgentRow>(`SELECT ${AGENT_COLUMNS} FROM agents WHERE chain = $1 AND deregistered_at IS NULL ORDER BY zid`, [chain]);
  return res.rows.map(toRecord);
}

/** Marks an agent deregistered; false when it is not a registered agent of `chain`. */
export async function deregisterAgent(db: Queryable, chain: string, zid: string): Promise<boolean> {
  const res = await db.query(
    "UPDATE agents SET deregistered_at = now(), updated_at = clock_timestamp() WHERE chain = $1 AND zid = $2 AND deregistered_at IS NULL RETURNING zid",
    [chain, zid],
  );
  return res.rows.length > 0;
}

export async function recordHeartbeat(db: Queryable, zid: string, hb: Heartbeat): Promise<void> {
  await db.query(
    `UPDATE agents SET last_heartbeat_at = now(), outbox_depth = $2, lags = $3, memory_bytes = $4, updated_at = clock_timestamp()
     WHERE zid = $1`,
    [zid, hb.outboxDepth, JSON.stringify(hb.lags), hb.memoryBytes],
  );
}

/** Counts events an agent got committed; run inside the commit's transaction. */
export async function countAgentEvents(tx: Queryable, zid: string, events: number): Promise<void> {
  await tx.query(
    "UPDATE agents SET events_total = events_total + $2, last_event_at = now(), last_heartbeat_at = now(), updated_at = clock_timestamp() WHERE zid = $1",
    [zid, events],
  );
}

/** Stores one batch's signed statement beside the entries it became (same transaction). */
export async function insertAgentBatch(
  tx: Queryable,
  b: { chain: string; agent: string; batch: string; batchNumber: number; signature: Uint8Array; events: Uint8Array; firstSeq: number; lastSeq: number },
): Promise<void> {
  await tx.query(
    `INSERT INTO agent_batches (chain, agent, batch, batch_number, signature, events, first_seq, last_seq)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
    [b.chain, b.agent, b.batch, b.batchNumber, b.signature, b.events, b.firstSeq, b.lastSeq],
  );
}

export interface StoredBatch {
  agent: string;
  batch: string;
  batchNumber: number;
  signature: Uint8Array;
  /** 32-byte event commitments, in signed order. */
  events: Uint8Array[];
  publicKey: Uint8Array;
}

/** Batches with entries in [fromSeq, toSeq), in seq order, with their agents' keys. */
export async function batchesInRange(db: Queryable, chain: string, fromSeq: number, toSeq: number): Promise<StoredBatch[]> {
  const res = await db.query<{ agent: string; batch: string; batch_number: string; signature: Uint8Array; events: Uint8Array; public_key: Uint8Array }>(
    `SELECT b.agent, b.batch, b.batch_number::text AS batch_number, b.signature, b.events, a.public_key
     FROM agent_batches b JOIN agents a ON a.zid = b.agent
     WHERE b.chain = $1 AND b.first_seq < $3 AND b.last_seq >= $2 ORDER BY b.first_seq, b.batch`,
    [chain, fromSeq, toSeq],
  );
  return res.rows.map((r) => {
    const all = new Uint8Array(r.events);
    const events: Uint8Array[] = [];
    for (let i = 0; i + 32 <= all.length; i += 32) events.push(all.subarray(i, i + 32));
    return { agent: r.agent, batch: r.batch, batchNumber: Number(r.batch_number), signature: new Uint8Array(r.signature), events, publicKey: new Uint8Array(r.public_key) };
  });
}
