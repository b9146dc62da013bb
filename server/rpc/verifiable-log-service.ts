// LedgerService's verifiable-log RPCs: checkpoints, inclusion and consistency proofs,
// public keys and redaction. Proofs come from the stored tree in O(log n) rows; the
// client checks them with the chain module against a signed checkpoint.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  LedgerService,
  GetCheckpointResponseSchema,
  ProveInclusionResponseSchema,
  ProveConsistencyResponseSchema,
  GetPublicKeysResponseSchema,
  RedactPayloadResponseSchema,
} from "../../gen/auditledger/v1/ledger_service_pb.js";
import { CheckpointSchema, PublicKeySchema, type Checkpoint } from "../../gen/auditledger/v1/entry_pb.js";
import { entryLeafHash, parseCheckpoint, parseNote, verifyInclusion } from "../../chain/index.js";
import { chainOf } from "../auth/auth-interceptor.js";
import type { Database } from "../storage/database.js";
import type { Sequencer } from "../ledger/sequencer.js";
import type { Limits } from "../ledger/limits.js";
import { invalid, seqNumber } from "../ledger/validate-event.js";
import { readEntry, readHead } from "../ledger/ledger-reader.js";
import { checkpointAt, latestCheckpoint, type Checkpointer, type StoredCheckpoint } from "../checkpoints/checkpointer.js";
import { consistencyProof, inclusionProof } from "../merkle/tree-store.js";
import { redactPayload } from "../redaction/redact-payload.js";
import { toEntryMessage } from "./entry-message.js";

export interface VerifiableLogDeps {
  db: Database;
  sequencer: Sequencer;
  checkpointer: Checkpointer;
  limits: Limits;
}

export function checkpointMessage(cp: StoredCheckpoint): Checkpoint {
  return create(CheckpointSchema, {
    chain: cp.chain,
    origin: cp.origin,
    treeSize: BigInt(cp.treeSize),
    rootHash: cp.root,
    signedNote: cp.note,
    cutAt: cp.cutAt.toISOString(),
    keyId: cp.keyId,
  });
}

/**
 * The checkpoint of `size`, or with size 0 the latest one, first cutting a fresh one
 * when `fresh` is set or when `needed` (a tree size the caller must see covered) is
 * past the latest.
 */
export async function resolveCheckpoint(
  db: Database,
  checkpointer: Checkpointer,
  chain: string,
  size: number,
  opts: { fresh?: boolean; needed?: number } = {},
): Promise<StoredCheckpoint> {
  const origin = checkpointer.origin(chain);
  if (size > 0) {
    const cp = await checkpointAt(db, chain, size, origin);
    if (!cp) throw new ConnectError(`chain "${chain}" has no checkpoint of tree size ${size}`, Code.NotFound);
    return cp;
  }
  let cp = await latestCheckpoint(db, chain, origin);
  if (opts.fresh || !cp || (opts.needed !== undefined && cp.treeSize < opts.needed)) cp = await checkpointer.cut(chain);
  if (!cp) throw new ConnectError(`chain "${chain}" is empty: it has no checkpoint yet`, Code.NotFound);
  return cp;
}

export function verifiableLogService(deps: VerifiableLogDeps): Partial<ServiceImpl<typeof LedgerService>> {
  const { db, sequencer, checkpointer, limits } = deps;
  return {
    async getCheckpoint(req, ctx) {
      const { chain } = chainOf(ctx, req.chain);
      const size = seqNumber(req.treeSize, "tree_size");
      if (req.fresh && size !== 0) throw invalid("fresh: only with tree_size 0 (the latest)");
      const cp = await resolveCheckpoint(db, checkpointer, chain, size, { fresh: req.fresh });
      return create(GetCheckpointResponseSchema, { checkpoint: checkpointMessage(cp) });
    },

    async proveInclusion(req, ctx) {
      const { chain } = chainOf(ctx, req.chain);
      const seq = seqNumber(req.seq, "seq");
      const size = seqNumber(req.treeSize, "tree_size");
      if (size !== 0 && seq >= size) throw invalid(`seq: ${seq} is not in a tree of ${size} entries`);
      // Independent reads run side by side: two round trips in all, not five.
      const origin = checkpointer.origin(chain);
      const [head, found] = await Promise.all([
        readHead(db, chain),
        size === 0 ? latestCheckpoint(db, chain, origin) : checkpointAt(db, chain, size, origin),
      ]);
      if (seq >= head.count) throw new ConnectError(`chain "${chain}" has no entry at seq ${seq}`, Code.NotFound);
      if (size !== 0 && !found) throw new ConnectError(`chain "${chain}" has no checkpoint of tree size ${size}`, Code.NotFound);
      // The latest checkpoint may predate the entry: then cut one that covers it.
      const cp = found && found.treeSize > seq ? found : await resolveCheckpoint(db, checkpointer, chain, 0, { needed: seq + 1 });
      const [entry, hashes] = await Promise.all([readEntry(db, chain, seq, false), inclusionProof(db, chain, seq, cp.treeSize)]);
      if (!entry) throw new ConnectError(`chain "${chain}" has no entry at seq ${seq}`, Code.DataLoss);
      // Never hand out a proof that fails against the very checkpoint it comes with.
      const signedRoot = parseCheckpoint(parseNote(cp.note).text).root;
      if (!verifyInclusion(seq, cp.treeSize, entryLeafHash(entry), hashes, signedRoot)) {
        throw new ConnectError(
          `chain "${chain}": the stored tree does not prove seq ${seq} in signed checkpoint ${cp.treeSize}: the store was altered (run Verify)`,
          Code.DataLoss,
        );
      }
      return create(ProveInclusionResponseSchema, {
        proof: { leafIndex: BigInt(seq), treeSize: BigInt(cp.treeSize), hashes },
        entry: toEntryMessage(entry, false),
        checkpoint: checkpointMessage(cp),
      });
    },

    async proveConsistency(req, ctx) {
      const { chain } = chainOf(ctx, req.chain);
      const from = seqNumber(req.fromSize, "from_size");
      let to = seqNumber(req.toSize, "to_size");
      const [head, latest] = await Promise.all([readHead(db, chain), to === 0 ? resolveCheckpoint(db, checkpointer, chain, 0) : null]);
      if (latest) to = latest.treeSize;
      if (from > to) throw invalid(`from_size: ${from} is larger than to_size ${to}; a log only grows`);
      if (to > head.count) throw invalid(`to_size: the chain has ${head.count} entries, not ${to}`);
      const hashes = await consistencyProof(db, chain, from, to);
      return create(ProveConsistencyResponseSchema, { fromSize: BigInt(from), toSize: BigInt(to), hashes });
    },

    async getPublicKeys(req, ctx) {
      chainOf(ctx, req.chain);
      await checkpointer.keys.reloadIfChanged();
      return create(GetPublicKeysResponseSchema, {
        keys: checkpointer.keys.published().map((k) =>
          create(PublicKeySchema, {
            keyId: k.keyId,
            algorithm: "ed25519",
            publicKey: k.publicKey,
            noteVerifierKey: k.verifierKey,
            createdAt: k.createdAt,
            retiredAt: k.retiredAt,
          }),
        ),
      });
    },

    async redactPayload(req, ctx) {
      const { principal, chain } = chainOf(ctx, req.chain);
      const { redaction } = await redactPayload(db, sequencer, limits, chain, seqNumber(req.seq, "seq"), req.reason, principal.keyId);
      return create(RedactPayloadResponseSchema, { redaction: toEntryMessage(redaction, false) });
    },
  };
}
