// Client-side helpers for the verifiable-log tests (checkpoints, proofs, tampering,
// redaction): everything here trusts only what a client can recompute or check.
import { Code, ConnectError } from "@connectrpc/connect";
import pg from "pg";
import {
  entryLeafHash,
  MerkleFrontier,
  openCheckpoint,
  parseVerifierKey,
  sodiumReady,
  type HashedNode,
  type OpenedCheckpoint,
  type StoredEntry,
  type VerifierKey,
} from "../../chain/index.js";
import type { Checkpoint } from "../../gen/auditledger/v1/entry_pb.js";
import type { VerifyVerdict } from "../../gen/auditledger/v1/ledger_service_pb.js";
import { entryToRow } from "../../clients/node/entry-row.js";
import { createLedgerClient, type LedgerClient } from "../../clients/node/ledger-client.js";
import { createApiKey, type Scope } from "../../server/auth/api-keys.js";
import { createDatabase, dropDatabase, adminUrl } from "../setup/postgres.js";

export type Ledger = LedgerClient["ledger"];

/** The Connect code name an RPC ends with, "OK" on success. */
export const codeOf = (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => "OK",
    (e: unknown) => Code[ConnectError.from(e).code],
  );

/** Polls `check` until it stops throwing, or fails with `what` once the deadline passes. */
export async function eventually<T>(what: string, check: () => Promise<T>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`${what}: still not true after ${timeoutMs} ms (${(err as Error).message})`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

/** The verdict of a Verify call (progress messages skipped). */
export async function verdictOf(ledger: Ledger, range: { fromSeq?: bigint; toSeq?: bigint } = {}): Promise<VerifyVerdict> {
  let verdict: VerifyVerdict | undefined;
  for await (const msg of ledger.verify(range)) if (msg.result.case === "verdict") verdict = msg.result.value;
  if (!verdict) throw new Error("Verify ended without a verdict");
  return verdict;
}

/** Every entry of the chain read back through Query (all pages), in row form. */
export async function readAll(ledger: Ledger, opts: { asOfTreeSize?: bigint; includePayload?: boolean } = {}): Promise<StoredEntry[]> {
  const out: StoredEntry[] = [];
  let cursor = "";
  do {
    const page = await ledger.query({ limit: 1000, cursor, asOfTreeSize: opts.asOfTreeSize, includePayload: opts.includePayload ?? false });
    out.push(...page.entries.map(entryToRow));
    cursor = page.nextCursor;
  } while (cursor);
  return out;
}

/** The RFC 6962 tree over the entries, computed client-side. */
export function treeOf(entries: StoredEntry[]): { frontier: MerkleFrontier; nodes: HashedNode[] } {
  const frontier = new MerkleFrontier();
  const nodes: HashedNode[] = [];
  for (const e of entries) nodes.push(...frontier.appendLeaf(entryLeafHash(e)));
  return { frontier, nodes };
}

export const rootOf = (entries: StoredEntry[]): Uint8Array => treeOf(entries).frontier.root();

/** The ledger's verifying keys as GetPublicKeys publishes them. */
export async function rpcKeys(ledger: Ledger): Promise<VerifierKey[]> {
  await sodiumReady();
  const { keys } = await ledger.getPublicKeys({});
  return keys.map((k) => parseVerifierKey(k.noteVerifierKey));
}

export interface WellKnownKeys {
  name: string;
  keys: { key_id: string; algorithm: string; verifier_key: string; public_key: string; created_at: string; retired_at?: string }[];
}

/** The document at /.well-known/audit-ledger/keys (no API key needed). */
export async function wellKnown(baseUrl: string): Promise<WellKnownKeys> {
  const res = await fetch(`${baseUrl}/.well-known/audit-ledger/keys`);
  if (res.status !== 200) throw new Error(`well-known keys: HTTP ${res.status}`);
  return (await res.json()) as WellKnownKeys;
}

export async function wellKnownVerifiers(baseUrl: string): Promise<VerifierKey[]> {
  await sodiumReady();
  return (await wellKnown(baseUrl)).keys.map((k) => parseVerifierKey(k.verifier_key));
}

/** Opens a checkpoint message's signed note against `keys`, checking its origin. */
export async function openCp(cp: Checkpoint | undefined, keys: VerifierKey[], origin: string): Promise<OpenedCheckpoint> {
  await sodiumReady();
  if (!cp) throw new Error("no checkpoint in the response");
  return openCheckpoint(cp.signedNote, keys, origin);
}

/** One sample of a Prometheus text exposition (0 when the labelled series does not exist yet). */
export function sample(text: string, name: string, labels = ""): number {
  const prefix = labels ? `${name}{${labels}} ` : `${name} `;
  const line = text.split("\n").find((l) => l.startsWith(prefix));
  return line === undefined ? 0 : Number(line.slice(prefix.length));
}

/** The key id (agent / actor) of an "alk_<id>.<secret>" token. */
export const keyIdOf = (token: string): string => token.slice(4, 20);

/**
 * A database of its own for tests whose servers must not share checkpoints with the
 * rest of the run (every server's checkpointer signs every chain of its database, so a
 * server with other keys would sign, or refuse, the other test files' chains).
 * The server applies the migrations when it starts.
 */
export async function isolatedDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `audit_ledger_iso_${Date.now()}_${process.pid}_${Math.floor(Math.random() * 1e6)}`;
  await createDatabase(name);
  return { url: adminUrl(name), drop: () => dropDatabase(name) };
}

/** A client of `chain` on a server whose database is `url`, with a key created there. */
export async function clientOn(url: string, baseUrl: string, chain: string, scopes: Scope[] = ["append", "read", "admin"]): Promise<{ client: LedgerClient; token: string }> {
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  try {
    const { token } = await createApiKey(db as never, chain, scopes);
    return { client: createLedgerClient({ baseUrl, apiKey: token }), token };
  } finally {
    await db.end();
  }
}
