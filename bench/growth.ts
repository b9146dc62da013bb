// Append cost as the chain grows: the AppendBatch load of the append-batch phase (same
// clients, same batches, shorter windows) into chains preloaded to different sizes
// (bench/load-chain.ts), in the same database, through the same server. The windows
// alternate between the chains (round 1: small, large; round 2: small, large; ...) so
// that drift on this shared machine hits both alike; each window starts after a
// CHECKPOINT, like every write phase. Besides the rate, the cost per 1,000 events: CPU
// of the server and of Postgres, and the WAL written (full-page images included),
// which is where a growing chain would show first.
import type { LedgerClient } from "../clients/node/ledger-client.js";
import type pg from "pg";
import { appendBatches, type ThroughputResult } from "./append-batch.js";
import { checkpoint } from "./bench-db.js";
import { median } from "./stats.js";
import type { Meter } from "./resource-meter.js";

export interface GrowthPoint {
  chain: string;
  /** Entries in the chain when its first measured window started. */
  size: number;
  /** One per round. */
  runs: ThroughputResult[];
  /** Median events/s over the rounds. */
  rowsPerSecond: number;
}

export interface GrowthResult {
  eventsPerWindow: number;
  rounds: number;
  points: GrowthPoint[];
}

async function chainSize(admin: pg.Client, chain: string): Promise<number> {
  const res = await admin.query<{ next_seq: string }>("SELECT next_seq FROM chains WHERE chain = $1", [chain]);
  return Number(res.rows[0]?.next_seq ?? 0);
}

export async function growth(
  admin: pg.Client,
  clientsFor: (chain: string) => Promise<LedgerClient[]>,
  chains: string[],
  opts: { events: number; batchSize: number; rounds: number; warmup: number },
  meterFor: (window: string) => Meter,
  log: (msg: string) => void = () => undefined,
): Promise<GrowthResult> {
  const clients = new Map<string, LedgerClient[]>();
  const points: GrowthPoint[] = [];
  for (const chain of chains) {
    clients.set(chain, await clientsFor(chain));
    // Warm-up: the server loads the chain's frontier from the stored nodes on its
    // first commit, and the chain's index pages come into memory.
    const at = await chainSize(admin, chain);
    await appendBatches(clients.get(chain)!, opts.warmup, opts.batchSize, "gw", undefined, at);
    points.push({ chain, size: await chainSize(admin, chain), runs: [], rowsPerSecond: 0 });
  }
  for (let round = 0; round < opts.rounds; round++) {
    for (const point of points) {
      await checkpoint(admin);
      const at = await chainSize(admin, point.chain);
      const run = await appendBatches(clients.get(point.chain)!, opts.events, opts.batchSize, `g${round}`, meterFor(`growth-${point.size}-${round + 1}`), at);
      point.runs.push(run);
      log(`  chain of ${point.size.toLocaleString("en-US")} (now ${(at + opts.events).toLocaleString("en-US")}), round ${round + 1}: ${Math.round(run.rowsPerSecond).toLocaleString("en-US")} events/s`);
    }
  }
  for (const p of points) p.rowsPerSecond = median(p.runs.map((r) => r.rowsPerSecond));
  return { eventsPerWindow: opts.events, rounds: opts.rounds, points };
}

/** Sum of a usage figure over a point's runs, per 1,000 events. */
export function perThousand(point: GrowthPoint, pick: (r: ThroughputResult) => number | undefined): number {
  const total = point.runs.reduce((a, r) => a + (pick(r) ?? NaN), 0);
  const events = point.runs.reduce((a, r) => a + r.rows, 0);
  return (1000 * total) / events;
}
