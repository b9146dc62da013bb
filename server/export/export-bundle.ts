// Export (SPEC §7): one evidence bundle for a window of a chain, streamed as it is
// read. Everything an auditor needs to verify the window offline: entries, payloads
// not redacted, the signed checkpoints, consistency proofs between them, the tree
// nodes left and right of the window, the public keys, and the agents' signatures over
// the batches the window's agent entries came in (docs/evidence-bundle.md).
import { Code, ConnectError } from "@connectrpc/connect";
import {
  buildBundle,
  BundleBuildError,
  keyIdHex,
  nodeKey,
  parseNote,
  planBundle,
  type BundleBatchInput,
  type BundleEntryInput,
  type BundleKeyInput,
  type NodeId,
} from "../../chain/index.js";
import type { Database } from "../storage/database.js";
import { readHead, readRange } from "../ledger/ledger-reader.js";
import { invalid } from "../ledger/validate-event.js";
import type { Checkpointer } from "../checkpoints/checkpointer.js";
import { rangeHashes, readNodes } from "../merkle/tree-store.js";
import { checkRedactionClaims } from "../verify/redaction-claims.js";
import { batchesInRange } from "../agents/agent-store.js";

export interface ExportWindow {
  fromSeq?: number;
  toSeq?: number;
  /** RFC 3339, inclusive. */
  fromTime?: string;
  /** RFC 3339, exclusive. */
  toTime?: string;
}

const PAGE = 1000;
const CHUNK_BYTES = 64 * 1024;

/** First seq whose ts is at or after `time`, or the head when none is. */
async function seqAtTime(db: Database, chain: string, time: string, head: number): Promise<number> {
  const res = await db.query<{ seq: number | null }>("SELECT min(seq) AS seq FROM entries WHERE chain = $1 AND ts >= $2::timestamptz", [chain, time]);
  const seq = res.rows[0]?.seq;
  return seq === null || seq === undefined ? head : Number(seq);
}

/** Streams the bundle of `chain` over the window as byte chunks of about 64 KiB. */
export async function* exportBundle(db: Database, checkpointer: Checkpointer, chain: string, window: ExportWindow): AsyncGenerator<Uint8Array> {
  if (window.fromSeq !== undefined && window.fromTime) throw invalid("give from_seq or from_time, not both");
  if (window.toSeq !== undefined && window.toTime) throw invalid("give to_seq or to_time, not both");
  const head = (await readHead(db, chain)).count;
  const from = window.fromSeq ?? (window.fromTime ? await seqAtTime(db, chain, window.fromTime, head) : 0);
  const to = window.toSeq ?? (window.toTime ? await seqAtTime(db, chain, window.toTime, head) : head);
  if (to > head) throw invalid(`to_seq: the chain has ${head} entries, so the window ends at ${head} at most`);
  if (from > to) throw invalid(`from_seq: ${from} is after the end of the window (${to})`);
  if (head === 0) throw new ConnectError(`chain "${chain}" is empty: there is nothing to export`, Code.FailedPrecondition);

  // The anchor checkpoint must cover the window: cut one now if the latest does not.
  const origin = checkpointer.origin(chain);
  let sizes = await checkpointSizes(db, chain, from, to);
  if (!sizes.some((s) => s >= to)) {
    await checkpointer.cut(chain);
    sizes = await checkpointSizes(db, chain, from, to);
  }
  let plan;
  try {
    plan = planBundle(from, to, sizes);
  } catch (err) {
    if (err instanceof BundleBuildError) throw new ConnectError(err.message, Code.FailedPrecondition);
    throw err;
  }
  const notes = await db.query<{ tree_size: number; note: string }>(
    "SELECT tree_size, note FROM checkpoints WHERE chain = $1 AND tree_size = ANY($2::bigint[]) ORDER BY tree_size",
    [chain, plan.checkpointSizes],
  );
  // One proof at a time: a window with thousands of checkpoints must not take every
  // pooled connection from the appends.
  const consistency = [];
  for (const c of plan.consistency) consistency.push({ fromSize: c.fromSize, toSize: c.toSize, proof: await rangeHashes(db, chain, c.ranges) });
  const frontier = await nodeHashes(db, chain, plan.frontier);
  const completion = await nodeHashes(db, chain, plan.completion);

  // The keys that signed the included checkpoints, from this server's key ring.
  await checkpointer.keys.reloadIfChanged();
  const signers = new Set(notes.rows.flatMap((r) => parseNote(r.note).signatures.map((s) => `${s.name}+${keyIdHex(s.keyId)}`)));
  const keys: BundleKeyInput[] = checkpointer.keys
    .published()
    .filter((k) => signers.has(`${k.name}+${k.keyId}`))
    .map((k) => ({ key: k.verifierKey, createdAt: k.createdAt, retiredAt: k.retiredAt || undefined }));

  /** Batch ids the window's entries name: their batch records go into the bundle. */
  const named = new Set<string>();
  async function* entries(): AsyncGenerator<BundleEntryInput> {
    let next = from;
    while (next < to) {
      const page = await readRange(db, chain, next, to, PAGE, true);
      if (page.length === 0) return; // the builder reports the shortfall
      // Redactions are read with each page, after it: one committed while the export
      // streams is then seen with the page that shows the payload gone.
      const last = page[page.length - 1]!.seq;
      const redactions = await db.query<{ seq: number; redaction_seq: number; actor: string; reason: string }>(
        "SELECT seq, redaction_seq, actor, reason FROM redactions WHERE chain = $1 AND seq >= $2 AND seq <= $3",
        [chain, next, last],
      );
      const redactedBy = new Map(redactions.rows.map((r) => [Number(r.seq), r]));
      // A bundle only carries erasures the chain itself records.
      const claimBreak = await checkRedactionClaims(db, chain, redactions.rows.map((r) => ({ seq: Number(r.seq), by: Number(r.redaction_seq) })));
      if (claimBreak) throw new ConnectError(`cannot export seq ${claimBreak.seq}: ${claimBreak.reason} (run Verify)`, Code.DataLoss);
      for (const e of page) {
        if (e.batch) named.add(e.batch);
        const r = redactedBy.get(e.seq);
        yield r ? { ...e, redacted: true, redaction: { bySeq: Number(r.redaction_seq), reason: r.reason, actor: r.actor } } : e;
      }
      next = page[page.length - 1]!.seq + 1;
    }
  }

  // Read once the entries are written (the builder asks for them then). A batch whose
  // entries lie in the window but whose row is gone is left out: verifying the bundle
  // then names the entry. The builder lists each batch's seqs from the entries it wrote.
  async function* batches(): AsyncGenerator<BundleBatchInput> {
    if (named.size === 0) return;
    for (const b of await batchesInRange(db, chain, from, to)) if (named.has(b.batch)) yield b;
  }

  const encoder = new TextEncoder();
  let buffered = "";
  try {
    for await (const line of buildBundle({
      chain,
      origin,
      fromSeq: from,
      toSeq: to,
      keys,
      checkpoints: notes.rows.map((r) => r.note),
      consistency,
      frontier,
      entries: entries(),
      batches: batches(),
      completion,
    })) {
      buffered += line;
      if (buffered.length >= CHUNK_BYTES) {
        yield encoder.encode(buffered);
        buffered = "";
      }
    }
  } catch (err) {
    // The store no longer holds what the window needs (rows removed behind the server).
    if (err instanceof BundleBuildError) throw new ConnectError(`cannot export: ${err.message}`, Code.DataLoss);
    throw err;
  }
  if (buffered) yield encoder.encode(buffered);
}

async function checkpointSizes(db: Database, chain: string, from: number, to: number): Promise<number[]> {
  const res = await db.query<{ tree_size: number }>(
    `SELECT tree_size FROM checkpoints WHERE chain = $1 AND tree_size > $2 AND tree_size <= $3
     UNION ALL
     (SELECT tree_size FROM checkpoints WHERE chain = $1 AND tree_size >= $3 ORDER BY tree_size LIMIT 1)`,
    [chain, from, to],
  );
  return res.rows.map((r) => Number(r.tree_size));
}

async function nodeHashes(db: Database, chain: string, ids: NodeId[]): Promise<Uint8Array[]> {
  const found = await readNodes(db, chain, ids);
  return ids.map((id) => found.get(nodeKey(id))!);
}
