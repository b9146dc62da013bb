// Crypto-shredding (SPEC §2): erasing a payload deletes its bytes and salt and appends
// a `redaction` entry saying who and why; the chain still verifies and reports the seq
// as redacted. The bytes are gone from the database for good, and a "redaction" forged
// by someone with database access is reported as a broken payload, not a redaction.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type pg from "pg";
import { entryLeafHash, sodiumReady, verifyInclusion } from "../chain/index.js";
import { BreakKind } from "../gen/auditledger/v1/ledger_service_pb.js";
import { configFromEnv } from "../server/config.js";
import type { RunningServer } from "../server/ledger-server.js";
import { createLedgerClient } from "../clients/node/ledger-client.js";
import { entryToRow } from "../clients/node/entry-row.js";
import { createKey, databaseUrl, startTestServer, superuser, uniqueChain } from "./support/test-server.js";
import { codeOf, keyIdOf, openCp, rpcKeys, verdictOf, type Ledger } from "./support/verifiable-log.js";

const LEDGER_NAME = configFromEnv({}).ledgerName;
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
/** A distinctive secret: 24 random URL-safe characters. */
const newSecret = () => randomBytes(18).toString("base64url");

let server: RunningServer;
beforeAll(async () => {
  await sodiumReady();
  server = await startTestServer();
});
afterAll(() => server.close());

/** An admin client of a fresh chain, and its key id (the actor of its redactions). */
async function adminOf(chain: string): Promise<{ ledger: Ledger; keyId: string }> {
  const token = await createKey(chain, ["append", "read", "admin"]);
  return { ledger: createLedgerClient({ baseUrl: server.url, apiKey: token }).ledger, keyId: keyIdOf(token) };
}

describe("RedactPayload", () => {
  let chain: string;
  let ledger: Ledger;
  let keyId: string;
  const secret = newSecret();
  const REASON = "GDPR art. 17 erasure request #4711";
  // seq 0: no payload; seq 1: the secret; seq 2: another payload.
  beforeAll(async () => {
    chain = uniqueChain("redact");
    ({ ledger, keyId } = await adminOf(chain));
    await ledger.append({ event: { kind: "session.opened", subject: "users/7" } });
    await ledger.append({ event: { kind: "user.updated", subject: "users/7", payload: enc(JSON.stringify({ card: secret, user: 7 })) } });
    await ledger.append({ event: { kind: "user.updated", subject: "users/8", payload: enc(JSON.stringify({ user: 8 })) } });
  });

  it("erases the payload and salt and appends a redaction entry by the admin key, saying who and why; the chain still verifies", async () => {
    const target = (await ledger.getEvent({ seq: 1n, includePayload: true })).entry!;
    expect(dec(target.payload)).toContain(secret);
    expect(target.payloadSalt).toMatch(/^[0-9a-f]+$/);

    const { redaction } = await ledger.redactPayload({ seq: 1n, reason: REASON });
    expect(redaction).toMatchObject({ seq: 3n, kind: "redaction", actor: keyId, agent: keyId, subject: "users/7", cause: "1" });
    const record = (await ledger.getEvent({ seq: 3n, includePayload: true })).entry!;
    expect(record.hash).toBe(redaction!.hash);
    expect(JSON.parse(dec(record.payload))).toEqual({ redacts_seq: 1, reason: REASON, requested_by: keyId });

    const after = (await ledger.getEvent({ seq: 1n, includePayload: true })).entry!;
    expect(after.redacted).toBe(true);
    expect(after.payload).toEqual(new Uint8Array(0));
    expect(after.payloadSalt).toBe("");
    // The entry itself is untouched: same hash, same committed digest and size.
    expect(after).toMatchObject({ hash: target.hash, payloadDigest: target.payloadDigest, payloadSize: target.payloadSize, prevHash: target.prevHash });
    // Query agrees.
    const q = await ledger.query({ includePayload: true, filter: { fromSeq: 1n, toSeq: 2n } });
    expect(q.entries[0]).toMatchObject({ seq: 1n, redacted: true, payloadSalt: "" });
    expect(q.entries[0]!.payload.length).toBe(0);

    const v = await verdictOf(ledger);
    expect(v).toMatchObject({ valid: true, checked: 4n, redacted: [1n] });
    expect(v.firstBreakAt).toBeUndefined();
    // The redacted entry is still proven included in a signed checkpoint.
    const proof = await ledger.proveInclusion({ seq: 1n });
    const cp = await openCp(proof.checkpoint, await rpcKeys(ledger), `${LEDGER_NAME}/${chain}`);
    expect(verifyInclusion(1, cp.size, entryLeafHash(entryToRow(proof.entry!)), proof.proof!.hashes, cp.root)).toBe(true);
  });

  it("repeating the call returns the same redaction entry, and appends nothing", async () => {
    const count = (await ledger.getStats({})).count;
    const again = await ledger.redactPayload({ seq: 1n, reason: REASON });
    expect(again.redaction).toMatchObject({ seq: 3n, kind: "redaction" });
    const other = await ledger.redactPayload({ seq: 1n, reason: "another reason" });
    expect(other.redaction).toMatchObject({ seq: 3n });
    expect((await ledger.getStats({})).count).toBe(count);
    const { rows } = await (async () => {
      const su = await superuser();
      try {
        return await su.query("SELECT seq, redaction_seq, actor, reason FROM redactions WHERE chain = $1", [chain]);
      } finally {
        await su.end();
      }
    })();
    expect(rows).toEqual([{ seq: 1, redaction_seq: 3, actor: keyId, reason: REASON }]);
  });

  it("ten concurrent erasures of one seq: one redaction entry, every caller gets it; a squatted idempotency key changes nothing", async () => {
    const target = await ledger.append({ event: { kind: "doc.saved", payload: new TextEncoder().encode('{"x":1}') } });
    const seq = target.entry!.seq;
    // An appender taking the key an older design used for redactions must not block one.
    await ledger.append({ event: { kind: "doc.saved", idempotencyKey: `redaction:${seq}` } });
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => ledger.redactPayload({ seq, reason: `race ${i}` })));
    const seqs = new Set(results.map((r) => r.redaction!.seq));
    expect(seqs.size).toBe(1);
    const redaction = results[0]!.redaction!;
    expect(redaction.kind).toBe("redaction");
    expect(redaction.cause).toBe(String(seq));
    const redactions = (await ledger.query({ filter: { kind: "redaction", fromSeq: seq } })).entries;
    expect(redactions.map((e) => e.seq)).toEqual([redaction.seq]);
    const erased = (await ledger.getEvent({ seq, includePayload: true })).entry!;
    expect(erased).toMatchObject({ redacted: true, payloadSalt: "" });
    expect(erased.payload.length).toBe(0);
  });

  it.each([
    ["an entry without payload", "FailedPrecondition", { seq: 0n, reason: "nothing to erase" }],
    ["the redaction entry itself", "FailedPrecondition", { seq: 3n, reason: "erase the erasure" }],
    ["an empty reason", "InvalidArgument", { seq: 2n, reason: "" }],
    ["a blank reason", "InvalidArgument", { seq: 2n, reason: "   " }],
    ["an unknown seq", "NotFound", { seq: 999n, reason: "no such entry" }],
  ])("redacting %s → %s, and nothing changes", async (_what, code, req) => {
    const before = await ledger.getStats({});
    expect(await codeOf(ledger.redactPayload(req))).toBe(code);
    const after = await ledger.getStats({});
    expect(after).toMatchObject({ count: before.count, headHash: before.headHash });
    expect((await ledger.getEvent({ seq: 2n, includePayload: true })).entry!.redacted).toBe(false);
  });

  it("a key without the admin scope → PermissionDenied, and nothing changes", async () => {
    const before = await ledger.getStats({});
    const rw = createLedgerClient({ baseUrl: server.url, apiKey: await createKey(chain, ["append", "read"]) });
    expect(await codeOf(rw.ledger.redactPayload({ seq: 2n, reason: "not allowed" }))).toBe("PermissionDenied");
    expect((await ledger.getStats({})).count).toBe(before.count);
    expect((await ledger.getEvent({ seq: 2n, includePayload: true })).entry!.payload.length).toBeGreaterThan(0);
  });
});

/** pg_dump of the same major version as the server: `pg_config --bindir`, the Debian path, or PATH. */
function pgDumpBinary(): string {
  const candidates: string[] = [];
  try {
    candidates.push(join(execFileSync("pg_config", ["--bindir"], { encoding: "utf8" }).trim(), "pg_dump"));
  } catch {
    // no pg_config on PATH
  }
  candidates.push("/usr/lib/postgresql/15/bin/pg_dump");
  return candidates.find((c) => existsSync(c)) ?? "pg_dump";
}

describe("an erased payload is unrecoverable from the database", () => {
  it("pg_dump --data-only holds neither the secret (as text or hex) nor its salt; an unredacted payload shows up (control)", async () => {
    const chain = uniqueChain("shred");
    const { ledger } = await adminOf(chain);
    const secret = newSecret();
    const kept = newSecret();
    await ledger.append({ event: { kind: "user.created", payload: enc(JSON.stringify({ ssn: secret })) } });
    await ledger.append({ event: { kind: "user.created", payload: enc(JSON.stringify({ ssn: kept })) } });
    const salt = (await ledger.getEvent({ seq: 0n, includePayload: true })).entry!.payloadSalt;
    const keptSalt = (await ledger.getEvent({ seq: 1n, includePayload: true })).entry!.payloadSalt;
    expect(salt).toMatch(/^[0-9a-f]{16,}$/);
    await ledger.redactPayload({ seq: 0n, reason: "erasure request" });

    const dir = mkdtempSync(join(tmpdir(), "ledger-dump-"));
    try {
      const file = join(dir, "dump.sql");
      execFileSync(pgDumpBinary(), ["--data-only", `--dbname=${databaseUrl()}`, `--file=${file}`], { stdio: ["ignore", "ignore", "pipe"] });
      const dump = readFileSync(file, "utf8");
      const hex = (s: string) => Buffer.from(s, "utf8").toString("hex");
      // Control: the dump does carry payloads (bytea as hex) and salts of live entries.
      expect(dump).toContain(hex(kept));
      expect(dump).toContain(keptSalt);
      // The erased ones are nowhere.
      expect(dump.includes(secret), "the secret as text").toBe(false);
      expect(dump.includes(hex(secret)), "the secret as hex").toBe(false);
      expect(dump.toLowerCase().includes(salt), "the erased entry's salt").toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(await verdictOf(ledger)).toMatchObject({ valid: true, redacted: [0n] });
  });
});

describe("a redaction forged with database access", () => {
  let su: pg.Client;
  beforeAll(async () => {
    su = await superuser();
    await su.query("SET session_replication_role = replica");
  });
  afterAll(() => su.end());

  async function chainOf6(): Promise<{ chain: string; ledger: Ledger }> {
    const chain = uniqueChain("forge");
    const { ledger } = await adminOf(chain);
    await ledger.appendBatch({ events: Array.from({ length: 6 }, (_, i) => ({ kind: "doc.saved", subject: `docs/${i}`, payload: enc(JSON.stringify({ i })) })) });
    return { chain, ledger };
  }

  /** Deletes seq's payload and records it as erased by entry `by`, as only the redaction path may. */
  async function forge(chain: string, seq: number, by: number): Promise<void> {
    await su.query("DELETE FROM payloads WHERE chain = $1 AND seq = $2", [chain, seq]);
    await su.query("INSERT INTO redactions (chain, seq, redaction_seq, actor, reason) VALUES ($1, $2, $3, 'mallory', 'cover-up')", [chain, seq, by]);
  }

  async function expectPayloadBreak(ledger: Ledger, seq: number): Promise<void> {
    const v = await verdictOf(ledger);
    expect(v).toMatchObject({ valid: false, breakKind: BreakKind.PAYLOAD_MISMATCH, firstBreakAt: BigInt(seq) });
    expect(v.redacted, `seq ${seq} must not be reported as redacted`).not.toContain(BigInt(seq));
  }

  it("pointing at an unrelated ordinary entry: PAYLOAD_MISMATCH at that seq, not redacted", async () => {
    const { chain, ledger } = await chainOf6();
    await forge(chain, 2, 4);
    await expectPayloadBreak(ledger, 2);
  });

  it("pointing at a genuine redaction entry that erased another seq: PAYLOAD_MISMATCH, not redacted", async () => {
    const { chain, ledger } = await chainOf6();
    const { redaction } = await ledger.redactPayload({ seq: 1n, reason: "genuine" });
    expect(await verdictOf(ledger)).toMatchObject({ valid: true, redacted: [1n] });
    await forge(chain, 3, Number(redaction!.seq));
    await expectPayloadBreak(ledger, 3);
  });

  it("a payload put back beside a genuine erasure: PAYLOAD_MISMATCH at that seq, and GetEvent never serves it", async () => {
    const { chain, ledger } = await chainOf6();
    await ledger.redactPayload({ seq: 3n, reason: "genuine" });
    await su.query("INSERT INTO payloads (chain, seq, salt, payload) VALUES ($1, 3, '\\x00', convert_to('FABRICATED', 'UTF8'))", [chain]);
    await expectPayloadBreak(ledger, 3);
    const e = (await ledger.getEvent({ seq: 3n, includePayload: true })).entry!;
    expect(e.redacted).toBe(true);
    expect(e.payload.length).toBe(0);
    expect(e.payloadSalt).toBe("");
  });

  it("the server's own role cannot erase a payload by recording a redaction itself: the trigger wants a redaction entry", async () => {
    const { chain } = await chainOf6();
    await server.db.query("INSERT INTO redactions (chain, seq, redaction_seq, actor, reason) VALUES ($1, 2, 4, 'mallory', 'cover-up')", [chain]);
    await expect(server.db.query("DELETE FROM payloads WHERE chain = $1 AND seq = 2", [chain])).rejects.toThrow(/no recorded redaction/);
  });

  it("pointing at a seq that does not exist, or at an earlier entry: PAYLOAD_MISMATCH, not redacted", async () => {
    for (const by of [999, 0]) {
      const { chain, ledger } = await chainOf6();
      await forge(chain, 2, by);
      await expectPayloadBreak(ledger, 2);
    }
  });
});
