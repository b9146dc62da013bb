// Agent batch signatures in evidence bundles (SPEC §7), end to end: a raw agent sends
// signed batches over Ingest to a real server, Export writes their batch records beside
// the entries, and the offline verifier checks each agent signature against the entries,
// before and after one batched payload is erased.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import sodium from "libsodium-wrappers";
import { AgentRegistryService, IngestRequestSchema, type IngestRequest, type IngestResponse } from "../gen/auditledger/v1/agent_registry_service_pb.js";
import { EventInputSchema, type EventInput } from "../gen/auditledger/v1/entry_pb.js";
import { batchId, sodiumReady, splitBundleLines, verifyBundle, type BundleVerdict, type VerifierKey } from "../chain/index.js";
import { signBatch } from "../agent/ingest/batch-signer.js";
import type { RunningServer } from "../server/ledger-server.js";
import type { LedgerClient } from "../clients/node/ledger-client.js";
import { clientFor, startTestServer, uniqueChain } from "./support/test-server.js";
import { readAll, rpcKeys } from "./support/verifiable-log.js";

describe("evidence bundles carry and check agent batch signatures", () => {
  let server: RunningServer;
  let chain: string;
  let client: LedgerClient;
  let keys: VerifierKey[];

  beforeAll(async () => {
    await sodiumReady();
    server = await startTestServer();
    chain = uniqueChain("agent-bundle");
    client = await clientFor(server, chain);
  });
  afterAll(async () => {
    await server?.close();
  });

  /** One Ingest stream: hello, the batches, held open until each is acked or refused. */
  async function ingest(hello: IngestRequest, batches: IngestRequest[]): Promise<IngestResponse[]> {
    const out: IngestResponse[] = [];
    const settled = () => out.filter((r) => r.message.case === "ack" || r.message.case === "rejected").length;
    async function* requests() {
      yield hello;
      for (const b of batches) yield b;
      while (settled() < batches.length) await new Promise((r) => setTimeout(r, 10));
    }
    const agents = createClient(AgentRegistryService, createConnectTransport({ baseUrl: server.url, httpVersion: "2" }));
    for await (const r of agents.ingest(requests())) out.push(r);
    return out.filter((r) => r.message.case === "ack" || r.message.case === "rejected");
  }

  async function exported(window: { fromSeq?: bigint; toSeq?: bigint } = {}): Promise<{ text: string; verdict: BundleVerdict }> {
    const chunks: Uint8Array[] = [];
    for await (const m of client.ledger.export({ chain, ...window })) chunks.push(m.chunk);
    const text = Buffer.concat(chunks).toString("utf8");
    return { text, verdict: await verifyBundle(splitBundleLines(chunks), { trustedKeys: keys }) };
  }

  const records = (text: string, t: string) => text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Record<string, unknown>).filter((r) => r.t === t);

  it("Export includes each batch's signature; the bundle verifies with every batch checked, and still does once a batched payload is erased", async () => {
    keys = await rpcKeys(client.ledger);
    const { token } = await client.agents.createEnrolmentToken({ chain, ttlSeconds: 600 });
    const kp = sodium.crypto_sign_seed_keypair(sodium.randombytes_buf(32));
    const agents = createClient(AgentRegistryService, createConnectTransport({ baseUrl: server.url, httpVersion: "2" }));
    const reg = await agents.registerAgent({ enrolmentToken: token, publicKey: kp.publicKey, name: "bundle-agent", sourceTypes: ["generic_polling"] });
    const sign = (m: Uint8Array) => sodium.crypto_sign_detached(m, kp.privateKey);
    const ev = (i: number, payload?: string): EventInput =>
      create(EventInputSchema, {
        sourceType: "generic_polling",
        kind: "item.created",
        subject: `items/${i}`,
        idempotencyKey: `${reg.zid}/items/${i}`,
        sourcePosition: String(i),
        ...(payload === undefined
          ? {}
          : { payload: new TextEncoder().encode(payload), payloadType: "application/json", payloadSalt: sodium.randombytes_buf(32) }),
      });
    const batch = (n: number, events: EventInput[]) =>
      create(IngestRequestSchema, { message: { case: "batch", value: { batchNumber: BigInt(n), events, signature: signBatch(sign, reg.zid, reg.chain, n, events) } } });
    const hello = create(IngestRequestSchema, { message: { case: "hello", value: { zid: reg.zid, credential: reg.credential } } });

    // Batch 1: seqs 0..2, the first with a payload. Then a direct append (no batch). Then
    // batch 4 resends event 2 (deduplicated: its entry keeps batch 1's id) with two new
    // events, so batch 4's entries are a subset of what it signed.
    const first = [ev(1, JSON.stringify({ id: 1, secret: "erase me" })), ev(2), ev(3, JSON.stringify({ id: 3 }))];
    const second = [first[2]!, ev(4), ev(5, JSON.stringify({ id: 5 }))];
    expect((await ingest(hello, [batch(1, first)])).map((r) => r.message.case)).toEqual(["ack"]);
    await client.ledger.append({ chain, event: { kind: "note.added", subject: "ops", payload: new TextEncoder().encode('{"by":"api"}') } });
    expect((await ingest(hello, [batch(4, second)])).map((r) => r.message.case)).toEqual(["ack"]);

    const rows = await readAll(client.ledger);
    const id1 = batchId(1, signBatch(sign, reg.zid, reg.chain, 1, first));
    const id4 = batchId(4, signBatch(sign, reg.zid, reg.chain, 4, second));
    expect(rows.map((r) => [r.seq, r.batch ?? null])).toEqual([[0, id1], [1, id1], [2, id1], [3, null], [4, id4], [5, id4]]);

    // The whole chain: both batches, with the seqs of their entries.
    const whole = await exported();
    expect(whole.verdict.first_failure).toBeUndefined();
    expect(whole.verdict).toMatchObject({ ok: true, entries: 6, payloads_checked: 4, batches: 2, batches_checked: 2, warnings: [] });
    const recs = records(whole.text, "batch");
    expect(recs.map((r) => [r.batch, r.agent, r.batch_number, r.seqs, (r.events as string[]).length])).toEqual([
      [id1, reg.zid, 1, [0, 1, 2], 3],
      [id4, reg.zid, 4, [4, 5], 3],
    ]);

    // A window that cuts both batches: each record lists only the seqs inside.
    const cut = await exported({ fromSeq: 1n, toSeq: 5n });
    expect(cut.verdict).toMatchObject({ ok: true, entries: 4, batches: 2, batches_checked: 2 });
    expect(records(cut.text, "batch").map((r) => r.seqs)).toEqual([[1, 2], [4]]);
    // A window of API entries only has no batch records.
    expect((await exported({ fromSeq: 3n, toSeq: 4n })).verdict).toMatchObject({ ok: true, batches: 0 });

    // Erase the batched payload of seq 0: the entry keeps its payload_digest, which the
    // agent signed, so the batch still checks.
    await client.ledger.redactPayload({ seq: 0n, reason: "GDPR erasure request" });
    const after = await exported();
    expect(after.verdict.first_failure).toBeUndefined();
    expect(after.verdict).toMatchObject({ ok: true, entries: 7, redacted: [0], batches: 2, batches_checked: 2 });
    expect(records(after.text, "payload").map((r) => r.seq)).not.toContain(0);
    expect(records(after.text, "batch")[0]).toMatchObject({ batch: id1, seqs: [0, 1, 2] });
  });
});
