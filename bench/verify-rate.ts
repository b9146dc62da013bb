// Verify throughput over the AppendBatch chain, next to what this machine can do with
// the same bytes and no I/O: the bare SHA-256 (Node's fastest native call) of each
// entry's canonical envelope and of its salt‖payload, the two hashes Verify recomputes
// per entry; and the whole in-memory ChainWalker. The gaps between these and Verify
// say how much goes to hashing, to the walker's other work, and to reading rows.
import { hash } from "node:crypto";
import type { LedgerClient } from "../clients/node/ledger-client.js";
import { canonicalEnvelope, ChainWalker, type StoredEntry } from "../chain/index.js";
import { readRange } from "../server/ledger/ledger-reader.js";
import { PostgresDatabase } from "../server/storage/postgres-database.js";
import { median, secondsSince } from "./stats.js";
import { noMeter, type Meter, type PhaseUsage } from "./resource-meter.js";

export interface VerifyResult {
  entries: number;
  /** Verify RPC, entries per second, median of the runs. */
  verifyPerSecond: number;
  runs: number[];
  /** Bare SHA-256 of the envelope bytes and salt‖payload bytes, entries per second. */
  sha256PerSecond: number;
  /** Bare SHA-256 of the envelope bytes alone. */
  sha256EnvelopeOnlyPerSecond: number;
  /** ChainWalker over entries already in memory (canonical JSON + both hashes + checks). */
  walkerPerSecond: number;
  /** Reading the rows as Verify does (pages of 5,000 with payloads), entries per second. */
  readPerSecond: number;
  envelopeBytes: number;
  payloadBytes: number;
  /** Resources used during the Verify runs. */
  usage?: PhaseUsage;
}

async function verifyOnce(client: LedgerClient, expected: number): Promise<number> {
  const started = performance.now();
  let verdict;
  for await (const res of client.ledger.verify({})) if (res.result.case === "verdict") verdict = res.result.value;
  const seconds = secondsSince(started);
  if (!verdict?.valid || Number(verdict.checked) !== expected) {
    throw new Error(`Verify: expected ${expected} valid entries, got ${verdict ? `${verdict.checked}, ${verdict.reason}` : "no verdict"}`);
  }
  return expected / seconds;
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

export async function verifyRate(client: LedgerClient, databaseUrl: string, chain: string, entries: number, runs: number, meter: Meter = noMeter): Promise<VerifyResult> {
  const verifyRuns: number[] = [];
  await meter.start();
  for (let i = 0; i < runs; i++) verifyRuns.push(await verifyOnce(client, entries));
  const usage = await meter.stop();

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
  const sha256PerSecond = rate(stored.length, 1, () => {
    for (let i = 0; i < envelopes.length; i++) {
      sha(envelopes[i]!);
      sha(salted[i]!);
    }
  });
  const sha256EnvelopeOnlyPerSecond = rate(stored.length, 1, () => {
    for (const b of envelopes) sha(b);
  });
  const walkerPerSecond = rate(stored.length, 1, () => {
    const walker = new ChainWalker();
    for (const e of stored) if (walker.push(e)) throw new Error(`walker: ${walker.firstBreak?.reason}`);
  });
  return {
    entries,
    verifyPerSecond: median(verifyRuns),
    runs: verifyRuns,
    sha256PerSecond,
    sha256EnvelopeOnlyPerSecond,
    walkerPerSecond,
    readPerSecond,
    envelopeBytes: envelopes.reduce((a, b) => a + b.length, 0) / entries,
    payloadBytes: salted.reduce((a, b) => a + b.length, 0) / entries,
    usage,
  };
}
