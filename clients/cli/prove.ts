// `audit-ledger prove`: fetches an inclusion or consistency proof and checks it here,
// with the chain module, against a signed checkpoint: the server is not trusted.
import type { Client } from "@connectrpc/connect";
import type { LedgerService } from "../../gen/auditledger/v1/ledger_service_pb.js";
import {
  checkConsistency,
  entryLeafHash,
  fromBase64,
  openCheckpoint,
  parseVerifierKey,
  ProofError,
  sodiumReady,
  verifyInclusion,
  type VerifierKey,
} from "../../chain/index.js";
import { entryToRow } from "../node/entry-row.js";

interface ProveOptions {
  seq?: bigint;
  fromSize?: bigint;
  fromRoot?: string;
  treeSize?: bigint;
  trustedKey?: string[];
}

async function trustedKeys(ledger: Client<typeof LedgerService>, chain: string, pinned: string[]): Promise<VerifierKey[]> {
  if (pinned.length > 0) return pinned.map(parseVerifierKey);
  const res = await ledger.getPublicKeys({ chain });
  console.error("note: trusting the keys the server publishes; pin one with --trusted-key for a proof that does not rely on the server");
  return res.keys.map((k) => parseVerifierKey(k.noteVerifierKey));
}

/** Prints the outcome as JSON; returns the exit code (0 proven, 1 not). */
export async function runProve(ledger: Client<typeof LedgerService>, chain: string, o: ProveOptions): Promise<number> {
  await sodiumReady();
  const keys = await trustedKeys(ledger, chain, o.trustedKey ?? []);
  if (o.seq !== undefined) {
    const res = await ledger.proveInclusion({ chain, seq: o.seq, treeSize: o.treeSize ?? 0n });
    if (!res.entry || !res.checkpoint || !res.proof) throw new Error("incomplete proof response");
    const cp = openCheckpoint(res.checkpoint.signedNote, keys);
    const entry = entryToRow(res.entry);
    // The proof must be about the entry asked for, in the chain the checkpoint names.
    if (entry.seq !== Number(o.seq) || (chain !== "" && entry.chain !== chain) || cp.origin !== `${cp.signedBy.name}/${entry.chain}`) {
      throw new Error(`the server answered for seq ${entry.seq} of chain ${entry.chain} under origin ${cp.origin}, not for seq ${o.seq}`);
    }
    const leaf = entryLeafHash(entry);
    const ok = cp.size === Number(res.proof.treeSize) && verifyInclusion(Number(o.seq), cp.size, leaf, res.proof.hashes, cp.root);
    console.log(JSON.stringify({ proven: ok, seq: Number(o.seq), tree_size: cp.size, proof_hashes: res.proof.hashes.length, checkpoint_key: `${cp.signedBy.name}` }));
    return ok ? 0 : 1;
  }
  const from = Number(o.fromSize);
  const latest = await ledger.getCheckpoint({ chain, treeSize: o.treeSize ?? 0n });
  if (!latest.checkpoint) throw new Error("the server returned no checkpoint");
  const to = openCheckpoint(latest.checkpoint.signedNote, keys);
  let fromRoot: Uint8Array;
  if (o.fromRoot) {
    fromRoot = fromBase64(o.fromRoot);
  } else {
    const held = await ledger.getCheckpoint({ chain, treeSize: BigInt(from) });
    // Same log: the held checkpoint must carry the origin of the latest one.
    fromRoot = openCheckpoint(held.checkpoint!.signedNote, keys, to.origin).root;
  }
  const res = await ledger.proveConsistency({ chain, fromSize: BigInt(from), toSize: BigInt(to.size) });
  try {
    checkConsistency(from, to.size, fromRoot, to.root, res.hashes);
    console.log(JSON.stringify({ proven: true, from_size: from, to_size: to.size, proof_hashes: res.hashes.length }));
    return 0;
  } catch (err) {
    if (!(err instanceof ProofError)) throw err;
    console.log(JSON.stringify({ proven: false, from_size: from, to_size: to.size, reason: err.message }));
    return 1;
  }
}
