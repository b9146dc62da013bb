// Verify (SPEC §3): walk a range of the chain, recompute every hash, link and payload
// digest, rebuild the Merkle tree and hold its root to every signed checkpoint in the
// range, and report the first break. Yields progress while it walks.
import {
  ChainWalker,
  equalBytes,
  leafHashOfCanonical,
  MerkleFrontier,
  NoteError,
  openCheckpoint,
  nodeKey,
  rangeNodes,
  toHex,
  ZERO_HASH,
  type ChainBreak,
  type HashedNode,
  type StoredEntry,
  type VerifierKey,
} from "../../chain/index.js";
import type { Database } from "../storage/database.js";
import { readEntry, readHead, readRange } from "../ledger/ledger-reader.js";
import { checkpointsBetween, firstCheckpointAbove, latestCheckpoint, type StoredCheckpoint } from "../checkpoints/checkpointer.js";
import { invalid } from "../ledger/validate-event.js";
import { loadFrontier, MissingNodeError, readNodes, toBytes } from "../merkle/tree-store.js";
import { checkRedactionClaims } from "./redaction-claims.js";

export interface VerifyProgress {
  checked: number;
  total: number;
}

export interface VerifyVerdict {
  valid: boolean;
  checked: number;
  firstBreak: ChainBreak | null;
  redacted: number[];
  /** Signed checkpoints whose roots were recomputed and matched. */
  checkpointsChecked: number;
}

/** What Verify trusts: the keys that sign this chain's checkpoints and their origin. */
export interface VerifyTrust {
  keys: VerifierKey[];
  origin: string;
}

const PAGE = 5000;

export async function* verifyRange(
  db: Database,
  chain: string,
  from: number | undefined,
  to: number | undefined,
  trust: VerifyTrust,
  progressEvery = PAGE,
): AsyncGenerator<VerifyProgress, VerifyVerdict> {
  // The checkpoint first: every honest checkpoint covers committed entries only, so the
  // head read after it is at least its size, unless entries were removed.
  const latest = await latestCheckpoint(db, chain, trust.origin);
  const head = await readHead(db, chain);
  const start = from ?? 0;
  // A signed checkpoint larger than the head means the tail was cut.
  const committed = Math.max(head.count, latest?.treeSize ?? 0);
  // Without an explicit end, the walk stops at what was committed when it started:
  // appends that commit while it runs are not part of this Verify. Rows beyond the head
  // are looked for afterwards, in one snapshot with the head.
  const end = Math.min(to ?? committed, committed);
  if (start > committed) throw invalid(`from_seq: the chain has ${committed} entries, so a range starts at ${committed} at most`);
  const verdict = (walker: ChainWalker | null, firstBreak: ChainBreak | null, checkpointsChecked = 0): VerifyVerdict => ({
    valid: firstBreak === null,
    checked: walker?.checked ?? 0,
    firstBreak,
    redacted: walker?.redacted ?? [],
    checkpointsChecked,
  });

  let prevHash = ZERO_HASH;
  if (start > 0) {
    const anchor = await readEntry(db, chain, start - 1, false);
    if (!anchor) {
      return verdict(null, { seq: start - 1, kind: "missing_entry", reason: `seq ${start - 1}, the anchor of the range, is missing` });
    }
    prevHash = anchor.hash;
  }

  // The tree left of the range comes from stored nodes: if they were rewritten, the
  // roots below will not match the signed checkpoints.
  let frontier: MerkleFrontier;
  try {
    frontier = start === 0 ? new MerkleFrontier() : await loadFrontier(db, chain, start);
  } catch (err) {
    if (!(err instanceof MissingNodeError)) throw err;
    return verdict(null, { seq: start, kind: "root_mismatch", reason: `${err.message}: the tree left of seq ${start} cannot be rebuilt` });
  }

  // Checkpoints inside the range, each checked when the walk reaches its size.
  const checkpoints = await checkpointsBetween(db, chain, start, end, trust.origin);
  let nextCheckpoint = 0;
  let lastGood = start;
  let checkpointsChecked = 0;

  // Every complete subtree the walk rebuilds is held to its stored copy, page by page:
  // proofs are served from the stored nodes, so they must equal the entries' tree.
  let rebuiltNodes: HashedNode[] = [];
  const walker: ChainWalker = new ChainWalker(start, prevHash, head.count, (e, canonical) => {
    for (const n of frontier.appendLeaf(leafHashOfCanonical(canonical))) if (n.level > 0) rebuiltNodes.push(n);
    while (nextCheckpoint < checkpoints.length && checkpoints[nextCheckpoint]!.treeSize === frontier.size) {
      const cp = checkpoints[nextCheckpoint++]!;
      const problem = checkpointProblem(cp, frontier, trust);
      if (problem) {
        walker.breakAt(lastGood, problem.kind, problem.reason(lastGood));
        return;
      }
      checkpointsChecked++;
      lastGood = cp.treeSize;
    }
  });

  let lastReport = 0;
  // Read the next page while this one is hashed: Postgres and Node work side by side.
  let pending: Promise<StoredEntry[]> | null = start < end ? readRange(db, chain, start, end, PAGE, true) : null;
  while (pending) {
    const page = await pending;
    const nextFrom = page.length === PAGE ? page[page.length - 1]!.seq + 1 : end;
    pending = nextFrom < end ? readRange(db, chain, nextFrom, end, PAGE, true) : null;
    for (const entry of page) if (walker.push(entry)) break;
    const nodeBreak = await storedNodesBreak(db, chain, rebuiltNodes);
    rebuiltNodes = [];
    if (nodeBreak) walker.breakAt(nodeBreak.seq, nodeBreak.kind, nodeBreak.reason, true);
    if (walker.firstBreak) {
      await pending?.catch(() => undefined);
      break;
    }
    if (walker.checked - lastReport >= progressEvery) {
      lastReport = walker.checked;
      yield { checked: walker.checked, total: Math.max(end - start, 0) };
    }
  }
  let firstBreak = walker.finish(end);
  if (firstBreak?.kind === "truncated" && latest && latest.treeSize > head.count) {
    firstBreak = {
      ...firstBreak,
      reason: `signed checkpoint ${latest.treeSize} covers seq 0..${latest.treeSize - 1}, but the chain ends at seq ${head.count - 1}: entries were removed from the tail`,
    };
  }
  // A payload counts as redacted only if the redaction entry it names really erased it.
  const claimBreak = await checkRedactionClaims(db, chain, walker.redactionClaims());
  if (claimBreak && (!firstBreak || claimBreak.seq < firstBreak.seq)) firstBreak = claimBreak;
  // A range that stops short of a signed checkpoint is still held to it: the stored
  // tree right of the range completes the root, as a bundle's completion record does.
  if (!firstBreak && frontier.size === end && lastGood !== end) {
    const beyond = await firstCheckpointAbove(db, chain, end, trust.origin);
    if (beyond) {
      const problem = await anchorProblem(db, chain, beyond, frontier, trust);
      if (problem) firstBreak = { seq: lastGood, kind: problem.kind, reason: problem.reason(lastGood) };
      else checkpointsChecked++;
    }
  }
  if (!firstBreak && end === committed) firstBreak = await rowBeyondHead(db, chain);
  const result = verdict(walker, firstBreak, checkpointsChecked);
  // Only entries before the first break are vouched for, redacted ones included.
  if (firstBreak) result.redacted = result.redacted.filter((seq) => seq < firstBreak!.seq);
  return result;
}

/** Checks a checkpoint beyond the walked range: the walk's frontier, completed with the
 * stored nodes over [frontier.size, checkpoint size), must give its signed root. */
async function anchorProblem(db: Database, chain: string, cp: StoredCheckpoint, frontier: MerkleFrontier, trust: VerifyTrust): Promise<CheckpointProblem | null> {
  const ids = rangeNodes(frontier.size, cp.treeSize);
  let nodes: Map<string, Uint8Array>;
  try {
    nodes = await readNodes(db, chain, ids);
  } catch (err) {
    if (!(err instanceof MissingNodeError)) throw err;
    return { kind: "root_mismatch", reason: () => `${err.message}: checkpoint ${cp.treeSize} beyond the range cannot be checked` };
  }
  const completed = frontier.copy();
  for (const id of ids) completed.appendNode(id.level, nodes.get(nodeKey(id))!);
  const problem = checkpointProblem(cp, completed, trust);
  if (!problem || problem.kind !== "root_mismatch") return problem;
  return {
    kind: "root_mismatch",
    reason: (lastGood) =>
      `the Merkle root of entries 0..${cp.treeSize - 1} (this range's entries, then the stored tree after seq ${frontier.size - 1}) ` +
      `differs from signed checkpoint ${cp.treeSize}: an entry in seq ${lastGood}..${cp.treeSize - 1}` +
      `${lastGood > 0 ? ` (or before seq ${lastGood}, if the stored tree was rewritten)` : ""} was changed`,
  };
}

interface CheckpointProblem {
  kind: "root_mismatch" | "bad_signature";
  reason: (lastGood: number) => string;
}

function checkpointProblem(cp: StoredCheckpoint, frontier: MerkleFrontier, trust: VerifyTrust): CheckpointProblem | null {
  let signedRoot: Uint8Array;
  try {
    const opened = openCheckpoint(cp.note, trust.keys, trust.origin);
    if (opened.size !== cp.treeSize) throw new NoteError(`its note says size ${opened.size}, not ${cp.treeSize}`);
    signedRoot = opened.root;
  } catch (err) {
    if (!(err instanceof NoteError)) throw err;
    return {
      kind: "bad_signature",
      reason: () => `checkpoint ${cp.treeSize} (key ${cp.keyId}) does not verify: ${err.message}`,
    };
  }
  if (equalBytes(signedRoot, frontier.root())) return null;
  return {
    kind: "root_mismatch",
    reason: (lastGood) =>
      `the Merkle root of entries 0..${cp.treeSize - 1} differs from signed checkpoint ${cp.treeSize}: ` +
      `an entry in seq ${lastGood}..${cp.treeSize - 1}${lastGood > 0 ? ` (or before seq ${lastGood}, if the stored tree was rewritten)` : ""} ` +
      `was changed and every later hash recomputed`,
  };
}

/**
 * The first rebuilt subtree whose stored copy differs or is missing, as a break at its
 * first leaf. The nodes a page completes are contiguous at each level, so they are read
 * as one index range per level rather than one lookup per node.
 */
async function storedNodesBreak(db: Database, chain: string, rebuilt: HashedNode[]): Promise<ChainBreak | null> {
  if (rebuilt.length === 0) return null;
  const ranges = new Map<number, { lo: number; hi: number }>();
  for (const n of rebuilt) {
    const r = ranges.get(n.level);
    if (!r) ranges.set(n.level, { lo: n.index, hi: n.index });
    else {
      r.lo = Math.min(r.lo, n.index);
      r.hi = Math.max(r.hi, n.index);
    }
  }
  const levels = [...ranges.keys()];
  const res = await db.query<{ level: number; idx: string | number; hash: Uint8Array }>(
    `SELECT n.level, n.idx, n.hash FROM unnest($2::smallint[], $3::bigint[], $4::bigint[]) AS r(level, lo, hi)
     JOIN merkle_nodes n ON n.chain = $1 AND n.level = r.level AND n.idx BETWEEN r.lo AND r.hi`,
    [chain, levels, levels.map((l) => ranges.get(l)!.lo), levels.map((l) => ranges.get(l)!.hi)],
  );
  const stored = new Map<string, Uint8Array>();
  for (const row of res.rows) stored.set(nodeKey({ level: row.level, index: Number(row.idx) }), toBytes(row.hash));
  // Report the lowest leaf first: the earliest place the store disagrees.
  const ordered = [...rebuilt].sort((a, b) => a.index * 2 ** a.level - b.index * 2 ** b.level || b.level - a.level);
  for (const n of ordered) {
    const first = n.index * 2 ** n.level;
    const range = `seq ${first}..${first + 2 ** n.level - 1}`;
    const s = stored.get(nodeKey(n));
    if (!s) return { seq: first, kind: "root_mismatch", reason: `the stored Merkle node over ${range} is missing: proofs that need it cannot be served` };
    if (!equalBytes(s, n.hash)) {
      return {
        seq: first,
        kind: "root_mismatch",
        reason: `the stored Merkle node over ${range} (${toHex(s).slice(0, 12)}…) differs from the entries (${toHex(n.hash).slice(0, 12)}…): proofs served from it would fail`,
      };
    }
  }
  return null;
}

/**
 * A stored entry at or past the chain head, read with the head in one statement (one
 * snapshot), so an append committing meanwhile is never mistaken for one: the ledger
 * never writes past its head, so such a row was inserted behind its back.
 */
async function rowBeyondHead(db: Database, chain: string): Promise<ChainBreak | null> {
  const res = await db.query<{ seq: number | null; head: number }>(
    `SELECT c.next_seq AS head, (SELECT min(e.seq) FROM entries e WHERE e.chain = c.chain AND e.seq >= c.next_seq) AS seq
     FROM chains c WHERE c.chain = $1`,
    [chain],
  );
  const row = res.rows[0];
  if (!row || row.seq === null) return null;
  const seq = Number(row.seq);
  return {
    seq,
    kind: "unexpected_entry",
    reason: `seq ${seq} lies beyond the committed head (seq ${Number(row.head) - 1}): it was inserted`,
  };
}
