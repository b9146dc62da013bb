// The postgres_logical upstream for the shared source scenarios: a fresh table and
// publication on the suite's logical-replication cluster (inject("pgLogicalUrl")) per
// scenario, a slot of its own that the source creates (create_slot: true), and one
// inserted row per event (id = the event's number), so each event is one ledger entry.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect, inject } from "vitest";
import pg from "pg";
import type { StoredEntry } from "../../chain/index.js";
import { freePort } from "../support/free-port.js";
import { startScratchPostgres } from "../support/scratch-postgres.js";
import { parseLsn } from "../../agent/sources/postgres-logical/lsn.js";
import type { BadConfig, ScenarioUpstream, UpstreamUnderTest } from "./upstream.js";

/** Rows per INSERT (one transaction each): the unit in which the slot's progress is measured. */
const ROWS_PER_TRANSACTION = 100;
const POSITION = /^pg1:[0-9a-f]{16}:[0-9A-F]{1,8}\/[0-9A-F]{1,8}:\d+$/;

let counter = 0;
function unique(prefix: string): string {
  return `${prefix}_${process.pid}_${Date.now().toString(36)}_${(counter++).toString(36)}`;
}

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return client;
}

/** Ends the slot's walsender (an agent killed or still running), then drops the slot. */
async function dropSlot(client: pg.Client, slot: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    await client.query("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL", [slot]);
    try {
      await client.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", [slot]);
      return;
    } catch (err) {
      // "is active for PID": the terminated walsender has not exited yet.
      if ((err as { code?: string }).code !== "55006" || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

async function prepare(): Promise<ScenarioUpstream> {
  const url = inject("pgLogicalUrl");
  const table = unique("scenario");
  const publication = unique("scenario_pub");
  const slot = unique("scenario_slot");
  const client = await connect(url);
  await client.query(`CREATE TABLE ${table} (id int PRIMARY KEY, label text NOT NULL, pad text NOT NULL)`);
  await client.query(`CREATE PUBLICATION ${publication} FOR TABLE ${table}`);
  /** WAL position after each produced transaction, with the rows it holds. */
  const produced: { lsn: bigint; rows: number }[] = [];

  return {
    config: { url, publication, slot, create_slot: true, status_interval_ms: 1_000 },

    async produce(from, to, padBytes = 0) {
      for (let start = from; start < to; start += ROWS_PER_TRANSACTION) {
        const end = Math.min(to, start + ROWS_PER_TRANSACTION);
        await client.query(`INSERT INTO ${table} SELECT g, 'event ' || g, repeat('x', $3) FROM generate_series($1::int, $2::int) g`, [start, end - 1, padBytes]);
        const r = await client.query<{ lsn: string }>("SELECT pg_current_wal_lsn() AS lsn");
        produced.push({ lsn: parseLsn(r.rows[0]!.lsn), rows: end - start });
      }
    },

    identify(entry: StoredEntry): number {
      expect(entry.source_type).toBe("postgres_logical");
      expect(entry.kind).toBe("postgres.insert");
      expect(entry.source_position).toMatch(POSITION);
      expect(entry.payload_type).toBe("application/json");
      const body = JSON.parse(Buffer.from(entry.payload!).toString("utf8")) as Record<string, any>;
      const id = Number(body.new?.id);
      expect(Number.isInteger(id)).toBe(true);
      expect(body).toMatchObject({ schema: "public", table, op: "insert", key: { id: String(id) }, new: { id: String(id), label: `event ${id}` } });
      expect(entry.subject).toBe(`public.${table}/${id}`);
      // The position names the transaction's commit, as the payload does.
      expect(entry.source_position!.split(":")[2]).toBe(body.commit_lsn);
      return id;
    },

    async unconsumed() {
      const r = await client.query<{ confirmed_flush_lsn: string | null }>("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1", [slot]);
      const confirmed = r.rows[0]?.confirmed_flush_lsn;
      const at = confirmed ? parseLsn(confirmed) : -1n;
      // A transaction is consumed once the slot confirmed a position past its commit.
      return produced.filter((p) => p.lsn > at).reduce((n, p) => n + p.rows, 0);
    },

    async cleanup() {
      try {
        await dropSlot(client, slot);
        await client.query(`DROP PUBLICATION IF EXISTS ${publication}`);
        await client.query(`DROP TABLE IF EXISTS ${table}`);
      } finally {
        await client.end();
      }
    },
  };
}

async function badConfigs(): Promise<BadConfig[]> {
  const url = inject("pgLogicalUrl");
  const port = await freePort();
  const configs: BadConfig[] = [
    {
      what: "missing publication",
      config: { url, publication: unique("no_such_pub"), slot: unique("bad_slot"), create_slot: true },
      message: /publication "no_such_pub_[^"]+" does not exist/,
    },
    {
      what: "unreachable port",
      config: { url: `postgres://postgres@127.0.0.1:${port}/postgres`, publication: "p", slot: unique("bad_slot"), connect_timeout_ms: 2_000 },
      message: /cannot connect to Postgres at postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres.*ECONNREFUSED/,
    },
  ];
  // The suite's cluster trusts every login: a wrong password needs a cluster that checks it.
  const cluster = await startScratchPostgres({ wal_level: "logical", password_encryption: "scram-sha-256" });
  try {
    const admin = await connect(cluster.url());
    await admin.query("CREATE ROLE agent LOGIN REPLICATION PASSWORD 'right'");
    await admin.query("CREATE PUBLICATION p FOR ALL TABLES");
    writeFileSync(join(cluster.dir, "data", "pg_hba.conf"), "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n");
    await admin.query("SELECT pg_reload_conf()");
    await admin.end();
  } catch (err) {
    await cluster.destroy();
    throw err;
  }
  configs.push({
    what: "wrong password",
    config: { host: cluster.host, port: cluster.port, user: "agent", password: "wrong", database: "postgres", publication: "p", slot: "s", create_slot: true },
    message: /refused the login: password authentication failed for user "agent"/,
    cleanup: () => cluster.destroy(),
  });
  return configs;
}

export const postgresLogicalUpstream: UpstreamUnderTest = { type: "postgres_logical", prepare, badConfigs };
export default postgresLogicalUpstream;
