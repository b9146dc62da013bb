// Writes chain/vectors/entries.json. Run only when the encoding deliberately changes:
//   npx tsx chain/vectors/generate-vectors.ts
// The committed file is the contract; chain/vectors.test.ts holds the code to it.
import { writeFileSync } from "node:fs";
import { ZERO_HASH, type Envelope } from "../envelope.js";
import { canonicalEnvelope } from "../canonical-json.js";
import { entryHash } from "../entry-hash.js";
import { payloadDigest } from "../payload-digest.js";
import { toHex } from "../hex.js";

const utf8 = new TextEncoder();
// Deterministic salts so the file is reproducible: byte i of salt n is (n*31+i) mod 256.
const salt = (n: number) => Uint8Array.from({ length: 32 }, (_, i) => (n * 31 + i) % 256);

const inputs: Array<{ fields: Omit<Envelope, "v" | "chain" | "seq" | "prev_hash" | "payload_size" | "payload_digest">; payload?: string }> = [
  { fields: { ts: "2026-01-01T00:00:00.000Z", source_type: "api", agent: "key_0001", kind: "chain.created" } },
  {
    fields: { ts: "2026-01-01T00:00:00.001Z", occurred_at: "2025-12-31T23:59:59.999Z", source_type: "postgres_logical", agent: "ZID-AB12CD34", kind: "row_inserted", subject: "orders/42", actor: "app_user", idempotency_key: "ZID-AB12CD34:0/16B3748", source_position: "0/16B3748", payload_type: "application/json", batch: "ZID-AB12CD34/7" },
    payload: '{"id":42,"total":"19.99"}',
  },
  {
    fields: { ts: "2026-01-01T00:00:01.250Z", source_type: "http_webhook", agent: "ZID-WH000001", kind: "push", subject: "github/acme/repo", trace_id: "4bf92f3577b34da6a3ce929d0e0e4736", span_id: "00f067aa0ba902b7", cause: "1", payload_type: "application/json" },
    payload: '{"ref":"refs/heads/main","note":"quotes \\" and \\\\ and \\n newline"}',
  },
  {
    fields: { ts: "2026-01-01T00:00:02.000Z", source_type: "mqtt", agent: "ZID-MQ000001", kind: "message", subject: "plant/α/line-3/temp", actor: "sensor \u00e9\u20ac\ud83d\ude00 \u0001\u001f", payload_type: "application/octet-stream" },
    payload: "\u0000\u0001binary",
  },
  { fields: { ts: "2026-01-01T00:00:03.000Z", source_type: "api", agent: "key_0001", kind: "note", subject: "orders/42", cause: "a".repeat(64) } },
];

let prev = ZERO_HASH;
const vectors = inputs.map((input, seq) => {
  const payload = input.payload === undefined ? undefined : utf8.encode(input.payload);
  const s = payload ? salt(seq) : undefined;
  const envelope: Envelope = {
    v: 1,
    chain: "vectors",
    seq,
    ...input.fields,
    payload_size: payload?.length ?? 0,
    ...(payload && s ? { payload_digest: payloadDigest(s, payload) } : {}),
    prev_hash: prev,
  };
  const hash = entryHash(envelope);
  prev = hash;
  return {
    envelope,
    canonical: canonicalEnvelope(envelope),
    hash,
    ...(payload && s ? { payload_hex: toHex(payload), salt_hex: toHex(s) } : {}),
  };
});

const doc = {
  description:
    "audit-ledger entry vectors: envelope fields, their RFC 8785 canonical JSON, SHA-256 entry hash (hex), and payload digest = SHA-256(salt || payload). The entries form one valid chain 'vectors' from seq 0.",
  vectors,
};
writeFileSync(new URL("./entries.json", import.meta.url), JSON.stringify(doc, null, 2) + "\n");
console.log(`wrote ${vectors.length} vectors`);
