// What an agent costs when there is little to do: `audit-ledger agent` as its own
// process with one generic_polling source (interval_ms 1000) on an endpoint that
// answers 304 Not Modified (nothing new), then on one that gains one item a second
// (60 events/min, each committed through the outbox and Ingest like any other).
//   idle:    RSS (VmRSS of the agent process, sampled each second) and CPU
//   trickle: CPU in % of one core (utime + stime deltas from /proc/<pid>/stat)
import type pg from "pg";
import { secondsSince, sleep } from "./stats.js";
import {
  committedCount,
  enrolmentToken,
  feedItem,
  itemsBody,
  memorySample,
  startAgentProcess,
  startFeed,
  treeCpuMs,
  waitForCommitted,
  type MemorySample,
} from "./agent-ingest.js";

export interface AgentIdleOptions {
  idleSeconds: number;
  trickleSeconds: number;
  /** Items added to the endpoint per second in the trickle window. */
  itemsPerSecond: number;
}

export interface AgentIdleResult {
  options: AgentIdleOptions;
  intervalMs: number;
  /** Seconds from spawning the agent to its first event committed (start-up, enrolment). */
  startSeconds: number;
  /** Memory at the end of the idle window, and the range over its samples. */
  idle: MemorySample;
  idleRssMinBytes: number;
  idleRssMaxBytes: number;
  idleCpuPercent: number;
  idlePolls: number;
  trickleEvents: number;
  tricklePolls: number;
  trickleCpuPercent: number;
  trickle: MemorySample;
}

export async function agentIdle(
  admin: pg.Client,
  serverUrl: string,
  o: AgentIdleOptions,
  log: (msg: string) => void,
): Promise<AgentIdleResult> {
  const chain = "bench-agent-idle";
  const intervalMs = 1000;
  // A "recent orders" endpoint: the last 20 items, with an ETag that changes when one is added.
  const window: string[] = [];
  let version = 0;
  let n = 10_000_000;
  const add = () => {
    window.push(feedItem(n++));
    if (window.length > 20) window.shift();
    version++;
  };
  add(); // one item, so start-up is observable as one committed event
  const feed = await startFeed((ifNoneMatch) => {
    const etag = `"v${version}"`;
    return ifNoneMatch === etag ? { status: 304, etag } : { status: 200, etag, body: itemsBody(window) };
  });
  const token = await enrolmentToken(admin, serverUrl, chain);
  const started = performance.now();
  const agent = startAgentProcess({ serverUrl, token, name: "bench-idle", feedUrl: feed.url, intervalMs, fsync: "per-batch" });
  try {
    await waitForCommitted(admin, chain, 1, agent, 50, 60_000);
    const startSeconds = secondsSince(started);
    log(`  agent started and committed its first event in ${startSeconds.toFixed(1)} s; idle for ${o.idleSeconds} s`);
    await sleep(2000); // let start-up settle (the first acknowledgement, state file, heartbeat)

    const rss: number[] = [];
    let polls0 = feed.polls;
    let cpu0 = treeCpuMs(agent.pid);
    let t0 = performance.now();
    for (let s = 0; s < o.idleSeconds; s++) {
      await sleep(1000);
      rss.push(memorySample(agent.pid).rssBytes);
    }
    const idleCpuPercent = (100 * (treeCpuMs(agent.pid) - cpu0)) / (performance.now() - t0);
    const idle = memorySample(agent.pid);
    const idlePolls = feed.polls - polls0;
    log(`  idle: RSS ${(idle.rssBytes / 1e6).toFixed(1)} MB, CPU ${idleCpuPercent.toFixed(2)} % of a core`);

    log(`  ${o.itemsPerSecond * 60} events/min for ${o.trickleSeconds} s`);
    const before = await committedCount(admin, chain);
    polls0 = feed.polls;
    cpu0 = treeCpuMs(agent.pid);
    t0 = performance.now();
    const timer = setInterval(() => {
      for (let i = 0; i < o.itemsPerSecond; i++) add();
    }, 1000);
    await sleep(o.trickleSeconds * 1000);
    clearInterval(timer);
    const trickleCpuPercent = (100 * (treeCpuMs(agent.pid) - cpu0)) / (performance.now() - t0);
    const trickle = memorySample(agent.pid);
    const tricklePolls = feed.polls - polls0;
    const added = n - 10_000_001;
    await waitForCommitted(admin, chain, 1 + added, agent, 50, 15_000);
    const trickleEvents = (await committedCount(admin, chain)) - before;
    log(`  ${trickleEvents} events committed, CPU ${trickleCpuPercent.toFixed(2)} % of a core, RSS ${(trickle.rssBytes / 1e6).toFixed(1)} MB`);
    return {
      options: o,
      intervalMs,
      startSeconds,
      idle,
      idleRssMinBytes: Math.min(...rss),
      idleRssMaxBytes: Math.max(...rss),
      idleCpuPercent,
      idlePolls,
      trickleEvents,
      tricklePolls,
      trickleCpuPercent,
      trickle,
    };
  } finally {
    await agent.stop();
    await feed.close();
  }
}
