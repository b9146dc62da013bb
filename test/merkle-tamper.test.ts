// The Merkle tree and signed checkpoints catch what the hash chain alone cannot: an
// attacker with superuser access (triggers off, as a DBA could) who rewrites an entry
// AND recomputes every later hash, every stored tree node and the chain head. A client
// holding earlier checkpoints, Verify, and the checkpointer itself all notice.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type pg from "pg";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  checkConsistency,
  coverage,
  entryHash,
  entryLeafHash,
  fromBase64,
  inclusionProofRanges,
  NoteError,
  ProofError,
  sodiumReady,
  toBase64,
  toHex,
  verifyInclusion,
  type NodeId,
  type OpenedCheckpoint,
  type StoredEntry,
} from "../chain/index.js";
import { BreakKind } from "../gen/auditledger/v1/ledger_service_pb.js";
import { configFromEnv } from "../server/config.js";
import type { RunningServer } from "../server/ledger-server.js";
import { entryToRow } from "../clients/node/entry-row.js";
import { inclusionProof } from "../server/merkle/tree-store.js";
import { clientFor, startTestServer, superuser, uniqueChain } from "./support/test-server.js";
import { codeOf, openCp, readAll, rootOf, rpcKeys, sample, treeOf, verdictOf, type Ledger } from "./support/verifiable-log.js";

const LEDGER_NAME = configFromEnv({}).ledgerName;
const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

let server: RunningServer;
let su: pg.Client;
beforeAll(async () => {
  await sodiumReady();
  server = await startTestServer();
  su = await superuser();
  // The attacker is a superuser who switches the append-only triggers off for the session.
  await su.query("SET session_replication_role = replica");
});
afterAll(async () => {
  await su.end();
  await server.close();
});

interface Fixture {
  chain: string;
  ledger: Ledger;
  origin: string;
  /** Checkpoints fetched (and verified) by the client before any attack, by size. */
  held: Map<number, OpenedCheckpoint>;
}

/** A chain of `batches` atomic batches, with a fresh checkpoint after each. */
async function chainWithCheckpoints(prefix: string, batches: number[]): Promise<Fixture> {
  const chain = uniqueChain(prefix);
  const { ledger } = await clientFor(server, chain);
  const origin = `${LEDGER_NAME}/${chain}`;
  const trusted = await rpcKeys(ledger);
  const held = new Map<number, OpenedCheckpoint>();
  let size = 0;
  for (const n of batches) {
    await ledger.appendBatch({ events: Array.from({ length: n }, (_, i) => ({ kind: "order.paid", subject: `orders/${size + i}`, payload: json({ n: size + i }) })) });
    size += n;
    const opened = await openCp((await ledger.getCheckpoint({ fresh: true })).checkpoint, trusted, origin);
    expect(opened.size).toBe(size);
    held.set(size, opened);
  }
  return { chain, ledger, origin, held };
}

async function checkpointSizes(chain: string): Promise<number[]> {
  const { rows } = await su.query<{ tree_size: string | number }>("SELECT tree_size FROM checkpoints WHERE chain = $1 ORDER BY tree_size", [chain]);
  return rows.map((r) => Number(r.tree_size));
}

/** Replaces the chain's stored tree with the one over `entries` (levels >= 1 only, as the server stores it). */
async function rewriteTree(chain: string, entries: StoredEntry[]): Promise<Uint8Array> {
  const { frontier, nodes } = treeOf(entries);
  const inner = nodes.filter((n) => n.level > 0);
  await su.query("DELETE FROM merkle_nodes WHERE chain = $1", [chain]);
  await su.query(
    `INSERT INTO merkle_nodes (chain, level, idx, hash)
     SELECT $1, n.level, n.idx, decode(n.hash, 'hex') FROM unnest($2::smallint[], $3::bigint[], $4::text[]) AS n(level, idx, hash)`,
    [chain, inner.map((n) => n.level), inner.map((n) => n.index), inner.map((n) => toHex(n.hash))],
  );
  return frontier.root();
}

async function refusals(chain: string): Promise<number> {
  return sample(await server.metrics.registry.metrics(), "audit_ledger_checkpoint_refusals_total", `chain="${chain}"`);
}

describe("an entry rewritten with every later hash, the stored tree and the head recomputed", () => {
  let f: Fixture;
  const K = 25;
  beforeAll(async () => {
    f = await chainWithCheckpoints("rewrite", [20, 20]);
    expect(await checkpointSizes(f.chain)).toEqual([20, 40]);

    // The attack: edit seq 25, relink and rehash 25..39, rebuild the tree, move the head.
    const forged = await readAll(f.ledger);
    forged[K] = { ...forged[K]!, kind: "order.refunded" };
    for (let s = K; s < forged.length; s++) {
      const e = forged[s]!;
      if (s > K) e.prev_hash = forged[s - 1]!.hash;
      e.hash = entryHash(e);
      await su.query("UPDATE entries SET kind = $3, prev_hash = decode($4, 'hex'), hash = decode($5, 'hex') WHERE chain = $1 AND seq = $2", [
        f.chain,
        s,
        e.kind,
        e.prev_hash,
        e.hash,
      ]);
    }
    const root = await rewriteTree(f.chain, forged);
    await su.query("UPDATE chains SET head_hash = decode($2, 'hex'), tree_root = $3 WHERE chain = $1", [f.chain, forged.at(-1)!.hash, Buffer.from(root)]);
    // The forgery is self-consistent: the hash chain alone would not show it.
    const stored = await readAll(f.ledger);
    expect(stored[K]!.kind).toBe("order.refunded");
    for (let s = 1; s < stored.length; s++) expect(stored[s]!.prev_hash).toBe(stored[s - 1]!.hash);
    for (const e of stored) expect(entryHash(e)).toBe(e.hash);
  });

  it("Verify: ROOT_MISMATCH, first_break_at 20 (the last checkpoint that still matches), naming checkpoint 40", async () => {
    const v = await verdictOf(f.ledger);
    expect(v).toMatchObject({ valid: false, breakKind: BreakKind.ROOT_MISMATCH, firstBreakAt: 20n });
    expect(v.reason).toMatch(/checkpoint 40\b/);
  });

  it("a Verify of a range that stops short of checkpoint 40 is still held to it (through the stored tree after the range)", async () => {
    for (const toSeq of [30n, 26n, 39n]) {
      const v = await verdictOf(f.ledger, { toSeq });
      expect(v, `Verify [0, ${toSeq})`).toMatchObject({ valid: false, breakKind: BreakKind.ROOT_MISMATCH, firstBreakAt: 20n });
      expect(v.reason).toMatch(/checkpoint 40\b/);
    }
    // A range that ends at a checkpoint that still matches is vouched for by it alone.
    expect(await verdictOf(f.ledger, { toSeq: 20n })).toMatchObject({ valid: true, checkpointsChecked: 1n });
    // One that stops short of it is held to it too.
    expect(await verdictOf(f.ledger, { toSeq: 12n })).toMatchObject({ valid: true, checkpointsChecked: 1n });
  });

  it("a client holding checkpoints 20 and 40 rejects the consistency proof between them", async () => {
    const res = await f.ledger.proveConsistency({ fromSize: 20n, toSize: 40n });
    expect(() => checkConsistency(20, 40, f.held.get(20)!.root, f.held.get(40)!.root, res.hashes)).toThrow(ProofError);
  });

  it("a client holding checkpoint 40 rejects the inclusion proof of the rewritten entry", async () => {
    // This server checks its proofs before answering, so it refuses outright...
    expect(await codeOf(f.ledger.proveInclusion({ seq: BigInt(K), treeSize: 40n }))).toBe("DataLoss");
    // ...and the proof the forged store yields (what a server without that check, or a
    // compromised one, would send) fails on the client against the checkpoint it holds.
    const entry = (await f.ledger.getEvent({ seq: BigInt(K) })).entry!;
    expect(entry.kind).toBe("order.refunded");
    const forgedProof = await inclusionProof(su as never, f.chain, K, 40);
    expect(verifyInclusion(K, 40, entryLeafHash(entryToRow(entry)), forgedProof, f.held.get(40)!.root)).toBe(false);
  });

  it("after one more append the server refuses to sign (DataLoss), signs nothing beyond 40, and counts the refusal", async () => {
    const before = await refusals(f.chain);
    await f.ledger.append({ event: { kind: "order.paid", subject: "orders/40" } });
    const err = await f.ledger.getCheckpoint({ fresh: true }).then(
      () => null,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code, "GetCheckpoint fresh over the forged tree").toBe(Code.DataLoss);
    expect(err!.message).toMatch(/refusing to sign/);
    expect(await checkpointSizes(f.chain)).toEqual([20, 40]);
    expect(await refusals(f.chain)).toBeGreaterThan(before);
    // Proofs that need a checkpoint over the new entry are refused the same way.
    expect(await codeOf(f.ledger.proveInclusion({ seq: 40n }))).toBe("DataLoss");
    expect(await checkpointSizes(f.chain)).toEqual([20, 40]);
    // And Verify still reports the break where the checkpoints put it.
    expect(await verdictOf(f.ledger)).toMatchObject({ valid: false, breakKind: BreakKind.ROOT_MISMATCH, firstBreakAt: 20n });
  });
});

describe("a cut tail, with the head and tree set back to match", () => {
  it("Verify: TRUNCATED at 40, naming signed checkpoint 50; the checkpointer refuses to sign the shorter tree", async () => {
    const f = await chainWithCheckpoints("trunc", [50]);
    const entries = await readAll(f.ledger);
    const root40 = rootOf(entries.slice(0, 40));

    await su.query("DELETE FROM entries WHERE chain = $1 AND seq >= 40", [f.chain]);
    await su.query("DELETE FROM payloads WHERE chain = $1 AND seq >= 40", [f.chain]);
    // Every node that covers a leaf >= 40.
    await su.query("DELETE FROM merkle_nodes WHERE chain = $1 AND (idx + 1) * (1::bigint << level) > 40", [f.chain]);
    await su.query("UPDATE chains SET next_seq = 40, head_hash = decode($2, 'hex'), tree_root = $3 WHERE chain = $1", [f.chain, entries[39]!.hash, Buffer.from(root40)]);
    // The store now looks like a consistent 40-entry chain.
    expect((await f.ledger.getStats({})).count).toBe(40n);

    const v = await verdictOf(f.ledger);
    expect(v).toMatchObject({ valid: false, breakKind: BreakKind.TRUNCATED, firstBreakAt: 40n });
    expect(v.reason).toMatch(/checkpoint 50\b/);

    const before = await refusals(f.chain);
    expect(await codeOf(f.ledger.getCheckpoint({ fresh: true }))).toBe("DataLoss");
    expect(await refusals(f.chain)).toBeGreaterThan(before);
    expect(await checkpointSizes(f.chain)).toEqual([50]);
  });
});

describe("a stored Merkle node edited, entries intact", () => {
  /** Overwrites one stored node's hash with garbage. */
  async function corruptNode(chain: string, node: NodeId): Promise<void> {
    const res = await su.query("UPDATE merkle_nodes SET hash = decode($4, 'hex') WHERE chain = $1 AND level = $2 AND idx = $3", [chain, node.level, node.index, "ab".repeat(32)]);
    expect(res.rowCount, `node level ${node.level} idx ${node.index} exists`).toBe(1);
  }

  /** Every leaf's inclusion proof in checkpoint `size` fails exactly when the node is one of its proof elements. */
  async function expectProofsBrokenThrough(f: Fixture, size: number, node: NodeId): Promise<void> {
    const [b, e] = coverage(node);
    let broken = 0;
    for (let seq = 0; seq < size; seq++) {
      const uses = inclusionProofRanges(seq, size).some(([rb, re]) => rb === b && re === e);
      // The server refuses exactly the proofs that go through the edited node...
      const served = await f.ledger.proveInclusion({ seq: BigInt(seq), treeSize: BigInt(size) }).then(
        (res) => verifyInclusion(seq, size, entryLeafHash(entryToRow(res.entry!)), res.proof!.hashes, f.held.get(size)!.root),
        (err: unknown) => ConnectError.from(err).code,
      );
      expect(served, `ProveInclusion of seq ${seq} (${uses ? "uses" : "does not use"} the edited node)`).toBe(uses ? Code.DataLoss : true);
      // ...and those proofs, taken straight from the store, fail on the client.
      const entry = (await f.ledger.getEvent({ seq: BigInt(seq) })).entry!;
      const fromStore = await inclusionProof(su as never, f.chain, seq, size);
      const ok = verifyInclusion(seq, size, entryLeafHash(entryToRow(entry)), fromStore, f.held.get(size)!.root);
      expect(ok, `inclusion proof of seq ${seq} from the store`).toBe(!uses);
      if (uses) broken++;
    }
    expect(broken).toBeGreaterThan(0);
  }

  async function expectVerifyNamesNode(f: Fixture, node: NodeId): Promise<void> {
    const [b, e] = coverage(node);
    const v = await verdictOf(f.ledger);
    expect(v.valid, `Verify of a chain whose stored node over seq ${b}..${e - 1} was edited`).toBe(false);
    expect(v.breakKind).toBe(BreakKind.ROOT_MISMATCH);
    expect(Number(v.firstBreakAt)).toBeGreaterThanOrEqual(b);
    expect(Number(v.firstBreakAt)).toBeLessThan(e);
    expect(v.reason).toContain(`seq ${b}..${e - 1}`);
  }

  it("a node on the tree's right frontier: Verify names its range; proofs through it fail", async () => {
    // 40 leaves: the frontier is [0, 32) at level 5 and [32, 40) at level 3.
    const f = await chainWithCheckpoints("node-frontier", [40]);
    const node = { level: 3, index: 4 };
    await corruptNode(f.chain, node);
    await expectVerifyNamesNode(f, node);
    await expectProofsBrokenThrough(f, 40, node);
  });

  it("an interior node (under a larger complete subtree): Verify names its range; proofs through it fail", async () => {
    // Level 1, index 5 covers seq 10..11, inside the complete subtree [0, 32).
    const f = await chainWithCheckpoints("node-inner", [40]);
    const node = { level: 1, index: 5 };
    await corruptNode(f.chain, node);
    await expectProofsBrokenThrough(f, 40, node);
    await expectVerifyNamesNode(f, node);
  });
});

describe("a checkpoint note with a flipped signature byte", () => {
  it("Verify: BAD_SIGNATURE at the last good checkpoint; clients and the checkpointer reject the note", async () => {
    const f = await chainWithCheckpoints("badsig", [20, 20]);
    const note = (await f.ledger.getCheckpoint({ treeSize: 40n })).checkpoint!.signedNote;
    // "— name base64(key id || signature)": flip one byte of the signature itself.
    const m = /^(— \S+ )(\S+)\n$/m.exec(note.slice(note.lastIndexOf("\n\n") + 2))!;
    const raw = fromBase64(m[2]!);
    raw[4 + 10]! ^= 0x01;
    const forged = note.replace(m[2]!, toBase64(raw));
    expect(forged).not.toBe(note);
    await su.query("UPDATE checkpoints SET note = $3 WHERE chain = $1 AND tree_size = $2", [f.chain, 40, forged]);

    const v = await verdictOf(f.ledger);
    expect(v).toMatchObject({ valid: false, breakKind: BreakKind.BAD_SIGNATURE, firstBreakAt: 20n });
    expect(v.reason).toMatch(/checkpoint 40\b/);

    // A client checking the served note rejects it.
    await expect(openCp((await f.ledger.getCheckpoint({ treeSize: 40n })).checkpoint, await rpcKeys(f.ledger), f.origin)).rejects.toThrow(NoteError);
    // The checkpointer will not build on a latest checkpoint that does not verify.
    await f.ledger.append({ event: { kind: "order.paid" } });
    expect(await codeOf(f.ledger.getCheckpoint({ fresh: true }))).toBe("DataLoss");
    expect(await checkpointSizes(f.chain)).toEqual([20, 40]);
  });
});

describe("checkpoint rows edited or forged", () => {
  it("a latest checkpoint whose size column was lowered: the checkpointer refuses (note and column disagree), counted", async () => {
    const f = await chainWithCheckpoints("cpsize", [3, 2]);
    await su.query("UPDATE checkpoints SET tree_size = 4 WHERE chain = $1 AND tree_size = 5", [f.chain]);
    await f.ledger.append({ event: { kind: "order.paid" } });
    const before = await refusals(f.chain);
    const err = await f.ledger.getCheckpoint({ fresh: true }).then(() => null, (e: unknown) => ConnectError.from(e));
    expect(err?.code).toBe(Code.DataLoss);
    expect(err!.message).toMatch(/says size 4 but its signed note says 5/);
    expect(await refusals(f.chain)).toBeGreaterThan(before);
  });

  it("a junk checkpoint row far above the head: the timer round refuses and counts it instead of skipping the chain", async () => {
    const f = await chainWithCheckpoints("cpjunk", [5]);
    await su.query("INSERT INTO checkpoints (chain, tree_size, root, key_id, note) VALUES ($1, 1000000000000, '\\x00', 'junk', 'junk')", [f.chain]);
    await f.ledger.append({ event: { kind: "order.paid" } });
    const before = await refusals(f.chain);
    await server.checkpointer.cutDue();
    expect(await refusals(f.chain)).toBeGreaterThan(before);
    expect(await codeOf(f.ledger.getCheckpoint({ fresh: true }))).toBe("DataLoss");
  });
});
