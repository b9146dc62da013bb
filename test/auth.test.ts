// Every RPC is authenticated; scopes gate methods; a key sees only its own chain.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import type { RunningServer } from "../server/ledger-server.js";
import { createLedgerClient } from "../clients/node/ledger-client.js";
import { createKey, startTestServer, superuser, uniqueChain } from "./support/test-server.js";

let server: RunningServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server.close());

const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => "OK",
    (e: unknown) => Code[ConnectError.from(e).code],
  );

describe("authentication and scopes", () => {
  it("a call without a key is Unauthenticated", async () => {
    const c = createLedgerClient({ baseUrl: server.url });
    expect(await codeOf(c.ledger.getStats({}))).toBe("Unauthenticated");
    expect(await codeOf(c.ledger.append({ event: { kind: "x" } }))).toBe("Unauthenticated");
  });

  it("a malformed or unknown key is Unauthenticated", async () => {
    for (const apiKey of ["nonsense", "alk_0000000000000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]) {
      const c = createLedgerClient({ baseUrl: server.url, apiKey });
      expect(await codeOf(c.ledger.getStats({}))).toBe("Unauthenticated");
    }
  });

  it("a key with the right id but a wrong secret is Unauthenticated", async () => {
    const token = await createKey(uniqueChain());
    const forged = token.slice(0, -4) + (token.endsWith("AAAA") ? "BBBB" : "AAAA");
    const c = createLedgerClient({ baseUrl: server.url, apiKey: forged });
    expect(await codeOf(c.ledger.getStats({}))).toBe("Unauthenticated");
  });

  it("keys are stored hashed: the secret appears nowhere in the database", async () => {
    const token = await createKey(uniqueChain());
    const secret = token.split(".")[1]!;
    const su = await superuser();
    try {
      const { rows } = await su.query("SELECT count(*)::int AS n FROM api_keys WHERE secret_hash = $1 OR encode(secret_hash, 'escape') LIKE $2", [Buffer.from(secret), `%${secret}%`]);
      expect(rows[0].n).toBe(0);
      const { rows: all } = await su.query("SELECT length(secret_hash) AS len FROM api_keys WHERE key_id = $1", [token.slice(4, 20)]);
      expect(all[0].len).toBe(32);
    } finally {
      await su.end();
    }
  });

  it("a read-only key cannot append (PermissionDenied) but can read", async () => {
    const chain = uniqueChain();
    const reader = createLedgerClient({ baseUrl: server.url, apiKey: await createKey(chain, ["read"]) });
    expect(await codeOf(reader.ledger.append({ event: { kind: "x" } }))).toBe("PermissionDenied");
    expect(await codeOf(reader.ledger.appendBatch({ events: [{ kind: "x" }] }))).toBe("PermissionDenied");
    expect(await codeOf(reader.ledger.getStats({}))).toBe("OK");
  });

  it("an append-only key cannot read (PermissionDenied)", async () => {
    const chain = uniqueChain();
    const writer = createLedgerClient({ baseUrl: server.url, apiKey: await createKey(chain, ["append"]) });
    expect(await codeOf(writer.ledger.append({ event: { kind: "x" } }))).toBe("OK");
    expect(await codeOf(writer.ledger.getStats({}))).toBe("PermissionDenied");
    expect(await codeOf(writer.ledger.query({}))).toBe("PermissionDenied");
    expect(await codeOf(writer.ledger.getEvent({ seq: 0n }))).toBe("PermissionDenied");
  });

  it("only admin keys manage keys", async () => {
    const chain = uniqueChain();
    const rw = createLedgerClient({ baseUrl: server.url, apiKey: await createKey(chain, ["append", "read"]) });
    expect(await codeOf(rw.keys.createApiKey({ scopes: ["read"] }))).toBe("PermissionDenied");
    expect(await codeOf(rw.keys.listApiKeys({}))).toBe("PermissionDenied");
  });

  it("a key of chain A sees nothing of chain B", async () => {
    const a = uniqueChain("a");
    const b = uniqueChain("b");
    const clientA = createLedgerClient({ baseUrl: server.url, apiKey: await createKey(a) });
    const clientB = createLedgerClient({ baseUrl: server.url, apiKey: await createKey(b) });
    await clientB.ledger.append({ event: { kind: "secret.b", subject: "b/1" } });
    await clientA.ledger.append({ event: { kind: "public.a" } });
    expect(await codeOf(clientA.ledger.getStats({ chain: b }))).toBe("PermissionDenied");
    expect(await codeOf(clientA.ledger.getEvent({ chain: b, seq: 0n }))).toBe("PermissionDenied");
    expect(await codeOf(clientA.ledger.query({ chain: b }))).toBe("PermissionDenied");
    expect(await codeOf(clientA.ledger.append({ chain: b, event: { kind: "x" } }))).toBe("PermissionDenied");
    expect(await codeOf(clientA.keys.createApiKey({ chain: b, scopes: ["read"] }))).toBe("PermissionDenied");
    const stream = clientA.ledger.streamEvents({ chain: b, fromSeq: 0n });
    expect(await codeOf((async () => { for await (const _ of stream) break; })())).toBe("PermissionDenied");
    const verify = clientA.ledger.verify({ chain: b });
    expect(await codeOf((async () => { for await (const _ of verify) break; })())).toBe("PermissionDenied");
    // With no chain named, A's key reads A's chain only.
    const own = await clientA.ledger.query({});
    expect(own.entries.map((e) => e.kind)).toEqual(["public.a"]);
    expect(own.entries.every((e) => e.chain === a)).toBe(true);
  });

  it("the agent recorded for a direct append is the key id, whatever the client says", async () => {
    const chain = uniqueChain();
    const token = await createKey(chain, ["append", "read"]);
    const c = createLedgerClient({ baseUrl: server.url, apiKey: token });
    const { entry } = await c.ledger.append({ event: { kind: "x" } });
    expect(entry!.agent).toBe(token.slice(4, 20));
  });

  it("KeyService creates, lists and revokes keys; a revoked key stops working", async () => {
    const chain = uniqueChain();
    const admin = createLedgerClient({ baseUrl: server.url, apiKey: await createKey(chain, ["admin"]) });
    const created = await admin.keys.createApiKey({ scopes: ["read"], name: "dashboard" });
    expect(created.token).toMatch(/^alk_[0-9a-f]{16}\.[A-Za-z0-9_-]{43}$/);
    expect(created.key!.chain).toBe(chain);
    const reader = createLedgerClient({ baseUrl: server.url, apiKey: created.token });
    expect(await codeOf(reader.ledger.getStats({}))).toBe("OK");
    const listed = await admin.keys.listApiKeys({});
    expect(listed.keys.map((k) => k.name)).toContain("dashboard");
    await admin.keys.revokeApiKey({ keyId: created.key!.keyId });
    // The authenticator caches a verdict for at most 2 s; a fresh server has no cache.
    const fresh = await startTestServer();
    try {
      const again = createLedgerClient({ baseUrl: fresh.url, apiKey: created.token });
      expect(await codeOf(again.ledger.getStats({}))).toBe("Unauthenticated");
    } finally {
      await fresh.close();
    }
    expect(await codeOf(admin.keys.revokeApiKey({ keyId: created.key!.keyId }))).toBe("NotFound");
  });

  it("creating a key with an unknown scope is InvalidArgument", async () => {
    const admin = createLedgerClient({ baseUrl: server.url, apiKey: await createKey(uniqueChain(), ["admin"]) });
    expect(await codeOf(admin.keys.createApiKey({ scopes: ["root"] }))).toBe("InvalidArgument");
    expect(await codeOf(admin.keys.createApiKey({ scopes: [] }))).toBe("InvalidArgument");
  });
});
