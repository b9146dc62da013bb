// What the Merkle tree costs an append: two Sequencers in the bench process, on one
// pool to the same database, one maintaining the tree (the server's configuration) and
// one with `maintainTree: false`, fed the same prepared events in the same pattern as
// the append-batch phase (requests of 1,000 from 4 concurrent callers, group commit).
// Windows alternate A B B A ... so that drift hits both alike; each starts after a
// CHECKPOINT. There is no RPC here, so the rates are the sequencer's (above the
// server's) and the tree's share of the commit path shows undiluted. CPU: the bench
// process is the sequencer (events are prepared before the clock), plus Postgres.
//
// Afterwards the tree-less chain gets one append with the tree on, which builds its
// whole tree under the head lock (the path for chains from before the tree existed),
// so the server's checkpointer can sign it; that build is timed too.
import type pg from "pg";
import { createApiKey } from "../server/auth/api-keys.js";
import { Sequencer } from "../server/ledger/sequencer.js";
import { prepareEvent, type PreparedEvent } from "../server/ledger/validate-event.js";
import { DEFAULT_LIMITS } from "../server/ledger/limits.js";
import { PostgresDatabase } from "../server/storage/postgres-database.js";
import { checkpoint } from "./bench-db.js";
import { benchEvent } from "./events.js";
import { median, secondsSince } from "./stats.js";
import type { Meter, PhaseUsage } from "./resource-meter.js";

export interface TreeCostRun {
  rows: number;
  seconds: number;
  rowsPerSecond: number;
  commits: number;
  usage?: PhaseUsage;
}

export interface TreeCostSide {
  chain: string;
  runs: TreeCostRun[];
  rowsPerSecond: number;
}

export interface TreeCostResult {
  eventsPerWindow: number;
  withTree: TreeCostSide;
  withoutTree: TreeCostSide;
  /** Building the tree of the tree-less chain in one commit afterwards. */
  rebuild: { entries: number; seconds: number };
}

export const TREE_ON_CHAIN = "bench-tree-on";
export const TREE_OFF_CHAIN = "bench-tree-off";

/** `base`, or `base-2`, `base-3`, ... : a chain that does not exist yet (kept databases). */
async function freshChain(admin: pg.Client, base: string): Promise<string> {
  const res = await admin.query<{ chain: string }>("SELECT chain FROM chains WHERE chain = $1 OR chain LIKE $2", [base, `${base}-%`]);
  const taken = new Set(res.rows.map((r) => r.chain));
  let name = base;
  for (let i = 2; taken.has(name); i++) name = `${base}-${i}`;
  return name;
}

export async function treeCost(
  admin: pg.Client,
  databaseUrl: string,
  opts: { events: number; batchSize: number; clients: number; rounds: number; warmup: number },
  meterFor: (window: string) => Meter,
  log: (msg: string) => void = () => undefined,
): Promise<TreeCostResult> {
  // As the server opens it: pool of 10, the least-privilege role.
  const db = new PostgresDatabase({ connectionString: databaseUrl, max: 10, role: "audit_ledger_app" });
  let commits = 0;
  const onCommit = () => void commits++;
  const on = await freshChain(admin, TREE_ON_CHAIN);
  const off = await freshChain(admin, TREE_OFF_CHAIN);
  const sides = [
    { chain: on, tree: true, sequencer: new Sequencer(db, { onCommit }), side: { chain: on, runs: [] as TreeCostRun[], rowsPerSecond: 0 } },
    { chain: off, tree: false, sequencer: new Sequencer(db, { onCommit, maintainTree: false }), side: { chain: off, runs: [] as TreeCostRun[], rowsPerSecond: 0 } },
  ];
  try {
    const agents = new Map<string, string>();
    for (const { chain } of sides) agents.set(chain, (await createApiKey(admin as never, chain, ["append"], "bench tree-cost")).record.keyId);
    const next = new Map<string, number>(sides.map((s) => [s.chain, 0]));
    const prepare = (chain: string, count: number, prefix: string): PreparedEvent[][] => {
      const first = next.get(chain)!;
      next.set(chain, first + count);
      const batches: PreparedEvent[][] = [];
      for (let at = 0; at < count; at += opts.batchSize) {
        const n = Math.min(opts.batchSize, count - at);
        batches.push(Array.from({ length: n }, (_, i) => prepareEvent(benchEvent(first + at + i, prefix), agents.get(chain)!, DEFAULT_LIMITS)));
      }
      return batches;
    };
    const run = async (s: (typeof sides)[number], count: number, prefix: string, meter?: Meter): Promise<TreeCostRun> => {
      const batches = prepare(s.chain, count, prefix);
      let i = 0;
      await meter?.start();
      const before = commits;
      const started = performance.now();
      await Promise.all(
        Array.from({ length: opts.clients }, async () => {
          for (let k = i++; k < batches.length; k = i++) await s.sequencer.append(s.chain, batches[k]!);
        }),
      );
      const seconds = secondsSince(started);
      const usage = await meter?.stop();
      return { rows: count, seconds, rowsPerSecond: count / seconds, commits: commits - before, usage };
    };

    for (const s of sides) await run(s, opts.warmup, "tw");
    for (let round = 0; round < opts.rounds; round++) {
      // A B, B A, A B, ...: each side goes first equally often.
      const order = round % 2 === 0 ? sides : [...sides].reverse();
      for (const s of order) {
        await checkpoint(admin);
        const r = await run(s, opts.events, `t${round}`, meterFor(`tree-cost-${s.tree ? "on" : "off"}-${round + 1}`));
        s.side.runs.push(r);
        log(`  ${s.tree ? "with the tree   " : "without the tree"} round ${round + 1}: ${Math.round(r.rowsPerSecond).toLocaleString("en-US")} events/s`);
      }
    }
    for (const s of sides) s.side.rowsPerSecond = median(s.side.runs.map((r) => r.rowsPerSecond));

    // Give the tree-less chain its tree: one append through a tree-maintaining sequencer.
    const entries = next.get(off)!;
    const started = performance.now();
    await sides[0]!.sequencer.append(off, [prepareEvent(benchEvent(entries, "tr"), agents.get(off)!, DEFAULT_LIMITS)]);
    const rebuild = { entries, seconds: secondsSince(started) };
    return { eventsPerWindow: opts.events, withTree: sides[0]!.side, withoutTree: sides[1]!.side, rebuild };
  } finally {
    await Promise.all(sides.map((s) => s.sequencer.drain()));
    await db.close();
  }
}
