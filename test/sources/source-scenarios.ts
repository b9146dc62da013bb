// The scenarios every source type must pass end to end (issue 5, "for every source"):
// a real agent process and a real ledger server process, the real upstream service.
//   1. N upstream events become exactly N entries: right kind, subject, payload, position.
//   2. The agent is killed with SIGKILL halfway and restarted: still exactly N.
//   3. The ledger server is down for a while (killed, back later on the same port): still
//      exactly N, and the agent went on taking events from upstream meanwhile.
//   4. The ledger is stalled (a transaction holds the chain's head row): the agent fills
//      its outbox, then stops taking events from upstream; outbox and memory stay
//      bounded; once the ledger moves again everything lands, once.
//   5. Each bad configuration fails at start with a message naming the problem.
// Every end state is checked the same way: exactly the events produced, each once, no
// gap entries, distinct positions, and Verify finds the chain valid.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { agentStartFailure, freePort, serverProcess, spawnAgent, writeAgentConfig, type AgentProcess } from "../support/agent-process.js";
import { clientFor, databaseUrl, keysDir, uniqueChain, type ServerProcess } from "../support/test-server.js";
import { readAll, verdictOf } from "../support/verifiable-log.js";
import type { LedgerClient } from "../../clients/node/ledger-client.js";
import type { ScenarioUpstream, UpstreamUnderTest } from "./upstream.js";

const MiB = 1 << 20;

export interface ScenarioOptions {
  /** Events per scenario (default 300). */
  events?: number;
  /** Events produced into the stalled ledger's path (default 1,500, padded to fill a 1 MiB outbox). */
  backlogEvents?: number;
  /** Filler bytes per backlog event (default 2,048). */
  backlogPadBytes?: number;
}

/** Figures the scenarios measured, printed when SOURCE_TEST_REPORT=1. */
const figures: Record<string, unknown> = {};

export function describeSourceScenarios(upstream: UpstreamUnderTest, options: ScenarioOptions = {}): void {
  const N = options.events ?? 300;
  const BACKLOG = options.backlogEvents ?? 1500;
  const PAD = options.backlogPadBytes ?? 2048;

  describe(`${upstream.type}: upstream → agent → ledger`, () => {
    let port: number;
    let server: ServerProcess;
    let client: LedgerClient;
    let chain: string;
    let pool: pg.Pool;
    const cleanups: (() => Promise<unknown>)[] = [];

    const startServer = async () => {
      server = await serverProcess({ port, databaseUrl: databaseUrl(), keysDir: keysDir() });
    };

    beforeAll(async () => {
      port = await freePort();
      await startServer();
      chain = uniqueChain(upstream.type.replace(/_/g, "-"));
      client = await clientFor(server, chain);
      pool = new pg.Pool({ connectionString: databaseUrl(), max: 2 });
      pool.on("error", () => undefined);
    });
    afterAll(async () => {
      for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => undefined);
      await server?.stop();
      await pool?.end();
      if (process.env.SOURCE_TEST_REPORT) console.log(JSON.stringify({ [upstream.type]: figures[upstream.type] }, null, 2));
    });

    const later = <T>(fn: () => Promise<unknown>, value: T): T => {
      cleanups.push(fn);
      return value;
    };
    const record = (scenario: string, values: Record<string, unknown>) => {
      const mine = (figures[upstream.type] ??= {}) as Record<string, unknown>;
      mine[scenario] = values;
    };

    async function prepared(): Promise<ScenarioUpstream> {
      const up = await upstream.prepare();
      return later(() => up.cleanup(), up);
    }

    /** An agent folder and config reading `source`, enrolled with a fresh token. */
    async function agentConfigFor(source: Record<string, unknown>, outbox: { max_bytes?: number; segment_bytes?: number } = {}) {
      const dir = mkdtempSync(join(tmpdir(), "al-src-"));
      later(async () => rmSync(dir, { recursive: true, force: true }), null);
      const { token } = await client.agents.createEnrolmentToken({ chain, ttlSeconds: 600 });
      const file = writeAgentConfig(dir, {
        server: server.url,
        state_dir: join(dir, "state"),
        enrolment_token: token,
        name: `${upstream.type}-scenario`,
        outbox: { segment_bytes: 256 << 10, ...outbox },
        ingest: { max_batch_events: 100, heartbeat_interval_ms: 200, max_backoff_ms: 300 },
        sources: [{ name: "upstream", type: upstream.type, ...source }],
      });
      return { dir, file };
    }

    async function startAgent(file: string): Promise<{ agent: AgentProcess; zid: string }> {
      const agent = await spawnAgent(file, { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true" });
      later(() => agent.kill(), null);
      const running = await agent.waitForLog((l) => l.msg === "agent running", "agent running");
      return { agent, zid: running.zid as string };
    }

    /** Entries of `zid` committed so far, counted in the database. */
    async function committed(zid: string): Promise<number> {
      const res = await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM entries WHERE chain = $1 AND agent = $2", [chain, zid]);
      return res.rows[0]!.n;
    }

    /** Waits for at least `atLeast` entries of `zid`; fails at once if the agent died. */
    async function waitForCommitted(zid: string, atLeast: number, agent: AgentProcess, timeoutMs = 60_000): Promise<void> {
      const deadline = Date.now() + timeoutMs;
      let n = 0;
      while ((n = await committed(zid).catch(() => n)) < atLeast) {
        if (agent.child.exitCode !== null || agent.child.signalCode !== null) {
          throw new Error(`waiting for ${atLeast} entries: the agent died; its output ends:\n${agent.output().slice(-3000)}`);
        }
        if (Date.now() > deadline) throw new Error(`waiting for ${atLeast} entries: ${n} after ${timeoutMs} ms; agent output ends:\n${agent.output().slice(-3000)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }

    /** The end state every scenario must reach: events 0..count-1, each exactly once. */
    async function expectExactlyOnce(zid: string, up: ScenarioUpstream, count: number): Promise<void> {
      const rows = (await readAll(client.ledger, { includePayload: true })).filter((e) => e.agent === zid);
      expect(rows.filter((r) => r.kind === "gap").map((r) => new TextDecoder().decode(r.payload ?? undefined))).toEqual([]);
      const seen = rows.map((r) => up.identify(r));
      expect(seen.length).toBe(count);
      expect(new Set(seen).size).toBe(count);
      expect(Math.min(...seen)).toBe(0);
      expect(Math.max(...seen)).toBe(count - 1);
      expect(new Set(rows.map((r) => r.source_position)).size).toBe(count);
      expect(rows.every((r) => r.source_type === upstream.type)).toBe(true);
      const verdict = await verdictOf(client.ledger);
      expect(verdict.valid, verdict.reason).toBe(true);
    }

    it(`${N} upstream events become exactly ${N} entries with the right kind, subject, payload and source_position`, { timeout: 120_000 }, async () => {
      const up = await prepared();
      const { file } = await agentConfigFor(up.config);
      const { agent, zid } = await startAgent(file);
      await up.produce(0, N);
      await waitForCommitted(zid, N, agent);
      await expectExactlyOnce(zid, up, N);
      await agent.stop();
    });

    it("the agent killed with SIGKILL halfway and restarted: still exactly N entries", { timeout: 120_000 }, async () => {
      const up = await prepared();
      const { file } = await agentConfigFor(up.config);
      const first = await startAgent(file);
      await up.produce(0, N / 2);
      await waitForCommitted(first.zid, N / 4, first.agent);
      await first.agent.kill();
      const atKill = await committed(first.zid);
      await up.produce(N / 2, N);
      const second = await startAgent(file);
      expect(second.zid).toBe(first.zid);
      await waitForCommitted(second.zid, N, second.agent);
      await expectExactlyOnce(second.zid, up, N);
      record("agent_killed", { events: N, committed_at_kill: atKill });
      await second.agent.stop();
    });

    it("the ledger server down for a while: the agent keeps taking events into its outbox, and once the server is back there are exactly N entries", { timeout: 120_000 }, async () => {
      const up = await prepared();
      const { file } = await agentConfigFor(up.config);
      const { agent, zid } = await startAgent(file);
      await up.produce(0, N / 3);
      await waitForCommitted(zid, N / 6, agent);
      await server.kill();
      const downAt = Date.now();
      try {
        await up.produce(N / 3, N);
        // Upstream is drained into the outbox while the ledger is away (where the source can tell).
        const deadline = Date.now() + 30_000;
        let left = await up.unconsumed();
        while (left > 0 && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 100));
          left = await up.unconsumed();
        }
        if (left >= 0) expect(left, "events the source had not taken from upstream while the ledger was down").toBe(0);
      } finally {
        await startServer();
      }
      const downMs = Date.now() - downAt;
      await waitForCommitted(zid, N, agent);
      await expectExactlyOnce(zid, up, N);
      record("ledger_down", { events: N, down_ms: downMs });
      await agent.stop();
    });

    it("a stalled ledger: the agent fills its outbox, then stops taking events from upstream; outbox and memory stay bounded; then everything lands once", { timeout: 180_000 }, async () => {
      const up = await prepared();
      const { dir, file } = await agentConfigFor(up.config, { max_bytes: 1 * MiB, segment_bytes: 64 << 10 });
      const { agent, zid } = await startAgent(file);
      // The ledger stalls: a DBA's transaction holds the chain's head row, so no commit finishes.
      const dba = new pg.Client({ connectionString: databaseUrl() });
      await dba.connect();
      later(() => dba.end(), null);
      await dba.query("BEGIN");
      await dba.query("SELECT next_seq FROM chains WHERE chain = $1 FOR UPDATE", [chain]);
      let stalled = true;
      later(async () => stalled && (await dba.query("ROLLBACK")), null);
      const before = await committed(zid);
      await up.produce(0, BACKLOG, PAD);
      await agent.waitForLog((l) => l.msg.startsWith("outbox full"), "the outbox filling up", 60_000);
      // Full: the source is paused. Samples over a second: upstream keeps a backlog, the
      // outbox stays under its cap, the agent's memory stays bounded.
      const outboxDir = join(dir, "state", "outbox");
      const samples: { unconsumed: number; outboxBytes: number; rssBytes: number }[] = [];
      for (let i = 0; i < 10; i++) {
        samples.push({ unconsumed: await up.unconsumed(), outboxBytes: dirBytes(outboxDir), rssBytes: rssOf(agent.child.pid!) });
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(await committed(zid)).toBe(before);
      const unconsumed = samples.map((s) => s.unconsumed);
      if (unconsumed[0]! >= 0) expect(Math.min(...unconsumed), "events left upstream while the outbox is full").toBeGreaterThan(0);
      const maxOutbox = Math.max(...samples.map((s) => s.outboxBytes));
      const maxRss = Math.max(...samples.map((s) => s.rssBytes));
      // The cap, plus the one segment being written and the gap reserve's slack.
      expect(maxOutbox).toBeLessThanOrEqual(1 * MiB + (128 << 10));
      expect(maxRss).toBeLessThan(320 * MiB);
      record("stalled_ledger", { backlog_events: BACKLOG, pad_bytes: PAD, unconsumed, max_outbox_bytes: maxOutbox, max_rss_mb: +(maxRss / MiB).toFixed(1) });

      await dba.query("ROLLBACK");
      stalled = false;
      await waitForCommitted(zid, BACKLOG, agent, 120_000);
      await expectExactlyOnce(zid, up, BACKLOG);
      await agent.stop();
    });

    it("bad configurations fail at start with a message naming the problem", { timeout: 120_000 }, async () => {
      const bad = await upstream.badConfigs();
      expect(bad.length).toBeGreaterThan(0);
      for (const b of bad) {
        if (b.cleanup) later(() => b.cleanup!(), null);
        const { file } = await agentConfigFor(b.config);
        const { code, output } = await agentStartFailure(file, { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true" });
        expect(code, `${b.what}: exit code`).not.toBe(0);
        expect(output, b.what).toMatch(/source "upstream" \([a-z0-9_]+\) could not start/);
        expect(output, b.what).toMatch(b.message);
      }
    });
  });
}

function dirBytes(dir: string): number {
  let n = 0;
  for (const f of readdirSync(dir)) n += statSync(join(dir, f)).size;
  return n;
}

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : 0;
}
