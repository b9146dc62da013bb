// Group commit: concurrent appends to one chain are sequenced together in one
// transaction and acknowledged only after COMMIT. The chain head is locked in
// Postgres (SELECT ... FOR UPDATE), so several server replicas share one chain.
import { randomBytes } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  canonicalEnvelope,
  ENVELOPE_VERSION,
  leafHashOfCanonical,
  MerkleFrontier,
  payloadDigest,
  SALT_BYTES,
  toHex,
  type HashedNode,
  type StoredEntry,
} from "../../chain/index.js";
import { sha256Hex } from "#sha256";
import { loadFrontier, storedNodes } from "../merkle/tree-store.js";
import type { Database, Queryable } from "../storage/database.js";
import { ENTRY_COLUMNS, PAYLOAD_COLUMNS, PAYLOAD_JOIN, rowToEntry, type EntryRow } from "./entry-row.js";
import { readRange } from "./ledger-reader.js";
import type { PreparedEvent } from "./validate-event.js";

/** NOTIFY channel carrying "chain<TAB>last seq" after each commit. */
export const ENTRIES_CHANNEL = "audit_ledger_entries";

export interface Sequenced {
  entry: StoredEntry;
  /** True when the idempotency key was already in the chain (the original is returned). */
  deduplicated: boolean;
}

export interface CommitStats {
  chain: string;
  requests: number;
  events: number;
  seconds: number;
}

export interface SequencerOptions {
  /** Most events one transaction sequences; more wait for the next one. */
  maxEventsPerCommit?: number;
  onCommit?: (stats: CommitStats) => void;
  /**
   * Maintain the Merkle tree in each commit (default true). Off only to measure what
   * the tree costs (bench/): such a chain has no tree and cannot be checkpointed until
   * a commit with the tree on rebuilds it.
   */
  maintainTree?: boolean;
}

/** A prepared event with its payload already salted and digested: that work needs no
 * chain position, so it is done before the head lock is taken. */
export interface SealedEvent extends Omit<PreparedEvent, "salt"> {
  salt: Uint8Array | null;
  payload_digest?: string;
}

/**
 * Work to do in the commit's own transaction once the request's new entries are
 * written (never for deduplicated ones). A request with a hook is committed alone, so
 * its failure cannot take other requests down with it, unless it is appended with
 * `shareCommit` (hooks that fail only when the database does, like an agent's batch row).
 */
export type AfterWrite = (tx: Queryable, entries: StoredEntry[]) => Promise<void>;

interface Pending {
  events: SealedEvent[];
  afterWrite?: AfterWrite;
  /** Committed in a transaction of its own (a hook that may fail must not fail others). */
  alone: boolean;
  resolve: (results: Sequenced[]) => void;
  reject: (err: unknown) => void;
}

interface ChainQueue {
  pending: Pending[];
  flushing: Promise<void> | null;
}

export class Sequencer {
  private readonly queues = new Map<string, ChainQueue>();
  private readonly knownChains = new Set<string>();
  /** Each chain's tree frontier as of its last commit here; reloaded when another
   * replica has moved the head since. */
  private readonly frontiers = new Map<string, MerkleFrontier>();
  private readonly maxEventsPerCommit: number;
  private closed = false;

  constructor(
    private readonly db: Database,
    private readonly options: SequencerOptions = {},
  ) {
    this.maxEventsPerCommit = options.maxEventsPerCommit ?? 20_000;
  }

  /**
   * Sequences `events` atomically (all in one transaction) and resolves after COMMIT
   * with one result per event, in order.
   */
  append(chain: string, events: PreparedEvent[], afterWrite?: AfterWrite, opts: { shareCommit?: boolean } = {}): Promise<Sequenced[]> {
    if (this.closed) return Promise.reject(new ConnectError("server is shutting down", Code.Unavailable));
    if (events.length === 0) return Promise.resolve([]);
    let queue = this.queues.get(chain);
    if (!queue) {
      queue = { pending: [], flushing: null };
      this.queues.set(chain, queue);
    }
    const q = queue;
    const sealed = sealPayloads(events);
    return new Promise<Sequenced[]>((resolve, reject) => {
      q.pending.push({ events: sealed, afterWrite, alone: afterWrite !== undefined && !opts.shareCommit, resolve, reject });
      if (!q.flushing) q.flushing = this.flushLoop(chain, q);
    });
  }

  /** Stops taking appends and waits for every queued one to commit. */
  async drain(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.queues.values()].map((q) => q.flushing));
  }

  private async flushLoop(chain: string, q: ChainQueue): Promise<void> {
    try {
      while (q.pending.length > 0) {
        // Take whole requests (each is atomic) up to the per-commit limit; the
        // first one always goes, however large.
        const taken: Pending[] = [];
        let count = 0;
        while (q.pending.length > 0) {
          const next = q.pending[0]!;
          if (taken.length > 0 && (next.alone || count + next.events.length > this.maxEventsPerCommit)) break;
          taken.push(q.pending.shift()!);
          count += next.events.length;
          if (next.alone) break;
        }
        const started = performance.now();
        try {
          const { results, frontier } = await this.commit(chain, taken, false).catch((err: unknown) => {
            // An idempotency key already in the chain: commit again, answering repeats
            // with their original entries. Looking keys up only then keeps the common
            // path to one statement less under the head lock.
            if (isUniqueViolation(err, "entries_idempotency")) return this.commit(chain, taken, true);
            throw err;
          });
          this.frontiers.set(chain, frontier);
          taken.forEach((p, i) => p.resolve(results[i]!));
          this.options.onCommit?.({ chain, requests: taken.length, events: count, seconds: (performance.now() - started) / 1000 });
        } catch (err) {
          this.frontiers.delete(chain);
          const error = ConnectError.from(err, Code.Unavailable);
          for (const p of taken) p.reject(error);
        }
      }
    } finally {
      q.flushing = null;
    }
  }

  private commit(chain: string, requests: Pending[], lookUpKeys: boolean): Promise<{ results: Sequenced[][]; frontier: MerkleFrontier }> {
    return this.db.transaction(async (tx) => {
      if (!this.knownChains.has(chain)) {
        await tx.query("INSERT INTO chains (chain) VALUES ($1) ON CONFLICT DO NOTHING", [chain]);
      }
      const head = await tx.query<{ next_seq: number; head_hash: string; head_ts: Date | null; has_tree: boolean }>(
        "SELECT next_seq, encode(head_hash, 'hex') AS head_hash, head_ts, tree_root IS NOT NULL AS has_tree FROM chains WHERE chain = $1 FOR UPDATE",
        [chain],
      );
      const h = head.rows[0];
      if (!h) throw new ConnectError(`chain ${chain} vanished`, Code.Internal);
      // Extend a copy: the cached frontier must survive a rolled-back commit intact.
      const cached = this.frontiers.get(chain);
      const withTree = this.options.maintainTree !== false;
      const frontier = !withTree
        ? new MerkleFrontier()
        : cached && cached.size === h.next_seq && h.has_tree
          ? cached.copy()
          : h.has_tree || h.next_seq === 0
            ? await loadFrontier(tx, chain, h.next_seq)
            : await buildMissingTree(tx, chain, h.next_seq);
      const nodes: HashedNode[] = [];

      const existing = lookUpKeys ? await findByIdempotencyKeys(tx, chain, requests) : new Map<string, StoredEntry>();
      // Server time of sequencing, never earlier than the previous commit's, so that
      // ts is monotonic in seq even across replicas with skewed clocks.
      const tsMs = Math.max(Date.now(), h.head_ts ? h.head_ts.getTime() : 0);
      const ts = new Date(tsMs).toISOString();

      let seq = h.next_seq;
      let prev = h.head_hash;
      const fresh: StoredEntry[] = [];
      const inCommit = new Map<string, StoredEntry>();
      const results = requests.map((req) =>
        req.events.map((ev): Sequenced => {
          const key = ev.idempotency_key;
          if (key !== undefined) {
            const seen = existing.get(key) ?? inCommit.get(key);
            if (seen) return { entry: seen, deduplicated: true };
          }
          const entry = sequencedEntry(ev, chain, seq, ts, prev);
          const canonical = canonicalEnvelope(entry);
          entry.hash = sha256Hex(canonical);
          if (withTree) for (const n of frontier.appendLeaf(leafHashOfCanonical(canonical))) if (n.level > 0) nodes.push(n);
          fresh.push(entry);
          if (key !== undefined) inCommit.set(key, entry);
          prev = entry.hash;
          seq++;
          return { entry, deduplicated: false };
        }),
      );

      if (fresh.length > 0) {
        await writeCommit(tx, chain, ts, fresh, nodes, withTree ? toHex(frontier.root()) : null);
        for (const [i, req] of requests.entries()) {
          if (!req.afterWrite) continue;
          const written = results[i]!.filter((r) => !r.deduplicated).map((r) => r.entry);
          if (written.length > 0) await req.afterWrite(tx, written);
        }
      }
      this.knownChains.add(chain);
      return { results, frontier };
    });
  }
}

/** The entry an event becomes at `seq`, before its hash is set. One object of one
 * shape: no rest/spread copies on the hot path. */
export function sequencedEntry(ev: SealedEvent, chain: string, seq: number, ts: string, prevHash: string): StoredEntry {
  return {
    v: ENVELOPE_VERSION,
    chain,
    seq,
    ts,
    occurred_at: ev.occurred_at,
    source_type: ev.source_type,
    agent: ev.agent,
    kind: ev.kind,
    subject: ev.subject,
    actor: ev.actor,
    trace_id: ev.trace_id,
    span_id: ev.span_id,
    cause: ev.cause,
    idempotency_key: ev.idempotency_key,
    source_position: ev.source_position,
    payload_type: ev.payload_type,
    payload_size: ev.payload ? ev.payload.length : 0,
    payload_digest: ev.payload_digest,
    batch: ev.batch,
    prev_hash: prevHash,
    hash: "",
    payload: ev.payload,
    salt: ev.salt,
  };
}

/** Salts and digests the payloads of one request (one randomBytes call for all salts). */
function sealPayloads(events: PreparedEvent[]): SealedEvent[] {
  const withPayload = events.reduce((n, e) => n + (e.payload && !e.salt ? 1 : 0), 0);
  const salts = withPayload > 0 ? randomBytes(SALT_BYTES * withPayload) : null;
  let at = 0;
  return events.map((e): SealedEvent => {
    if (!e.payload) return { ...e, salt: null };
    if (e.salt) return { ...e, salt: e.salt, payload_digest: e.saltedDigest ?? payloadDigest(e.salt, e.payload) };
    const salt = salts!.subarray(at, (at += SALT_BYTES));
    return { ...e, salt, payload_digest: payloadDigest(salt, e.payload) };
  });
}

function isUniqueViolation(err: unknown, constraint: string): boolean {
  const e = err as { code?: string; constraint?: string; message?: string };
  return e?.code === "23505" && (e.constraint === constraint || (e.message ?? "").includes(constraint));
}

async function findByIdempotencyKeys(tx: Queryable, chain: string, requests: Pending[]): Promise<Map<string, StoredEntry>> {
  const keys: string[] = [];
  for (const r of requests) for (const e of r.events) if (e.idempotency_key !== undefined) keys.push(e.idempotency_key);
  const found = new Map<string, StoredEntry>();
  if (keys.length === 0) return found;
  const res = await tx.query<EntryRow>(
    `SELECT ${ENTRY_COLUMNS}, ${PAYLOAD_COLUMNS} FROM entries e ${PAYLOAD_JOIN}
     WHERE e.chain = $1 AND e.idempotency_key = ANY($2::text[])`,
    [chain, keys],
  );
  for (const row of res.rows) found.set(row.idempotency_key!, rowToEntry(row));
  return found;
}

const hexOrNull = (b: Uint8Array | null | undefined) => (b ? Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex") : null);

/**
 * Writes the new entries and their payloads, moves the head and queues the NOTIFY, in
 * ONE statement (data-modifying CTEs): the head lock is held for as few round trips as
 * possible. Arrays are unnested server-side, which PGlite understands too.
 */
async function writeCommit(tx: Queryable, chain: string, ts: string, entries: StoredEntry[], nodes: HashedNode[], treeRoot: string | null): Promise<void> {
  if (tx.copyFrom) return copyCommit(tx, tx.copyFrom.bind(tx), chain, ts, entries, nodes, treeRoot);
  const col = <T>(pick: (e: StoredEntry) => T) => entries.map(pick);
  const withPayload = entries.filter((e) => e.payload);
  const last = entries[entries.length - 1]!;
  await tx.query(
    `WITH new_entries AS (
       INSERT INTO entries (chain, seq, v, ts, occurred_at, source_type, agent, kind, subject, actor, trace_id,
         span_id, cause, idempotency_key, source_position, payload_type, payload_size, payload_digest, batch, prev_hash, hash)
       SELECT $1, u.seq, ${ENVELOPE_VERSION}, $2::timestamptz, u.occurred_at, u.source_type, u.agent, u.kind, u.subject, u.actor,
         u.trace_id, u.span_id, u.cause, u.idempotency_key, u.source_position, u.payload_type, u.payload_size,
         decode(u.payload_digest, 'hex'), u.batch, decode(u.prev_hash, 'hex'), decode(u.hash, 'hex')
       FROM unnest($3::bigint[], $4::timestamptz[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
         $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::bigint[], $17::text[], $18::text[], $19::text[], $20::text[])
         AS u(seq, occurred_at, source_type, agent, kind, subject, actor, trace_id, span_id, cause, idempotency_key,
              source_position, payload_type, payload_size, payload_digest, batch, prev_hash, hash)
     ), new_payloads AS (
       INSERT INTO payloads (chain, seq, salt, payload)
       SELECT $1, p.seq, decode(p.salt, 'hex'), decode(p.payload, 'hex')
       FROM unnest($21::bigint[], $22::text[], $23::text[]) AS p(seq, salt, payload)
     ), new_nodes AS (
       INSERT INTO merkle_nodes (chain, level, idx, hash)
       SELECT $1, n.level, n.idx, decode(n.hash, 'hex') FROM unnest($28::smallint[], $29::bigint[], $30::text[]) AS n(level, idx, hash)
     ), new_head AS (
       UPDATE chains SET next_seq = $24, head_hash = decode($25, 'hex'), head_ts = $2::timestamptz, tree_root = decode($31, 'hex') WHERE chain = $1
     )
     SELECT pg_notify($26, $27)`,
    [
      chain,
      ts,
      col((e) => e.seq),
      col((e) => e.occurred_at ?? null),
      col((e) => e.source_type),
      col((e) => e.agent),
      col((e) => e.kind),
      col((e) => e.subject ?? null),
      col((e) => e.actor ?? null),
      col((e) => e.trace_id ?? null),
      col((e) => e.span_id ?? null),
      col((e) => e.cause ?? null),
      col((e) => e.idempotency_key ?? null),
      col((e) => e.source_position ?? null),
      col((e) => e.payload_type ?? null),
      col((e) => e.payload_size),
      col((e) => e.payload_digest ?? null),
      col((e) => e.batch ?? null),
      col((e) => e.prev_hash),
      col((e) => e.hash),
      withPayload.map((e) => e.seq),
      withPayload.map((e) => hexOrNull(e.salt)),
      withPayload.map((e) => hexOrNull(e.payload)),
      last.seq + 1,
      last.hash,
      ENTRIES_CHANNEL,
      `${chain}\t${last.seq}`,
      nodes.map((n) => n.level),
      nodes.map((n) => n.index),
      nodes.map((n) => toHex(n.hash)),
      treeRoot,
    ],
  );
}

const ENTRY_COPY = `COPY entries (chain, seq, v, ts, occurred_at, source_type, agent, kind, subject, actor, trace_id,
  span_id, cause, idempotency_key, source_position, payload_type, payload_size, payload_digest, batch, prev_hash, hash) FROM STDIN`;
const PAYLOAD_COPY = "COPY payloads (chain, seq, salt, payload) FROM STDIN";
const NODE_COPY = "COPY merkle_nodes (chain, level, idx, hash) FROM STDIN";

/**
 * The same writes through COPY, Postgres' bulk path: about half the database CPU per row
 * of a multi-row INSERT, which is what lets ingest approach the raw COPY rate.
 */
async function copyCommit(
  tx: Queryable,
  copyFrom: (sql: string, data: string) => Promise<void>,
  chain: string,
  ts: string,
  entries: StoredEntry[],
  nodes: HashedNode[],
  treeRoot: string | null,
): Promise<void> {
  const c = copyText(chain);
  let rows = "";
  let payloadRows = "";
  for (const e of entries) {
    rows += entryCopyRow(c, ts, e);
    if (e.payload && e.salt) payloadRows += payloadCopyRow(c, e.seq, e.salt, e.payload);
  }
  await copyFrom(ENTRY_COPY, rows);
  if (payloadRows) await copyFrom(PAYLOAD_COPY, payloadRows);
  if (nodes.length > 0) await copyFrom(NODE_COPY, nodeCopyRows(c, nodes));
  const last = entries[entries.length - 1]!;
  await tx.query(
    `WITH new_head AS (UPDATE chains SET next_seq = $2, head_hash = decode($3, 'hex'), head_ts = $4::timestamptz, tree_root = decode($7, 'hex') WHERE chain = $1)
     SELECT pg_notify($5, $6)`,
    [chain, last.seq + 1, last.hash, ts, ENTRIES_CHANNEL, `${chain}\t${last.seq}`, treeRoot],
  );
}

/** A text value in COPY text format: backslash, tab, newline and carriage return escaped. */
export function copyText(value: string): string {
  return /[\\\t\n\r]/.test(value) ? value.replace(/[\\\t\n\r]/g, (ch) => COPY_ESCAPES[ch]!) : value;
}

function copyOpt(value: string | undefined): string {
  return value === undefined ? "\\N" : copyText(value);
}

const COPY_ESCAPES: Record<string, string> = { "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r" };

function nodeCopyRows(copyChain: string, nodes: HashedNode[]): string {
  let rows = "";
  for (const n of nodes) rows += nodeCopyRow(copyChain, n);
  return rows;
}

/** One `entries` row in COPY text format; `copyChain` is copyText(chain), escaped once per commit. */
export function entryCopyRow(copyChain: string, ts: string, e: StoredEntry): string {
  return `${copyChain}\t${e.seq}\t${ENVELOPE_VERSION}\t${ts}\t${copyOpt(e.occurred_at)}\t${copyText(e.source_type)}\t${copyText(e.agent)}\t${copyText(e.kind)}\t${copyOpt(e.subject)}\t${copyOpt(e.actor)}\t${copyOpt(e.trace_id)}\t${copyOpt(e.span_id)}\t${copyOpt(e.cause)}\t${copyOpt(e.idempotency_key)}\t${copyOpt(e.source_position)}\t${copyOpt(e.payload_type)}\t${e.payload_size}\t${e.payload_digest ? `\\\\x${e.payload_digest}` : "\\N"}\t${copyOpt(e.batch)}\t\\\\x${e.prev_hash}\t\\\\x${e.hash}\n`;
}

export function payloadCopyRow(copyChain: string, seq: number, salt: Uint8Array, payload: Uint8Array): string {
  return `${copyChain}\t${seq}\t\\\\x${hexOrNull(salt)}\t\\\\x${hexOrNull(payload)}\n`;
}

export function nodeCopyRow(copyChain: string, n: HashedNode): string {
  return `${copyChain}\t${n.level}\t${n.index}\t\\\\x${toHex(n.hash)}\n`;
}

/**
 * Builds the tree of a chain sequenced before the tree existed (schema 0001): reads
 * its entries in pages and stores every complete subtree. Runs under the head lock,
 * once per such chain.
 */
async function buildMissingTree(tx: Queryable, chain: string, size: number): Promise<MerkleFrontier> {
  const frontier = new MerkleFrontier();
  const PAGE = 10_000;
  while (frontier.size < size) {
    const page = await readRange(tx, chain, frontier.size, size, PAGE, false);
    if (page.length === 0 || page[0]!.seq !== frontier.size) {
      throw new ConnectError(`chain ${chain}: seq ${frontier.size} is missing, so its Merkle tree cannot be built`, Code.DataLoss);
    }
    const nodes: HashedNode[] = [];
    for (const e of page) {
      if (e.seq !== frontier.size) throw new ConnectError(`chain ${chain}: seq ${frontier.size} is missing`, Code.DataLoss);
      nodes.push(...storedNodes(frontier.appendLeaf(leafHashOfCanonical(canonicalEnvelope(e)))));
    }
    if (nodes.length > 0) {
      await tx.query(
        `INSERT INTO merkle_nodes (chain, level, idx, hash)
         SELECT $1, n.level, n.idx, decode(n.hash, 'hex') FROM unnest($2::smallint[], $3::bigint[], $4::text[]) AS n(level, idx, hash)`,
        [chain, nodes.map((n) => n.level), nodes.map((n) => n.index), nodes.map((n) => toHex(n.hash))],
      );
    }
  }
  return frontier;
}
