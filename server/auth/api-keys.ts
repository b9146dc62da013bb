// API keys: "alk_<key id>.<secret>" bearer tokens, each bound to one chain with
// scopes. Only SHA-256 of the secret is stored; lookups compare in constant time.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { Queryable } from "../storage/database.js";

export const SCOPES = ["append", "read", "admin"] as const;
export type Scope = (typeof SCOPES)[number];

export interface Principal {
  keyId: string;
  chain: string;
  scopes: ReadonlySet<Scope>;
}

export interface ApiKeyRecord {
  keyId: string;
  chain: string;
  scopes: Scope[];
  name: string;
  createdAt: Date;
  revokedAt: Date | null;
}

const TOKEN = /^alk_([0-9a-f]{16})\.([A-Za-z0-9_-]{43})$/;

export function isScope(s: string): s is Scope {
  return (SCOPES as readonly string[]).includes(s);
}

function secretHash(secret: string): Buffer {
  return createHash("sha256").update(secret).digest();
}

export async function createApiKey(db: Queryable, chain: string, scopes: Scope[], name = ""): Promise<{ record: ApiKeyRecord; token: string }> {
  const keyId = randomBytes(8).toString("hex");
  const secret = randomBytes(32).toString("base64url");
  const res = await db.query<{ created_at: Date }>(
    "INSERT INTO api_keys (key_id, chain, scopes, name, secret_hash) VALUES ($1, $2, $3, $4, $5) RETURNING created_at",
    [keyId, chain, scopes, name, secretHash(secret)],
  );
  return {
    record: { keyId, chain, scopes, name, createdAt: res.rows[0]!.created_at, revokedAt: null },
    token: `alk_${keyId}.${secret}`,
  };
}

export async function listApiKeys(db: Queryable, chain: string): Promise<ApiKeyRecord[]> {
  const res = await db.query<{ key_id: string; chain: string; scopes: Scope[]; name: string; created_at: Date; revoked_at: Date | null }>(
    "SELECT key_id, chain, scopes, name, created_at, revoked_at FROM api_keys WHERE chain = $1 ORDER BY created_at, key_id",
    [chain],
  );
  return res.rows.map((r) => ({ keyId: r.key_id, chain: r.chain, scopes: r.scopes, name: r.name, createdAt: r.created_at, revokedAt: r.revoked_at }));
}

/** Revokes a key of `chain`; false when there is no such key. */
export async function revokeApiKey(db: Queryable, chain: string, keyId: string): Promise<boolean> {
  const res = await db.query("UPDATE api_keys SET revoked_at = now() WHERE chain = $1 AND key_id = $2 AND revoked_at IS NULL RETURNING key_id", [chain, keyId]);
  return res.rows.length > 0;
}

export async function countApiKeys(db: Queryable): Promise<number> {
  const res = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM api_keys");
  return res.rows[0]!.n;
}

/**
 * Resolves bearer tokens to principals, caching hits briefly so the hot path does
 * not query per request; a revocation takes effect within `ttlMs`.
 */
export class ApiKeyAuthenticator {
  private readonly cache = new Map<string, { principal: Promise<Principal | null>; until: number }>();

  constructor(
    private readonly db: Queryable,
    private readonly ttlMs = 2000,
  ) {}

  authenticate(token: string): Promise<Principal | null> {
    const now = Date.now();
    const hit = this.cache.get(token);
    if (hit && hit.until > now) return hit.principal;
    // The promise is cached, not its result: requests that miss together share one
    // lookup instead of each taking a pool connection the sequencer needs.
    const principal = this.lookup(token);
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(token, { principal, until: now + this.ttlMs });
    principal.catch(() => this.cache.delete(token));
    return principal;
  }

  private async lookup(token: string): Promise<Principal | null> {
    const m = TOKEN.exec(token);
    if (!m) return null;
    const res = await this.db.query<{ chain: string; scopes: Scope[]; secret_hash: Uint8Array; revoked_at: Date | null }>(
      "SELECT chain, scopes, secret_hash, revoked_at FROM api_keys WHERE key_id = $1",
      [m[1]],
    );
    const row = res.rows[0];
    if (!row || row.revoked_at) return null;
    if (!timingSafeEqual(Buffer.from(row.secret_hash), secretHash(m[2]!))) return null;
    return { keyId: m[1]!, chain: row.chain, scopes: new Set(row.scopes) };
  }
}
