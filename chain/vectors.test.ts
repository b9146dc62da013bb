import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { canonicalEnvelope, canonicalJson, envelopeObject } from "./canonical-json.js";
import { entryHash } from "./entry-hash.js";
import { ChainWalker } from "./chain-walk.js";
import { payloadDigest } from "./payload-digest.js";
import { fromHex } from "./hex.js";
import type { Envelope } from "./envelope.js";

interface Vector {
  envelope: Envelope;
  canonical: string;
  hash: string;
  payload_hex?: string;
  salt_hex?: string;
}
const { vectors } = JSON.parse(readFileSync(new URL("./vectors/entries.json", import.meta.url), "utf8")) as { vectors: Vector[] };

describe("entry vectors (chain/vectors/entries.json)", () => {
  it.each(vectors.map((v) => [v.envelope.seq, v] as const))("seq %i: canonical bytes and hash match the vector", (_seq, v) => {
    expect(canonicalEnvelope(v.envelope)).toBe(v.canonical);
    expect(canonicalJson(envelopeObject(v.envelope))).toBe(v.canonical);
    expect(entryHash(v.envelope)).toBe(v.hash);
    if (v.payload_hex && v.salt_hex) {
      expect(payloadDigest(fromHex(v.salt_hex), fromHex(v.payload_hex))).toBe(v.envelope.payload_digest);
    }
  });

  it("the vectors form one valid chain", () => {
    const walker = new ChainWalker();
    for (const v of vectors) {
      const payload = v.payload_hex ? fromHex(v.payload_hex) : null;
      const salt = v.salt_hex ? fromHex(v.salt_hex) : null;
      expect(walker.push({ ...v.envelope, hash: v.hash, payload, salt })).toBeNull();
    }
    expect(walker.finish(vectors.length)).toBeNull();
    expect(walker.checked).toBe(vectors.length);
  });
});

describe("fixed-shape canonical encoder", () => {
  // Random envelopes with awkward strings: the fast encoder must equal the RFC 8785
  // reference library byte for byte.
  const alphabet = ["a", "Z", "0", " ", '"', "\\", "\n", "\t", "\u0000", "\u001f", "\u007f", "é", "€", "\u2028", "😀", "/", "<"];
  const randomString = (rnd: () => number) =>
    Array.from({ length: Math.floor(rnd() * 12) }, () => alphabet[Math.floor(rnd() * alphabet.length)]).join("");
  let state = 12345;
  const rnd = () => ((state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);

  it("equals the reference JCS library on 2,000 random envelopes", () => {
    for (let i = 0; i < 2000; i++) {
      const optional = (s: string) => (rnd() < 0.5 ? undefined : s);
      const e: Envelope = {
        v: 1,
        chain: randomString(rnd) || "c",
        seq: Math.floor(rnd() * 2 ** 40),
        ts: "2026-01-01T00:00:00.000Z",
        occurred_at: optional(randomString(rnd)),
        source_type: "api",
        agent: randomString(rnd) || "a",
        kind: randomString(rnd) || "k",
        subject: optional(randomString(rnd)),
        actor: optional(randomString(rnd)),
        trace_id: optional(randomString(rnd)),
        span_id: optional(randomString(rnd)),
        cause: optional(randomString(rnd)),
        idempotency_key: optional(randomString(rnd)),
        source_position: optional(randomString(rnd)),
        payload_type: optional(randomString(rnd)),
        payload_size: Math.floor(rnd() * 1e6),
        payload_digest: optional(randomString(rnd)),
        batch: optional(randomString(rnd)),
        prev_hash: "f".repeat(64),
      };
      expect(canonicalEnvelope(e)).toBe(canonicalJson(envelopeObject(e)));
    }
  });

  it("refuses numbers that JSON cannot carry exactly", () => {
    const e = { ...vectors[0]!.envelope, seq: 2 ** 53 };
    expect(() => canonicalEnvelope(e)).toThrow(/safe integer/);
  });
});

describe("ChainWalker finds the first break", () => {
  const chain = () =>
    vectors.map((v) => ({
      ...v.envelope,
      hash: v.hash,
      payload: v.payload_hex ? fromHex(v.payload_hex) : null,
      salt: v.salt_hex ? fromHex(v.salt_hex) : null,
    }));
  const walk = (entries: ReturnType<typeof chain>, end = vectors.length) => {
    const w = new ChainWalker();
    for (const e of entries) if (w.push(e)) break;
    return w.finish(end);
  };

  it("an edited field", () => {
    const c = chain();
    c[2]!.subject = "github/acme/other";
    expect(walk(c)).toMatchObject({ seq: 2, kind: "hash_mismatch" });
  });
  it("an edited payload", () => {
    const c = chain();
    c[1]!.payload = new TextEncoder().encode('{"id":42,"total":"99.99"}');
    expect(walk(c)).toMatchObject({ seq: 1, kind: "payload_mismatch" });
  });
  it("a deleted entry", () => {
    const c = chain();
    c.splice(3, 1);
    expect(walk(c)).toMatchObject({ seq: 3, kind: "missing_entry" });
  });
  it("a duplicated entry", () => {
    const c = chain();
    c.splice(2, 0, { ...c[1]! });
    expect(walk(c)).toMatchObject({ seq: 1, kind: "unexpected_entry" });
  });
  it("a truncated tail", () => {
    expect(walk(chain().slice(0, 3))).toMatchObject({ seq: 3, kind: "truncated" });
  });
  it("a redacted payload is reported, not a break", () => {
    const c = chain();
    c[1]!.payload = null;
    c[1]!.salt = null;
    (c[1] as { redacted?: boolean }).redacted = true;
    const w = new ChainWalker();
    for (const e of c) expect(w.push(e)).toBeNull();
    expect(w.redacted).toEqual([1]);
  });
});

describe("the browser SHA-256 matches the Node one", () => {
  it("on the vectors' canonical bytes and on binary input", async () => {
    const web = await import("./sha256-web.js");
    const node = await import("./sha256-node.js");
    for (const v of vectors) {
      expect(web.sha256Hex(v.canonical)).toBe(v.hash);
      expect(node.sha256Hex(v.canonical)).toBe(v.hash);
    }
    const bytes = Uint8Array.from({ length: 1000 }, (_, i) => (i * 7) % 256);
    expect(web.sha256(bytes)).toEqual(node.sha256(bytes));
  });
});
