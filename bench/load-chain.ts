// Bulk loader: builds a chain of N entries directly in a database, exactly as the ledger
// would have written it, so that chain-length effects (1M, 10M entries) can be measured
// without sequencing every entry through the server first.
//
// Each entry is the bench event of its seq (bench/events.ts) validated with the
// server's own prepareEvent, salted, digested, hashed and linked with the chain module,
// and its leaf appended to a MerkleFrontier whose completed nodes of level >= 1 are
// stored (merkle_nodes). Entries are grouped into "commits" of --commit-size sharing one
// server timestamp, like group commits. Rows go in with COPY on one connection, one
// transaction per chunk (which also moves the chain head and holds its row lock), while
// the next chunk is hashed: Node and Postgres work side by side. Every
// --checkpoint-every entries the loader signs a checkpoint with the bench key ring
// (bench/bench-keys.ts, the bench server's); the last one, at the head, is cut by the
// server's own Checkpointer, which first checks the stored tree against the head's root
// and proves it consistent with the previous checkpoint. A chain that already exists is
// extended from its head (its frontier read from the stored nodes).
//
// Standalone (keeps the database; prints how to benchmark it):
//   npx tsx bench/load-chain.ts --entries 10000000 [--database NAME] [--chain NAME] [--check]
// --check then starts a bench server on the database and Verifies the whole chain
// through the Verify RPC, and checks proofs from it (use it at small N, e.g. 20000).
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { from as copyFrom } from "pg-copy-streams";
import {
  canonicalEnvelope,
  keyIdHex,
  leafHashOfCanonical,
  MerkleFrontier,
  payloadDigest,
  SALT_BYTES,
  signCheckpoint,
  toHex,
} from "../chain/index.js";
import { sha256Hex } from "#sha256";
import { prepareEvent } from "../server/ledger/validate-event.js";
import { copyText, entryCopyRow, nodeCopyRow, payloadCopyRow, sequencedEntry } from "../server/ledger/sequencer.js";
import { DEFAULT_LIMITS } from "../server/ledger/limits.js";
import { PostgresDatabase } from "../server/storage/postgres-database.js";
import { migrate } from "../server/storage/migrate.js";
import { loadFrontier } from "../server/merkle/tree-store.js";
import { KeyRing } from "../server/checkpoints/key-ring.js";
import { Checkpointer, originOf } from "../server/checkpoints/checkpointer.js";
import { LedgerMetrics } from "../server/ops/metrics.js";
import { createLogger } from "../server/ops/logger.js";
import { createApiKey } from "../server/auth/api-keys.js";
import { adminUrl, createDatabase, ensurePostgres } from "../test/setup/postgres.js";
import { benchEvent } from "./events.js";
import { BENCH_KEYS } from "./bench-keys.js";
import { int } from "./stats.js";

export interface LoadOptions {
  databaseUrl: string;
  chain: string;
  /** Size the chain should have; a longer chain is left as it is. */
  entries: number;
  /** Sign a checkpoint every this many entries (plus one at the head). */
  checkpointEvery?: number;
  /** Entries per simulated group commit (one `ts`, one salt draw). */
  commitSize?: number;
  /** Entries per transaction. */
  chunkSize?: number;
  /** VACUUM (ANALYZE) the ledger's tables afterwards, as autovacuum would have done. */
  vacuum?: boolean;
  log?: (msg: string) => void;
}

export interface LoadResult {
  chain: string;
  /** Size before loading, and after. */
  fromSize: number;
  size: number;
  /** Seconds spent building and writing the entries (without VACUUM). */
  seconds: number;
  entriesPerSecond: number;
  vacuumSeconds: number;
  /** Checkpoints signed by the loader, plus the one the Checkpointer cut at the head. */
  checkpoints: number;
  root: string;
}

const ENTRY_COPY = `COPY entries (chain, seq, v, ts, occurred_at, source_type, agent, kind, subject, actor, trace_id,
  span_id, cause, idempotency_key, source_position, payload_type, payload_size, payload_digest, batch, prev_hash, hash) FROM STDIN`;
const PAYLOAD_COPY = "COPY payloads (chain, seq, salt, payload) FROM STDIN";
const NODE_COPY = "COPY merkle_nodes (chain, level, idx, hash) FROM STDIN";
const CHECKPOINT_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('audit-ledger checkpoint ' || $1, 0))";


interface SignedCheckpoint {
  size: number;
  root: string;
  note: string;
  cutAt: string;
}

/** One transaction's worth of rows, in COPY text format, and the head after it. */
interface Chunk {
  from: number;
  to: number;
  entries: string[];
  payloads: string[];
  nodes: string[];
  headHash: string;
  headTs: string;
  root: string;
  checkpoints: SignedCheckpoint[];
}

export async function loadChain(opts: LoadOptions): Promise<LoadResult> {
  const log = opts.log ?? (() => undefined);
  const commitSize = opts.commitSize ?? 1000;
  const chunkSize = Math.max(commitSize, Math.round((opts.chunkSize ?? 50_000) / commitSize) * commitSize);
  const checkpointEvery = opts.checkpointEvery ?? 100_000;
  const { chain } = opts;

  // The owner connection applies migrations (as the server does at start); the pool
  // serves the head, frontier and Checkpointer; one plain client streams the COPYs.
  const db = new PostgresDatabase({ connectionString: opts.databaseUrl, max: 2 });
  const writer = new pg.Client({ connectionString: opts.databaseUrl });
  await writer.connect();
  try {
    await migrate(db);
    await db.query("INSERT INTO chains (chain) VALUES ($1) ON CONFLICT DO NOTHING", [chain]);
    const head = (
      await db.query<{ next_seq: number; head_hash: string; head_ts: Date | null; tree_root: string | null }>(
        "SELECT next_seq, encode(head_hash, 'hex') AS head_hash, head_ts, encode(tree_root, 'hex') AS tree_root FROM chains WHERE chain = $1",
        [chain],
      )
    ).rows[0]!;
    const fromSize = Number(head.next_seq);
    const ring = await KeyRing.open(BENCH_KEYS.dir, BENCH_KEYS.name);
    const checkpointer = new Checkpointer(db, ring, { intervalMs: 0, logger: createLogger("silent"), metrics: new LedgerMetrics() });
    if (fromSize >= opts.entries) {
      log(`chain ${chain} already has ${int(fromSize)} entries; not loading`);
      const cp = await checkpointer.cut(chain);
      return { chain, fromSize, size: fromSize, seconds: 0, entriesPerSecond: 0, vacuumSeconds: 0, checkpoints: 0, root: cp ? toHex(cp.root) : "" };
    }
    if (fromSize > 0 && head.tree_root === null) throw new Error(`chain ${chain} has ${fromSize} entries but no Merkle tree: append to it once through the server first`);
    const frontier = fromSize === 0 ? new MerkleFrontier() : await loadFrontier(db, chain, fromSize);
    // The loader appends as an API key of the chain would (agent = its key id).
    const { record } = await createApiKey(db, chain, ["append", "read"], "bench chain loader");
    const signer = ring.active();
    const origin = originOf(ring.name, chain);

    // Commit timestamps: one millisecond apart, ending about now, never before the head.
    const commits = Math.ceil((opts.entries - fromSize) / commitSize);
    let tsMs = Math.max(head.head_ts ? head.head_ts.getTime() + 1 : 0, Date.now() - commits - 1000);
    let seq = fromSize;
    let prev = head.head_hash;
    const copyChain = copyText(chain);
    const nextCheckpoint = () => (Math.floor(seq / checkpointEvery) + 1) * checkpointEvery;
    let checkpointAt = nextCheckpoint();
    let signed = 0;

    /** Hashes the next chunk, yielding to the event loop after every commit so the
     * previous chunk's COPY keeps streaming meanwhile. */
    const buildChunk = async (end: number): Promise<Chunk> => {
      const chunk: Chunk = { from: seq, to: end, entries: [], payloads: [], nodes: [], headHash: "", headTs: "", root: "", checkpoints: [] };
      while (seq < end) {
        const n = Math.min(commitSize, end - seq);
        const ts = new Date(tsMs++).toISOString();
        const salts = randomBytes(SALT_BYTES * n);
        let rows = "";
        let payloadRows = "";
        let nodeRows = "";
        for (let i = 0; i < n; i++, seq++) {
          const ev = prepareEvent(benchEvent(seq, "load"), record.keyId, DEFAULT_LIMITS);
          const salt = salts.subarray(i * SALT_BYTES, (i + 1) * SALT_BYTES);
          const digest = ev.payload ? payloadDigest(salt, ev.payload) : undefined;
          const entry = sequencedEntry({ ...ev, salt: ev.payload ? salt : null, payload_digest: digest }, chain, seq, ts, prev);
          const canonical = canonicalEnvelope(entry);
          entry.hash = sha256Hex(canonical);
          for (const node of frontier.appendLeaf(leafHashOfCanonical(canonical))) {
            if (node.level > 0) nodeRows += nodeCopyRow(copyChain, node);
          }
          rows += entryCopyRow(copyChain, ts, entry);
          if (ev.payload) payloadRows += payloadCopyRow(copyChain, seq, salt, ev.payload);
          prev = entry.hash;
          if (seq + 1 === checkpointAt) {
            // The last checkpoint, at the head, is left to the Checkpointer (below).
            if (seq + 1 < opts.entries) {
              const root = frontier.root();
              const note = signCheckpoint({ origin, size: seq + 1, root, extensions: [] }, signer);
              chunk.checkpoints.push({ size: seq + 1, root: toHex(root), note, cutAt: ts });
            }
            checkpointAt += checkpointEvery;
          }
        }
        chunk.entries.push(rows);
        chunk.payloads.push(payloadRows);
        if (nodeRows) chunk.nodes.push(nodeRows);
        chunk.headTs = ts;
        await new Promise<void>((r) => setImmediate(r));
      }
      chunk.headHash = prev;
      chunk.root = toHex(frontier.root());
      return chunk;
    };

    const copyIn = async (sql: string, parts: string[]) => {
      if (parts.length > 0) await pipeline(Readable.from(parts), writer.query(copyFrom(sql)));
    };
    const writeChunk = async (c: Chunk): Promise<void> => {
      await writer.query("BEGIN");
      try {
        const locked = await writer.query<{ next_seq: number }>("SELECT next_seq FROM chains WHERE chain = $1 FOR UPDATE", [chain]);
        if (Number(locked.rows[0]?.next_seq) !== c.from) {
          throw new Error(`chain ${chain} moved to ${locked.rows[0]?.next_seq} while loading (expected ${c.from}): something else appends to it`);
        }
        await copyIn(ENTRY_COPY, c.entries);
        await copyIn(PAYLOAD_COPY, c.payloads);
        await copyIn(NODE_COPY, c.nodes);
        await writer.query(
          "UPDATE chains SET next_seq = $2, head_hash = decode($3, 'hex'), head_ts = $4::timestamptz, tree_root = decode($5, 'hex') WHERE chain = $1",
          [chain, c.to, c.headHash, c.headTs, c.root],
        );
        if (c.checkpoints.length > 0) {
          // The server's checkpointer may be cutting this chain too: take its lock.
          await writer.query(CHECKPOINT_LOCK, [chain]);
          for (const cp of c.checkpoints) {
            await writer.query(
              `INSERT INTO checkpoints (chain, tree_size, root, key_id, note, cut_at) VALUES ($1, $2, decode($3, 'hex'), $4, $5, $6::timestamptz)
               ON CONFLICT (chain, tree_size) DO NOTHING`,
              [chain, cp.size, cp.root, keyIdHex(signer.keyId), cp.note, cp.cutAt],
            );
          }
        }
        await writer.query("COMMIT");
      } catch (err) {
        await writer.query("ROLLBACK").catch(() => undefined);
        throw err;
      }
    };

    log(`loading chain ${chain}: seq ${int(fromSize)}..${int(opts.entries - 1)} in transactions of ${int(chunkSize)}`);
    const started = performance.now();
    let lastLog = started;
    let writing: Promise<void> | null = null;
    while (seq < opts.entries) {
      const chunk = await buildChunk(Math.min(opts.entries, seq + chunkSize));
      signed += chunk.checkpoints.length;
      await writing;
      writing = writeChunk(chunk);
      // Let a failed write surface at the next await rather than as an unhandled rejection.
      writing.catch(() => undefined);
      if (performance.now() - lastLog > 15_000) {
        lastLog = performance.now();
        const s = (lastLog - started) / 1000;
        log(`  ${int(seq)} entries hashed, ${int((seq - fromSize) / s)}/s`);
      }
    }
    await writing;
    const seconds = (performance.now() - started) / 1000;
    // The server's Checkpointer signs the head: it recomputes the root from the stored
    // nodes, compares it with the head's tree_root and proves it consistent with the
    // previous checkpoint, so a badly loaded tree fails here.
    const final = await checkpointer.cut(chain);
    if (!final || final.treeSize !== opts.entries || toHex(final.root) !== toHex(frontier.root())) {
      throw new Error(`chain ${chain}: the checkpoint at the head does not match the loaded tree`);
    }
    log(`  ${int(opts.entries - fromSize)} entries in ${seconds.toFixed(1)} s (${int((opts.entries - fromSize) / seconds)}/s), ${signed + 1} checkpoints`);

    let vacuumSeconds = 0;
    if (opts.vacuum !== false) {
      const v = performance.now();
      await writer.query("VACUUM (ANALYZE) entries, payloads, merkle_nodes, checkpoints, chains");
      vacuumSeconds = (performance.now() - v) / 1000;
      log(`  VACUUM (ANALYZE) ${vacuumSeconds.toFixed(1)} s`);
    }
    return {
      chain,
      fromSize,
      size: opts.entries,
      seconds,
      entriesPerSecond: (opts.entries - fromSize) / seconds,
      vacuumSeconds,
      checkpoints: signed + 1,
      root: toHex(final.root),
    };
  } finally {
    await writer.end().catch(() => undefined);
    await db.close();
  }
}

/** Name of the chain the bench loads to `size` entries. */
export function loadedChainName(size: number): string {
  return `bench-load-${size}`;
}

async function databaseExists(name: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: adminUrl() });
  await client.connect();
  try {
    return (await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name])).rowCount === 1;
  } finally {
    await client.end();
  }
}

/** Creates database `name` on the bench Postgres unless it exists; returns its URL. */
export async function ensureDatabase(name: string): Promise<{ url: string; created: boolean }> {
  await ensurePostgres();
  const created = !(await databaseExists(name));
  if (created) await createDatabase(name);
  return { url: adminUrl(name), created };
}

const USAGE = `npx tsx bench/load-chain.ts --entries N [flags]

  --entries N           size of the chain (an existing chain is extended to N)
  --database NAME       database on the bench Postgres, created if missing (default: a new audit_ledger_load_<time>)
  --chain NAME          chain name (default bench-load-N, the name npm run bench -- --growth-sizes looks for)
  --checkpoint-every N  sign a checkpoint every N entries, and one at the head (100000)
  --no-vacuum           skip the VACUUM (ANALYZE) after loading
  --check               then Verify the chain through a bench server and check proofs (small N)

The database is kept. Benchmark it with
  npm run bench -- --database NAME --only growth,proofs --growth-sizes <sizes>
`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      entries: { type: "string" },
      database: { type: "string" },
      chain: { type: "string" },
      "checkpoint-every": { type: "string" },
      "no-vacuum": { type: "boolean" },
      check: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  const entries = Number((values.entries ?? "").replace(/_/g, ""));
  if (values.help || !Number.isSafeInteger(entries) || entries <= 0) {
    process.stdout.write(USAGE);
    process.exit(values.help ? 0 : 2);
  }
  const log = (msg: string) => process.stderr.write(`[load ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
  const name = values.database ?? `audit_ledger_load_${Date.now()}`;
  const { url, created } = await ensureDatabase(name);
  log(`database ${name}${created ? " (created)" : ""}`);
  const chain = values.chain ?? loadedChainName(entries);
  const result = await loadChain({
    databaseUrl: url,
    chain,
    entries,
    checkpointEvery: values["checkpoint-every"] ? Number(values["checkpoint-every"]) : undefined,
    vacuum: !values["no-vacuum"],
    log,
  });
  process.stdout.write(`${JSON.stringify({ database: name, ...result })}\n`);
  if (values.check) {
    const { selfCheck } = await import("./proofs.js");
    const report = await selfCheck(url, chain, log);
    process.stdout.write(`${JSON.stringify(report)}\n`);
    if (!report.valid || report.checkpointsChecked !== report.checkpointsInRange) {
      log("SELF-CHECK FAILED: the loaded chain does not verify");
      process.exitCode = 1;
    }
  }
  process.stderr.write(`\nkept database ${name}. Benchmark it with:\n  npm run bench -- --database ${name} --only growth,proofs --growth-sizes <sizes>\n`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err: unknown) => {
    process.stderr.write(`load-chain failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
