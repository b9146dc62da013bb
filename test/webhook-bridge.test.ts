// The webhook bridge end to end (SPEC §5, §9): a real server, real HTTP posts from Node's
// fetch to /hooks/{zid}/event, real Postgres. Every provider's signature is computed here
// with node:crypto, independently of server/webhooks/webhook-signatures.ts, so a bug
// there cannot sign its own requests. Each check reads the ledger back: an accepted post is
// exactly one entry whose payload is the raw body; a refused one changes nothing.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHmac, randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RunningServer } from "../server/ledger-server.js";
import type { LedgerClient } from "../clients/node/ledger-client.js";
import { clientFor, startTestServer, uniqueChain } from "./support/test-server.js";
import { codeOf, readAll } from "./support/verifiable-log.js";

type Headers = Record<string, string>;

/** How one provider signs a delivery: the headers for `body`, with a delivery id and a Unix time. */
interface Provider {
  /** What the agent is spawned with (besides `secret`). */
  secret: string;
  /** A body of this provider's shape that carries `id` where the provider puts it. */
  body(id: string): string;
  sign(secret: string, body: string, id: string, t: number): Headers;
  /** The kind the bridge should give the entry. */
  kind: string;
  /** Whether the signature covers a timestamp (then a stale one is refused). */
  timestamped: boolean;
}

const hmac = (key: string | Buffer, text: string) => createHmac("sha256", key).update(text, "utf8").digest();
const now = () => Math.floor(Date.now() / 1000);

/** The Standard Webhooks key: `whsec_` + base64 of the key bytes. */
const standardKeyBytes = randomBytes(24);
const standardSecret = `whsec_${standardKeyBytes.toString("base64")}`;

const PROVIDERS: Record<"generic" | "github" | "stripe" | "slack" | "shopify" | "standard", Provider> = {
  generic: {
    secret: "generic-s3cret",
    // Deliberately odd spacing: the payload must be the bytes sent, not re-serialised JSON.
    body: (id) => `{"delivery": "${id}",   "n": [1, 2 ,3]}\n`,
    sign: (secret, body, id) => ({ "X-Signature": `sha256=${hmac(secret, body).toString("hex")}`, "X-Delivery-Id": id }),
    kind: "webhook.received",
    timestamped: false,
  },
  github: {
    secret: "github-s3cret",
    body: (id) => JSON.stringify({ ref: "refs/heads/main", after: id }),
    sign: (secret, body, id) => ({
      "X-Hub-Signature-256": `sha256=${hmac(secret, body).toString("hex")}`,
      "X-GitHub-Event": "push",
      "X-GitHub-Delivery": id,
    }),
    kind: "github.push",
    timestamped: false,
  },
  stripe: {
    secret: "whsec_stripe_s3cret",
    body: (id) => JSON.stringify({ id: `evt_${id}`, object: "event", type: "invoice.paid", data: { object: { amount: 4200 } } }),
    sign: (secret, body, _id, t) => ({ "Stripe-Signature": `t=${t},v1=${hmac(secret, `${t}.${body}`).toString("hex")}` }),
    kind: "stripe.invoice.paid",
    timestamped: true,
  },
  slack: {
    secret: "slack-s3cret",
    body: (id) => JSON.stringify({ type: "event_callback", event_id: `Ev${id}`, event: { type: "app_mention", text: "hi" } }),
    sign: (secret, body, _id, t) => ({
      "X-Slack-Request-Timestamp": String(t),
      "X-Slack-Signature": `v0=${hmac(secret, `v0:${t}:${body}`).toString("hex")}`,
    }),
    kind: "slack.app_mention",
    timestamped: true,
  },
  shopify: {
    secret: "shopify-s3cret",
    body: (id) => JSON.stringify({ id: 820982911946154500, note: id }),
    sign: (secret, body, id) => ({
      "X-Shopify-Hmac-Sha256": hmac(secret, body).toString("base64"),
      "X-Shopify-Topic": "orders/create",
      "X-Shopify-Webhook-Id": id,
    }),
    kind: "shopify.orders/create",
    timestamped: false,
  },
  standard: {
    secret: standardSecret,
    body: () => JSON.stringify({ type: "user.created", data: { user: 7 } }),
    sign: (secret, body, id, t) => {
      // The key is the base64 after whsec_ (computed from the secret given, so a wrong secret signs wrongly).
      const key = secret.startsWith("whsec_") ? Buffer.from(secret.slice(6), "base64") : Buffer.from(secret);
      return {
        "webhook-id": `msg_${id}`,
        "webhook-timestamp": String(t),
        "webhook-signature": `v1,${hmac(key, `msg_${id}.${t}.${body}`).toString("base64")}`,
      };
    },
    kind: "standard.user.created",
    timestamped: true,
  },
};

/** The delivery id the bridge should have used for the provider's request. */
const DELIVERY_ID: Record<keyof typeof PROVIDERS, (id: string) => string | undefined> = {
  generic: (id) => id,
  github: (id) => id,
  stripe: (id) => `evt_${id}`,
  slack: (id) => `Ev${id}`,
  shopify: (id) => id,
  standard: (id) => `msg_${id}`,
};

describe("webhook bridge", () => {
  let server: RunningServer;
  let chain: string;
  let client: LedgerClient;
  let stateDir: string;

  beforeAll(async () => {
    stateDir = mkdtempSync(join(tmpdir(), "al-hooks-"));
    server = await startTestServer({ agentStateDir: stateDir });
    chain = uniqueChain("hooks");
    client = await clientFor(server, chain);
  });
  afterAll(async () => {
    await server?.close();
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  });

  const spawnHook = async (config: Record<string, unknown>, name = "hook"): Promise<string> => {
    const res = await client.agents.spawnAgent({ chain, sourceType: "http_webhook", name, configJson: JSON.stringify(config) });
    expect(res.agent?.webhookPath).toBe(`/hooks/${res.agent!.zid}/event`);
    return res.agent!.zid;
  };

  const hookUrl = (zid: string) => `${server.url}/hooks/${zid}/event`;

  const post = async (zid: string, body: string, headers: Headers = {}) => {
    const res = await fetch(hookUrl(zid), { method: "POST", headers: { "content-type": "application/json", ...headers }, body });
    const text = await res.text();
    return { status: res.status, json: JSON.parse(text) as { seq?: number; hash?: string; deduplicated?: boolean; error?: string }, headers: res.headers };
  };

  const count = async () => (await readAll(client.ledger)).length;
  const eventsTotal = async (zid: string) => (await client.agents.getAgent({ chain, zid })).agent!.eventsTotal;

  for (const [scheme, p] of Object.entries(PROVIDERS) as [keyof typeof PROVIDERS, Provider][]) {
    describe(`scheme ${scheme}`, () => {
      let zid: string;
      beforeAll(async () => {
        zid = await spawnHook({ scheme, secret: p.secret }, `hook-${scheme}`);
      });

      it("a correctly signed request is appended once: 200 with the seq and hash of the entry, whose payload is the raw body", async () => {
        const id = randomUUID();
        const body = p.body(id);
        const before = await count();
        const total = await eventsTotal(zid);
        const res = await post(zid, body, p.sign(p.secret, body, id, now()));
        expect(res.status, res.json.error).toBe(200);
        expect(res.headers.get("content-type")).toMatch(/^application\/json/);
        expect(typeof res.json.seq).toBe("number");
        expect(res.json.hash).toMatch(/^[0-9a-f]{64}$/);
        expect(res.json.deduplicated).toBe(false);
        expect(await count()).toBe(before + 1);

        const { entry } = await client.ledger.getEvent({ chain, seq: BigInt(res.json.seq!), includePayload: true });
        expect(entry).toBeDefined();
        expect(entry!.hash).toBe(res.json.hash);
        expect(entry!.sourceType).toBe("http_webhook");
        expect(entry!.agent).toBe(zid);
        expect(entry!.kind).toBe(p.kind);
        expect(entry!.subject).toBe(`hooks/${zid}`);
        expect(entry!.payloadType).toBe("application/json");
        expect(Buffer.from(entry!.payload).toString("utf8")).toBe(body);
        const delivery = DELIVERY_ID[scheme](id)!;
        expect(entry!.sourcePosition).toBe(delivery);
        expect(entry!.idempotencyKey).toContain(delivery);
        // The same entry through Query.
        const page = await client.ledger.query({ chain, filter: { agent: zid, fromSeq: BigInt(res.json.seq!), toSeq: BigInt(res.json.seq! + 1) } });
        expect(page.entries.map((e) => e.hash)).toEqual([res.json.hash]);
        expect(await eventsTotal(zid)).toBe(total + 1n);
      });

      it("a bad signature gets 401 and appends nothing", async () => {
        const id = randomUUID();
        const body = p.body(id);
        const before = await count();
        const total = await eventsTotal(zid);
        // Signed with the wrong secret.
        const wrongSecret = scheme === "standard" ? `whsec_${randomBytes(24).toString("base64")}` : `${p.secret}-not`;
        const wrong = await post(zid, body, p.sign(wrongSecret, body, id, now()));
        expect(wrong.status).toBe(401);
        expect(wrong.json.error).toMatch(/signature/i);
        expect(wrong.json.error).not.toContain(p.secret);
        // Signed right, then the body altered in transit.
        const altered = await post(zid, body.replace(/}\s*$/, ',"x":1}'), p.sign(p.secret, body, id, now()));
        expect(altered.status).toBe(401);
        // No signature at all.
        const none = await post(zid, body);
        expect(none.status).toBe(401);
        expect(await count()).toBe(before);
        expect(await eventsTotal(zid)).toBe(total);
      });

      if (p.timestamped) {
        it("a correctly signed request with a stale (or far-future) timestamp gets 401 and appends nothing", async () => {
          const before = await count();
          const id = randomUUID();
          const body = p.body(id);
          const stale = await post(zid, body, p.sign(p.secret, body, id, now() - 600));
          expect(stale.status).toBe(401);
          expect(stale.json.error).toMatch(/stale|old|tolerance/i);
          const future = await post(zid, body, p.sign(p.secret, body, id, now() + 600));
          expect(future.status).toBe(401);
          expect(await count()).toBe(before);
        });
      }

      if (scheme === "slack") {
        it("Slack's url_verification request is answered with its challenge (and recorded)", async () => {
          const body = JSON.stringify({ token: "legacy", challenge: "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", type: "url_verification" });
          const res = await post(zid, body, p.sign(p.secret, body, "", now()));
          expect(res.status, res.json.error).toBe(200);
          expect((res.json as { challenge?: string }).challenge).toBe("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P");
          const { entry } = await client.ledger.getEvent({ chain, seq: BigInt(res.json.seq!) });
          expect(entry!.kind).toBe("slack.url_verification");
        });
      }

      it("a redelivery with the same delivery id returns the original seq and appends nothing more", async () => {
        const id = randomUUID();
        const body = p.body(id);
        const first = await post(zid, body, p.sign(p.secret, body, id, now()));
        expect(first.status, first.json.error).toBe(200);
        const before = await count();
        const total = await eventsTotal(zid);
        // A retry is signed afresh (a new timestamp where the scheme has one).
        const retry = await post(zid, body, p.sign(p.secret, body, id, now() + 1));
        expect(retry.status, retry.json.error).toBe(200);
        expect(retry.json.seq).toBe(first.json.seq);
        expect(retry.json.hash).toBe(first.json.hash);
        expect(retry.json.deduplicated).toBe(true);
        expect(await count()).toBe(before);
        expect(await eventsTotal(zid)).toBe(total);
      });

      it("a malformed JSON body declared application/json, correctly signed, gets 400 and appends nothing", async () => {
        const id = randomUUID();
        const body = `{"truncated": "${id}"`;
        const before = await count();
        const res = await post(zid, body, p.sign(p.secret, body, id, now()));
        expect(res.status).toBe(400);
        expect(res.json.error).toMatch(/JSON/);
        expect(await count()).toBe(before);
      });
    });
  }

  describe("any hook", () => {
    let open: string;
    beforeAll(async () => {
      open = await spawnHook({ max_body_bytes: 1000, kind: "form.submitted", subject: "forms/contact" }, "open");
    });

    it("an agent without a secret accepts unsigned posts, with its configured kind and subject", async () => {
      const before = await count();
      const total = await eventsTotal(open);
      const body = JSON.stringify({ name: "Ada", message: "hello" });
      const res = await post(open, body);
      expect(res.status, res.json.error).toBe(200);
      const { entry } = await client.ledger.getEvent({ chain, seq: BigInt(res.json.seq!), includePayload: true });
      expect(entry).toMatchObject({ hash: res.json.hash, kind: "form.submitted", subject: "forms/contact", sourceType: "http_webhook", agent: open });
      expect(Buffer.from(entry!.payload).toString()).toBe(body);
      // A generic delivery id header still deduplicates.
      const a = await post(open, body, { "X-Delivery-Id": "d-1" });
      const b = await post(open, body, { "X-Delivery-Id": "d-1" });
      expect(a.status).toBe(200);
      expect(b.json.seq).toBe(a.json.seq);
      // A delivery id too long for the entry's fields still deduplicates (by its digest).
      const longId = "L".repeat(600);
      const l1 = await post(open, body, { "X-Delivery-Id": longId });
      const l2 = await post(open, body, { "X-Delivery-Id": longId });
      expect(l1.status, l1.json.error).toBe(200);
      expect(l2.json).toMatchObject({ seq: l1.json.seq, deduplicated: true });
      const other = await post(open, body, { "X-Delivery-Id": "L".repeat(599) });
      expect(other.json.seq).not.toBe(l1.json.seq);
      // Not JSON, and not declared JSON: stored as sent with its type.
      const text = await fetch(hookUrl(open), { method: "POST", headers: { "content-type": "text/plain; charset=utf-8" }, body: "not json {" });
      expect(text.status).toBe(200);
      const seq = ((await text.json()) as { seq: number }).seq;
      const plain = (await client.ledger.getEvent({ chain, seq: BigInt(seq), includePayload: true })).entry!;
      expect(plain.payloadType).toBe("text/plain");
      expect(Buffer.from(plain.payload).toString()).toBe("not json {");
      expect(await count()).toBe(before + 5);
      expect(await eventsTotal(open)).toBe(total + 5n);
    });

    it("malformed JSON declared application/json gets 400 and appends nothing", async () => {
      const before = await count();
      const res = await post(open, "{not json");
      expect(res.status).toBe(400);
      expect(res.json.error).toMatch(/JSON/);
      const deep = await post(open, "[".repeat(200) + "]".repeat(200));
      expect(deep.status).toBe(400);
      expect(await count()).toBe(before);
    });

    it("a body over max_body_bytes gets 413 and appends nothing, with Content-Length or chunked", async () => {
      const before = await count();
      const big = JSON.stringify({ pad: "x".repeat(2000) });
      const withLength = await post(open, big);
      expect(withLength.status).toBe(413);
      expect(withLength.json.error).toMatch(/1000/);

      // Chunked (no Content-Length): the limit is found while reading.
      const chunked = async (pieces: string[]) => {
        const stream = new ReadableStream<Uint8Array>({
          async pull(controller) {
            const next = pieces.shift();
            if (next === undefined) return controller.close();
            await new Promise((r) => setTimeout(r, 5));
            controller.enqueue(new TextEncoder().encode(next));
          },
        });
        const res = await fetch(hookUrl(open), { method: "POST", headers: { "content-type": "application/json" }, body: stream, duplex: "half" } as RequestInit);
        return { status: res.status, json: (await res.json()) as { seq?: number; error?: string } };
      };
      const over = await chunked(['{"pad":"', ...Array.from({ length: 12 }, () => "y".repeat(200)), '"}']);
      expect(over.status).toBe(413);
      expect(await count()).toBe(before);

      // Exactly at the limit is fine, chunked too.
      const exact = JSON.stringify({ pad: "z".repeat(1000 - 10) });
      expect(Buffer.byteLength(exact)).toBe(1000);
      const ok = await chunked([exact.slice(0, 300), exact.slice(300, 700), exact.slice(700)]);
      expect(ok.status, ok.json.error).toBe(200);
      const entry = (await client.ledger.getEvent({ chain, seq: BigInt(ok.json.seq!), includePayload: true })).entry!;
      expect(Buffer.from(entry.payload).toString()).toBe(exact);
      expect(await count()).toBe(before + 1);

      // The connection is still usable after a 413.
      const after = await post(open, JSON.stringify({ small: true }));
      expect(after.status).toBe(200);
    });

    it("GET (or any method but POST) gets 405 with Allow: POST", async () => {
      const before = await count();
      const get = await fetch(hookUrl(open));
      expect(get.status).toBe(405);
      expect(get.headers.get("allow")).toBe("POST");
      await get.text();
      const put = await fetch(hookUrl(open), { method: "PUT", body: "{}" });
      expect(put.status).toBe(405);
      await put.text();
      expect(await count()).toBe(before);
    });

    it("an unknown agent, a deregistered agent and a non-webhook agent get 404", async () => {
      const before = await count();
      expect((await post("ZID-ABCDEFGH", "{}")).status).toBe(404);
      expect((await post("not-a-zid", "{}")).status).toBe(404);
      const other = await fetch(`${server.url}/hooks/${open}/other`, { method: "POST", body: "{}" });
      expect(other.status).toBe(404);
      await other.text();

      const gone = await spawnHook({}, "gone");
      expect((await post(gone, "{}")).status).toBe(200);
      await client.agents.deregisterAgent({ chain, zid: gone });
      const afterDereg = await count();
      const res = await post(gone, "{}");
      expect(res.status).toBe(404);
      expect(await count()).toBe(afterDereg);

      // A server-side generic_polling agent is no webhook.
      const { createServer } = await import("node:http");
      const empty = createServer((_req, r) => r.writeHead(200, { "content-type": "application/json" }).end("[]"));
      await new Promise<void>((r) => empty.listen(0, "127.0.0.1", () => r()));
      const emptyUrl = `http://127.0.0.1:${(empty.address() as { port: number }).port}/items`;
      const poller = await client.agents.spawnAgent({ chain, sourceType: "generic_polling", name: "poller", configJson: JSON.stringify({ url: emptyUrl, interval_ms: 60_000 }) });
      expect(poller.agent!.webhookPath).toBe("");
      expect((await post(poller.agent!.zid, "{}")).status).toBe(404);
      await client.agents.deregisterAgent({ chain, zid: poller.agent!.zid });
      await new Promise<void>((r) => empty.close(() => r()));

      // A daemon agent (registered with an enrolment token) is no webhook either.
      const { token } = await client.agents.createEnrolmentToken({ chain });
      const { AgentRegistryService } = await import("../gen/auditledger/v1/agent_registry_service_pb.js");
      const { createClient } = await import("@connectrpc/connect");
      const { createConnectTransport } = await import("@connectrpc/connect-node");
      const sodium = (await import("libsodium-wrappers")).default;
      await sodium.ready;
      const raw = createClient(AgentRegistryService, createConnectTransport({ baseUrl: server.url, httpVersion: "2" }));
      const reg = await raw.registerAgent({ enrolmentToken: token, publicKey: sodium.crypto_sign_keypair().publicKey, name: "daemon", sourceTypes: ["http_webhook"] });
      expect((await post(reg.zid, "{}")).status).toBe(404);

      expect(await count()).toBe(before + 1);
    });

    it("SpawnAgent refuses webhook configs that could never accept a delivery", async () => {
      const msg = (config: object) => client.agents.spawnAgent({ chain, sourceType: "http_webhook", configJson: JSON.stringify(config) }).then(() => "OK", (e: Error) => e.message);
      expect(await msg({ scheme: "stripe" })).toMatch(/secret/);
      expect(await msg({ scheme: "standard", secret: "whsec_not base64!" })).toMatch(/secret.*base64/);
      expect(await msg({ scheme: "gitlab", secret: "x" })).toMatch(/scheme/);
      expect(await msg({ secret: "x", max_body_byte: 10 })).toMatch(/max_body_byte/);
      // A plain (unprefixed) Standard Webhooks secret is used as its UTF-8 bytes.
      expect(await msg({ scheme: "standard", secret: "plain-shared-string" })).toBe("OK");
    });

    it("a hook of one chain appends only to its own chain", async () => {
      const otherChain = uniqueChain("hooks-other");
      const otherClient = await clientFor(server, otherChain);
      const res = await otherClient.agents.spawnAgent({ chain: otherChain, sourceType: "http_webhook", configJson: "{}" });
      const before = await count();
      const posted = await post(res.agent!.zid, JSON.stringify({ where: "other" }));
      expect(posted.status).toBe(200);
      expect(await count()).toBe(before);
      const { entry } = await otherClient.ledger.getEvent({ chain: otherChain, seq: BigInt(posted.json.seq!) });
      expect(entry!.hash).toBe(posted.json.hash);
      // And this chain's key cannot see that agent.
      expect(await codeOf(client.agents.getAgent({ chain, zid: res.agent!.zid }))).toBe("NotFound");
    });
  });
});
