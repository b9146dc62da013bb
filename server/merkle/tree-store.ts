// The stored Merkle tree of a chain: reads of complete subtrees, frontiers, roots and
// proofs, each in O(log n) rows. Leaves are not stored: a level-0 node is the leaf
// hash of the entry at that seq, recomputed from its row.
import { Code, ConnectError } from "@connectrpc/connect";
import {
  consistencyProofRanges,
  entryLeafHash,
  foldRange,
  inclusionProofRanges,
  MerkleFrontier,
  nodeKey,
  rangeNodes,
  type HashedNode,
  type LeafRange,
  type NodeId,
} from "../../chain/index.js";
import type { Queryable } from "../storage/database.js";
import { ENTRY_COLUMNS, rowToEntry, type EntryRow } from "../ledger/entry-row.js";

/** A stored node the tree needs is absent: the tree was tampered with, or never built. */
export class MissingNodeError extends ConnectError {
  constructor(chain: string, readonly node: NodeId) {
    super(`chain ${chain}: Merkle node level ${node.level} index ${node.index} is missing from the store`, Code.DataLoss);
  }
}

/** Hashes of the given complete subtrees, keyed by nodeKey. Two queries at most. */
export async function readNodes(q: Queryable, chain: string, ids: NodeId[]): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  const leaves = [...new Set(ids.filter((n) => n.level === 0).map((n) => n.index))];
  const inner = ids.filter((n) => n.level > 0);
  // Both reads at once (separate pooled connections): proof latency is one round trip.
  const [leafRows, innerRows] = await Promise.all([
    leaves.length > 0
      ? q.query<EntryRow>(`SELECT ${ENTRY_COLUMNS} FROM entries e WHERE e.chain = $1 AND e.seq = ANY($2::bigint[])`, [chain, leaves])
      : null,
    inner.length > 0
      ? q.query<{ level: number; idx: string | number; hash: Uint8Array }>(
          `SELECT n.level, n.idx, n.hash FROM merkle_nodes n
           JOIN unnest($2::smallint[], $3::bigint[]) AS w(level, idx) ON n.level = w.level AND n.idx = w.idx
           WHERE n.chain = $1`,
          [chain, inner.map((n) => n.level), inner.map((n) => n.index)],
        )
      : null,
  ]);
  for (const row of leafRows?.rows ?? []) out.set(nodeKey({ level: 0, index: Number(row.seq) }), entryLeafHash(rowToEntry(row)));
  for (const row of innerRows?.rows ?? []) out.set(nodeKey({ level: row.level, index: Number(row.idx) }), toBytes(row.hash));
  for (const id of ids) if (!out.has(nodeKey(id))) throw new MissingNodeError(chain, id);
  return out;
}

/** The hash of each leaf range (the subtree over it), from its complete subtrees. */
export async function rangeHashes(q: Queryable, chain: string, ranges: LeafRange[]): Promise<Uint8Array[]> {
  const perRange = ranges.map(([b, e]) => rangeNodes(b, e));
  const nodes = await readNodes(q, chain, perRange.flat());
  return perRange.map((ids) => foldRange(ids.map((id) => nodes.get(nodeKey(id))!)));
}

/** The frontier of the stored tree at `size` (its complete subtrees over [0, size)). */
export async function loadFrontier(q: Queryable, chain: string, size: number): Promise<MerkleFrontier> {
  const ids = rangeNodes(0, size);
  const nodes = await readNodes(q, chain, ids);
  return new MerkleFrontier(size, ids.map((id) => nodes.get(nodeKey(id))!));
}

/** Root of the stored tree at any size up to the head. */
export async function rootAt(q: Queryable, chain: string, size: number): Promise<Uint8Array> {
  return (await loadFrontier(q, chain, size)).root();
}

export function inclusionProof(q: Queryable, chain: string, index: number, size: number): Promise<Uint8Array[]> {
  return rangeHashes(q, chain, inclusionProofRanges(index, size));
}

export function consistencyProof(q: Queryable, chain: string, size1: number, size2: number): Promise<Uint8Array[]> {
  return rangeHashes(q, chain, consistencyProofRanges(size1, size2));
}

/** Stored form of the nodes a commit completes: only levels >= 1 are kept. */
export function storedNodes(completed: HashedNode[]): HashedNode[] {
  return completed.filter((n) => n.level > 0);
}

export function toBytes(b: Uint8Array): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}
