// One-off throughput check of the outbox (not a test, not part of `npm run bench`):
//   node --import tsx bench/outbox-append.ts [seconds] [dir]
// Appends batches of 100 records of 300 bytes for a few seconds per case: one appender
// at a time, then several concurrent appenders (whose batches share write rounds and
// fsyncs), under per-batch fsync and, for reference, none. Prints records/s and the
// append latency percentiles. The folder defaults to a fresh one under the OS temp dir;
// pass one on the disk the agent will really use.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openOutbox, type FsyncPolicy } from "../agent/outbox/index.js";

const seconds = Number(process.argv[2] ?? 3);
const base = process.argv[3] ?? tmpdir();
const BATCH = 100;
const BODY = 300;
const batch = Array.from({ length: BATCH }, (_, i) => new Uint8Array(BODY).fill(i & 0xff));

async function run(fsync: FsyncPolicy, appenders: number): Promise<void> {
  const dir = mkdtempSync(join(base, "outbox-bench-"));
  try {
    const { outbox } = await openOutbox(dir, { fsync, maxBytes: 64 * 1024 * 1024 * 1024 });
    const latencies: number[] = [];
    const end = performance.now() + seconds * 1000;
    const started = performance.now();
    let acked = -1;
    await Promise.all(
      Array.from({ length: appenders }, async () => {
        while (performance.now() < end) {
          const t = performance.now();
          const { lastSeq } = await outbox.append(batch);
          latencies.push(performance.now() - t);
          // Keep the folder small, as a server's acks would.
          if (lastSeq - acked > 200_000) await outbox.ack((acked = lastSeq - 100_000));
        }
      }),
    );
    const elapsed = (performance.now() - started) / 1000;
    const c = outbox.counters();
    await outbox.close();
    latencies.sort((a, b) => a - b);
    const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!.toFixed(2);
    const recs = c.appendedRecords / elapsed;
    console.log(
      `fsync=${fsync.padEnd(9)} appenders=${appenders}  ${Math.round(recs).toLocaleString("en").padStart(9)} records/s  ` +
        `${((recs * (BODY + 16)) / 1e6).toFixed(1).padStart(6)} MB/s  ${Math.round(c.fsyncs / elapsed).toLocaleString("en").padStart(6)} fsync/s  ` +
        `append p50 ${pct(0.5)} ms  p99 ${pct(0.99)} ms`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

console.log(`batches of ${BATCH} records of ${BODY} B, ${seconds} s per case, folder under ${base}`);
for (const [fsync, appenders] of [["per-batch", 1], ["per-batch", 4], ["per-batch", 16], ["none", 1]] as const) await run(fsync, appenders);
