// Checks test/sources/postgres-logical.upstream.ts (what the shared source scenarios use)
// against this source directly, without agent or ledger: its events identify as the
// produced rows, unconsumed() follows the slot, cleanup() leaves no slot behind, and each
// bad configuration fails start() with the message it promises.
import { afterEach, expect, inject, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import type { StoredEntry } from "../../../chain/index.js";
import type { SourceEvent } from "../source.js";
import postgresLogicalSource, { type PostgresLogicalSource } from "./index.js";
import upstream from "../../../test/sources/postgres-logical.upstream.js";
import { waitFor } from "../../../test/support/wait-for.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };

function stateDir(): string {
  const d = mkdtempSync(join(tmpdir(), "pg-logical-upstream-"));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** The ledger row the agent would make of `e` (the fields identify() reads). */
function asEntry(e: SourceEvent): StoredEntry {
  return { source_type: "postgres_logical", kind: e.kind, subject: e.subject, source_position: e.position, payload_type: e.payloadType, payload: e.payload } as unknown as StoredEntry;
}

it("identifies every produced row once, tracks unconsumed rows through the slot, and cleans up its slot", { timeout: 60_000 }, async () => {
  const scenario = await upstream.prepare();
  let cleaned = false;
  cleanups.push(() => (cleaned ? undefined : scenario.cleanup()));
  const config = postgresLogicalSource.configSchema.parse(scenario.config);
  const source = postgresLogicalSource.create(config, { name: "scenario", stateDir: stateDir(), log: quiet }) as PostgresLogicalSource;
  cleanups.push(() => source.stop());
  const events: SourceEvent[] = [];
  await source.start({
    emit: async (batch) => {
      events.push(...batch);
      await source.acknowledge(batch[batch.length - 1]!.position);
    },
    gap: async (reason) => {
      throw new Error(`unexpected gap: ${reason}`);
    },
  });
  await scenario.produce(0, 250);
  await waitFor("250 events", () => events.length >= 250);
  expect(events.map((e) => scenario.identify(asEntry(e)))).toEqual(Array.from({ length: 250 }, (_, i) => i));
  await waitFor("nothing unconsumed", async () => (await scenario.unconsumed()) === 0);

  source.pause();
  await scenario.produce(250, 300);
  await new Promise((r) => setTimeout(r, 1_500)); // beyond a status interval: the paused source confirms nothing
  expect(await scenario.unconsumed()).toBe(50);
  source.resume();
  await waitFor("nothing unconsumed after resume", async () => (await scenario.unconsumed()) === 0);

  const slot = String(scenario.config.slot);
  await scenario.cleanup(); // with the source still connected: its walsender is ended first
  cleaned = true;
  const admin = new pg.Client({ connectionString: inject("pgLogicalUrl") });
  await admin.connect();
  const left = await admin.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", [slot]);
  await admin.end();
  expect(left.rowCount).toBe(0);
});

it("each bad configuration fails start() with the message it names", { timeout: 60_000 }, async () => {
  const bad = await upstream.badConfigs();
  for (const b of bad) if (b.cleanup) cleanups.push(() => b.cleanup!());
  expect(bad.map((b) => b.what)).toEqual(["missing publication", "unreachable port", "wrong password"]);
  for (const b of bad) {
    const config = postgresLogicalSource.configSchema.parse(b.config);
    const source = postgresLogicalSource.create(config, { name: "bad", stateDir: stateDir(), log: quiet });
    cleanups.push(() => source.stop());
    const outcome = await source.start({ emit: async () => undefined, gap: async () => undefined }).then(
      () => "started",
      (err: Error) => err.message,
    );
    expect(outcome, b.what).toMatch(b.message);
  }
});
