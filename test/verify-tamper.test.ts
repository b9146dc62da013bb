// Verify finds the FIRST bad seq whatever someone with database access did: an edited
// field or payload, a deleted, inserted or swapped row, a cut tail, a row beyond the head.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type pg from "pg";
import { Code, ConnectError } from "@connectrpc/connect";
import { BreakKind, type VerifyVerdict } from "../gen/auditledger/v1/ledger_service_pb.js";
import { entryHash, type Envelope } from "../chain/index.js";
import { entryToRow } from "../clients/node/entry-row.js";
import type { RunningServer } from "../server/ledger-server.js";
import type { LedgerClient } from "../clients/node/ledger-client.js";
import { clientFor, startTestServer, superuser, uniqueChain } from "./support/test-server.js";

let server: RunningServer;
let su: pg.Client;
beforeAll(async () => {
  server = await startTestServer();
  su = await superuser();
  // The attacker is a superuser who switches the append-only triggers off for the session.
  await su.query("SET session_replication_role = replica");
});
afterAll(async () => {
  await su.end();
  await server.close();
});

const N = 20;

async function freshChain(): Promise<{ chain: string; ledger: LedgerClient["ledger"] }> {
  const chain = uniqueChain("tamper");
  const { ledger } = await clientFor(server, chain);
  for (let i = 0; i < N; i += 5) {
    await ledger.appendBatch({
      events: Array.from({ length: 5 }, (_, k) => ({ kind: "order.paid", subject: `orders/${i + k}`, payload: new TextEncoder().encode(JSON.stringify({ n: i + k })) })),
    });
  }
  return { chain, ledger };
}

async function verdictOf(ledger: LedgerClient["ledger"], range: { fromSeq?: bigint; toSeq?: bigint } = {}): Promise<VerifyVerdict> {
  let verdict: VerifyVerdict | undefined;
  for await (const msg of ledger.verify(range)) if (msg.result.case === "verdict") verdict = msg.result.value;
  return verdict!;
}

describe("Verify", () => {
  it("an untouched chain is valid and every entry is checked", async () => {
    const { ledger } = await freshChain();
    const v = await verdictOf(ledger);
    expect(v.valid).toBe(true);
    expect(v.checked).toBe(BigInt(N));
    expect(v.firstBreakAt).toBeUndefined();
  });

  it("an edited field breaks at that seq", async () => {
    const { chain, ledger } = await freshChain();
    await su.query("UPDATE entries SET subject = 'orders/999' WHERE chain = $1 AND seq = 7", [chain]);
    const v = await verdictOf(ledger);
    expect(v).toMatchObject({ valid: false, firstBreakAt: 7n, breakKind: BreakKind.HASH_MISMATCH, checked: 7n });
    expect(v.reason).toMatch(/edited/);
  });

  it("an edited payload breaks at that seq", async () => {
    const { chain, ledger } = await freshChain();
    await su.query(`UPDATE payloads SET payload = convert_to('{"n":1000}', 'UTF8') WHERE chain = $1 AND seq = 11`, [chain]);
    const v = await verdictOf(ledger);
    expect(v).toMatchObject({ valid: false, firstBreakAt: 11n, breakKind: BreakKind.PAYLOAD_MISMATCH });
  });

  it("a deleted row breaks at its seq", async () => {
    const { chain, ledger } = await freshChain();
    await su.query("DELETE FROM entries WHERE chain = $1 AND seq = 4", [chain]);
    await su.query("DELETE FROM payloads WHERE chain = $1 AND seq = 4", [chain]);
    const v = await verdictOf(ledger);
    expect(v).toMatchObject({ valid: false, firstBreakAt: 4n, breakKind: BreakKind.MISSING_ENTRY });
  });

  it("a deleted row with the later rows renumbered to hide the gap breaks at its seq", async () => {
    const { chain, ledger } = await freshChain();
    await su.query("DELETE FROM entries WHERE chain = $1 AND seq = 4", [chain]);
    await su.query("DELETE FROM payloads WHERE chain = $1 AND seq = 4", [chain]);
    await shift(chain, 5, -1);
    await su.query("UPDATE chains SET next_seq = next_seq - 1 WHERE chain = $1", [chain]);
    const v = await verdictOf(ledger);
    expect(v).toMatchObject({ valid: false, firstBreakAt: 4n, breakKind: BreakKind.MOVED_ENTRY });
  });

  it("an inserted row, well-formed and correctly linked, breaks at its seq", async () => {
    const { chain, ledger } = await freshChain();
    const before = entryToRow((await ledger.getEvent({ seq: 9n })).entry!);
    await shift(chain, 10, +1);
    // The forgery links to seq 9 and carries a hash computed exactly as the ledger would.
    const forged: Envelope = { ...before, seq: 10, kind: "refund.issued", subject: "orders/forged", payload_size: 0, prev_hash: before.hash };
    delete forged.payload_digest;
    delete forged.payload_type;
    await insertForged(forged);
    await su.query("UPDATE chains SET next_seq = next_seq + 1 WHERE chain = $1", [chain]);
    const v = await verdictOf(ledger);
    expect(v).toMatchObject({ valid: false, firstBreakAt: 10n, breakKind: BreakKind.UNEXPECTED_ENTRY });
    expect(v.reason).toMatch(/seq 10 was inserted/);
  });

  it("two swapped rows break at the first of them", async () => {
    const { chain, ledger } = await freshChain();
    await su.query("UPDATE entries SET seq = -1 WHERE chain = $1 AND seq = 12", [chain]);
    await su.query("UPDATE entries SET seq = 12 WHERE chain = $1 AND seq = 13", [chain]);
    await su.query("UPDATE entries SET seq = 13 WHERE chain = $1 AND seq = -1", [chain]);
    const v = await verdictOf(ledger);
    expect(v).toMatchObject({ valid: false, firstBreakAt: 12n, breakKind: BreakKind.MOVED_ENTRY });
  });

  it("a cut tail is truncation at the first missing seq", async () => {
    const { chain, ledger } = await freshChain();
    await su.query("DELETE FROM entries WHERE chain = $1 AND seq >= 17", [chain]);
    const v = await verdictOf(ledger);
    expect(v).toMatchObject({ valid: false, firstBreakAt: 17n, breakKind: BreakKind.TRUNCATED, checked: 17n });
  });

  it("a row added beyond the committed head breaks at its seq", async () => {
    const { chain, ledger } = await freshChain();
    const last = entryToRow((await ledger.getEvent({ seq: BigInt(N - 1) })).entry!);
    const forged: Envelope = { ...last, seq: N, kind: "backdated", prev_hash: last.hash, payload_size: 0 };
    delete forged.payload_digest;
    delete forged.payload_type;
    await insertForged(forged);
    const v = await verdictOf(ledger);
    expect(v).toMatchObject({ valid: false, firstBreakAt: BigInt(N), breakKind: BreakKind.UNEXPECTED_ENTRY });
  });

  it("a range verifies from its anchor and ignores breaks outside it", async () => {
    const { chain, ledger } = await freshChain();
    // A signed checkpoint past the range (the checkpointer may cut one at any moment):
    // the range is held to it through the stored subtree [16, 20), never through entries.
    await ledger.getCheckpoint({ fresh: true });
    await su.query("UPDATE entries SET actor = 'mallory' WHERE chain = $1 AND seq = 16", [chain]);
    const inRange = await verdictOf(ledger, { fromSeq: 3n, toSeq: 16n });
    expect(inRange).toMatchObject({ valid: true, checked: 13n });
    expect(inRange.checkpointsChecked).toBeGreaterThanOrEqual(1n);
    expect(await verdictOf(ledger, { fromSeq: 3n })).toMatchObject({ valid: false, firstBreakAt: 16n });
  });

  it("a range whose checkpoint past its end needs an edited entry's leaf cannot be vouched for", async () => {
    const { chain, ledger } = await freshChain();
    await ledger.getCheckpoint({ fresh: true });
    // Checkpoint 20's root needs leaf 15 next to [0, 15): entry 15 itself, edited here.
    await su.query("UPDATE entries SET actor = 'mallory' WHERE chain = $1 AND seq = 15", [chain]);
    const v = await verdictOf(ledger, { fromSeq: 3n, toSeq: 15n });
    expect(v).toMatchObject({ valid: false, breakKind: BreakKind.ROOT_MISMATCH });
    expect(v.reason).toMatch(/checkpoint 20/);
  });

  it("streams progress on a long range before the verdict", async () => {
    const chain = uniqueChain("long");
    const { ledger } = await clientFor(server, chain);
    for (let i = 0; i < 12; i++) await ledger.appendBatch({ events: Array.from({ length: 1000 }, () => ({ kind: "tick" })) });
    const progress: bigint[] = [];
    let verdict: VerifyVerdict | undefined;
    for await (const msg of ledger.verify({})) {
      if (msg.result.case === "progress") {
        expect(verdict).toBeUndefined();
        expect(msg.result.value.total).toBe(12_000n);
        progress.push(msg.result.value.checked);
      } else if (msg.result.case === "verdict") verdict = msg.result.value;
    }
    expect(progress).toEqual([5000n, 10000n]);
    expect(verdict).toMatchObject({ valid: true, checked: 12_000n });
  });
});

/** Moves rows seq >= from by `delta` (two steps, so the primary key never collides). */
async function shift(chain: string, from: number, delta: number): Promise<void> {
  for (const table of ["entries", "payloads"]) {
    await su.query(`UPDATE ${table} SET seq = -seq - 1000 WHERE chain = $1 AND seq >= $2`, [chain, from]);
    await su.query(`UPDATE ${table} SET seq = -seq - 1000 + $2 WHERE chain = $1 AND seq < 0`, [chain, delta]);
  }
}

/** Writes a forged entry (no payload) with a hash computed exactly as the ledger would. */
async function insertForged(e: Envelope): Promise<void> {
  await su.query(
    `INSERT INTO entries (chain, seq, v, ts, source_type, agent, kind, subject, payload_size, prev_hash, hash)
     VALUES ($1, $2, 1, $3, $4, $5, $6, $7, 0, decode($8, 'hex'), decode($9, 'hex'))`,
    [e.chain, e.seq, e.ts, e.source_type, e.agent, e.kind, e.subject, e.prev_hash, entryHash(e)],
  );
}

describe("Verify while the chain grows", () => {
  it("appends committing during the walk are not mistaken for inserted rows", async () => {
    const chain = uniqueChain("live");
    const { ledger } = await clientFor(server, chain);
    for (let i = 0; i < 6; i++) await ledger.appendBatch({ events: Array.from({ length: 1000 }, () => ({ kind: "tick" })) });
    // Keep appending until several Verify walks have finished alongside.
    let writing = true;
    const writer = (async () => {
      let n = 0;
      while (writing) {
        await ledger.appendBatch({ events: Array.from({ length: 50 }, () => ({ kind: "tock" })) });
        n++;
      }
      return n;
    })();
    const verdicts: VerifyVerdict[] = [];
    try {
      for (let i = 0; i < 3; i++) verdicts.push(await verdictOf(ledger));
      // A range whose end lies past the head is clipped to what was committed.
      verdicts.push(await verdictOf(ledger, { toSeq: 1_000_000n }));
      verdicts.push(await verdictOf(ledger, { fromSeq: 3000n, toSeq: 1_000_000n }));
    } finally {
      writing = false;
    }
    const batches = await writer;
    expect(batches).toBeGreaterThan(0);
    for (const v of verdicts) expect(v, v.reason).toMatchObject({ valid: true });
    expect(Number(verdicts[2]!.checked)).toBeGreaterThanOrEqual(6000);
  });
});

describe("Verify ranges", () => {
  it("a range starting past the head is InvalidArgument", async () => {
    const { ledger } = await freshChain();
    const err = await verdictOf(ledger, { fromSeq: BigInt(N + 1) }).then(() => null, (e: unknown) => ConnectError.from(e));
    expect(err?.code).toBe(Code.InvalidArgument);
    expect(err!.rawMessage).toMatch(/from_seq: the chain has 20 entries/);
    expect(await verdictOf(ledger, { fromSeq: BigInt(N) })).toMatchObject({ valid: true, checked: 0n });
  });
});
