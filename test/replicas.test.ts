// Several server processes on one database keep one chain: the head is locked in
// Postgres, never in process memory (SPEC §3).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLedgerClient } from "../clients/node/ledger-client.js";
import { createKey, spawnServer, superuser, uniqueChain, type ServerProcess } from "./support/test-server.js";

let replicas: ServerProcess[] = [];
beforeAll(async () => {
  replicas = await Promise.all([spawnServer(), spawnServer(), spawnServer()]);
}, 120_000);
afterAll(async () => {
  await Promise.all(replicas.map((r) => r.stop()));
});

describe("three replicas, one chain", () => {
  it("30 concurrent clients append 30,000 events: seq 0..29,999, no gap, no duplicate, Verify valid", async () => {
    const chain = uniqueChain("replicas");
    const token = await createKey(chain);
    const CLIENTS = 30;
    const PER_CLIENT = 1000;
    const clients = Array.from({ length: CLIENTS }, (_, i) =>
      createLedgerClient({ baseUrl: replicas[i % 3]!.url, apiKey: token, protocol: i % 2 === 0 ? "grpc" : "connect", httpVersion: "2" }),
    );
    // Half the clients append one event per call, half in batches of 25.
    await Promise.all(
      clients.map(async (c, i) => {
        const event = (n: number) => ({ kind: "load", subject: `client/${i}`, idempotencyKey: `c${i}-e${n}` });
        if (i % 2 === 0) {
          for (let n = 0; n < PER_CLIENT; n++) await c.ledger.append({ event: event(n) });
        } else {
          for (let n = 0; n < PER_CLIENT; n += 25) await c.ledger.appendBatch({ events: Array.from({ length: 25 }, (_, k) => event(n + k)) });
        }
      }),
    );

    const su = await superuser();
    try {
      const { rows } = await su.query(
        `SELECT count(*)::int AS n, min(seq)::int AS lo, max(seq)::int AS hi,
                count(DISTINCT seq)::int AS distinct_seq, count(DISTINCT idempotency_key)::int AS distinct_keys
         FROM entries WHERE chain = $1`,
        [chain],
      );
      expect(rows[0]).toEqual({ n: 30_000, lo: 0, hi: 29_999, distinct_seq: 30_000, distinct_keys: 30_000 });
      const perClient = await su.query("SELECT subject, count(*)::int AS n FROM entries WHERE chain = $1 GROUP BY subject", [chain]);
      expect(perClient.rows).toHaveLength(CLIENTS);
      expect(perClient.rows.every((r) => r.n === PER_CLIENT)).toBe(true);
    } finally {
      await su.end();
    }

    let verdict: { valid: boolean; checked: bigint } | undefined;
    for await (const m of clients[1]!.ledger.verify({})) if (m.result.case === "verdict") verdict = m.result.value;
    expect(verdict).toMatchObject({ valid: true, checked: 30_000n });
    const stats = await clients[2]!.ledger.getStats({});
    expect(stats).toMatchObject({ count: 30_000n, lastSeq: 29_999n });
  }, 300_000);
});
