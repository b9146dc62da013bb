// Durable ingest through the agent path, as a user runs it: `audit-ledger agent
// --config FILE` as its own process on this machine, one generic_polling source reading
// a JSON endpoint that the bench serves, the outbox on, Ingest to the bench server,
// an event counted once Postgres has committed it (the chain head's next_seq).
//
//   endpoint (bench) -> generic_polling -> outbox (fsync per-batch | none) -> Ingest
//   (signed batches, credit) -> server -> COMMIT
//
// Each poll answers with the next page of new items (the order documents of
// bench/events.ts, id "order_id"), so the source always has work; the rate is taken
// from the moment the first measured page is served to the moment the last event is
// committed. Next to it, in the same phase: raw COPY of the very rows the agent path
// wrote (bench/raw-copy.ts) and AppendBatch of as many events (bench/append-batch.ts).
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, openSync, closeSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type pg from "pg";
import { createLedgerClient, type LedgerClient } from "../clients/node/ledger-client.js";
import { createApiKey } from "../server/auth/api-keys.js";
import { appendBatches, type ThroughputResult } from "./append-batch.js";
import { checkpoint } from "./bench-db.js";
import { eventPayload } from "./events.js";
import { rawCopy } from "./raw-copy.js";
import { secondsSince, sleep } from "./stats.js";
import type { Meter, PhaseUsage } from "./resource-meter.js";

const REPO = fileURLToPath(new URL("..", import.meta.url));
/** The CLI as installed (tsx compiles the TypeScript on load); BENCH_AGENT_ENTRY runs another build of it, e.g. a bundle. */
const cli = () => process.env.BENCH_AGENT_ENTRY ?? join(REPO, "clients/cli/bin.mjs");
const TICK_MS = 10; // USER_HZ

export type AgentFsync = "per-batch" | "interval" | "none";

// ---------------------------------------------------------------------------------
// The endpoint the agent's generic_polling source reads.

export interface FeedResponse {
  status: 200 | 304;
  body?: string;
  etag?: string;
}

export interface Feed {
  url: string;
  /** GETs answered so far. */
  polls: number;
  /** What the next GET gets (If-None-Match of the request given). */
  respond: (ifNoneMatch: string | undefined) => FeedResponse;
  close(): Promise<void>;
}

export async function startFeed(respond: Feed["respond"]): Promise<Feed> {
  const feed = { url: "", polls: 0, respond, close: async () => undefined } as Feed;
  const server: Server = createServer((req, res) => {
    feed.polls++;
    const r = feed.respond(req.headers["if-none-match"]);
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (r.etag !== undefined) headers.etag = r.etag;
    if (r.status === 304 || r.body === undefined) {
      res.writeHead(304, headers).end();
      return;
    }
    headers["content-length"] = String(Buffer.byteLength(r.body));
    res.writeHead(200, headers).end(r.body);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  feed.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/orders`;
  feed.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return feed;
}

const decoder = new TextDecoder();

/** Item `n` of the endpoint: the order document of bench event `n` (its payload). */
export function feedItem(n: number): string {
  return decoder.decode(eventPayload(n));
}

export const itemsBody = (items: readonly string[]) => `{"items":[${items.join(",")}]}`;

// ---------------------------------------------------------------------------------
// The agent process.

export interface AgentProcessOptions {
  serverUrl: string;
  token: string;
  name: string;
  /** The generic_polling source's endpoint and interval, unless `sources` is given. */
  feedUrl?: string;
  intervalMs?: number;
  /** The agent's sources, in its config's shape (default: generic_polling on feedUrl). */
  sources?: ({ name: string; type: string } & Record<string, unknown>)[];
  fsync: AgentFsync;
  /** ingest.max_batch_events; the agent's default when undefined. */
  batchEvents?: number;
  /** Extra node flags for the agent (e.g. --cpu-prof). */
  nodeArgs?: string[];
}

export interface AgentProcess {
  pid: number;
  dir: string;
  logFile: string;
  /** The last lines of its log (for error messages). */
  logTail(): string;
  stop(): Promise<void>;
}

/** The item source as a user would configure it for an orders endpoint. */
function sourceConfig(o: AgentProcessOptions) {
  return {
    name: "orders",
    type: "generic_polling",
    url: o.feedUrl,
    interval_ms: o.intervalMs,
    items_path: "items",
    id_field: "order_id",
    kind_prefix: "order",
    subject_template: "orders/{id}",
  };
}

/** Writes a config file in a fresh folder and starts `audit-ledger agent --config FILE`. */
export function startAgentProcess(o: AgentProcessOptions): AgentProcess {
  const dir = mkdtempSync(join(tmpdir(), "audit-ledger-bench-agent-"));
  const config = {
    server: o.serverUrl,
    state_dir: join(dir, "state"),
    enrolment_token: o.token,
    name: o.name,
    outbox: { fsync: o.fsync },
    ...(o.batchEvents ? { ingest: { max_batch_events: o.batchEvents } } : {}),
    sources: o.sources ?? [sourceConfig(o)],
  };
  const configFile = join(dir, "agent.json");
  writeFileSync(configFile, JSON.stringify(config, null, 2));
  const logFile = join(dir, "agent.log");
  const fd = openSync(logFile, "a");
  let child: ChildProcess;
  try {
    // BENCH_AGENT_NODE_ARGS: node/V8 flags for the agent only (e.g. "--max-semi-space-size=1").
    const extra = (process.env.BENCH_AGENT_NODE_ARGS ?? "").split(" ").filter(Boolean);
    child = spawn(process.execPath, [...extra, ...(o.nodeArgs ?? []), cli(), "agent", "--config", configFile], {
      cwd: REPO,
      env: { ...process.env, LOG_LEVEL: process.env.BENCH_AGENT_LOG_LEVEL ?? "info" },
      stdio: ["ignore", fd, fd],
    });
  } finally {
    closeSync(fd);
  }
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const logTail = () => {
    try {
      return readFileSync(logFile, "utf8").trimEnd().split("\n").slice(-15).join("\n");
    } catch {
      return "(no log)";
    }
  };
  return {
    pid: child.pid!,
    dir,
    logFile,
    logTail,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const code = await Promise.race([exited, sleep(15_000).then(() => "timeout" as const)]);
        if (code === "timeout") {
          child.kill("SIGKILL");
          await exited;
        }
      }
      if (!process.env.BENCH_AGENT_KEEP) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A one-time enrolment token for `chain`, made with an admin key of that chain. */
export async function enrolmentToken(admin: pg.Client, serverUrl: string, chain: string): Promise<string> {
  const { token: apiKey } = await createApiKey(admin as never, chain, ["admin"]);
  const client: LedgerClient = createLedgerClient({ baseUrl: serverUrl, apiKey, protocol: "connect", httpVersion: "2" });
  const { token } = await client.agents.createEnrolmentToken({ chain, ttlSeconds: 600 });
  return token;
}

/** Entries committed in `chain` so far (its head). */
export async function committedCount(admin: pg.Client, chain: string): Promise<number> {
  const res = await admin.query<{ next_seq: string }>("SELECT next_seq FROM chains WHERE chain = $1", [chain]);
  return res.rows.length ? Number(res.rows[0]!.next_seq) : 0;
}

/**
 * Waits until `chain` holds `count` entries, polling every `everyMs`; returns the
 * performance.now() at which that was seen. Fails if nothing moves for `stallMs`.
 */
export async function waitForCommitted(admin: pg.Client, chain: string, count: number, agent: AgentProcess, everyMs = 10, stallMs = 30_000): Promise<number> {
  let last = -1;
  let lastMove = performance.now();
  for (;;) {
    const n = await committedCount(admin, chain);
    const now = performance.now();
    if (n >= count) return now;
    if (n !== last) {
      last = n;
      lastMove = now;
    } else if (now - lastMove > stallMs) {
      throw new Error(`agent path stalled at ${n} of ${count} entries in ${chain} for ${stallMs / 1000} s; agent log (${agent.logFile}):\n${agent.logTail()}`);
    }
    await sleep(everyMs);
  }
}

// ---------------------------------------------------------------------------------
// /proc: CPU ticks and memory of the agent process and of any children it has.

/** The process and its descendants (children first found through /proc/<pid>/task/<tid>/children). */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    try {
      for (const tid of readdirSync(`/proc/${out[i]}/task`)) {
        const kids = readFileSync(`/proc/${out[i]}/task/${tid}/children`, "utf8").trim();
        if (kids) out.push(...kids.split(" ").map(Number));
      }
    } catch {
      // gone
    }
  }
  return out;
}

/** utime + stime of the process tree, in ms. */
export function treeCpuMs(pid: number): number {
  let ticks = 0;
  for (const p of processTree(pid)) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // gone
    }
  }
  return ticks * TICK_MS;
}

export interface MemorySample {
  /** VmRSS of the agent process itself. */
  rssBytes: number;
  /** Its peak (VmHWM). */
  hwmBytes: number;
  /** VmRSS summed over the process and its descendants. */
  treeRssBytes: number;
  processes: number;
}

function statusKiB(pid: number, field: string): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

export function memorySample(pid: number): MemorySample {
  const tree = processTree(pid);
  return {
    rssBytes: statusKiB(pid, "VmRSS") * 1024,
    hwmBytes: statusKiB(pid, "VmHWM") * 1024,
    treeRssBytes: tree.reduce((a, p) => a + statusKiB(p, "VmRSS") * 1024, 0),
    processes: tree.length,
  };
}

// ---------------------------------------------------------------------------------
// The throughput measurement.

export interface AgentIngestOptions {
  /** Events per measured run. */
  events: number;
  /** New items per poll. */
  pageSize: number;
  /** The source's interval_ms. */
  intervalMs: number;
  /** Outbox fsync policies, one agent run (one agent process, own chain) each. */
  fsyncs: AgentFsync[];
  /** The agent's ingest.max_batch_events; its default (1,000) when undefined. */
  agentBatchEvents?: number;
  /** Events before the clock starts (agent start-up, enrolment, JIT). */
  warmup: number;
  /** AppendBatch: events per request and concurrent clients. */
  batchSize: number;
  clients: number;
  /** Write a V8 CPU profile of each agent process into this folder. */
  cpuProfDir?: string;
}

export interface AgentIngestRun {
  fsync: AgentFsync;
  chain: string;
  events: number;
  /** First measured page served -> last event committed. */
  seconds: number;
  rowsPerSecond: number;
  /** First measured page served -> last page served: how long the source took to read them all. */
  sourceSeconds: number;
  polls: number;
  /** CPU of the agent process (and any children) in the window. */
  agentCpuMs: number;
  /** Peak RSS of the agent over its life (VmHWM). */
  agentPeakRssBytes: number;
  usage?: PhaseUsage;
}

export interface AgentIngestResult {
  options: Omit<AgentIngestOptions, "cpuProfDir">;
  runs: AgentIngestRun[];
  /** Raw COPY of the rows of the first run's chain (warm-up rows included). */
  rawCopy: ThroughputResult;
  appendBatch: ThroughputResult;
}

export interface AgentBenchDeps {
  admin: pg.Client;
  serverUrl: string;
  clients(chain: string, n: number): Promise<LedgerClient[]>;
  meter(window: string): Meter;
  log(msg: string): void;
}

/** One agent process from start to stop: warm-up, then `events` timed. */
async function agentRun(deps: AgentBenchDeps, o: AgentIngestOptions, fsync: AgentFsync, chain: string, firstItem: number): Promise<AgentIngestRun> {
  const { admin } = deps;
  const page = (first: number, count: number) => itemsBody(Array.from({ length: count }, (_, i) => feedItem(firstItem + first + i)));
  // Every page is built before the agent starts: serving one is a write of a ready string.
  const warmPages: string[] = [];
  for (let at = 0; at < o.warmup; at += o.pageSize) warmPages.push(page(at, Math.min(o.pageSize, o.warmup - at)));
  const pages: string[] = [];
  for (let at = 0; at < o.events; at += o.pageSize) pages.push(page(o.warmup + at, Math.min(o.pageSize, o.events - at)));
  const empty = itemsBody([]);

  let queue = warmPages;
  let next = 0;
  let firstServed = 0;
  let lastServed = 0;
  let measuredPolls = 0;
  let measuring = false;
  const feed = await startFeed(() => {
    if (measuring) measuredPolls++;
    if (next >= queue.length) return { status: 200, body: empty };
    const body = queue[next++]!;
    if (measuring) {
      if (firstServed === 0) firstServed = performance.now();
      lastServed = performance.now();
    }
    return { status: 200, body };
  });
  const token = await enrolmentToken(admin, deps.serverUrl, chain);
  const agent = startAgentProcess({
    serverUrl: deps.serverUrl,
    token,
    name: `bench-${fsync}`,
    feedUrl: feed.url,
    intervalMs: o.intervalMs,
    fsync,
    batchEvents: o.agentBatchEvents,
    // One profile per thread (main, and the module loader's), whole life of the process.
    nodeArgs: o.cpuProfDir ? ["--cpu-prof", `--cpu-prof-dir=${join(o.cpuProfDir, `agent-process-${fsync}`)}`] : [],
  });
  try {
    const started = performance.now();
    await waitForCommitted(admin, chain, o.warmup, agent, 50, 60_000);
    deps.log(`  agent (outbox fsync ${fsync}) started, enrolled and committed ${o.warmup} warm-up events in ${secondsSince(started).toFixed(1)} s`);
    await checkpoint(admin);
    const meter = deps.meter(`agent-${fsync}`);
    await meter.start();
    const cpu0 = treeCpuMs(agent.pid);
    queue = pages;
    next = 0;
    measuring = true;
    const done = await waitForCommitted(admin, chain, o.warmup + o.events, agent);
    const agentCpuMs = treeCpuMs(agent.pid) - cpu0;
    const usage = await meter.stop();
    const seconds = (done - firstServed) / 1000;
    const check = await admin.query<{ n: string; gaps: string; others: string }>(
      `SELECT count(*) AS n, count(*) FILTER (WHERE kind = 'gap') AS gaps, count(*) FILTER (WHERE source_type <> 'generic_polling') AS others
       FROM entries WHERE chain = $1`,
      [chain],
    );
    const c = check.rows[0]!;
    if (Number(c.n) !== o.warmup + o.events || Number(c.gaps) !== 0 || Number(c.others) !== 0) {
      throw new Error(`agent chain ${chain}: ${c.n} entries (expected ${o.warmup + o.events}), ${c.gaps} gaps, ${c.others} not from the source`);
    }
    const peak = memorySample(agent.pid).hwmBytes;
    return {
      fsync,
      chain,
      events: o.events,
      seconds,
      rowsPerSecond: o.events / seconds,
      sourceSeconds: (lastServed - firstServed) / 1000,
      polls: measuredPolls,
      agentCpuMs,
      agentPeakRssBytes: peak,
      usage,
    };
  } finally {
    await agent.stop();
    await feed.close();
  }
}

/**
 * The agent path with each outbox fsync policy, raw COPY of the rows the first run
 * wrote, and AppendBatch of as many events, all on the same server and Postgres.
 */
export async function agentIngest(deps: AgentBenchDeps, o: AgentIngestOptions): Promise<AgentIngestResult> {
  const runs: AgentIngestRun[] = [];
  let item = 0;
  for (const fsync of o.fsyncs) {
    const chain = `bench-agent-${fsync}`;
    deps.log(`agent path: ${o.events} events (pages of ${o.pageSize} new items, interval_ms ${o.intervalMs}), outbox fsync ${fsync}, chain ${chain}`);
    const run = await agentRun(deps, o, fsync, chain, item);
    item += o.warmup + o.events;
    runs.push(run);
    deps.log(`  ${Math.round(run.rowsPerSecond)} events/s (source read its pages in ${run.sourceSeconds.toFixed(2)} of ${run.seconds.toFixed(2)} s)`);
  }
  deps.log(`raw COPY of the rows of ${runs[0]!.chain}`);
  const copy = await rawCopy(deps.admin, runs[0]!.chain, deps.meter("agent-raw-copy"));
  deps.log(`  ${Math.round(copy.rowsPerSecond)} rows/s`);
  const warm = Math.min(o.events, 5 * o.batchSize);
  await appendBatches(await deps.clients("bench-agent-append-warmup", o.clients), warm, o.batchSize, "agent-ab-warmup");
  await checkpoint(deps.admin);
  deps.log(`AppendBatch of ${o.events} events, batches of ${o.batchSize}, ${o.clients} clients`);
  const append = await appendBatches(await deps.clients("bench-agent-append", o.clients), o.events, o.batchSize, "agent-ab", deps.meter("agent-append-batch"));
  deps.log(`  ${Math.round(append.rowsPerSecond)} events/s`);
  const { cpuProfDir: _, ...options } = o;
  return { options, runs, rawCopy: copy, appendBatch: append };
}
