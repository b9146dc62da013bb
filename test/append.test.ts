import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { entryHash, ZERO_HASH, payloadDigest, fromHex } from "../chain/index.js";
import { entryToRow } from "../clients/node/entry-row.js";
import type { RunningServer } from "../server/ledger-server.js";
import { clientFor, startTestServer, uniqueChain } from "./support/test-server.js";

let server: RunningServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server.close());

const utf8 = new TextEncoder();

describe("Append and AppendBatch", () => {
  it("sequences from 0 with prev_hash links and a hash the chain module recomputes", async () => {
    const chain = uniqueChain();
    const { ledger } = await clientFor(server, chain);
    const a = await ledger.append({ event: { kind: "user.login", subject: "auth/alice", actor: "alice" } });
    const b = await ledger.append({ event: { kind: "user.logout", subject: "auth/alice", payload: utf8.encode('{"ok":true}') } });
    expect(a.entry!.seq).toBe(0n);
    expect(a.entry!.prevHash).toBe(ZERO_HASH);
    expect(b.entry!.seq).toBe(1n);
    expect(b.entry!.prevHash).toBe(a.entry!.hash);
    for (const e of [a.entry!, b.entry!]) expect(entryHash(entryToRow(e))).toBe(e.hash);
    expect(a.entry!.chain).toBe(chain);
    expect(a.entry!.sourceType).toBe("api");
    expect(b.entry!.payloadType).toBe("application/json");
  });

  it("stores the payload beside the entry, committed by a salted digest", async () => {
    const { ledger } = await clientFor(server, uniqueChain());
    const payload = utf8.encode('{"order":42,"total":"19.99"}');
    const { entry } = await ledger.append({ event: { kind: "order.paid", subject: "orders/42", payload } });
    const got = await ledger.getEvent({ seq: entry!.seq, includePayload: true });
    expect(got.entry!.payload).toEqual(payload);
    expect(got.entry!.payloadSalt).toMatch(/^[0-9a-f]{64}$/);
    expect(payloadDigest(fromHex(got.entry!.payloadSalt), payload)).toBe(entry!.payloadDigest);
    expect(Number(entry!.payloadSize)).toBe(payload.length);
    const without = await ledger.getEvent({ seq: entry!.seq });
    expect(without.entry!.payload.length).toBe(0);
    expect(without.entry!.payloadSalt).toBe("");
  });

  it("AppendBatch sequences all events in order, contiguously, in one commit", async () => {
    const { ledger } = await clientFor(server, uniqueChain());
    await ledger.append({ event: { kind: "first" } });
    const res = await ledger.appendBatch({ events: Array.from({ length: 50 }, (_, i) => ({ kind: "batch.item", subject: `items/${i}` })) });
    expect(res.results.map((r) => Number(r.seq))).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    const stored = (await ledger.query({ filter: { fromSeq: 1n }, limit: 100 })).entries;
    expect(stored.map((e) => e.hash)).toEqual(res.results.map((r) => r.hash));
    expect(new Set(stored.map((e) => e.ts)).size).toBe(1);
    expect(stored.every((e, i) => e.subject === `items/${i}`)).toBe(true);
  });

  it("AppendBatch is atomic: one invalid event and nothing is appended", async () => {
    const { ledger } = await clientFor(server, uniqueChain());
    const err = await ledger
      .appendBatch({ events: [{ kind: "ok" }, { kind: "ok" }, { kind: "" }] })
      .catch((e: unknown) => ConnectError.from(e));
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.InvalidArgument);
    expect((err as ConnectError).rawMessage).toMatch(/events\[2\]\.kind: required/);
    expect((await ledger.getStats({})).count).toBe(0n);
  });

  it("a repeated idempotency key returns the original entry and appends nothing", async () => {
    const { ledger } = await clientFor(server, uniqueChain());
    const first = await ledger.append({ event: { kind: "payment", idempotencyKey: "pay-1", subject: "payments/1" } });
    const again = await ledger.append({ event: { kind: "payment", idempotencyKey: "pay-1", subject: "payments/1" } });
    expect(first.deduplicated).toBe(false);
    expect(again.deduplicated).toBe(true);
    expect(again.entry!.seq).toBe(first.entry!.seq);
    expect(again.entry!.hash).toBe(first.entry!.hash);
    expect((await ledger.getStats({})).count).toBe(1n);
  });

  it("repeats inside one batch and across concurrent requests still yield one entry per key", async () => {
    const { ledger } = await clientFor(server, uniqueChain());
    const batch = await ledger.appendBatch({ events: [{ kind: "k", idempotencyKey: "a" }, { kind: "k", idempotencyKey: "a" }, { kind: "k", idempotencyKey: "b" }] });
    expect(batch.results.map((r) => Number(r.seq))).toEqual([0, 0, 1]);
    expect(batch.results.map((r) => r.deduplicated)).toEqual([false, true, false]);
    expect(batch.results[1]!.hash).toBe(batch.results[0]!.hash);
    const racing = await Promise.all(Array.from({ length: 20 }, () => ledger.append({ event: { kind: "k", idempotencyKey: "c" } })));
    expect(new Set(racing.map((r) => r.entry!.seq)).size).toBe(1);
    expect(racing.filter((r) => !r.deduplicated)).toHaveLength(1);
    expect((await ledger.getStats({})).count).toBe(3n);
  });

  it("GetEvent of a seq that does not exist is NotFound", async () => {
    const { ledger } = await clientFor(server, uniqueChain());
    await ledger.append({ event: { kind: "x" } });
    const err = await ledger.getEvent({ seq: 5n }).catch((e: unknown) => ConnectError.from(e));
    expect((err as ConnectError).code).toBe(Code.NotFound);
  });

  it("occurred_at is normalised to UTC with milliseconds", async () => {
    const { ledger } = await clientFor(server, uniqueChain());
    const { entry } = await ledger.append({ event: { kind: "x", occurredAt: "2026-03-01T12:00:00+02:00" } });
    expect(entry!.occurredAt).toBe("2026-03-01T10:00:00.000Z");
  });

  it("awkward text and binary payloads are stored byte for byte (the COPY path escapes them)", async () => {
    const { ledger } = await clientFor(server, uniqueChain());
    const subject = "tab\there\nnew line\\back\\slash\rcr \\N \\. é€😀";
    const payload = Uint8Array.from({ length: 256 }, (_, i) => i);
    const { entry } = await ledger.append({ event: { kind: "odd", subject, actor: "\\x00", payloadType: "application/octet-stream", payload } });
    const got = (await ledger.getEvent({ seq: entry!.seq, includePayload: true })).entry!;
    expect(got.subject).toBe(subject);
    expect(got.actor).toBe("\\x00");
    expect(got.payload).toEqual(payload);
    expect(entryHash(entryToRow(got))).toBe(entry!.hash);
    let valid = false;
    for await (const m of ledger.verify({})) if (m.result.case === "verdict") valid = m.result.value.valid;
    expect(valid).toBe(true);
  });

  it("GetStats reports count, last seq and head hash", async () => {
    const { ledger } = await clientFor(server, uniqueChain());
    const empty = await ledger.getStats({});
    expect(empty.count).toBe(0n);
    expect(empty.lastSeq).toBeUndefined();
    expect(empty.headHash).toBe(ZERO_HASH);
    const res = await ledger.appendBatch({ events: [{ kind: "a" }, { kind: "b" }, { kind: "c" }] });
    const stats = await ledger.getStats({});
    expect(stats.count).toBe(3n);
    expect(stats.lastSeq).toBe(2n);
    expect(stats.headHash).toBe(res.results[2]!.hash);
  });
});
