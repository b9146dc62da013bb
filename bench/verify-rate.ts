// Verify throughput over the AppendBatch chain, next to what this machine can do with
// the same bytes and no I/O: the bare SHA-256 (Node's fastest native call) of what
// Verify hashes per entry (the canonical envelope for the entry hash, 0x00‖envelope for
// the Merkle leaf, salt‖payload for the payload digest, and on average one 65-byte
// interior node as it rebuilds the tree); and the whole in-memory ChainWalker with the
// Merkle frontier. The gaps between these and Verify say how much goes to hashing, to
// the walker's other work, and to reading rows. Verify rebuilds the tree and holds its
// root to every signed checkpoint in the range: a fresh checkpoint is cut at the head
// first, so there is always at least one, and the verdict's count is reported (and
// must equal the checkpoints stored in the range).
import { hash } from "node:crypto";
import type pg from "pg";
import type { LedgerClient } from "../clients/node/ledger-client.js";
import { canonicalEnvelope, ChainWalker, leafHashOfCanonical, MerkleFrontier, type StoredEntry } from "../chain/index.js";
import { readRange } from "../server/ledger/ledger-reader.js";
import { PostgresDatabase } from "../server/storage/postgres-database.js";
import { median, secondsSince } from "./stats.js";
import { noMeter, type Meter, type PhaseUsage } from "./resource-meter.js";

export interface VerifyResult {
  entries: number;
  /** Verify RPC, entries per second, median of the runs. */
  verifyPerSecond: number;
  runs: number[];
  /** Signed checkpoints whose signature and root Verify checked (its verdict's checkpoints_checked, equal to those stored in the range). */
  checkpoints: number;
  /** Bare SHA-256 of everything Verify hashes (envelope, 0x00‖envelope, salt‖payload, interior nodes), entries per second. */
  sha256PerSecond: number;
  /** Bare SHA-256 of the envelope and salt‖payload only (the chain without the tree). */
  sha256ChainOnlyPerSecond: number;
  /** Bare SHA-256 of the envelope bytes alone. */
  sha256EnvelopeOnlyPerSecond: number;
  /** ChainWalker plus Merkle frontier over entries already in memory (canonical JSON, all hashes, checks). */
  walkerPerSecond: number;
  /** Reading the rows as Verify does (pages of 5,000 with payloads), entries per second. */
  readPerSecond: number;
  envelopeBytes: number;
  payloadBytes: number;
  /** Resources used during the Verify runs. */
  usage?: PhaseUsage;
}

async function verifyOnce(client: LedgerClient, expected: number): Promise<{ perSecond: number; checkpointsChecked: number }> {
  const started = performance.now();
  let verdict;
  for await (const res of client.ledger.verify({})) if (res.result.case === "verdict") verdict = res.result.value;
  const seconds = secondsSince(started);
  if (!verdict?.valid || Number(verdict.checked) !== expected) {
    throw new Error(`Verify: expected ${expected} valid entries, got ${verdict ? `${verdict.checked}, ${verdict.reason}` : "no verdict"}`);
  }
  return { perSecond: expected / seconds, checkpointsChecked: Number(verdict.checkpointsChecked) };
}

/** Runs `fn` over and over for at least `minSeconds`; returns calls per second of `perCall` units. */
function rate(perCall: number, minSeconds: number, fn: () => void): number {
  fn(); // warm-up
  let calls = 0;
  const started = performance.now();
  do {
    fn();
    calls++;
  } while (secondsSince(started) < minSeconds);
  return (calls * perCall) / secondsSince(started);
}

export async function verifyRate(
  client: LedgerClient,
  admin: pg.Client,
  databaseUrl: string,
  chain: string,
  entries: number,
  runs: number,
  meter: Meter = noMeter,
): Promise<VerifyResult> {
  // A checkpoint at the head (the server cuts one a second anyway), so the range has one.
  await client.ledger.getCheckpoint({ chain, fresh: true });
  const cps = await admin.query<{ n: string }>("SELECT count(*) AS n FROM checkpoints WHERE chain = $1 AND tree_size > 0 AND tree_size <= $2", [chain, entries]);
  const storedCheckpoints = Number(cps.rows[0]!.n);
  const verifyRuns: number[] = [];
  let checkpoints = 0;
  await meter.start();
  for (let i = 0; i < runs; i++) {
    const run = await verifyOnce(client, entries);
    verifyRuns.push(run.perSecond);
    checkpoints = run.checkpointsChecked;
  }
  const usage = await meter.stop();
  if (checkpoints !== storedCheckpoints) throw new Error(`Verify checked ${checkpoints} checkpoints, but the range holds ${storedCheckpoints}`);

  // The same rows, read the way Verify reads them.
  const db = new PostgresDatabase({ connectionString: databaseUrl, max: 1 });
  const stored: StoredEntry[] = [];
  const readStarted = performance.now();
  try {
    for (let from = 0; ; ) {
      const page = await readRange(db, chain, from, Number.MAX_SAFE_INTEGER, 5000, true);
      stored.push(...page);
      if (page.length < 5000) break;
      from = page[page.length - 1]!.seq + 1;
    }
  } finally {
    await db.close();
  }
  const readPerSecond = stored.length / secondsSince(readStarted);
  if (stored.length !== entries) throw new Error(`read ${stored.length} of ${entries} entries`);

  const envelopes = stored.map((e) => Buffer.from(canonicalEnvelope(e)));
  const salted = stored.map((e) => (e.payload && e.salt ? Buffer.concat([e.salt, e.payload]) : Buffer.alloc(0)));
  // One-shot crypto.hash: the fastest SHA-256 Node offers for small inputs.
  const sha = (b: Buffer) => hash("sha256", b, "buffer");
  const leaves = envelopes.map((b) => Buffer.concat([Buffer.alloc(1), b]));
  // Interior nodes Verify hashes while rebuilding the tree: one per completed subtree.
  let bits = 0;
  for (let n = stored.length; n > 0; n = Math.floor(n / 2)) bits += n % 2;
  const interior = stored.length - bits;
  const node = Buffer.alloc(65, 1);
  const sha256PerSecond = rate(stored.length, 1, () => {
    for (let i = 0; i < envelopes.length; i++) {
      sha(envelopes[i]!);
      sha(leaves[i]!);
      sha(salted[i]!);
    }
    for (let i = 0; i < interior; i++) sha(node);
  });
  const sha256ChainOnlyPerSecond = rate(stored.length, 1, () => {
    for (let i = 0; i < envelopes.length; i++) {
      sha(envelopes[i]!);
      sha(salted[i]!);
    }
  });
  const sha256EnvelopeOnlyPerSecond = rate(stored.length, 1, () => {
    for (const b of envelopes) sha(b);
  });
  const walkerPerSecond = rate(stored.length, 1, () => {
    const frontier = new MerkleFrontier();
    const walker = new ChainWalker(0, undefined, undefined, (_e, canonical) => void frontier.appendLeaf(leafHashOfCanonical(canonical)));
    for (const e of stored) if (walker.push(e)) throw new Error(`walker: ${walker.firstBreak?.reason}`);
    frontier.root();
  });
  return {
    entries,
    verifyPerSecond: median(verifyRuns),
    runs: verifyRuns,
    checkpoints,
    sha256PerSecond,
    sha256ChainOnlyPerSecond,
    sha256EnvelopeOnlyPerSecond,
    walkerPerSecond,
    readPerSecond,
    envelopeBytes: envelopes.reduce((a, b) => a + b.length, 0) / entries,
    payloadBytes: salted.reduce((a, b) => a + b.length, 0) / entries,
    usage,
  };
}
