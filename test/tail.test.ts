// Live tail: committed entries pushed after commit, across replicas (LISTEN/NOTIFY),
// resumable from a cursor with no gap and no duplicate, bounded for a stalled reader.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { StreamEventsRequestSchema } from "../gen/auditledger/v1/ledger_service_pb.js";
import type { RunningServer } from "../server/ledger-server.js";
import { createLedgerClient, type LedgerClient } from "../clients/node/ledger-client.js";
import { TAIL_PAGE } from "../server/tail/stream-entries.js";
import { createKey, startTestServer, uniqueChain } from "./support/test-server.js";

let replicaA: RunningServer;
let replicaB: RunningServer;
beforeAll(async () => {
  [replicaA, replicaB] = await Promise.all([startTestServer(), startTestServer()]);
});
afterAll(() => Promise.all([replicaA.close(), replicaB.close()]));

async function clients(chain: string): Promise<{ a: LedgerClient; b: LedgerClient; token: string }> {
  const token = await createKey(chain);
  return {
    a: createLedgerClient({ baseUrl: replicaA.url, apiKey: token }),
    b: createLedgerClient({ baseUrl: replicaB.url, apiKey: token, protocol: "grpc" }),
    token,
  };
}

/** Takes `n` messages from a stream, then stops it. */
async function take<T>(stream: AsyncIterable<T>, n: number, controller: AbortController): Promise<T[]> {
  const out: T[] = [];
  if (n === 0) return out;
  try {
    for await (const m of stream) {
      out.push(m);
      if (out.length === n) break;
    }
  } finally {
    controller.abort();
  }
  return out;
}

describe("StreamEvents", () => {
  it("a subscriber on replica B receives, in order, what replica A commits", async () => {
    const chain = uniqueChain("tail");
    const { a, b } = await clients(chain);
    const controller = new AbortController();
    const subscription = take(b.ledger.streamEvents({ fromSeq: 0n }, { signal: controller.signal }), 30, controller);
    for (let i = 0; i < 3; i++) await a.ledger.appendBatch({ events: Array.from({ length: 10 }, (_, k) => ({ kind: "k", subject: `s/${i * 10 + k}` })) });
    const got = await subscription;
    expect(got.map((m) => Number(m.entry!.seq))).toEqual(Array.from({ length: 30 }, (_, i) => i));
    expect(got.map((m) => m.entry!.subject)).toEqual(Array.from({ length: 30 }, (_, i) => `s/${i}`));
  });

  it("without a start, only entries committed after subscribing arrive", async () => {
    const chain = uniqueChain("tail");
    const { a, b } = await clients(chain);
    await a.ledger.appendBatch({ events: [{ kind: "old" }, { kind: "old" }] });
    const controller = new AbortController();
    const stream = b.ledger.streamEvents({}, { signal: controller.signal });
    const first = take(stream, 1, controller);
    // The subscription is open once the server has registered it; appends then follow.
    await waitForSubscribers(replicaB, 1);
    await a.ledger.append({ event: { kind: "new" } });
    const [msg] = await first;
    expect(msg!.entry).toMatchObject({ seq: 2n, kind: "new" });
  });

  it("resumes from a cursor with no gap and no duplicate while appends continue", async () => {
    const chain = uniqueChain("tail");
    const { a, b } = await clients(chain);
    const total = 400;
    const writer = (async () => {
      for (let i = 0; i < total; i += 20) await a.ledger.appendBatch({ events: Array.from({ length: 20 }, () => ({ kind: "k" })) });
    })();
    const seen: number[] = [];
    let cursor = "";
    // Five subscriptions in turn, alternating replicas, each dropped after ~80 entries.
    for (let round = 0; seen.length < total; round++) {
      const client = round % 2 === 0 ? a : b;
      const controller = new AbortController();
      const req = cursor ? { cursor } : { fromSeq: 0n };
      const batch = await take(client.ledger.streamEvents(req, { signal: controller.signal }), Math.min(80, total - seen.length), controller);
      seen.push(...batch.map((m) => Number(m.entry!.seq)));
      cursor = batch[batch.length - 1]!.cursor;
    }
    await writer;
    expect(seen).toEqual(Array.from({ length: total }, (_, i) => i));
  });

  it("filters apply to the live tail", async () => {
    const chain = uniqueChain("tail");
    const { a, b } = await clients(chain);
    const controller = new AbortController();
    const sub = take(b.ledger.streamEvents({ fromSeq: 0n, filter: { kind: "wanted" } }, { signal: controller.signal }), 5, controller);
    await a.ledger.appendBatch({ events: Array.from({ length: 20 }, (_, i) => ({ kind: i % 4 === 0 ? "wanted" : "noise" })) });
    const got = await sub;
    expect(got.map((m) => Number(m.entry!.seq))).toEqual([0, 4, 8, 12, 16]);
  });

  it("a subscriber that stops reading costs the server at most one page of entries", async () => {
    const chain = uniqueChain("stall");
    const { a, token } = await clients(chain);
    const buffered = () => replicaB.metrics.tailBufferedEntries.get().then((m) => m.values[0]?.value ?? 0);
    const baseline = await buffered();

    // A raw HTTP/2 Connect stream whose reader never reads: flow control stops the server.
    const session = http2.connect(replicaB.url, { settings: { initialWindowSize: 65_535 } });
    const message = toBinary(StreamEventsRequestSchema, create(StreamEventsRequestSchema, { fromSeq: 0n, includePayload: true }));
    const envelope = Buffer.alloc(5 + message.length);
    envelope.writeUInt32BE(message.length, 1);
    envelope.set(message, 5);
    const req = session.request({
      ":method": "POST",
      ":path": "/auditledger.v1.LedgerService/StreamEvents",
      "content-type": "application/connect+proto",
      "connect-protocol-version": "1",
      authorization: `Bearer ${token}`,
    });
    req.end(envelope);
    const responded = new Promise((resolve) => req.once("response", resolve));
    req.pause();

    // 8 MiB of entries with 2 KiB payloads: far more than the stream window.
    const payload = new TextEncoder().encode(JSON.stringify({ pad: "x".repeat(2000) }));
    for (let i = 0; i < 8; i++) await a.ledger.appendBatch({ events: Array.from({ length: 500 }, () => ({ kind: "big", payload })) });
    await responded;
    // Wait until the server stops making progress on this subscriber: its page stays held.
    let last = -1;
    for (let stable = 0; stable < 5; ) {
      await new Promise((r) => setTimeout(r, 100));
      const now = await buffered();
      stable = now === last ? stable + 1 : 0;
      last = now;
    }
    const held = (await buffered()) - baseline;
    expect(held).toBeGreaterThan(0);
    expect(held).toBeLessThanOrEqual(TAIL_PAGE);

    // When the reader resumes, every entry arrives: nothing was dropped to stay bounded.
    let bytes = 0;
    const complete = new Promise<void>((resolve) => {
      req.on("data", (c: Buffer) => {
        bytes += c.length;
        if (bytes >= 4000 * payload.length) resolve();
      });
    });
    req.resume();
    await complete;
    req.close();
    session.close();
    expect(bytes).toBeGreaterThan(4000 * payload.length);
  });

  it("a cancelled subscription is released on the server", async () => {
    const chain = uniqueChain("tail");
    const { b } = await clients(chain);
    const before = await replicaB.metrics.subscribers.get().then((m) => m.values[0]?.value ?? 0);
    const controller = new AbortController();
    const stream = b.ledger.streamEvents({}, { signal: controller.signal });
    const consuming = (async () => {
      try {
        for await (const _ of stream) break;
      } catch {
        // aborted
      }
    })();
    await waitForSubscribers(replicaB, before + 1);
    controller.abort();
    await consuming;
    await waitForSubscribers(replicaB, before);
  });
});

/** Resolves when the server's open-subscriber gauge reaches `n`. */
async function waitForSubscribers(server: RunningServer, n: number): Promise<void> {
  for (;;) {
    const v = await server.metrics.subscribers.get().then((m) => m.values[0]?.value ?? 0);
    if (v === n) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}
