// Benchmark sizes and switches: command-line flags first, then BENCH_* environment
// variables, then defaults sized so the whole run takes a few minutes on 2 cores.
import { parseArgs } from "node:util";

export const PHASES = ["append-batch", "raw-copy", "diy-chain", "unary", "tail", "verify", "tree-cost", "growth", "proofs", "agent", "sources"] as const;
export type Phase = (typeof PHASES)[number];

export interface BenchOptions {
  /** Rows written by AppendBatch, and then by raw COPY and by the DIY chain. */
  events: number;
  /** Events per AppendBatch request (and rows per DIY INSERT). */
  batchSize: number;
  /** Concurrent AppendBatch clients, each on its own HTTP/2 connection. */
  clients: number;
  /** Rows fed to the DIY chain (the first ones AppendBatch wrote); it is slow, and its rate does not depend on the count. */
  diyEvents: number;
  /**
   * Concurrent DIY-chain writers (each its own Postgres connection). One is the DIY's
   * best case: with several, they queue on the head lock and each row costs Postgres
   * 2-3x the CPU (see diy-chain.ts).
   */
  diyClients: number;
  /** Unary Append: open-loop request rate and measured seconds (after a warm-up). */
  unaryRate: number;
  unarySeconds: number;
  warmupSeconds: number;
  /** Lower unary rates also measured (5 s each), to show where the latency target holds. */
  unarySweep: number[];
  /** Live tail: appends per second while a subscriber listens, and for how long. */
  tailRate: number;
  tailSeconds: number;
  /** Verify runs (the median is reported). */
  verifyRuns: number;
  /** Tree cost: events per window, windows per side (with and without the tree, alternating). */
  treeEvents: number;
  treeRounds: number;
  /** Chain sizes preloaded by bench/load-chain.ts for the growth phase; proofs run on the largest. */
  growthSizes: number[];
  /** Growth: AppendBatch events per window, and rounds over the chains. */
  growthEvents: number;
  growthRounds: number;
  /** Loaded chains: a signed checkpoint every this many entries. */
  checkpointEvery: number;
  /** Proofs of each kind per mode (one at a time, and --proof-concurrency at once). */
  proofSamples: number;
  proofConcurrency: number;
  /** Agent path: events per timed run, new items per poll of its generic_polling source, its interval_ms. */
  agentEvents: number;
  agentPage: number;
  agentIntervalMs: number;
  /** The agent's ingest.max_batch_events (undefined: its default). */
  agentBatchEvents: number | undefined;
  /** Agent path: one run (own agent process and chain) per outbox fsync policy. */
  agentFsync: ("per-batch" | "interval" | "none")[];
  /** Idle agent: seconds with nothing new (RSS), then seconds at 60 events/min (CPU). */
  agentIdleSeconds: number;
  agentTrickleSeconds: number;
  /** Sources: events in each source's backlog (Kafka, Postgres logical), and filler bytes per event. */
  sourceEvents: number;
  sourcePadBytes: number;
  /** Run in this existing database (created if missing) and keep it: loaded chains are reused. */
  database: string | undefined;
  /** "child": the server runs in its own Node process (as in production); "inprocess": in the bench's event loop. */
  server: "child" | "inprocess";
  /** Keep the benchmark database instead of dropping it. */
  keep: boolean;
  /** Write a V8 CPU profile of the server process per measured window into this directory. */
  cpuProfDir: string | undefined;
  /** Also write the figures as JSON here. */
  json: string | undefined;
  /** Run only these measurements (those they need are run anyway). */
  only: Set<Phase>;
}

export function parseOptions(argv: string[], env: NodeJS.ProcessEnv = process.env): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      events: { type: "string" },
      "batch-size": { type: "string" },
      clients: { type: "string" },
      "diy-events": { type: "string" },
      "diy-clients": { type: "string" },
      "unary-rate": { type: "string" },
      "unary-seconds": { type: "string" },
      "warmup-seconds": { type: "string" },
      "unary-sweep": { type: "string" },
      "tail-rate": { type: "string" },
      "tail-seconds": { type: "string" },
      "verify-runs": { type: "string" },
      "tree-events": { type: "string" },
      "tree-rounds": { type: "string" },
      "growth-sizes": { type: "string" },
      "growth-events": { type: "string" },
      "growth-rounds": { type: "string" },
      "checkpoint-every": { type: "string" },
      "proof-samples": { type: "string" },
      "proof-concurrency": { type: "string" },
      "agent-events": { type: "string" },
      "agent-page": { type: "string" },
      "agent-interval-ms": { type: "string" },
      "agent-fsync": { type: "string" },
      "agent-batch-events": { type: "string" },
      "agent-idle-seconds": { type: "string" },
      "agent-trickle-seconds": { type: "string" },
      "source-events": { type: "string" },
      "source-pad-bytes": { type: "string" },
      database: { type: "string" },
      server: { type: "string" },
      keep: { type: "boolean" },
      "cpu-prof": { type: "string" },
      json: { type: "string" },
      only: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const num = (flag: string | undefined, envName: string, fallback: number): number => {
    const raw = flag ?? env[envName];
    if (raw === undefined || raw === "") return fallback;
    const n = Number(raw.replace(/_/g, ""));
    if (!Number.isFinite(n) || n <= 0) throw new Error(`${envName}: "${raw}" is not a positive number`);
    return n;
  };
  const server = values.server ?? env.BENCH_SERVER ?? "child";
  if (server !== "child" && server !== "inprocess") throw new Error(`--server: "child" or "inprocess", not "${server}"`);
  const onlyRaw = values.only ?? env.BENCH_ONLY ?? "";
  const only = new Set<Phase>();
  for (const name of onlyRaw.split(",").map((s) => s.trim()).filter(Boolean)) {
    if (!(PHASES as readonly string[]).includes(name)) throw new Error(`--only: unknown measurement "${name}" (${PHASES.join(", ")})`);
    only.add(name as Phase);
  }
  const clients = num(values.clients, "BENCH_CLIENTS", 4);
  return {
    events: Math.round(num(values.events, "BENCH_EVENTS", 200_000)),
    batchSize: Math.round(num(values["batch-size"], "BENCH_BATCH_SIZE", 1000)),
    clients,
    diyEvents: Math.round(num(values["diy-events"], "BENCH_DIY_EVENTS", 50_000)),
    diyClients: num(values["diy-clients"], "BENCH_DIY_CLIENTS", 1),
    unaryRate: num(values["unary-rate"], "BENCH_UNARY_RATE", 1000),
    unarySeconds: num(values["unary-seconds"], "BENCH_UNARY_SECONDS", 10),
    warmupSeconds: num(values["warmup-seconds"], "BENCH_WARMUP_SECONDS", 2),
    unarySweep: (values["unary-sweep"] ?? env.BENCH_UNARY_SWEEP ?? "100,300,500")
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "" && s !== "0" && s !== "none")
      .map((s) => {
        const n = Number(s);
        if (!Number.isFinite(n) || n <= 0) throw new Error(`--unary-sweep: "${s}" is not a positive rate`);
        return n;
      }),
    tailRate: num(values["tail-rate"], "BENCH_TAIL_RATE", 200),
    tailSeconds: num(values["tail-seconds"], "BENCH_TAIL_SECONDS", 10),
    verifyRuns: Math.round(num(values["verify-runs"], "BENCH_VERIFY_RUNS", 3)),
    treeEvents: Math.round(num(values["tree-events"], "BENCH_TREE_EVENTS", 50_000)),
    treeRounds: Math.round(num(values["tree-rounds"], "BENCH_TREE_ROUNDS", 4)),
    growthSizes: (values["growth-sizes"] ?? env.BENCH_GROWTH_SIZES ?? "100000,1000000")
      .split(",")
      .map((s) => s.trim().replace(/_/g, ""))
      .filter((s) => s !== "")
      .map((s) => {
        const n = Number(s);
        if (!Number.isSafeInteger(n) || n < 2) throw new Error(`--growth-sizes: "${s}" is not a chain size`);
        return n;
      })
      .sort((a, b) => a - b),
    growthEvents: Math.round(num(values["growth-events"], "BENCH_GROWTH_EVENTS", 40_000)),
    growthRounds: Math.round(num(values["growth-rounds"], "BENCH_GROWTH_ROUNDS", 3)),
    checkpointEvery: Math.round(num(values["checkpoint-every"], "BENCH_CHECKPOINT_EVERY", 100_000)),
    proofSamples: Math.round(num(values["proof-samples"], "BENCH_PROOF_SAMPLES", 1000)),
    proofConcurrency: Math.round(num(values["proof-concurrency"], "BENCH_PROOF_CONCURRENCY", 4)),
    agentEvents: Math.round(num(values["agent-events"], "BENCH_AGENT_EVENTS", 50_000)),
    agentPage: Math.round(num(values["agent-page"], "BENCH_AGENT_PAGE", 5000)),
    agentIntervalMs: Math.max(100, Math.round(num(values["agent-interval-ms"], "BENCH_AGENT_INTERVAL_MS", 100))),
    agentBatchEvents: (values["agent-batch-events"] ?? env.BENCH_AGENT_BATCH_EVENTS) ? Math.round(num(values["agent-batch-events"], "BENCH_AGENT_BATCH_EVENTS", 1000)) : undefined,
    agentFsync: (values["agent-fsync"] ?? env.BENCH_AGENT_FSYNC ?? "per-batch,none")
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean)
      .map((s) => {
        if (s !== "per-batch" && s !== "interval" && s !== "none") throw new Error(`--agent-fsync: "${s}" is not per-batch, interval or none`);
        return s;
      }),
    agentIdleSeconds: num(values["agent-idle-seconds"], "BENCH_AGENT_IDLE_SECONDS", 20),
    agentTrickleSeconds: num(values["agent-trickle-seconds"], "BENCH_AGENT_TRICKLE_SECONDS", 60),
    sourceEvents: Math.round(num(values["source-events"], "BENCH_SOURCE_EVENTS", 50_000)),
    sourcePadBytes: Math.round(num(values["source-pad-bytes"], "BENCH_SOURCE_PAD_BYTES", 200)),
    database: values.database ?? env.BENCH_DATABASE,
    server,
    keep: values.keep ?? env.BENCH_KEEP === "1",
    cpuProfDir: values["cpu-prof"] ?? env.BENCH_CPU_PROF,
    json: values.json ?? env.BENCH_JSON,
    only: only.size > 0 ? only : new Set(PHASES),
  };
}

const USAGE = `npm run bench -- [flags]   (each flag also reads BENCH_<NAME>, e.g. BENCH_EVENTS)

  --events N          rows for AppendBatch, raw COPY and the DIY chain (200000)
  --batch-size N      events per AppendBatch request / rows per DIY INSERT (1000)
  --clients N         concurrent AppendBatch clients (4)
  --diy-events N      rows fed to the DIY chain, the first of those AppendBatch wrote (50000)
  --diy-clients N     concurrent DIY-chain writers (1: its best case)
  --unary-rate N      unary Append requests per second, open loop (1000)
  --unary-seconds N   measured seconds of unary Append (10), after --warmup-seconds (2)
  --unary-sweep LIST  lower unary rates also measured, 5 s each ("100,300,500"; "none" to skip)
  --tail-rate N       appends per second while a live-tail subscriber listens (200)
  --tail-seconds N    seconds of live tail (10)
  --verify-runs N     Verify runs; the median is reported (3)
  --tree-events N     tree-cost: events per window, with and without the Merkle tree (50000)
  --tree-rounds N     tree-cost: windows per side, alternating (4)
  --growth-sizes LIST chains preloaded with bench/load-chain.ts for growth; proofs use the largest ("100000,1000000")
  --growth-events N   growth: AppendBatch events per window and chain (40000)
  --growth-rounds N   growth: windows per chain, alternating between the chains (3)
  --checkpoint-every N  loaded chains: a signed checkpoint every N entries (100000)
  --proof-samples N   proofs: inclusion and consistency proofs each, sequential and concurrent (1000)
  --proof-concurrency N  proofs: requests in flight in the concurrent runs, one connection each (4)
  --agent-events N    agent: events per timed run through an \`audit-ledger agent\` process (50000)
  --agent-page N      agent: new items per poll of its generic_polling source (5000)
  --agent-interval-ms N  agent: the source's interval_ms (100, the least it accepts)
  --agent-fsync LIST  agent: one run per outbox fsync policy ("per-batch,none")
  --source-events N   sources: backlog per source (Kafka, Postgres logical) read raw and through the agent (50000)
  --source-pad-bytes N  sources: filler bytes per message / row (200)
  --agent-batch-events N  agent: its ingest.max_batch_events (default: the agent's own, 1000)
  --agent-idle-seconds N     agent: seconds with nothing new, for RSS (20)
  --agent-trickle-seconds N  agent: seconds at 60 events/min, for CPU (60)
  --database NAME     run in this database (created if missing) and keep it; chains loaded
                      earlier (bench/load-chain.ts, or an earlier --database run) are reused.
                      Meant for --only tree-cost,growth,proofs: the other phases need their
                      chains empty and refuse to run on them again
  --server MODE       child (default: server in its own process) | inprocess
  --only LIST         comma list of: ${PHASES.join(", ")}
  --cpu-prof DIR      CPU-profile the server process in each measured window: DIR/<phase>.cpuprofile
                      (--server child only; open in Chrome DevTools or speedscope)
  --json FILE         also write the figures as JSON
  --keep              keep the benchmark database (default: dropped at the end)
`;
