// The postgres_logical source failing at runtime, end to end: a real ledger server
// process, a real agent process (`audit-ledger agent --config FILE`) and the suite's
// logical-replication cluster (inject("pgLogicalUrl")). What reconnecting cannot fix
// must not leave an agent running that silently reads nothing: the source records the
// loss as a `gap` entry (when changes were lost), then the agent exits with code 1 and
// says which source failed and why, for a supervisor (and its operator) to see.
//   1. The slot (an existing one, create_slot: false) is dropped while the agent runs.
//   2. The publication is dropped while the agent runs.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { freePort, serverProcess, spawnAgent, writeAgentConfig, type AgentProcess } from "../support/agent-process.js";
import { clientFor, databaseUrl, keysDir, uniqueChain, type ServerProcess } from "../support/test-server.js";
import { readAll, verdictOf } from "../support/verifiable-log.js";
import type { LedgerClient } from "../../clients/node/ledger-client.js";

const ROWS = 20;

let counter = 0;
function unique(prefix: string): string {
  return `${prefix}_${process.pid}_${Date.now().toString(36)}_${(counter++).toString(36)}`;
}

describe("postgres_logical: failing at runtime stops the agent with an error", () => {
  let server: ServerProcess;
  let client: LedgerClient;
  let chain: string;
  let ledgerDb: pg.Pool;
  let upstream: pg.Client;
  const cleanups: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    server = await serverProcess({ port: await freePort(), databaseUrl: databaseUrl(), keysDir: keysDir() });
    chain = uniqueChain("pg-logical-failure");
    client = await clientFor(server, chain);
    ledgerDb = new pg.Pool({ connectionString: databaseUrl(), max: 2 });
    ledgerDb.on("error", () => undefined);
    upstream = new pg.Client({ connectionString: inject("pgLogicalUrl") });
    await upstream.connect();
  });
  afterAll(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => undefined);
    await upstream?.end();
    await ledgerDb?.end();
    await server?.stop();
  });

  /** A table with its publication, and an existing slot (the operator's, not the agent's). */
  async function setUp() {
    const table = unique("failure");
    const publication = unique("failure_pub");
    const slot = unique("failure_slot");
    await upstream.query(`CREATE TABLE ${table} (id int PRIMARY KEY, label text NOT NULL)`);
    await upstream.query(`CREATE PUBLICATION ${publication} FOR TABLE ${table}`);
    await upstream.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
    cleanups.push(async () => {
      await dropSlot(slot).catch(() => undefined);
      await upstream.query(`DROP PUBLICATION IF EXISTS ${publication}`);
      await upstream.query(`DROP TABLE IF EXISTS ${table}`);
    });
    const produce = (from: number, to: number) => upstream.query(`INSERT INTO ${table} SELECT g, 'row ' || g FROM generate_series($1::int, $2::int) g`, [from, to - 1]);
    return { table, publication, slot, produce };
  }

  /** Ends the slot's walsender (the running agent's), then drops the slot, retrying until it is released. */
  async function dropSlot(slot: string): Promise<void> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      await upstream.query("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL", [slot]);
      try {
        await upstream.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", [slot]);
        return;
      } catch (err) {
        // "is active for PID": the terminated walsender has not exited yet, or the agent reconnected.
        if ((err as { code?: string }).code !== "55006" || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  /** Starts an agent reading `source` (create_slot off), enrolled with a fresh token. */
  async function startAgent(source: Record<string, unknown>): Promise<{ agent: AgentProcess; zid: string }> {
    const dir = mkdtempSync(join(tmpdir(), "al-pg-failure-"));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const { token } = await client.agents.createEnrolmentToken({ chain, ttlSeconds: 600 });
    const file = writeAgentConfig(dir, {
      server: server.url,
      state_dir: join(dir, "state"),
      enrolment_token: token,
      name: "pg-logical-failure",
      ingest: { max_batch_events: 100, heartbeat_interval_ms: 200, max_backoff_ms: 300 },
      sources: [{ name: "orders", type: "postgres_logical", url: inject("pgLogicalUrl"), create_slot: false, status_interval_ms: 200, reconnect_delay_ms: 200, ...source }],
    });
    const agent = await spawnAgent(file);
    cleanups.push(() => agent.kill());
    const running = await agent.waitForLog((l) => l.msg === "agent running", "agent running");
    return { agent, zid: running.zid as string };
  }

  async function committed(zid: string): Promise<number> {
    const r = await ledgerDb.query<{ n: number }>("SELECT count(*)::int AS n FROM entries WHERE chain = $1 AND agent = $2", [chain, zid]);
    return r.rows[0]!.n;
  }

  async function waitForCommitted(zid: string, atLeast: number, agent: AgentProcess): Promise<void> {
    const deadline = Date.now() + 30_000;
    while ((await committed(zid)) < atLeast) {
      if (agent.child.exitCode !== null) throw new Error(`the agent exited waiting for ${atLeast} entries:\n${agent.output().slice(-3000)}`);
      if (Date.now() > deadline) throw new Error(`${await committed(zid)} of ${atLeast} entries after 30 s:\n${agent.output().slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Resolves with the agent's exit code, or fails if it is still running after `timeoutMs`. */
  async function exitCode(agent: AgentProcess, timeoutMs = 30_000): Promise<number | null> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the agent is still running ${timeoutMs} ms later; its output ends:\n${agent.output().slice(-3000)}`)), timeoutMs);
    });
    try {
      return await Promise.race([agent.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  const text = (payload: Uint8Array | null | undefined) => new TextDecoder().decode(payload ?? undefined);

  it("the slot dropped while the agent runs (create_slot off): a gap entry naming the slot, then exit 1 naming the slot and the fix; Verify is valid", { timeout: 120_000 }, async () => {
    const { publication, slot, produce } = await setUp();
    const { agent, zid } = await startAgent({ publication, slot });
    await produce(0, ROWS);
    await waitForCommitted(zid, ROWS, agent);

    const droppedAt = Date.now();
    await dropSlot(slot);
    const code = await exitCode(agent);
    const exitMs = Date.now() - droppedAt;
    const output = agent.output();
    expect(code, output.slice(-3000)).toBe(1);
    expect(output).toContain(`audit-ledger: agent stopped: source "orders" (postgres_logical) failed: replication slot "${slot}" no longer exists`);
    expect(output).toMatch(/a gap entry was recorded\); create it \(SELECT pg_create_logical_replication_slot\('[a-z0-9_]+', 'pgoutput'\)\) or set create_slot: true/);

    // The loss is in the ledger, once, after the rows that were delivered; the chain verifies.
    const rows = (await readAll(client.ledger, { includePayload: true })).filter((e) => e.agent === zid);
    const gaps = rows.filter((r) => r.kind === "gap");
    expect(gaps.map((g) => JSON.parse(text(g.payload)) as { reason: string; from?: string })).toEqual([
      { reason: expect.stringMatching(new RegExp(`^replication slot "${slot}" no longer exists in .*: changes after [0-9A-F]+/[0-9A-F]+ may be lost$`)), from: expect.stringMatching(/^[0-9A-F]+\/[0-9A-F]+$/) },
    ]);
    expect(rows.filter((r) => r.kind === "postgres.insert")).toHaveLength(ROWS);
    const verdict = await verdictOf(client.ledger);
    expect(verdict.valid, verdict.reason).toBe(true);
    if (process.env.SOURCE_TEST_REPORT) console.log(JSON.stringify({ slot_dropped: { rows: ROWS, exit_code: code, exit_after_drop_ms: exitMs } }));
  });

  it("the publication dropped while the agent runs: exit 1 naming the publication, no endless reconnecting", { timeout: 120_000 }, async () => {
    const { publication, slot, produce } = await setUp();
    const { agent, zid } = await startAgent({ publication, slot });
    await produce(0, ROWS);
    await waitForCommitted(zid, ROWS, agent);

    const droppedAt = Date.now();
    await upstream.query(`DROP PUBLICATION ${publication}`);
    // The server finds the publication missing when it decodes the next change.
    await produce(ROWS, ROWS + 1);
    const code = await exitCode(agent);
    const exitMs = Date.now() - droppedAt;
    const output = agent.output();
    expect(code, output.slice(-3000)).toBe(1);
    expect(output).toContain(`audit-ledger: agent stopped: source "orders" (postgres_logical) failed: publication "${publication}" does not exist`);
    expect(output).toMatch(/CREATE PUBLICATION .*pg_replication_slot_advance/);
    // Nothing is lost yet (the slot still holds the change): no gap; the chain verifies.
    const rows = (await readAll(client.ledger, { includePayload: true })).filter((e) => e.agent === zid);
    expect(rows.filter((r) => r.kind === "gap")).toEqual([]);
    const verdict = await verdictOf(client.ledger);
    expect(verdict.valid, verdict.reason).toBe(true);
    if (process.env.SOURCE_TEST_REPORT) console.log(JSON.stringify({ publication_dropped: { rows: ROWS, exit_code: code, exit_after_drop_ms: exitMs } }));
  });
});
