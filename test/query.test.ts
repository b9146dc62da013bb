// Query: every filter of SPEC §6 (as_of comes with checkpoints), cursor pagination
// in both directions.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Order } from "../gen/auditledger/v1/ledger_service_pb.js";
import type { RunningServer } from "../server/ledger-server.js";
import type { LedgerClient } from "../clients/node/ledger-client.js";
import { clientFor, startTestServer, uniqueChain } from "./support/test-server.js";

let server: RunningServer;
let ledger: LedgerClient["ledger"];
let chain: string;
const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";

beforeAll(async () => {
  server = await startTestServer();
  chain = uniqueChain("q");
  ledger = (await clientFor(server, chain)).ledger;
  // 40 events: kinds alternate, subjects under orders/ and users/, two actors, a trace.
  await ledger.appendBatch({
    events: Array.from({ length: 40 }, (_, i) => ({
      kind: i % 2 === 0 ? "order.created" : "order.paid",
      subject: i < 30 ? `orders/${i}` : `users/${i}`,
      actor: i % 3 === 0 ? "alice" : "bob",
      traceId: i % 10 === 0 ? TRACE : "",
      sourceType: i >= 35 ? "http_webhook" : "api",
    })),
  });
  await ledger.append({ event: { kind: "order.created", subject: "orders/" } });
  await ledger.append({ event: { kind: "order.created", subject: "ordersX/1" } });
});
afterAll(() => server.close());

const seqs = (r: { entries: { seq: bigint }[] }) => r.entries.map((e) => Number(e.seq));
const range = (from: number, to: number, pick: (i: number) => boolean = () => true) =>
  Array.from({ length: to - from }, (_, k) => from + k).filter(pick);

describe("Query filters", () => {
  it("by kind", async () => {
    expect(seqs(await ledger.query({ filter: { kind: "order.paid" }, limit: 1000 }))).toEqual(range(0, 40, (i) => i % 2 === 1));
  });
  it("by exact subject", async () => {
    expect(seqs(await ledger.query({ filter: { subject: "orders/7" } }))).toEqual([7]);
  });
  it("by subject prefix, without matching a sibling that merely shares characters", async () => {
    const r = await ledger.query({ filter: { subject: "orders/", subjectPrefix: true }, limit: 1000 });
    expect(seqs(r)).toEqual([...range(0, 30), 40]);
    expect(r.entries.some((e) => e.subject.startsWith("ordersX"))).toBe(false);
  });
  it("by actor", async () => {
    expect(seqs(await ledger.query({ filter: { actor: "alice" }, limit: 1000 }))).toEqual(range(0, 40, (i) => i % 3 === 0));
  });
  it("by trace_id", async () => {
    expect(seqs(await ledger.query({ filter: { traceId: TRACE } }))).toEqual([0, 10, 20, 30]);
  });
  it("by source_type", async () => {
    expect(seqs(await ledger.query({ filter: { sourceType: "http_webhook" } }))).toEqual(range(35, 40));
  });
  it("by agent (the appending key)", async () => {
    const first = await ledger.getEvent({ seq: 0n });
    expect(seqs(await ledger.query({ filter: { agent: first.entry!.agent }, limit: 1000 }))).toEqual(range(0, 42));
    expect(seqs(await ledger.query({ filter: { agent: "someone-else" } }))).toEqual([]);
  });
  it("by seq range (from inclusive, to exclusive)", async () => {
    expect(seqs(await ledger.query({ filter: { fromSeq: 5n, toSeq: 9n } }))).toEqual([5, 6, 7, 8]);
  });
  it("by time window (from inclusive, to exclusive)", async () => {
    const c = uniqueChain("time");
    const l = (await clientFor(server, c)).ledger;
    await l.appendBatch({ events: [{ kind: "a" }, { kind: "a" }] });
    {
      // Three commits one after another get distinct, increasing ts.
      const t1 = (await l.append({ event: { kind: "b" } })).entry!.ts;
      await waitPast(t1);
      const t2 = (await l.append({ event: { kind: "c" } })).entry!.ts;
      await waitPast(t2);
      await l.append({ event: { kind: "d" } });
      expect(seqs(await l.query({ filter: { fromTime: t1, toTime: t2 } }))).toEqual([2]);
      expect(seqs(await l.query({ filter: { fromTime: t2 } }))).toEqual([3, 4]);
      expect(seqs(await l.query({ filter: { toTime: t1 } }))).toEqual([0, 1]);
    }
  });
  it("filters combine with AND", async () => {
    expect(seqs(await ledger.query({ filter: { kind: "order.created", actor: "alice", subject: "orders/", subjectPrefix: true }, limit: 1000 }))).toEqual(
      range(0, 30, (i) => i % 2 === 0 && i % 3 === 0),
    );
  });
});

describe("Query pagination", () => {
  it("walks ascending with cursors, each entry exactly once", async () => {
    const seen: number[] = [];
    let cursor = "";
    let pages = 0;
    do {
      const r = await ledger.query({ filter: { kind: "order.created" }, limit: 7, cursor });
      seen.push(...seqs(r));
      cursor = r.nextCursor;
      pages++;
    } while (cursor);
    expect(seen).toEqual([...range(0, 40, (i) => i % 2 === 0), 40, 41]);
    expect(pages).toBe(Math.ceil(22 / 7));
  });
  it("walks descending with cursors, newest first", async () => {
    const seen: number[] = [];
    let cursor = "";
    do {
      const r = await ledger.query({ order: Order.DESCENDING, limit: 9, cursor });
      seen.push(...seqs(r));
      cursor = r.nextCursor;
    } while (cursor);
    expect(seen).toEqual(range(0, 42).reverse());
  });
  it("the last page has no cursor; an exact-fit page too", async () => {
    const r = await ledger.query({ filter: { subject: "users/", subjectPrefix: true }, limit: 10 });
    expect(seqs(r)).toEqual(range(30, 40));
    expect(r.nextCursor).toBe("");
  });
  it("payloads come back only when asked for", async () => {
    const c = uniqueChain();
    const l = (await clientFor(server, c)).ledger;
    await l.append({ event: { kind: "p", payload: new TextEncoder().encode('{"a":1}') } });
    expect((await l.query({})).entries[0]!.payload.length).toBe(0);
    expect(new TextDecoder().decode((await l.query({ includePayload: true })).entries[0]!.payload)).toBe('{"a":1}');
  });
});

/** Resolves once the clock has moved past `ts` (ms resolution). */
async function waitPast(ts: string): Promise<void> {
  const until = Date.parse(ts) + 2;
  while (Date.now() < until) await new Promise((r) => setImmediate(r));
}
