// Append-only by construction: the server's role cannot rewrite, triggers refuse even a
// superuser, and the embedded PGlite default runs the very same migrations and code.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RunningServer } from "../server/ledger-server.js";
import { createLedgerClient } from "../clients/node/ledger-client.js";
import { PgliteDatabase } from "../server/storage/pglite-database.js";
import { PostgresDatabase } from "../server/storage/postgres-database.js";
import { loadMigrations, migrate } from "../server/storage/migrate.js";
import { clientFor, databaseUrl, startTestServer, superuser, uniqueChain } from "./support/test-server.js";

let server: RunningServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server.close());

describe("append-only storage on Postgres", () => {
  let chain: string;
  beforeAll(async () => {
    chain = uniqueChain("ao");
    const { ledger } = await clientFor(server, chain);
    // Four entries so that the tree has stored nodes, and a checkpoint over them.
    for (let i = 0; i < 4; i++) await ledger.append({ event: { kind: "x", payload: new TextEncoder().encode("{}") } });
    await ledger.getCheckpoint({ chain, fresh: true });
  });

  it("the server's sessions run as the least-privilege role", async () => {
    const { rows } = await server.db.query<{ current_user: string }>("SELECT current_user");
    expect(rows[0]!.current_user).toBe("audit_ledger_app");
  });

  it.each([
    ["UPDATE entries", "UPDATE entries SET kind = 'y' WHERE chain = $1"],
    ["DELETE entries", "DELETE FROM entries WHERE chain = $1"],
    ["UPDATE payloads", "UPDATE payloads SET payload = '\\x00' WHERE chain = $1"],
    ["UPDATE merkle_nodes", "UPDATE merkle_nodes SET hash = '\\x00' WHERE chain = $1"],
    ["DELETE merkle_nodes", "DELETE FROM merkle_nodes WHERE chain = $1"],
    ["DELETE checkpoints", "DELETE FROM checkpoints WHERE chain = $1"],
    ["UPDATE redactions", "UPDATE redactions SET reason = 'x' WHERE chain = $1"],
  ])("the server role has no privilege to %s", async (_what, sql) => {
    await expect(server.db.query(sql, [chain])).rejects.toThrow(/permission denied/);
  });

  it("the server role may delete a payload only through a recorded redaction", async () => {
    await expect(server.db.query("DELETE FROM payloads WHERE chain = $1", [chain])).rejects.toThrow(/no recorded redaction/);
  });

  it("the server role cannot truncate", async () => {
    await expect(server.db.query("TRUNCATE entries")).rejects.toThrow(/permission denied/);
  });

  it.each([
    ["UPDATE entries", "UPDATE entries SET kind = 'y' WHERE chain = $1"],
    ["DELETE entries", "DELETE FROM entries WHERE chain = $1"],
    ["UPDATE payloads", "UPDATE payloads SET payload = '\\x00' WHERE chain = $1"],
    ["DELETE payloads without a redaction", "DELETE FROM payloads WHERE chain = $1"],
    ["UPDATE merkle_nodes", "UPDATE merkle_nodes SET hash = '\\x00' WHERE chain = $1"],
    ["DELETE merkle_nodes", "DELETE FROM merkle_nodes WHERE chain = $1"],
    ["DELETE checkpoints", "DELETE FROM checkpoints WHERE chain = $1"],
    ["DELETE redactions", "DELETE FROM redactions WHERE chain = $1"],
  ])("triggers refuse %s even for a superuser", async (_what, sql) => {
    const su = await superuser();
    try {
      await su.query("INSERT INTO redactions (chain, seq, redaction_seq, actor, reason) VALUES ($1, 999999, 999999, 'test', 'trigger test') ON CONFLICT DO NOTHING", [chain]);
      await expect(su.query(sql, [chain])).rejects.toThrow(/append-only|no recorded redaction/);
    } finally {
      await su.end();
    }
  });

  it("migrations are recorded once and not re-applied", async () => {
    const su = await superuser();
    try {
      const { rows } = await su.query("SELECT version, name FROM schema_migrations ORDER BY version");
      expect(rows.map((r) => r.name)).toEqual(loadMigrations().map((m) => m.name));
    } finally {
      await su.end();
    }
    const owner = new PostgresDatabase({ connectionString: databaseUrl(), max: 1 });
    try {
      expect(await migrate(owner)).toEqual([]);
    } finally {
      await owner.close();
    }
  });
});

describe("embedded PGlite default", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "ledger-pglite-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("applies the same migrations, refuses rewrites by trigger, and keeps data across restarts", async () => {
    const db = await PgliteDatabase.open(dir);
    expect(await migrate(db)).toEqual(loadMigrations().map((m) => m.name));
    expect(await migrate(db)).toEqual([]);
    await db.close();

    // The whole server on PGlite: append, verify, then restart on the same folder.
    const first = await startTestServer({ databaseUrl: "", dataDir: dir, bootstrapAdminKey: true });
    expect(first.bootstrapToken).toMatch(/^alk_/);
    const token = first.bootstrapToken!;
    let c = createLedgerClient({ baseUrl: first.url, apiKey: token });
    const res = await c.ledger.appendBatch({ events: Array.from({ length: 25 }, (_, i) => ({ kind: "x", subject: `s/${i}` })) });
    expect(res.results.map((r) => Number(r.seq))).toEqual(Array.from({ length: 25 }, (_, i) => i));
    await expect(first.db.query("UPDATE entries SET kind = 'y'")).rejects.toThrow(/append-only/);
    await first.close();

    const second = await startTestServer({ databaseUrl: "", dataDir: dir, bootstrapAdminKey: true });
    try {
      expect(second.bootstrapToken).toBeUndefined();
      c = createLedgerClient({ baseUrl: second.url, apiKey: token });
      expect((await c.ledger.getStats({})).count).toBe(25n);
      await c.ledger.append({ event: { kind: "after.restart" } });
      // Idempotency on PGlite too: the repeat is answered with the original entry.
      const once = await c.ledger.append({ event: { kind: "once", idempotencyKey: "k-1" } });
      const again = await c.ledger.append({ event: { kind: "once", idempotencyKey: "k-1" } });
      expect(again).toMatchObject({ deduplicated: true, entry: { seq: once.entry!.seq, hash: once.entry!.hash } });
      let valid = false;
      for await (const m of c.ledger.verify({})) if (m.result.case === "verdict") valid = m.result.value.valid && m.result.value.checked === 27n;
      expect(valid).toBe(true);
    } finally {
      await second.close();
    }
  });
});
