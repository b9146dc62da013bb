// Bad input gets a clear error with the right code and changes nothing (SPEC §9).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { create, toBinary } from "@bufbuild/protobuf";
import { AppendRequestSchema } from "../gen/auditledger/v1/ledger_service_pb.js";
import type { RunningServer } from "../server/ledger-server.js";
import type { LedgerClient } from "../clients/node/ledger-client.js";
import { clientFor, createKey, startTestServer, uniqueChain } from "./support/test-server.js";

let server: RunningServer;
beforeAll(async () => {
  server = await startTestServer({ limits: { maxPayloadBytes: 1024 * 1024, maxBatchEvents: 100, maxRequestBytes: 4 * 1024 * 1024, maxJsonDepth: 16 } });
});
afterAll(() => server.close());

async function expectRefused(ledger: LedgerClient["ledger"], call: () => Promise<unknown>, code: Code, message: RegExp) {
  const before = await ledger.getStats({});
  const err = await call().then(
    () => null,
    (e: unknown) => ConnectError.from(e),
  );
  expect(err, "the call should have failed").not.toBeNull();
  expect(Code[err!.code]).toBe(Code[code]);
  expect(err!.rawMessage).toMatch(message);
  const after = await ledger.getStats({});
  expect(after.count).toBe(before.count);
  expect(after.headHash).toBe(before.headHash);
}

describe("bad input changes nothing", () => {
  let ledger: LedgerClient["ledger"];
  let chain: string;
  beforeAll(async () => {
    chain = uniqueChain("bad");
    ledger = (await clientFor(server, chain)).ledger;
    await ledger.append({ event: { kind: "seed" } });
  });

  it("a payload over the limit (1 MiB) is ResourceExhausted", async () => {
    const payload = new Uint8Array(1024 * 1024 + 1).fill(0x61);
    await expectRefused(ledger, () => ledger.append({ event: { kind: "big", payloadType: "application/octet-stream", payload } }), Code.ResourceExhausted, /payload: 1048577 bytes, at most 1048576/);
  });

  it("a payload of exactly the limit is accepted", async () => {
    const payload = new Uint8Array(1024 * 1024).fill(0x61);
    const res = await ledger.append({ event: { kind: "big", payloadType: "application/octet-stream", payload } });
    expect(Number(res.entry!.payloadSize)).toBe(1024 * 1024);
  });

  it("a batch over the event limit is ResourceExhausted", async () => {
    const events = Array.from({ length: 101 }, () => ({ kind: "x" }));
    await expectRefused(ledger, () => ledger.appendBatch({ events }), Code.ResourceExhausted, /101 events, at most 100/);
  });

  it("a request over the byte limit is refused before it is read whole", async () => {
    const events = Array.from({ length: 5 }, () => ({ kind: "x", payloadType: "application/octet-stream", payload: new Uint8Array(1024 * 1024).fill(1) }));
    await expectRefused(ledger, () => ledger.appendBatch({ events }), Code.ResourceExhausted, /message size|larger than|exceeds/i);
  });

  it.each([
    ["kind", { kind: "k".repeat(129) }, /kind: 129 characters, at most 128/],
    ["subject", { kind: "x", subject: "s".repeat(1025) }, /subject: 1025 characters, at most 1024/],
    ["actor", { kind: "x", actor: "a".repeat(257) }, /actor: 257 characters, at most 256/],
    ["idempotency_key", { kind: "x", idempotencyKey: "i".repeat(257) }, /idempotency_key: 257 characters/],
    ["source_position", { kind: "x", sourcePosition: "p".repeat(513) }, /source_position: 513 characters/],
  ])("an overlong %s is InvalidArgument", async (_field, event, message) => {
    await expectRefused(ledger, () => ledger.append({ event }), Code.InvalidArgument, message);
  });

  it("an unknown source type is InvalidArgument naming the valid ones", async () => {
    await expectRefused(ledger, () => ledger.append({ event: { kind: "x", sourceType: "carrier_pigeon" } }), Code.InvalidArgument, /unknown source type "carrier_pigeon"; expected one of http_webhook/);
  });

  it("a JSON payload that is not JSON is InvalidArgument", async () => {
    const payload = new TextEncoder().encode("{not json");
    await expectRefused(ledger, () => ledger.append({ event: { kind: "x", payloadType: "application/json", payload } }), Code.InvalidArgument, /declared JSON but does not parse/);
  });

  it("a JSON payload without a declared type is treated as JSON and checked", async () => {
    await expectRefused(ledger, () => ledger.append({ event: { kind: "x", payload: new TextEncoder().encode("nope") } }), Code.InvalidArgument, /declared JSON/);
  });

  it("JSON nested deeper than the limit is InvalidArgument", async () => {
    const deep = "[".repeat(40) + "]".repeat(40);
    await expectRefused(ledger, () => ledger.append({ event: { kind: "x", payload: new TextEncoder().encode(deep) } }), Code.InvalidArgument, /nested deeper than 16/);
  });

  it("a JSON payload with invalid UTF-8 is InvalidArgument", async () => {
    const payload = Uint8Array.from([0x22, 0xff, 0xfe, 0x22]);
    await expectRefused(ledger, () => ledger.append({ event: { kind: "x", payload } }), Code.InvalidArgument, /not valid UTF-8/);
  });

  it("a lone surrogate in a field (JSON \\ud800) is InvalidArgument", async () => {
    const json = (await clientFor(server, chain, ["append", "read"], { useJson: true })).ledger;
    await expectRefused(ledger, () => json.append({ event: { kind: "x", subject: "a\ud800b" } }), Code.InvalidArgument, /subject.*(not valid UTF-8|invalid UTF8)/);
  });

  it("invalid UTF-8 bytes in a protobuf string field are InvalidArgument", async () => {
    // Hand-made binary message: AppendRequest.event (2) -> EventInput.subject (4) = ff fe.
    const valid = toBinary(AppendRequestSchema, create(AppendRequestSchema, { event: { kind: "x", subject: "ab" } }));
    const bad = Buffer.from(valid);
    const at = bad.indexOf(Buffer.from("ab"));
    bad[at] = 0xff;
    bad[at + 1] = 0xfe;
    const key = await createKey(chain);
    const status = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const session = http2.connect(server.url);
      const req = session.request({
        ":method": "POST",
        ":path": "/auditledger.v1.LedgerService/Append",
        "content-type": "application/proto",
        authorization: `Bearer ${key}`,
      });
      let body = "";
      req.on("response", (h) => {
        req.on("data", (c: Buffer) => (body += c.toString()));
        req.on("end", () => {
          session.close();
          resolve({ status: Number(h[":status"]), body });
        });
      });
      req.on("error", reject);
      req.end(bad);
    });
    expect(status.status).toBe(400);
    expect(JSON.parse(status.body)).toMatchObject({ code: "invalid_argument", message: "event.subject: not valid UTF-8" });
    expect((await ledger.getStats({})).count).toBeGreaterThan(0n);
  });

  it.each([
    ["not base64", "!!!"],
    ["base64 of garbage", Buffer.from("garbage").toString("base64url")],
    ["wrong shape", Buffer.from(JSON.stringify({ v: 1, s: -1, q: "x" })).toString("base64url")],
  ])("a malformed query cursor (%s) is InvalidArgument", async (_what, cursor) => {
    await expectRefused(ledger, () => ledger.query({ cursor }), Code.InvalidArgument, /cursor: malformed/);
  });

  it("a cursor from another query is InvalidArgument", async () => {
    await ledger.appendBatch({ events: [{ kind: "a" }, { kind: "a" }, { kind: "a" }] });
    const page = await ledger.query({ limit: 1, filter: { kind: "a" } });
    expect(page.nextCursor).not.toBe("");
    await expectRefused(ledger, () => ledger.query({ limit: 1, filter: { kind: "b" }, cursor: page.nextCursor }), Code.InvalidArgument, /different query/);
  });

  it("a malformed StreamEvents cursor is InvalidArgument", async () => {
    const stream = ledger.streamEvents({ cursor: "%%%" });
    const err = await (async () => {
      for await (const _ of stream) return null;
      return null;
    })().catch((e: unknown) => ConnectError.from(e));
    expect(err?.code).toBe(Code.InvalidArgument);
  });

  it.each([
    ["trace_id", { kind: "x", traceId: "XYZ" }, /trace_id: must be 32 lowercase hex/],
    ["span_id", { kind: "x", spanId: "123" }, /span_id: must be 16 lowercase hex/],
    ["cause", { kind: "x", cause: "-1" }, /cause: must be a seq/],
    ["occurred_at", { kind: "x", occurredAt: "yesterday" }, /occurred_at: "yesterday" is not an RFC 3339/],
    ["kind characters", { kind: "bad kind!" }, /kind: "bad kind!" may hold only/],
    ["payload_type without payload", { kind: "x", payloadType: "text/plain" }, /payload_type: given without a payload/],
  ])("a malformed %s is InvalidArgument", async (_field, event, message) => {
    await expectRefused(ledger, () => ledger.append({ event }), Code.InvalidArgument, message);
  });

  it("a malformed chain name is InvalidArgument", async () => {
    await expectRefused(ledger, () => ledger.append({ chain: "../etc", event: { kind: "x" } }), Code.InvalidArgument, /chain: "..\/etc" is not a chain name/);
  });

  it("a query time bound that is not RFC 3339 is InvalidArgument", async () => {
    await expectRefused(ledger, () => ledger.query({ filter: { fromTime: "last tuesday" } }), Code.InvalidArgument, /filter.from_time/);
  });

  it("a query limit over 1000 is InvalidArgument", async () => {
    await expectRefused(ledger, () => ledger.query({ limit: 1001 }), Code.InvalidArgument, /limit: at most 1000/);
  });
});
