// Agents end to end (SPEC §4): enrolment, the registry views, a daemon agent streaming
// signed batches over Ingest into real Postgres, batch signatures stored and checked,
// server-side agents and test events.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import http from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import sodium from "libsodium-wrappers";
import {
  AgentRegistryService,
  AgentStatus,
  IngestRequestSchema,
  type IngestRequest,
  type IngestResponse,
} from "../gen/auditledger/v1/agent_registry_service_pb.js";
import { EventInputSchema } from "../gen/auditledger/v1/entry_pb.js";
import { batchId, sodiumReady, zidOf } from "../chain/index.js";
import type { RunningServer } from "../server/ledger-server.js";
import type { LedgerClient } from "../clients/node/ledger-client.js";
import { validateAgentConfig } from "../agent/daemon/agent-config.js";
import { startAgent, type RunningAgent } from "../agent/daemon/agent-daemon.js";
import { signBatch } from "../agent/ingest/batch-signer.js";
import { clientFor, startTestServer, superuser, uniqueChain } from "./support/test-server.js";
import { codeOf, eventually, readAll, verdictOf } from "./support/verifiable-log.js";

const silent = process.env.TEST_AGENT_LOG ? { info: (o: object, m: string) => console.log(m, o), warn: (o: object, m: string) => console.log(m, o), error: (o: object, m: string) => console.log(m, o) } : { info() {}, warn() {}, error() {} };

/** A JSON endpoint whose items the test sets; counts requests. */
function itemsServer(): Promise<{ url: string; items: { id: number; v: string }[]; requests: number; close(): Promise<void> }> {
  const state = { items: [] as { id: number; v: string }[], requests: 0 };
  const server = http.createServer((_req, res) => {
    state.requests++;
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ items: state.items }));
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      resolve({
        url: `http://127.0.0.1:${port}/items`,
        get items() {
          return state.items;
        },
        set items(v) {
          state.items = v;
        },
        get requests() {
          return state.requests;
        },
        close: () => new Promise<void>((r) => server.close(() => r())),
      });
    }),
  );
}

describe("agents", () => {
  let server: RunningServer;
  let chain: string;
  let client: LedgerClient;
  const dirs: string[] = [];
  const tempDir = () => {
    const d = mkdtempSync(join(tmpdir(), "al-agent-"));
    dirs.push(d);
    return d;
  };

  beforeAll(async () => {
    await sodiumReady();
    server = await startTestServer({ agentStaleAfterMs: 1500, agentDeadAfterMs: 3000, agentStateDir: mkdtempSync(join(tmpdir(), "al-ssa-")), ingestHelloTimeoutMs: 300 });
    chain = uniqueChain("agents");
    client = await clientFor(server, chain);
  });
  afterAll(async () => {
    await server?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const rawAgentClient = () => createClient(AgentRegistryService, createConnectTransport({ baseUrl: server.url, httpVersion: "2" }));

  it("a daemon agent enrols with a one-time token, streams signed batches, and every event lands once with its batch signature stored", async () => {
    const items = await itemsServer();
    items.items = Array.from({ length: 25 }, (_, i) => ({ id: i, v: `value-${i}` }));
    const { token } = await client.agents.createEnrolmentToken({ chain, ttlSeconds: 600 });
    const stateDir = tempDir();
    const config = validateAgentConfig({
      server: server.url,
      state_dir: stateDir,
      enrolment_token: token,
      name: "poller-1",
      ingest: { max_batch_events: 10, heartbeat_interval_ms: 200 },
      sources: [{ name: "items", type: "generic_polling", url: items.url, interval_ms: 100, id_field: "id" }],
    });
    let agent: RunningAgent | undefined;
    try {
      agent = await startAgent(config, silent);
      const zid = agent.zid;
      await eventually("25 entries from the agent", async () => {
        const rows = (await readAll(client.ledger)).filter((e) => e.agent === zid);
        expect(rows).toHaveLength(25);
      });
      const rows = (await readAll(client.ledger, { includePayload: true })).filter((e) => e.agent === zid);
      expect(new Set(rows.map((r) => r.idempotency_key)).size).toBe(25);
      for (const r of rows) {
        expect(r.source_type).toBe("generic_polling");
        expect(r.idempotency_key!.startsWith(`${zid}/items/`)).toBe(true);
        expect(r.batch).toMatch(/^\d+\.[0-9a-f]{16}$/);
      }
      // The token is spent.
      expect(await codeOf(rawAgentClient().registerAgent({ enrolmentToken: token, publicKey: new Uint8Array(32).fill(7), sourceTypes: ["generic_polling"] }))).toBe("Unauthenticated");

      // Signatures are stored, one row per batch, and cover the entries.
      const su = await superuser();
      try {
        const batches = await su.query<{ batch: string; n: number }>("SELECT batch, length(events) / 32 AS n FROM agent_batches WHERE chain = $1 AND agent = $2", [chain, zid]);
        expect(batches.rows.length).toBeGreaterThanOrEqual(3);
        expect(batches.rows.reduce((s, b) => s + b.n, 0)).toBe(25);
        expect(new Set(rows.map((r) => r.batch))).toEqual(new Set(batches.rows.map((b) => b.batch)));
      } finally {
        await su.end();
      }

      const got = await client.agents.getAgent({ chain, zid });
      expect(got.agent?.status).toBe(AgentStatus.ALIVE);
      expect(got.agent?.eventsTotal).toBe(25n);
      expect(got.agent?.name).toBe("poller-1");
      expect((await client.agents.listAgents({ chain })).agents.map((a) => a.zid)).toContain(zid);
      expect((await verdictOf(client.ledger)).valid).toBe(true);

      // Stopped, it goes STALE, then DEAD.
      await agent.stop();
      agent = undefined;
      await eventually("agent STALE then DEAD", async () => {
        expect((await client.agents.getAgent({ chain, zid })).agent?.status).toBe(AgentStatus.DEAD);
      });
    } finally {
      await agent?.stop();
      await items.close();
    }
  });

  it("a batch refused for its signature is kept, not turned into gaps, and lands once the agent's key is right again", async () => {
    const items = await itemsServer();
    items.items = [{ id: 1, v: "a" }, { id: 2, v: "b" }];
    const { token } = await client.agents.createEnrolmentToken({ chain });
    const stateDir = tempDir();
    // Enrol, stop, then give the registry a wrong key for the agent (as if its identity had
    // been swapped) and start it again: its streams now carry signatures that do not verify.
    const su = await superuser();
    let agent: RunningAgent | undefined;
    try {
      items.items = [];
      const config = validateAgentConfig({ server: server.url, state_dir: stateDir, enrolment_token: token, ingest: { heartbeat_interval_ms: 200, max_backoff_ms: 300 }, sources: [{ name: "items", type: "generic_polling", url: items.url, id_field: "id", interval_ms: 100 }] });
      agent = await startAgent(config, silent);
      const zid = agent.zid;
      await agent.stop();
      const real = await su.query<{ public_key: Buffer }>("SELECT public_key FROM agents WHERE zid = $1", [zid]);
      await su.query("UPDATE agents SET public_key = $2 WHERE zid = $1", [zid, Buffer.alloc(32, 9)]);
      items.items = [{ id: 1, v: "a" }, { id: 2, v: "b" }];
      agent = await startAgent(config, silent);
      await eventually("the events wait in the outbox", async () => expect(agent!.outbox.depth().records).toBe(2));
      const before = items.requests;
      await eventually("several more polls", async () => expect(items.requests).toBeGreaterThan(before + 5));
      expect((await readAll(client.ledger)).filter((e) => e.agent === zid)).toHaveLength(0);
      await su.query("UPDATE agents SET public_key = $2 WHERE zid = $1", [zid, real.rows[0]!.public_key]);
      await eventually("both events, no gap", async () => expect((await readAll(client.ledger)).filter((e) => e.agent === zid).map((e) => e.kind)).toEqual(["item.created", "item.created"]));
    } finally {
      await agent?.stop();
      await su.end();
      await items.close();
    }
  });

  it("Ingest enforces credit, signatures and identity: an agent appends only as itself", async () => {
    const { token } = await client.agents.createEnrolmentToken({ chain });
    const seed = sodium.randombytes_buf(32);
    const kp = sodium.crypto_sign_seed_keypair(seed);
    const reg = await rawAgentClient().registerAgent({ enrolmentToken: token, publicKey: kp.publicKey, name: "raw", sourceTypes: ["generic_polling"] });
    expect(reg.zid).toBe(zidOf(kp.publicKey));
    const sign = (m: Uint8Array) => sodium.crypto_sign_detached(m, kp.privateKey);
    const ev = (i: number, key = `${reg.zid}/raw/${i}`) => create(EventInputSchema, { sourceType: "generic_polling", kind: "item.created", idempotencyKey: key, sourcePosition: String(i) });

    // One stream: hello, then batches written by the test; responses collected.
    const session = (msgs: IngestRequest[]) => {
      const out: IngestResponse[] = [];
      const run = (async () => {
        async function* reqs() {
          for (const m of msgs) yield m;
          // Keep the stream open until the server has settled every batch sent.
          const batches = msgs.filter((m) => m.message.case === "batch").length;
          while (out.filter((r) => r.message.case === "ack" || r.message.case === "rejected").length < batches) await new Promise((r) => setTimeout(r, 10));
        }
        for await (const r of rawAgentClient().ingest(reqs())) out.push(r);
      })();
      return { out, done: run.then(() => "OK", (e: unknown) => String((e as Error).message)) };
    };
    const hello = create(IngestRequestSchema, { message: { case: "hello", value: { zid: reg.zid, credential: reg.credential } } });
    const batch = (n: number, events: ReturnType<typeof ev>[], sig?: Uint8Array) =>
      create(IngestRequestSchema, { message: { case: "batch", value: { batchNumber: BigInt(n), events, signature: sig ?? signBatch(sign, reg.zid, reg.chain, n, events) } } });

    // A good batch is acked with its seqs; a bad signature and a foreign idempotency key are refused.
    const good = [ev(1), ev(2)];
    const s1 = session([hello, batch(1, good), batch(2, [ev(3)], new Uint8Array(64)), batch(3, [ev(4, "ZID-00000000/other/4")])]);
    expect(await s1.done).toBe("OK");
    const settled = s1.out.filter((r) => r.message.case === "ack" || r.message.case === "rejected");
    expect(settled.map((r) => r.message.case)).toEqual(["ack", "rejected", "rejected"]);
    expect(s1.out[0]!.message.case).toBe("welcome");
    expect(s1.out[1]!.message.case).toBe("credit");
    const rejected = settled.slice(1).map((r) => (r.message.case === "rejected" ? r.message.value.code : ""));
    expect(rejected).toEqual(["Unauthenticated", "PermissionDenied"]);
    const rows = (await readAll(client.ledger)).filter((e) => e.agent === reg.zid);
    expect(rows.map((r) => r.source_position)).toEqual(["1", "2"]);
    expect(rows[0]!.batch).toBe(batchId(1, signBatch(sign, reg.zid, reg.chain, 1, good)));

    // Resending the same batch after a lost ack: acked again, with the original seqs, nothing new.
    const s2 = session([hello, batch(1, good)]);
    expect(await s2.done).toBe("OK");
    const ack = s2.out.find((r) => r.message.case === "ack")!;
    expect(ack.message.case === "ack" && ack.message.value.firstSeq).toBe(BigInt(rows[0]!.seq));
    expect((await readAll(client.ledger)).filter((e) => e.agent === reg.zid)).toHaveLength(2);

    // More events than the credit granted: the stream is ended with ResourceExhausted.
    const credit = Number((s2.out.find((r) => r.message.case === "credit")!.message.value as { events: number }).events);
    const tooMany = Array.from({ length: credit + 1 }, (_, i) => ev(100 + i));
    const s3 = session([hello, batch(5, tooMany)]);
    expect(await s3.done).toMatch(/credit/);

    // A wrong credential, or no hello, gets Unauthenticated / InvalidArgument.
    const bad = session([create(IngestRequestSchema, { message: { case: "hello", value: { zid: reg.zid, credential: reg.credential.slice(0, -2) + "xx" } } })]);
    expect(await bad.done).toMatch(/credential/);
    const noHello = session([batch(9, [ev(9)])]);
    expect(await noHello.done).toMatch(/hello/);
    // A stream that says nothing is ended once the hello deadline passes.
    const silentStream = (async () => {
      let stop = false;
      async function* nothing() {
        while (!stop) await new Promise((r) => setTimeout(r, 50));
      }
      try {
        for await (const _ of rawAgentClient().ingest(nothing())) void _;
        return "ended without error";
      } catch (e) {
        return ConnectError.from(e).code;
      } finally {
        stop = true;
      }
    })();
    expect(await silentStream).toBe(Code.DeadlineExceeded);

    // Another key cannot take the agent's idempotency keys first.
    const squat = await client.ledger.append({ event: { kind: "x", idempotencyKey: `${reg.zid}/raw/77` } }).catch((e: Error) => e.message);
    expect(squat).toMatch(/reserved for that agent/);

    // Deregistered: an open stream ends within about a second, the credential stops
    // working, the entries stay.
    const open = (async () => {
      const beat = create(IngestRequestSchema, { message: { case: "heartbeat", value: {} } });
      let stop = false;
      async function* reqs() {
        yield hello;
        while (!stop) {
          await new Promise((r) => setTimeout(r, 100));
          yield beat;
        }
      }
      try {
        for await (const _ of rawAgentClient().ingest(reqs())) void _;
        return "ended without error";
      } catch (e) {
        return (e as Error).message;
      } finally {
        stop = true;
      }
    })();
    await eventually("stream welcomed", async () => expect((await client.agents.getAgent({ chain, zid: reg.zid })).agent?.status).toBe(AgentStatus.ALIVE));
    await client.agents.deregisterAgent({ chain, zid: reg.zid });
    expect(await open).toMatch(/deregistered/);
    const after = session([hello]);
    expect(await after.done).toMatch(/deregistered/);
    expect(await codeOf(client.agents.getAgent({ chain, zid: reg.zid }))).toBe("NotFound");
    expect((await readAll(client.ledger)).filter((e) => e.agent === reg.zid)).toHaveLength(2);
  });

  it("enrolment tokens: admin only, expire, and refuse malformed input", async () => {
    const reader = await clientFor(server, chain, ["read"]);
    expect(await codeOf(reader.agents.createEnrolmentToken({ chain }))).toBe("PermissionDenied");
    const raw = rawAgentClient();
    const pk = sodium.crypto_sign_keypair().publicKey;
    expect(await codeOf(raw.registerAgent({ enrolmentToken: "nope", publicKey: pk, sourceTypes: ["mqtt"] }))).toBe("Unauthenticated");
    const { token } = await client.agents.createEnrolmentToken({ chain });
    expect(await codeOf(raw.registerAgent({ enrolmentToken: token, publicKey: pk.subarray(0, 31), sourceTypes: ["mqtt"] }))).toBe("InvalidArgument");
    expect(await codeOf(raw.registerAgent({ enrolmentToken: token, publicKey: pk, sourceTypes: ["teleport"] }))).toBe("InvalidArgument");
    expect(await codeOf(raw.registerAgent({ enrolmentToken: token, publicKey: pk, sourceTypes: [] }))).toBe("InvalidArgument");
    const su = await superuser();
    try {
      await su.query("UPDATE enrolment_tokens SET expires_at = now() - interval '1 second' WHERE token_id = $1", [token.slice(4, 20)]);
    } finally {
      await su.end();
    }
    const err = await raw.registerAgent({ enrolmentToken: token, publicKey: pk, sourceTypes: ["mqtt"] }).catch((e: Error) => e.message);
    expect(err).toMatch(/expired/);
    expect(await codeOf(client.agents.createEnrolmentToken({ chain, ttlSeconds: 10 ** 9 }))).toBe("InvalidArgument");
  });

  it("server-side agents: SpawnAgent validates the config, SendTestEvent ticks the counter, WatchAgents streams changes", async () => {
    expect(await codeOf(client.agents.spawnAgent({ chain, sourceType: "kafka_consumer", configJson: "{}" }))).toBe("InvalidArgument");
    expect(await codeOf(client.agents.spawnAgent({ chain, sourceType: "http_webhook", configJson: "{not json" }))).toBe("InvalidArgument");
    const badField = await client.agents.spawnAgent({ chain, sourceType: "http_webhook", configJson: JSON.stringify({ scheme: "github" }) }).catch((e: Error) => e.message);
    expect(badField).toMatch(/secret/);
    const unknownKey = await client.agents.spawnAgent({ chain, sourceType: "generic_polling", configJson: JSON.stringify({ url: "http://127.0.0.1:1/x", intervall_ms: 5 }) }).catch((e: Error) => e.message);
    expect(unknownKey).toMatch(/intervall_ms/);

    const watch = client.agents.watchAgents({ chain })[Symbol.asyncIterator]();
    const spawned = await client.agents.spawnAgent({ chain, sourceType: "http_webhook", name: "hook", configJson: JSON.stringify({ secret: "s3cret", scheme: "github" }) });
    const a = spawned.agent!;
    expect(a.serverSide).toBe(true);
    expect(a.webhookPath).toBe(`/hooks/${a.zid}/event`);
    expect(a.configJson).not.toContain("s3cret");

    const seen = async (pred: (x: { zid: string; eventsTotal: bigint; removed: boolean }) => boolean) => {
      for (;;) {
        const next = await watch.next();
        if (next.done) throw new Error("watch ended");
        const v = { zid: next.value.agent!.zid, eventsTotal: next.value.agent!.eventsTotal, removed: next.value.removed };
        if (pred(v)) return v;
      }
    };
    await seen((x) => x.zid === a.zid);
    const test = await client.agents.sendTestEvent({ chain, zid: a.zid });
    expect(test.entry?.agent).toBe(a.zid);
    expect(test.entry?.kind).toBe("agent.test_event");
    await seen((x) => x.zid === a.zid && x.eventsTotal === 1n);
    expect((await client.agents.getAgent({ chain, zid: a.zid })).agent?.eventsTotal).toBe(1n);
    await client.agents.deregisterAgent({ chain, zid: a.zid });
    await seen((x) => x.zid === a.zid && x.removed);
    await watch.return?.();
    expect(await codeOf(client.agents.sendTestEvent({ chain, zid: a.zid }))).toBe("NotFound");
    expect(await codeOf(client.agents.getAgent({ chain, zid: "not-a-zid" }))).toBe("InvalidArgument");
  });
});

describe("a daemon agent with filesystem_watch, across a restart", () => {
  let server: RunningServer;
  let client: LedgerClient;
  let chain: string;
  const dirs: string[] = [];

  beforeAll(async () => {
    server = await startTestServer();
    chain = uniqueChain("agents-fs");
    client = await clientFor(server, chain);
  });
  afterAll(async () => {
    await server?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("reports files once; after a restart, only what changed while it was down", async () => {
    const { writeFileSync, unlinkSync } = await import("node:fs");
    const watched = mkdtempSync(join(tmpdir(), "al-watched-"));
    const stateDir = mkdtempSync(join(tmpdir(), "al-agent-fs-"));
    dirs.push(watched, stateDir);
    for (const n of ["a", "b", "c"]) writeFileSync(join(watched, `${n}.txt`), `first ${n}\n`);
    const { token } = await client.agents.createEnrolmentToken({ chain });
    const config = validateAgentConfig({
      server: server.url,
      state_dir: stateDir,
      enrolment_token: token,
      ingest: { heartbeat_interval_ms: 200 },
      sources: [{ name: "files", type: "filesystem_watch", paths: [watched], stability_ms: 50, rename_window_ms: 200 }],
    });
    const ofAgent = async (zid: string) => (await readAll(client.ledger)).filter((e) => e.agent === zid);

    let agent: RunningAgent | undefined = await startAgent(config, silent);
    const zid = agent.zid;
    try {
      await eventually("3 files reported", async () => expect(await ofAgent(zid)).toHaveLength(3));
      const first = await ofAgent(zid);
      expect(first.map((e) => e.kind).sort()).toEqual(["file.created", "file.created", "file.created"]);
      expect(first.map((e) => e.subject).sort()).toEqual(["a", "b", "c"].map((n) => `file://${join(watched, `${n}.txt`)}`));
      await agent.stop();
      agent = undefined;

      // While the agent is down: modify a, delete b, create d; c is untouched.
      writeFileSync(join(watched, "a.txt"), "second a\n");
      unlinkSync(join(watched, "b.txt"));
      writeFileSync(join(watched, "d.txt"), "first d\n");

      agent = await startAgent(config, silent);
      expect(agent.zid).toBe(zid);
      await eventually("3 changes made while down reported", async () => expect(await ofAgent(zid)).toHaveLength(6));
      const later = (await ofAgent(zid)).slice(3);
      const bySubject = new Map(later.map((e) => [e.subject!.slice(`file://${watched}/`.length), e.kind]));
      expect(bySubject).toEqual(new Map([["a.txt", "file.modified"], ["b.txt", "file.deleted"], ["d.txt", "file.created"]]));
      // Nothing more arrives once the agent has caught up (c.txt is not re-emitted).
      await eventually("agent idle", async () => expect((await client.agents.getAgent({ chain, zid })).agent?.outboxDepth).toBe(0n));
      expect(await ofAgent(zid)).toHaveLength(6);
      expect((await verdictOf(client.ledger)).valid).toBe(true);
    } finally {
      await agent?.stop();
    }
  });
});

describe("server-side generic_polling", () => {
  let server: RunningServer;
  let client: LedgerClient;
  let chain: string;

  beforeAll(async () => {
    server = await startTestServer({ agentStateDir: mkdtempSync(join(tmpdir(), "al-ssa-")), agentPollMinIntervalMs: 100 });
    chain = uniqueChain("agents-poll");
    client = await clientFor(server, chain);
  });
  afterAll(async () => {
    await server?.close();
  });

  it("polls inside the server, appends each item once, and refuses a config whose first poll fails", async () => {
    const items = await itemsServer();
    try {
      items.items = [{ id: 1, v: "a" }, { id: 2, v: "b" }];
      const { agent } = await client.agents.spawnAgent({ chain, sourceType: "generic_polling", name: "p", configJson: JSON.stringify({ url: items.url, id_field: "id", interval_ms: 100 }) });
      const zid = agent!.zid;
      const ofAgent = async () => (await readAll(client.ledger)).filter((e) => e.agent === zid);
      await eventually("2 items", async () => expect(await ofAgent()).toHaveLength(2));
      items.items = [{ id: 1, v: "a2" }, { id: 2, v: "b" }, { id: 3, v: "c" }];
      await eventually("a change and a new item", async () => expect((await ofAgent()).map((e) => e.kind)).toEqual(["item.created", "item.created", "item.changed", "item.created"]));
      const seenBy = items.requests;
      await eventually("more polls", async () => expect(items.requests).toBeGreaterThan(seenBy + 3));
      expect(await ofAgent()).toHaveLength(4);
      expect((await client.agents.getAgent({ chain, zid })).agent?.eventsTotal).toBe(4n);
      await client.agents.deregisterAgent({ chain, zid });
      const after = items.requests;
      expect(await codeOf(client.agents.getAgent({ chain, zid }))).toBe("NotFound");
      // Stopped: at most a poll already in flight lands after deregistration.
      await new Promise((r) => setTimeout(r, 400)); // absence of polls cannot be awaited
      expect(items.requests).toBeLessThanOrEqual(after + 1);
    } finally {
      await items.close();
    }
    // Server-side pollers are held to limits, and URL query values are not shown back.
    expect(await codeOf(client.agents.spawnAgent({ chain, sourceType: "generic_polling", configJson: JSON.stringify({ url: "http://127.0.0.1:9/x", interval_ms: 50 }) }))).toBe("InvalidArgument");
    const missing = await client.agents
      .spawnAgent({ chain, sourceType: "generic_polling", configJson: JSON.stringify({ url: "http://127.0.0.1:9/nothing-here", interval_ms: 100 }) })
      .catch((e: Error) => e.message);
    expect(missing).toMatch(/first poll failed/);
    expect((await client.agents.listAgents({ chain })).agents).toHaveLength(0);
  });
});

describe("server-side pollers across replicas", () => {
  // Two servers on one database, as two replicas: a poller's lease decides where it runs.
  const replicas: RunningServer[] = [];
  const replica = async (stateDir: string) => {
    const s = await startTestServer({ agentStateDir: stateDir, agentPollMinIntervalMs: 100, agentLeaseSweepMs: 100 });
    replicas.push(s);
    return s;
  };
  afterAll(async () => {
    await Promise.all(replicas.map((s) => s.close()));
  });

  it("a poller runs on one replica only, and deregistering it through another stops it", async () => {
    const items = await itemsServer();
    try {
      const a = await replica(mkdtempSync(join(tmpdir(), "al-ra-")));
      const chain = uniqueChain("replicas");
      const clientA = await clientFor(a, chain);
      items.items = [{ id: 1, v: "a" }, { id: 2, v: "b" }];
      const { agent } = await clientA.agents.spawnAgent({ chain, sourceType: "generic_polling", name: "p", configJson: JSON.stringify({ url: items.url, id_field: "id", interval_ms: 100 }) });
      const zid = agent!.zid;
      const ofAgent = async () => (await readAll(clientA.ledger)).filter((e) => e.agent === zid);
      await eventually("2 items", async () => expect(await ofAgent()).toHaveLength(2));
      // B has its own, empty state folder: were it to poll too, it would report both items again.
      const b = await replica(mkdtempSync(join(tmpdir(), "al-rb-")));
      const clientB = await clientFor(b, chain);
      // One poller polls at most once per interval_ms (100 ms); two would poll about twice
      // as often. The bound holds however slow the machine is (timers never fire early).
      const seen = items.requests;
      const since = performance.now();
      await eventually("15 more polls (15 lease renewals by each replica)", async () => expect(items.requests).toBeGreaterThan(seen + 15));
      const polls = items.requests - seen;
      expect(polls).toBeLessThanOrEqual(Math.floor((performance.now() - since) / 100) + 2);
      expect(await ofAgent()).toHaveLength(2);
      await clientB.agents.deregisterAgent({ chain, zid });
      // A learns of it at its next renewal (100 ms) and stops, wherever the poll was.
      await eventually("A's lease renewal drops the poller", async () => {
        const before = items.requests;
        await new Promise((r) => setTimeout(r, 400)); // absence of polls cannot be awaited
        expect(items.requests).toBeLessThanOrEqual(before + 1);
      });
    } finally {
      await items.close();
    }
  });

  it("when the replica running a poller shuts down, another takes it over and goes on exactly where it left off", async () => {
    const items = await itemsServer();
    try {
      // Shared state storage, as docs/agents.md asks for replicas.
      const shared = mkdtempSync(join(tmpdir(), "al-rs-"));
      const a = await replica(shared);
      const chain = uniqueChain("takeover");
      const clientA = await clientFor(a, chain);
      items.items = [{ id: 1, v: "a" }, { id: 2, v: "b" }];
      const { agent } = await clientA.agents.spawnAgent({ chain, sourceType: "generic_polling", name: "p", configJson: JSON.stringify({ url: items.url, id_field: "id", interval_ms: 100 }) });
      const zid = agent!.zid;
      const b = await replica(shared);
      const clientB = await clientFor(b, chain);
      const ofAgent = async () => (await readAll(clientB.ledger)).filter((e) => e.agent === zid);
      await eventually("2 items", async () => expect(await ofAgent()).toHaveLength(2));
      await a.close();
      replicas.splice(replicas.indexOf(a), 1);
      const seen = items.requests;
      await eventually("B polls", async () => expect(items.requests).toBeGreaterThan(seen + 3));
      items.items = [{ id: 1, v: "a" }, { id: 2, v: "b2" }, { id: 3, v: "c" }];
      await eventually("B reports the change and the new item, and nothing twice", async () =>
        expect((await ofAgent()).map((e) => `${e.kind} ${e.subject}`)).toEqual([
          expect.stringMatching(/^item.created .*1$/),
          expect.stringMatching(/^item.created .*2$/),
          expect.stringMatching(/^item.changed .*2$/),
          expect.stringMatching(/^item.created .*3$/),
        ]),
      );
      expect((await clientB.agents.getAgent({ chain, zid })).agent?.eventsTotal).toBe(4n);
      await clientB.agents.deregisterAgent({ chain, zid });
    } finally {
      await items.close();
    }
  });
});

describe("items the ledger refuses become gap entries", () => {
  let server: RunningServer;
  let client: LedgerClient;
  let chain: string;
  const dirs: string[] = [];

  beforeAll(async () => {
    const { DEFAULT_LIMITS } = await import("../server/ledger/limits.js");
    server = await startTestServer({ agentStateDir: mkdtempSync(join(tmpdir(), "al-ssa-")), agentPollMinIntervalMs: 100, limits: { ...DEFAULT_LIMITS, maxPayloadBytes: 300 } });
    chain = uniqueChain("agents-refused");
    client = await clientFor(server, chain);
  });
  afterAll(async () => {
    await server?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const big = { id: 2, v: "x".repeat(1000) };

  it("a server-side poller records an item over the payload limit as a gap and goes on", async () => {
    const items = await itemsServer();
    try {
      items.items = [{ id: 1, v: "a" }, big, { id: 3, v: "c" }];
      const { agent } = await client.agents.spawnAgent({ chain, sourceType: "generic_polling", configJson: JSON.stringify({ url: `${items.url}?token=hunter2`, id_field: "id", interval_ms: 100 }) });
      expect(agent!.configJson).not.toContain("hunter2");
      const zid = agent!.zid;
      await eventually("3 entries", async () => expect((await readAll(client.ledger)).filter((e) => e.agent === zid)).toHaveLength(3));
      const rows = (await readAll(client.ledger, { includePayload: true })).filter((e) => e.agent === zid);
      expect(rows.map((e) => e.kind)).toEqual(["item.created", "gap", "item.created"]);
      const gap = JSON.parse(new TextDecoder().decode(rows[1]!.payload!)) as { reason: string; from: string };
      expect(gap.reason).toMatch(/refused by the ledger.*at most 300/);
      expect(gap.from).toMatch(/:2@/);
      await client.agents.deregisterAgent({ chain, zid });
    } finally {
      await items.close();
    }
  });

  it("a daemon agent resends a refused batch event by event: only the bad event becomes a gap", async () => {
    const items = await itemsServer();
    const stateDir = mkdtempSync(join(tmpdir(), "al-agent-"));
    dirs.push(stateDir);
    let agent: RunningAgent | undefined;
    try {
      items.items = [{ id: 1, v: "a" }, big, { id: 3, v: "c" }];
      const { token } = await client.agents.createEnrolmentToken({ chain });
      agent = await startAgent(
        validateAgentConfig({ server: server.url, state_dir: stateDir, enrolment_token: token, sources: [{ name: "items", type: "generic_polling", url: items.url, id_field: "id", interval_ms: 100 }] }),
        silent,
      );
      const zid = agent.zid;
      const kinds = async () => (await readAll(client.ledger)).filter((e) => e.agent === zid).map((e) => e.kind);
      // The gap is written when the refusal comes back, so it lands after the event sent behind it.
      await eventually("two items and one gap", async () => expect(await kinds()).toEqual(["item.created", "item.created", "gap"]));
      items.items = [{ id: 1, v: "a" }, big, { id: 3, v: "c" }, { id: 4, v: "d" }];
      await eventually("the next item", async () => expect(await kinds()).toEqual(["item.created", "item.created", "gap", "item.created"]));
      const rows = (await readAll(client.ledger, { includePayload: true })).filter((e) => e.agent === zid);
      expect(rows[2]!.source_position).toMatch(/^refused@[0-9a-f]{32}$/);
      const gap = JSON.parse(new TextDecoder().decode(rows[2]!.payload!)) as { reason: string; from: string; to: string };
      expect(gap.reason).toMatch(/server refused 1 event\(s\): ResourceExhausted/);
      expect(gap.from).toBe(gap.to);
      expect(gap.from).toMatch(/:2@/);
      expect((await verdictOf(client.ledger)).valid).toBe(true);
    } finally {
      await agent?.stop();
      await items.close();
    }
  });
});
