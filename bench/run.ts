// npm run bench: every SPEC §11 ingest, latency and verify figure, side by side in one
// run on the same Postgres, in a fresh database that is dropped at the end.
//   1. AppendBatch durable ingest through the real client        (chain bench-batch)
//   2. raw COPY of those very rows into same-indexed tables      (schema bench_copy)
//   3. the do-it-yourself trigger chain fed the same rows         (schema bench_diy)
//   4. unary Append latency at a fixed rate, open loop            (chain bench-unary)
//   5. live-tail append-to-subscriber latency                     (chain bench-tail)
//   6. Verify over chain bench-batch (chain walk, Merkle tree rebuilt, checkpoint roots),
//      next to the bare SHA-256 rate of the same bytes
//   7. tree-cost: the sequencer with and without Merkle tree maintenance (bench-tree-on/off)
//   8. growth: AppendBatch into chains preloaded to 100k and 1M entries (bench/load-chain.ts)
//   9. proofs: inclusion and consistency proofs on the largest preloaded chain
//  10. agent: durable ingest through an `audit-ledger agent` process (generic_polling
//      source, outbox, Ingest), next to raw COPY of its rows and AppendBatch; then the
//      agent's idle RSS and its CPU at 60 events/min
//  11. sources: per-source sustained ingest (kafka_consumer, postgres_logical) through an
//      agent process into the ledger, next to the source's own raw consume rate
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import os from "node:os";
import type pg from "pg";
import { createLedgerClient, type LedgerClient } from "../clients/node/ledger-client.js";
import { createApiKey } from "../server/auth/api-keys.js";
import { parseOptions, type Phase } from "./options.js";
import { checkpoint, connect, createBenchDatabase } from "./bench-db.js";
import { startBenchServer, type BenchServer } from "./bench-server.js";
import { appendBatches } from "./append-batch.js";
import { rawCopy } from "./raw-copy.js";
import { diyChain } from "./diy-chain.js";
import { unaryLatency } from "./unary-latency.js";
import { tailLatency } from "./tail-latency.js";
import { verifyRate } from "./verify-rate.js";
import { treeCost } from "./tree-cost.js";
import { growth } from "./growth.js";
import { proofLatency } from "./proofs.js";
import { ensureDatabase, loadChain, loadedChainName } from "./load-chain.js";
import { details, markdownTable, resultRows, type BenchResults } from "./report.js";
import { int } from "./stats.js";
import { resourceMeter } from "./resource-meter.js";
import { summarizeProfile } from "./profile-summary.js";
import { agentIngest } from "./agent-ingest.js";
import { agentIdle } from "./agent-idle.js";
import { sourceIngest } from "./source-ingest.js";

const BATCH_CHAIN = "bench-batch";

const log = (msg: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  const want = (p: Phase) => opts.only.has(p);
  // The baselines and Verify work on the rows AppendBatch wrote.
  const needBatch = want("append-batch") || want("raw-copy") || want("diy-chain") || want("verify");

  const profDir = opts.cpuProfDir && opts.server === "child" ? resolve(opts.cpuProfDir) : undefined;
  if (opts.cpuProfDir && !profDir) log("--cpu-prof needs --server child; not profiling");
  if (profDir) mkdirSync(profDir, { recursive: true });
  const database = opts.database
    ? { name: opts.database, ...(await ensureDatabase(opts.database)), drop: async () => undefined }
    : await createBenchDatabase();
  const keep = opts.keep || Boolean(opts.database);
  log(`database ${database.name}${opts.database ? " (kept)" : ""}; server ${opts.server === "child" ? "in a child process" : "in-process"}`);
  let server: BenchServer | undefined;
  let admin: pg.Client | undefined;
  const results: BenchResults = {};
  /** Names of the measured windows, in order (one CPU profile each with --cpu-prof). */
  const windows: string[] = [];
  let environment: Record<string, string> = {};
  /** Wall time of each phase, preparation included (the figures come from its timed windows). */
  const phaseSeconds: Record<string, number> = {};
  const phase = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    try {
      return await fn();
    } finally {
      phaseSeconds[name] = (phaseSeconds[name] ?? 0) + (performance.now() - started) / 1000;
      log(`  (${name}: ${phaseSeconds[name]!.toFixed(0)} s)`);
    }
  };
  try {
    server = await startBenchServer(opts.server, database.url, profDir);
    admin = await connect(database.url);
    environment = await describeEnvironment(admin, opts.server);
    const adminClient = admin;
    const url = server.url;
    // Connect protocol, binary protobuf, HTTP/2 (h2c): one connection per client.
    const clientFor = async (chain: string): Promise<LedgerClient> => {
      const { token } = await createApiKey(adminClient as never, chain, ["append", "read"]);
      return createLedgerClient({ baseUrl: url, apiKey: token, protocol: "connect", httpVersion: "2" });
    };
    // One at a time: the admin connection runs one query at a time.
    const clients = async (chain: string, n: number) => {
      const out: LedgerClient[] = [];
      for (let i = 0; i < n; i++) out.push(await clientFor(chain));
      return out;
    };
    const meter = (window: string) => {
      windows.push(window);
      return resourceMeter(adminClient, database.name, server!, window);
    };
    if (opts.database) {
      // A kept database: these phases count on their chains starting empty.
      const fixed = [...(needBatch ? ["bench-warmup", BATCH_CHAIN] : []), ...(want("unary") ? ["bench-unary"] : []), ...(want("tail") ? ["bench-tail"] : [])];
      const used = await adminClient.query<{ chain: string }>("SELECT chain FROM chains WHERE chain = ANY($1::text[]) AND next_seq > 0", [fixed]);
      if (used.rows.length > 0) {
        throw new Error(
          `database ${database.name} already holds ${used.rows.map((r) => r.chain).join(", ")}: those phases need a fresh database ` +
            `(with --database, run --only tree-cost,growth,proofs)`,
        );
      }
    }

    if (needBatch) {
      await phase("append-batch", async () => {
        // Warm-up on another chain (JIT, pool, caches), then the measured run on a fresh chain.
        const warm = Math.min(opts.events, Math.max(opts.batchSize, Math.round(opts.events / 10)));
        log(`AppendBatch warm-up: ${int(warm)} events`);
        await appendBatches(await clients("bench-warmup", opts.clients), warm, opts.batchSize, "warmup");
        await checkpoint(adminClient);
        log(`AppendBatch: ${int(opts.events)} events, batches of ${int(opts.batchSize)}, ${opts.clients} clients`);
        results.appendBatch = await appendBatches(await clients(BATCH_CHAIN, opts.clients), opts.events, opts.batchSize, "batch", meter("append-batch"));
        log(`  ${int(results.appendBatch.rowsPerSecond)} events/s`);
      });
    }
    if (want("raw-copy")) {
      await phase("raw-copy", async () => {
        log("raw COPY of the same rows");
        results.rawCopy = await rawCopy(adminClient, BATCH_CHAIN, meter("raw-copy"));
        log(`  ${int(results.rawCopy.rowsPerSecond)} rows/s`);
      });
    }
    if (want("diy-chain")) {
      await phase("diy-chain", async () => {
        const rows = Math.min(opts.diyEvents, opts.events);
        log(`DIY chain: ${int(rows)} rows, INSERTs of ${int(opts.batchSize)} rows from ${opts.diyClients} connections`);
        results.diyChain = await diyChain(adminClient, database.url, BATCH_CHAIN, rows, opts.batchSize, opts.diyClients, meter("diy-chain"));
        log(`  ${int(results.diyChain.rowsPerSecond)} rows/s`);
      });
    }
    if (want("unary")) {
      await phase("unary", async () => {
        log(`unary Append: ${int(opts.unaryRate)} req/s for ${opts.unarySeconds} s after ${opts.warmupSeconds} s warm-up`);
        await checkpoint(adminClient);
        results.unary = await unaryLatency(await clientFor("bench-unary"), opts.unaryRate, opts.unarySeconds, opts.warmupSeconds, meter("unary"));
        log(`  p50 ${results.unary.p50.toFixed(2)} ms, p99 ${results.unary.p99.toFixed(2)} ms`);
        results.unarySweep = [];
        for (const rate of opts.unarySweep) {
          const u = await unaryLatency(await clientFor("bench-unary"), rate, 5, 1, meter(`unary-${rate}`));
          results.unarySweep.push(u);
          log(`  at ${int(rate)} req/s: p50 ${u.p50.toFixed(2)} ms, p99 ${u.p99.toFixed(2)} ms`);
        }
      });
    }
    if (want("tail")) {
      await phase("tail", async () => {
        log(`live tail: ${int(opts.tailRate)} appends/s for ${opts.tailSeconds} s`);
        results.tail = await tailLatency(await clientFor("bench-tail"), await clientFor("bench-tail"), opts.tailRate, opts.tailSeconds, meter("tail"));
        log(`  p50 ${results.tail.sendToReceive.p50.toFixed(2)} ms, p99 ${results.tail.sendToReceive.p99.toFixed(2)} ms`);
      });
    }
    if (want("verify")) {
      await phase("verify", async () => {
        log(`Verify with Merkle recomputation: ${int(opts.events)} entries, ${opts.verifyRuns} runs`);
        results.verify = await verifyRate(await clientFor(BATCH_CHAIN), adminClient, database.url, BATCH_CHAIN, opts.events, opts.verifyRuns, meter("verify"));
        log(`  ${int(results.verify.verifyPerSecond)} entries/s, ${results.verify.checkpoints} checkpoints checked`);
      });
    }
    if (want("tree-cost")) {
      await phase("tree-cost", async () => {
        log(`tree cost: in-process Sequencer with and without the Merkle tree, ${opts.treeRounds} x ${int(opts.treeEvents)} events each`);
        results.treeCost = await treeCost(
          adminClient,
          database.url,
          { events: opts.treeEvents, batchSize: opts.batchSize, clients: opts.clients, rounds: opts.treeRounds, warmup: Math.min(opts.treeEvents, 10_000) },
          meter,
          log,
        );
        const tc = results.treeCost;
        log(`  ${int(tc.withTree.rowsPerSecond)} vs ${int(tc.withoutTree.rowsPerSecond)} events/s (${(tc.withTree.rowsPerSecond / tc.withoutTree.rowsPerSecond).toFixed(2)} x)`);
      });
    }
    const loaded = opts.growthSizes.map(loadedChainName);
    if (want("growth") || want("proofs")) {
      await phase("load", async () => {
        results.loads = [];
        // Proofs alone need only the largest chain.
        for (const size of want("growth") ? opts.growthSizes : opts.growthSizes.slice(-1)) {
          results.loads.push(await loadChain({ databaseUrl: database.url, chain: loadedChainName(size), entries: size, checkpointEvery: opts.checkpointEvery, log }));
        }
      });
    }
    if (want("growth")) {
      await phase("growth", async () => {
        log(`growth: AppendBatch into chains of ${opts.growthSizes.map(int).join(" and ")}, ${opts.growthRounds} x ${int(opts.growthEvents)} events each`);
        results.growth = await growth(
          adminClient,
          (chain) => clients(chain, opts.clients),
          loaded,
          { events: opts.growthEvents, batchSize: opts.batchSize, rounds: opts.growthRounds, warmup: Math.min(opts.growthEvents, 10_000) },
          meter,
          log,
        );
      });
    }
    if (want("proofs")) {
      await phase("proofs", async () => {
        const chain = loaded[loaded.length - 1]!;
        log(`proofs on ${chain}: ${int(opts.proofSamples)} of each kind, 1 and ${opts.proofConcurrency} in flight`);
        results.proofs = await proofLatency(await clients(chain, opts.proofConcurrency), database.url, chain, { samples: opts.proofSamples, concurrency: opts.proofConcurrency }, meter("proofs"));
        const p = results.proofs;
        log(`  inclusion p99 ${p.inclusion.sequential.p99.toFixed(2)} ms, consistency p99 ${p.consistency.sequential.p99.toFixed(2)} ms; ${p.verified} proofs verified`);
      });
    }
    if (want("agent")) {
      await phase("agent", async () => {
        results.agent = await agentIngest(
          { admin: adminClient, serverUrl: url, clients, meter, log },
          {
            events: opts.agentEvents,
            pageSize: opts.agentPage,
            intervalMs: opts.agentIntervalMs,
            fsyncs: opts.agentFsync,
            agentBatchEvents: opts.agentBatchEvents,
            warmup: Math.min(opts.agentEvents, 5000),
            batchSize: opts.batchSize,
            clients: opts.clients,
            cpuProfDir: profDir,
          },
        );
        log(`agent at rest: one generic_polling source, ${opts.agentIdleSeconds} s with nothing new, then ${opts.agentTrickleSeconds} s at 60 events/min`);
        results.agentIdle = await agentIdle(adminClient, url, { idleSeconds: opts.agentIdleSeconds, trickleSeconds: opts.agentTrickleSeconds, itemsPerSecond: 1 }, log);
      });
    }
    if (want("sources")) {
      await phase("sources", async () => {
        results.sources = await sourceIngest({ admin: adminClient, serverUrl: url, log }, { events: opts.sourceEvents, padBytes: opts.sourcePadBytes });
      });
    }
  } finally {
    await server?.close().catch((err: unknown) => log(`server close: ${String(err)}`));
    await admin?.end().catch(() => undefined);
    if (keep) log(`kept database ${database.name}`);
    else await database.drop();
  }

  const table = markdownTable(resultRows(results));
  process.stdout.write(`\naudit-ledger benchmark, ${new Date().toISOString()}\n`);
  for (const [k, v] of Object.entries(environment)) process.stdout.write(`  ${k}: ${v}\n`);
  process.stdout.write(`\n${table}\n\n${details(results).map((d) => `- ${d}`).join("\n")}\n`);
  process.stdout.write(`\nWall time per phase: ${Object.entries(phaseSeconds).map(([k, v]) => `${k} ${v.toFixed(0)} s`).join(", ")}.\n`);
  if (profDir) {
    process.stdout.write(`\nWhere the server's CPU went (V8 profiles in ${profDir}; profiling adds overhead, so take the figures above from a run without --cpu-prof):\n`);
    for (const phase of windows) {
      const file = join(profDir, `${phase}.cpuprofile`);
      if (!existsSync(file)) continue;
      const { windowSeconds, busySeconds, shares } = summarizeProfile(file);
      const top = shares.filter(([, share]) => share >= 0.01).map(([name, share]) => `${name} ${Math.round(share * 100)} %`);
      process.stdout.write(`- ${phase}: server busy ${busySeconds.toFixed(1)} s of ${windowSeconds.toFixed(1)} s; ${top.join(", ")}\n`);
    }
  }
  if (opts.json) {
    writeFileSync(opts.json, JSON.stringify({ date: new Date().toISOString(), environment, options: { ...opts, only: [...opts.only] }, phaseSeconds, results }, null, 2));
    log(`wrote ${opts.json}`);
  }
}

async function describeEnvironment(admin: pg.Client, serverMode: string): Promise<Record<string, string>> {
  const settings = await admin.query<{ name: string; value: string }>(
    `SELECT name, current_setting(name) AS value FROM pg_settings
     WHERE name IN ('shared_buffers', 'synchronous_commit', 'fsync', 'wal_level', 'max_wal_size', 'autovacuum') ORDER BY name`,
  );
  const version = await admin.query<{ server_version: string }>("SHOW server_version");
  return {
    machine: `${os.cpus().length} x ${os.cpus()[0]?.model ?? "cpu"}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.platform()} ${os.release()}`,
    node: process.version,
    postgres: `${version.rows[0]!.server_version} (${settings.rows.map((s) => `${s.name}=${s.value}`).join(", ")})`,
    server: serverMode === "child" ? "separate Node process (own event loop)" : "in the bench process",
    client: "Connect protocol, binary protobuf, HTTP/2 cleartext (h2c)",
    code: codeRevision(),
    "load average at start": os.loadavg().map((l) => l.toFixed(2)).join(", "),
  };
}

/** The commit measured, and whether the code under test had uncommitted changes. */
function codeRevision(): string {
  try {
    const git = (...args: string[]) => execFileSync("git", args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    const dirty = git("status", "--porcelain", "--", "server", "chain", "clients", "gen").split("\n").filter(Boolean).length;
    return `${git("rev-parse", "--short", "HEAD")}${dirty ? ` + uncommitted changes in ${dirty} file(s) of server/ chain/ clients/ gen/` : ""}`;
  } catch {
    return "unknown (not a git checkout)";
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
