// Signed checkpoints (SPEC §2): C2SP tlog-checkpoints over the chain's RFC 6962 tree,
// cut automatically while entries arrive and on demand, with inclusion and consistency
// proofs a client checks against them, key rotation, and Query as of a checkpoint.
// Every root and proof here is checked client-side, trusting only the published keys.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import {
  checkConsistency,
  entryLeafHash,
  keyIdHex,
  NoteError,
  parseVerifierKey,
  ProofError,
  sodiumReady,
  toBase64,
  toHex,
  verifyInclusion,
  type OpenedCheckpoint,
} from "../chain/index.js";
import { Order } from "../gen/auditledger/v1/ledger_service_pb.js";
import type { Checkpoint } from "../gen/auditledger/v1/entry_pb.js";
import { configFromEnv } from "../server/config.js";
import { generateKeyFile, type RingKey } from "../server/checkpoints/key-ring.js";
import type { RunningServer } from "../server/ledger-server.js";
import { createLedgerClient } from "../clients/node/ledger-client.js";
import { entryToRow } from "../clients/node/entry-row.js";
import { clientFor, createKey, startTestServer, superuser, uniqueChain } from "./support/test-server.js";
import {
  clientOn,
  codeOf,
  eventually,
  isolatedDatabase,
  openCp,
  readAll,
  rootOf,
  rpcKeys,
  sample,
  verdictOf,
  wellKnown,
  wellKnownVerifiers,
  type Ledger,
} from "./support/verifiable-log.js";

/** The checkpoint origin prefix of the shared test servers (config default). */
const LEDGER_NAME = configFromEnv({}).ledgerName;
const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

let server: RunningServer;
let su: pg.Client;
beforeAll(async () => {
  await sodiumReady();
  server = await startTestServer();
  su = await superuser();
});
afterAll(async () => {
  await su.end();
  await server.close();
});

/** Appends `n` entries in one atomic batch (so any checkpoint lands on a batch boundary). */
async function appendN(ledger: Ledger, n: number, kind = "order.paid"): Promise<void> {
  await ledger.appendBatch({ events: Array.from({ length: n }, (_, i) => ({ kind, subject: `orders/${i}`, payload: json({ i }) })) });
}

async function checkpointSizes(db: pg.Client, chain: string): Promise<number[]> {
  const { rows } = await db.query<{ tree_size: string | number }>("SELECT tree_size FROM checkpoints WHERE chain = $1 ORDER BY tree_size", [chain]);
  return rows.map((r) => Number(r.tree_size));
}

describe("checkpoints on demand (GetCheckpoint fresh)", () => {
  it("are C2SP notes with origin <LEDGER_NAME>/<chain>, size = entries and the client-computed root, verifiable with the RPC and the well-known keys", async () => {
    const chain = uniqueChain("cp");
    const { ledger } = await clientFor(server, chain);
    // One atomic batch: no background checkpointer can cut a checkpoint halfway.
    await appendN(ledger, 13);

    const { checkpoint: cp } = await ledger.getCheckpoint({ fresh: true });
    const origin = `${LEDGER_NAME}/${chain}`;
    const entries = await readAll(ledger);
    expect(entries.map((e) => e.seq)).toEqual(Array.from({ length: 13 }, (_, i) => i));
    const root = rootOf(entries);

    // The note, with the keys from GetPublicKeys ...
    const viaRpc = await openCp(cp, await rpcKeys(ledger), origin);
    // ... and with the keys from the well-known URL, parsed from their verifier-key form.
    const viaWellKnown = await openCp(cp, await wellKnownVerifiers(server.url), origin);
    for (const opened of [viaRpc, viaWellKnown]) {
      expect(opened.origin).toBe(origin);
      expect(opened.size).toBe(13);
      expect(opened.root).toEqual(root);
      expect(opened.extensions).toEqual([]);
      expect(opened.signedBy.name).toBe(LEDGER_NAME);
    }
    // The message fields agree with the signed note.
    expect(cp).toMatchObject({ chain, origin, treeSize: 13n, keyId: keyIdHex(viaRpc.signedBy.keyId) });
    expect(new Uint8Array(cp!.rootHash)).toEqual(root);
    expect(Number.isNaN(Date.parse(cp!.cutAt))).toBe(false);
    // Exactly the C2SP tlog-checkpoint body: origin, size, base64 root, blank line, signature line.
    const body = `${origin}\n13\n${toBase64(root)}\n`;
    expect(cp!.signedNote.startsWith(`${body}\n— ${LEDGER_NAME} `)).toBe(true);
    expect(cp!.signedNote.slice(body.length)).toMatch(/^\n— \S+ [A-Za-z0-9+/]+=*\n$/);

    // Without fresh, the latest is returned unchanged; by size, the same note.
    expect((await ledger.getCheckpoint({})).checkpoint!.signedNote).toBe(cp!.signedNote);
    expect((await ledger.getCheckpoint({ treeSize: 13n })).checkpoint!.signedNote).toBe(cp!.signedNote);
    // A fresh call with the head unmoved cuts nothing new.
    expect((await ledger.getCheckpoint({ fresh: true })).checkpoint!.signedNote).toBe(cp!.signedNote);

    // The head moves: fresh cuts a new checkpoint over it; the old one is kept as it was.
    await appendN(ledger, 4);
    const { checkpoint: next } = await ledger.getCheckpoint({ fresh: true });
    const opened = await openCp(next, await rpcKeys(ledger), origin);
    expect(opened.size).toBe(17);
    expect(opened.root).toEqual(rootOf(await readAll(ledger)));
    expect((await ledger.getCheckpoint({ treeSize: 13n })).checkpoint!.signedNote).toBe(cp!.signedNote);
    expect(await checkpointSizes(su, chain)).toEqual([13, 17]);
  });

  it("the well-known URL and GetPublicKeys publish the same keys", async () => {
    const { ledger } = await clientFor(server, uniqueChain("keys"), ["read"]);
    const { keys } = await ledger.getPublicKeys({});
    const doc = await wellKnown(server.url);
    expect(doc.name).toBe(LEDGER_NAME);
    expect(keys.length).toBeGreaterThan(0);
    expect(doc.keys.map((k) => k.verifier_key)).toEqual(keys.map((k) => k.noteVerifierKey));
    for (const [i, k] of keys.entries()) {
      expect(k.algorithm).toBe("ed25519");
      expect(k.publicKey.length).toBe(32);
      expect(doc.keys[i]).toMatchObject({ key_id: k.keyId, algorithm: "ed25519", public_key: toBase64(k.publicKey), created_at: k.createdAt });
      // The verifier-key form carries the same key id and public key.
      const parsed = parseVerifierKey(k.noteVerifierKey);
      expect(keyIdHex(parsed.keyId)).toBe(k.keyId);
      expect(parsed.publicKey).toEqual(new Uint8Array(k.publicKey));
    }
  });
});

describe("checkpoints cut automatically (dedicated server, CHECKPOINT_INTERVAL_MS=200)", () => {
  // A database of its own: no other server's checkpointer cuts this chain, so every
  // checkpoint seen here was cut by this server's timer.
  let iso: Awaited<ReturnType<typeof isolatedDatabase>>;
  let keys: string;
  let auto: RunningServer;
  beforeAll(async () => {
    iso = await isolatedDatabase();
    keys = mkdtempSync(join(tmpdir(), "ledger-cp-auto-keys-"));
    auto = await startTestServer({ databaseUrl: iso.url, keysDir: keys, ledgerName: "ledger.test.example", checkpointIntervalMs: 200 });
  });
  afterAll(async () => {
    await auto?.close();
    await iso?.drop();
    rmSync(keys, { recursive: true, force: true });
  });

  it("a checkpoint over the head follows every batch, without anyone asking", async () => {
    const chain = uniqueChain("auto");
    const { ledger } = (await clientOn(iso.url, auto.url, chain)).client;
    const db = new pg.Client({ connectionString: iso.url });
    await db.connect();
    try {
      const cutBefore = sample(await auto.metrics.registry.metrics(), "audit_ledger_checkpoints_cut_total");
      const sizes = [5, 10, 15, 20];
      for (const size of sizes) {
        await appendN(ledger, 5);
        // Poll the table, not GetCheckpoint: GetCheckpoint would cut one on demand.
        await eventually(`a checkpoint of size ${size} cut by the 200 ms checkpointer`, async () => {
          const got = await checkpointSizes(db, chain);
          if (got.at(-1) !== size) throw new Error(`checkpoint sizes so far: [${got.join(", ")}]`);
        }, 5000);
      }
      expect(await checkpointSizes(db, chain)).toEqual(sizes);
      expect(sample(await auto.metrics.registry.metrics(), "audit_ledger_checkpoints_cut_total") - cutBefore).toBe(sizes.length);

      // Each is signed over the entries below its size, with this server's name as origin.
      const trusted = await rpcKeys(ledger);
      const entries = await readAll(ledger);
      for (const size of sizes) {
        const opened = await openCp((await ledger.getCheckpoint({ treeSize: BigInt(size) })).checkpoint, trusted, `ledger.test.example/${chain}`);
        expect(opened.size).toBe(size);
        expect(opened.root).toEqual(rootOf(entries.slice(0, size)));
      }
    } finally {
      await db.end();
    }
  });
});

describe("inclusion and consistency proofs", () => {
  const SIZES = [10, 20, 30, 37];
  let chain: string;
  let ledger: Ledger;
  let origin: string;
  const held = new Map<number, OpenedCheckpoint>();

  beforeAll(async () => {
    chain = uniqueChain("proof");
    ledger = (await clientFor(server, chain)).ledger;
    origin = `${LEDGER_NAME}/${chain}`;
    const trusted = await rpcKeys(ledger);
    let at = 0;
    for (const size of SIZES) {
      await appendN(ledger, size - at);
      at = size;
      const opened = await openCp((await ledger.getCheckpoint({ fresh: true })).checkpoint, trusted, origin);
      expect(opened.size).toBe(size);
      held.set(size, opened);
    }
  });

  it("every seq of a 37-entry chain is proven included in checkpoint 37, with at most ceil(log2 37) hashes", async () => {
    const entries = await readAll(ledger);
    const cp = held.get(37)!;
    expect(cp.root).toEqual(rootOf(entries));
    const maxLen = Math.ceil(Math.log2(37));
    for (let seq = 0; seq < 37; seq++) {
      const res = await ledger.proveInclusion({ seq: BigInt(seq), treeSize: 37n });
      expect(res.proof).toMatchObject({ leafIndex: BigInt(seq), treeSize: 37n });
      expect(res.checkpoint!.signedNote).toBe(cp.note);
      const hashes = res.proof!.hashes;
      expect(hashes.length).toBeLessThanOrEqual(maxLen);
      for (const h of hashes) expect(h.length).toBe(32);
      // The proven leaf is the returned entry's, and that entry is the one Query returns.
      const entry = entryToRow(res.entry!);
      expect(entry.seq).toBe(seq);
      expect(entry.hash).toBe(entries[seq]!.hash);
      expect(verifyInclusion(seq, 37, entryLeafHash(entry), hashes, cp.root), `inclusion of seq ${seq}`).toBe(true);
      // Another entry's leaf, or another root, does not pass with this proof.
      const other = entries[(seq + 1) % 37]!;
      expect(verifyInclusion(seq, 37, entryLeafHash(other), hashes, cp.root)).toBe(false);
      expect(verifyInclusion(seq, 37, entryLeafHash(entry), hashes, held.get(30)!.root)).toBe(false);
    }
  });

  it("proofs against an older checkpoint verify against that checkpoint's root", async () => {
    for (const size of [10, 20, 30]) {
      for (const seq of [0, size - 1, Math.floor(size / 2)]) {
        const res = await ledger.proveInclusion({ seq: BigInt(seq), treeSize: BigInt(size) });
        expect(res.proof!.treeSize).toBe(BigInt(size));
        expect(verifyInclusion(seq, size, entryLeafHash(entryToRow(res.entry!)), res.proof!.hashes, held.get(size)!.root), `seq ${seq} in ${size}`).toBe(true);
      }
    }
  });

  it("ProveConsistency between every pair of checkpoints verifies; from_size 0 and equal sizes give empty proofs", async () => {
    for (const a of SIZES) {
      for (const b of SIZES) {
        if (a > b) continue;
        const res = await ledger.proveConsistency({ fromSize: BigInt(a), toSize: BigInt(b) });
        expect(res).toMatchObject({ fromSize: BigInt(a), toSize: BigInt(b) });
        if (a === b) expect(res.hashes).toEqual([]);
        for (const h of res.hashes) expect(h.length).toBe(32);
        expect(() => checkConsistency(a, b, held.get(a)!.root, held.get(b)!.root, res.hashes), `${a} → ${b}`).not.toThrow();
        // The proof is bound to the roots: a byte flipped, or a root swapped, fails.
        if (res.hashes.length > 0) {
          const bad = res.hashes.map((h) => new Uint8Array(h));
          bad[0]![0]! ^= 1;
          expect(() => checkConsistency(a, b, held.get(a)!.root, held.get(b)!.root, bad)).toThrow(ProofError);
          expect(() => checkConsistency(a, b, held.get(b)!.root, held.get(b)!.root, res.hashes)).toThrow(ProofError);
        }
      }
    }
    for (const b of SIZES) {
      const res = await ledger.proveConsistency({ fromSize: 0n, toSize: BigInt(b) });
      expect(res.hashes).toEqual([]);
    }
    // to_size 0 is the latest checkpoint.
    const latest = await ledger.proveConsistency({ fromSize: 10n, toSize: 0n });
    expect(latest.toSize).toBe(37n);
    expect(() => checkConsistency(10, 37, held.get(10)!.root, held.get(37)!.root, latest.hashes)).not.toThrow();
  });

  it("ProveInclusion with tree_size 0 uses the latest checkpoint, cutting a fresh one when it does not cover the seq", async () => {
    const c = uniqueChain("proof-fresh");
    const { ledger: l } = await clientFor(server, c);
    await appendN(l, 6);
    const first = await l.proveInclusion({ seq: 4n });
    expect(first.checkpoint!.treeSize).toBe(6n);
    await appendN(l, 3);
    const res = await l.proveInclusion({ seq: 7n });
    expect(res.checkpoint!.treeSize).toBe(9n);
    const opened = await openCp(res.checkpoint, await rpcKeys(l), `${LEDGER_NAME}/${c}`);
    expect(opened.root).toEqual(rootOf(await readAll(l)));
    expect(verifyInclusion(7, 9, entryLeafHash(entryToRow(res.entry!)), res.proof!.hashes, opened.root)).toBe(true);
  });
});

describe("bad input: the exact Connect code, and nothing changes", () => {
  let chain: string;
  let ledger: Ledger;
  beforeAll(async () => {
    chain = uniqueChain("bad");
    ledger = (await clientFor(server, chain)).ledger;
    await appendN(ledger, 12);
    await ledger.getCheckpoint({ fresh: true });
  });

  async function state() {
    const stats = await ledger.getStats({});
    const redactions = await su.query("SELECT count(*)::int AS n FROM redactions WHERE chain = $1", [chain]);
    return { count: stats.count, head: stats.headHash, checkpoints: await checkpointSizes(su, chain), redactions: redactions.rows[0].n as number };
  }

  it.each([
    ["ProveInclusion seq >= tree_size", "InvalidArgument", (l: Ledger) => l.proveInclusion({ seq: 12n, treeSize: 12n })],
    ["ProveInclusion tree_size that is no checkpoint's", "NotFound", (l: Ledger) => l.proveInclusion({ seq: 3n, treeSize: 11n })],
    ["ProveInclusion seq beyond the head", "NotFound", (l: Ledger) => l.proveInclusion({ seq: 12n })],
    ["ProveInclusion seq far beyond the head", "NotFound", (l: Ledger) => l.proveInclusion({ seq: 1_000_000n })],
    ["ProveInclusion seq beyond any chain", "InvalidArgument", (l: Ledger) => l.proveInclusion({ seq: 2n ** 63n })],
    ["ProveConsistency from_size > to_size", "InvalidArgument", (l: Ledger) => l.proveConsistency({ fromSize: 12n, toSize: 5n })],
    ["ProveConsistency to_size beyond the head", "InvalidArgument", (l: Ledger) => l.proveConsistency({ fromSize: 5n, toSize: 13n })],
    ["GetCheckpoint fresh with a tree_size", "InvalidArgument", (l: Ledger) => l.getCheckpoint({ fresh: true, treeSize: 12n })],
    ["GetCheckpoint of a size that is no checkpoint's", "NotFound", (l: Ledger) => l.getCheckpoint({ treeSize: 11n })],
    ["Query as_of a size that is no checkpoint's", "NotFound", (l: Ledger) => l.query({ asOfTreeSize: 11n })],
    ["Query as_of 0", "InvalidArgument", (l: Ledger) => l.query({ asOfTreeSize: 0n })],
  ])("%s → %s", async (_what, code, call) => {
    const before = await state();
    expect(await codeOf(call(ledger))).toBe(code);
    expect(await state()).toEqual(before);
  });

  it("GetCheckpoint on an empty chain is NotFound, fresh or not, and creates nothing", async () => {
    const empty = uniqueChain("empty");
    const { ledger: l } = await clientFor(server, empty, ["read"]);
    expect(await codeOf(l.getCheckpoint({}))).toBe("NotFound");
    expect(await codeOf(l.getCheckpoint({ fresh: true }))).toBe("NotFound");
    expect(await codeOf(l.proveInclusion({ seq: 0n }))).toBe("NotFound");
    expect(await checkpointSizes(su, empty)).toEqual([]);
    const { rows } = await su.query("SELECT count(*)::int AS n FROM entries WHERE chain = $1", [empty]);
    expect(rows[0].n).toBe(0);
  });

  it("read-only and append-only keys cannot RedactPayload (PermissionDenied)", async () => {
    const before = await state();
    for (const scopes of [["read"], ["append"], ["append", "read"]] as const) {
      const c = createLedgerClient({ baseUrl: server.url, apiKey: await createKey(chain, [...scopes]) });
      expect(await codeOf(c.ledger.redactPayload({ seq: 3n, reason: "gdpr" })), scopes.join("+")).toBe("PermissionDenied");
    }
    expect(await state()).toEqual(before);
    expect((await ledger.getEvent({ seq: 3n, includePayload: true })).entry!.redacted).toBe(false);
  });

  it("a key of another chain sees none of this chain's checkpoints, proofs or redactions (PermissionDenied)", async () => {
    const before = await state();
    const other = createLedgerClient({ baseUrl: server.url, apiKey: await createKey(uniqueChain("other")) });
    await other.ledger.append({ event: { kind: "elsewhere" } });
    const calls: [string, Promise<unknown>][] = [
      ["GetCheckpoint", other.ledger.getCheckpoint({ chain })],
      ["GetCheckpoint fresh", other.ledger.getCheckpoint({ chain, fresh: true })],
      ["ProveInclusion", other.ledger.proveInclusion({ chain, seq: 0n })],
      ["ProveConsistency", other.ledger.proveConsistency({ chain, fromSize: 0n, toSize: 12n })],
      ["GetPublicKeys", other.ledger.getPublicKeys({ chain })],
      ["RedactPayload", other.ledger.redactPayload({ chain, seq: 3n, reason: "not yours" })],
      ["Query as_of", other.ledger.query({ chain, asOfTreeSize: 12n })],
    ];
    for (const [what, call] of calls) expect(await codeOf(call), what).toBe("PermissionDenied");
    expect(await state()).toEqual(before);
    // With no chain named, its own (other) chain's checkpoint is what it gets.
    const own = await other.ledger.getCheckpoint({ fresh: true });
    expect(own.checkpoint!.chain).not.toBe(chain);
  });
});

describe("key rotation (dedicated servers, each with its own keys folder and database)", () => {
  // Its own database: every server's checkpointer signs every chain of its database,
  // so a server with other keys must not share one with the rest of the run.
  const cleanups: (() => Promise<void>)[] = [];
  async function rotationServer(checkpointIntervalMs: number) {
    const iso = await isolatedDatabase();
    const keysDir = mkdtempSync(join(tmpdir(), "ledger-rotation-keys-"));
    const rot = await startTestServer({ databaseUrl: iso.url, keysDir, checkpointIntervalMs });
    cleanups.push(async () => {
      await rot.close();
      await iso.drop();
      rmSync(keysDir, { recursive: true, force: true });
    });
    const chain = uniqueChain("rot");
    const { ledger } = (await clientOn(iso.url, rot.url, chain)).client;
    return { rot, keysDir, chain, ledger, origin: `${LEDGER_NAME}/${chain}` };
  }
  afterAll(async () => {
    for (const c of cleanups) await c();
  });

  /** Everything a rotation must keep true once checkpoint B (size 8) was cut after it. */
  async function expectRotated(r: Awaited<ReturnType<typeof rotationServer>>, a: Checkpoint, b: Checkpoint, key2: RingKey) {
    const { ledger, origin, rot } = r;
    const published = (await ledger.getPublicKeys({})).keys;
    expect(published.map((k) => k.keyId)).toEqual([a.keyId, keyIdHex(key2.signer.keyId)]);
    expect(published[0]!.retiredAt).toBe(key2.createdAt);
    expect(published[1]!.retiredAt).toBe("");
    const [key1v, key2v] = await rpcKeys(ledger);

    const doc = await wellKnown(rot.url);
    expect(doc.keys.map((k) => k.key_id)).toEqual([a.keyId, b.keyId]);
    expect(doc.keys[0]!.retired_at).toBe(key2.createdAt);
    expect(doc.keys[1]!.retired_at).toBeUndefined();

    // B verifies with key 2 only; A still verifies with key 1 only.
    const openedB = await openCp(b, [key2v!], origin);
    expect(openedB.size).toBe(8);
    await expect(openCp(b, [key1v!], origin)).rejects.toThrow(NoteError);
    const aAgain = (await ledger.getCheckpoint({ treeSize: 5n })).checkpoint!;
    expect(aAgain.signedNote).toBe(a.signedNote);
    const openedA = await openCp(aAgain, [key1v!], origin);
    await expect(openCp(aAgain, [key2v!], origin)).rejects.toThrow(NoteError);

    // The tree grew append-only across the rotation, and Verify holds both checkpoints.
    const cons = await ledger.proveConsistency({ fromSize: 5n, toSize: 8n });
    expect(() => checkConsistency(5, 8, openedA.root, openedB.root, cons.hashes)).not.toThrow();
    expect(await verdictOf(ledger)).toMatchObject({ valid: true, checked: 8n });
    // The well-known keys verify both as well.
    const wk = await wellKnownVerifiers(rot.url);
    expect((await openCp(aAgain, wk, origin)).size).toBe(5);
    expect((await openCp(b, wk, origin)).size).toBe(8);
  }

  it("periodic checkpoints: the new key signs the next checkpoint; the old one is published as retired and still verifies what it signed", async () => {
    const r = await rotationServer(200);
    const { ledger, rot, keysDir } = r;
    await appendN(ledger, 5);
    const a = (await ledger.getCheckpoint({ fresh: true })).checkpoint!;
    const before = (await ledger.getPublicKeys({})).keys;
    expect(before).toHaveLength(1);
    expect(before[0]).toMatchObject({ keyId: a.keyId, retiredAt: "" });

    // Rotation: a new key file of the same name in the folder, picked up by the timer.
    const key2 = await generateKeyFile(keysDir, LEDGER_NAME);
    await eventually("the 200 ms checkpointer picks up the new key", async () => {
      expect(keyIdHex(rot.checkpointer.keys.active().keyId)).toBe(keyIdHex(key2.signer.keyId));
    }, 5000);
    await appendN(ledger, 3);
    const b = await eventually("the 200 ms checkpointer cuts checkpoint 8", async () => (await ledger.getCheckpoint({ treeSize: 8n })).checkpoint!, 5000);
    expect(b.keyId).toBe(keyIdHex(key2.signer.keyId));
    expect(b.keyId).not.toBe(a.keyId);
    await expectRotated(r, a, b, key2);
  });

  it("on demand: GetCheckpoint fresh right after a rotation signs with the new key", async () => {
    // No timer: nothing but the on-demand call can pick the new key up.
    const r = await rotationServer(0);
    const { ledger, keysDir } = r;
    await appendN(ledger, 5);
    const a = (await ledger.getCheckpoint({ fresh: true })).checkpoint!;
    const key2 = await generateKeyFile(keysDir, LEDGER_NAME);
    await appendN(ledger, 3);
    const b = (await ledger.getCheckpoint({ fresh: true })).checkpoint!;
    expect(b.treeSize).toBe(8n);
    expect(
      b.keyId,
      "checkpoint B was cut on demand after the rotation, yet signed by the old key: Checkpointer.cut() does not reload the key ring (server/checkpoints/checkpointer.ts)",
    ).toBe(keyIdHex(key2.signer.keyId));
    await expectRotated(r, a, b, key2);
  });
});

describe("Query as of a checkpoint", () => {
  it("returns only the entries below the checkpoint's size; a size that is no checkpoint's is NotFound", async () => {
    const chain = uniqueChain("asof");
    const { ledger } = await clientFor(server, chain);
    await appendN(ledger, 10, "order.created");
    const cp10 = (await ledger.getCheckpoint({ fresh: true })).checkpoint!;
    await appendN(ledger, 15, "order.paid");
    const cp25 = (await ledger.getCheckpoint({ fresh: true })).checkpoint!;
    await appendN(ledger, 5, "order.created");
    const trusted = await rpcKeys(ledger);

    const at10 = await readAll(ledger, { asOfTreeSize: 10n });
    expect(at10.map((e) => e.seq)).toEqual(Array.from({ length: 10 }, (_, i) => i));
    const at25 = await readAll(ledger, { asOfTreeSize: 25n });
    expect(at25.map((e) => e.seq)).toEqual(Array.from({ length: 25 }, (_, i) => i));
    // What the query returns is exactly the state the checkpoint signs.
    expect(rootOf(at10)).toEqual((await openCp(cp10, trusted, `${LEDGER_NAME}/${chain}`)).root);
    expect(rootOf(at25)).toEqual((await openCp(cp25, trusted, `${LEDGER_NAME}/${chain}`)).root);
    // With filters and either order, still nothing at or beyond the size.
    const created = await ledger.query({ asOfTreeSize: 25n, filter: { kind: "order.created" }, limit: 1000 });
    expect(created.entries.map((e) => Number(e.seq))).toEqual(Array.from({ length: 10 }, (_, i) => i));
    const desc = await ledger.query({ asOfTreeSize: 25n, order: Order.DESCENDING, limit: 3 });
    expect(desc.entries.map((e) => Number(e.seq))).toEqual([24, 23, 22]);
    const narrowed = await ledger.query({ asOfTreeSize: 10n, filter: { fromSeq: 5n, toSeq: 20n }, limit: 1000 });
    expect(narrowed.entries.map((e) => Number(e.seq))).toEqual([5, 6, 7, 8, 9]);
    // Without as_of, all 30.
    expect((await readAll(ledger)).length).toBe(30);

    expect(await codeOf(ledger.query({ asOfTreeSize: 12n }))).toBe("NotFound");
    expect(await codeOf(ledger.query({ asOfTreeSize: 1000n }))).toBe("NotFound");
  });
});

describe("a chain sequenced before the tree existed (schema 0001)", () => {
  it("is not cut (FailedPrecondition, no tamper refusal); its next append builds the tree, which then checkpoints and verifies", async () => {
    const iso = await isolatedDatabase();
    const keys = mkdtempSync(join(tmpdir(), "legacy-keys-"));
    const legacy = await startTestServer({ databaseUrl: iso.url, keysDir: keys, checkpointIntervalMs: 0 });
    try {
      const chain = uniqueChain("legacy");
      const { client } = await clientOn(iso.url, legacy.url, chain);
      for (let i = 0; i < 21; i++) await client.ledger.append({ event: { kind: "old.event", payload: new TextEncoder().encode(`{"i":${i}}`) } });
      // Make it look like a 0001 chain: no stored nodes, no tree root.
      const su = new pg.Client({ connectionString: iso.url });
      await su.connect();
      try {
        await su.query("SET session_replication_role = replica");
        await su.query("DELETE FROM merkle_nodes WHERE chain = $1", [chain]);
        await su.query("UPDATE chains SET tree_root = NULL WHERE chain = $1", [chain]);
      } finally {
        await su.end();
      }
      await legacy.checkpointer.cutDue();
      expect(await codeOf(client.ledger.getCheckpoint({ fresh: true }))).toBe("FailedPrecondition");
      const metrics = await legacy.metrics.registry.metrics();
      expect(metrics).not.toMatch(new RegExp(`audit_ledger_checkpoint_refusals_total\\{chain="${chain}"\\} [1-9]`));

      await client.ledger.append({ event: { kind: "new.event" } });
      const cp = (await client.ledger.getCheckpoint({ fresh: true })).checkpoint!;
      expect(cp.treeSize).toBe(22n);
      const entries = await readAll(client.ledger);
      expect(Buffer.from(cp.rootHash).toString("hex")).toBe(toHex(rootOf(entries)));
      const v = await verdictOf(client.ledger);
      expect(v).toMatchObject({ valid: true, checked: 22n, checkpointsChecked: 1n });
      const p = await client.ledger.proveInclusion({ seq: 7n });
      expect(verifyInclusion(7, 22, entryLeafHash(entryToRow(p.entry!)), p.proof!.hashes, cp.rootHash)).toBe(true);
    } finally {
      await legacy.close();
      await iso.drop();
      rmSync(keys, { recursive: true, force: true });
    }
  });
});
