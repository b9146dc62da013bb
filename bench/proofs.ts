// Proof generation through the real server: ProveInclusion for random seqs and
// ProveConsistency for random size pairs, one request at a time and several at once,
// p50/p99 of each, and the proofs' sizes next to SPEC §11's bound of 32·⌈log2 n⌉ bytes.
// Every proof is checked on the client with the chain module after the clock stops,
// so the latencies are those of correct proofs: inclusion proofs against the signed
// checkpoint's root, consistency proofs against the roots of the stored tree at both
// sizes (read by the bench; the stored tree's root at the checkpoint size is first
// held to the checkpoint's signature).
import { toBinary } from "@bufbuild/protobuf";
import type pg from "pg";
import type { LedgerClient } from "../clients/node/ledger-client.js";
import { entryToRow } from "../clients/node/entry-row.js";
import {
  checkConsistency,
  entryHash,
  entryLeafHash,
  equalBytes,
  HASH_BYTES,
  openCheckpoint,
  parseVerifierKey,
  verifyInclusion,
  type VerifierKey,
} from "../chain/index.js";
import {
  ProveConsistencyResponseSchema,
  ProveInclusionResponseSchema,
  type ProveInclusionResponse,
} from "../gen/auditledger/v1/ledger_service_pb.js";
import type { Checkpoint } from "../gen/auditledger/v1/entry_pb.js";
import { PostgresDatabase } from "../server/storage/postgres-database.js";
import { rootAt } from "../server/merkle/tree-store.js";
import { createApiKey } from "../server/auth/api-keys.js";
import { createLedgerClient } from "../clients/node/ledger-client.js";
import { summarize, type LatencySummary } from "./stats.js";
import { noMeter, type Meter, type PhaseUsage } from "./resource-meter.js";

export interface ProofSizes {
  /** Hashes per proof: the largest and the mean. */
  maxHashes: number;
  meanHashes: number;
  /** Bytes of proof hashes (32 each). */
  maxBytes: number;
  meanBytes: number;
  /** SPEC §11 bound for the largest tree size seen: 32·⌈log2 n⌉. */
  boundBytes: number;
  /** Proofs above the bound for their own tree size. */
  overBound: number;
  /** Whole response message, protobuf-encoded (with the entry and checkpoint for inclusion). */
  meanMessageBytes: number;
}

export interface ProofKindResult {
  sequential: LatencySummary;
  concurrent: LatencySummary;
  sizes: ProofSizes;
}

export interface ProofsResult {
  chain: string;
  /** Tree size of the signed checkpoint the inclusion proofs are taken against. */
  treeSize: number;
  concurrency: number;
  inclusion: ProofKindResult;
  consistency: ProofKindResult;
  /** Proofs checked on the client (all must pass). */
  verified: number;
  usage?: PhaseUsage;
}

/** Deterministic PRNG (mulberry32), so runs ask for the same proofs. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** 32·⌈log2 n⌉: SPEC §11's proof size bound for a tree of n leaves. */
export function proofBoundBytes(n: number): number {
  return HASH_BYTES * Math.ceil(Math.log2(n));
}

export async function trustedKeys(client: LedgerClient, chain: string): Promise<VerifierKey[]> {
  const res = await client.ledger.getPublicKeys({ chain });
  return res.keys.map((k) => parseVerifierKey(k.noteVerifierKey));
}

/** Opens a checkpoint message's signed note; its size and root must match the message's. */
export function openSigned(cp: Checkpoint | undefined, keys: VerifierKey[]): { size: number; root: Uint8Array } {
  if (!cp) throw new Error("no checkpoint in the response");
  const opened = openCheckpoint(cp.signedNote, keys, cp.origin);
  if (opened.size !== Number(cp.treeSize) || !equalBytes(opened.root, cp.rootHash)) throw new Error(`checkpoint ${cp.treeSize}: the message differs from its signed note`);
  return { size: opened.size, root: opened.root };
}

interface Timed<R> {
  ms: number;
  res: R;
}

/** Runs `call` for each input with `concurrency` in flight (closed loop), timing each. */
async function timed<I, R>(inputs: I[], concurrency: number, call: (input: I) => Promise<R>): Promise<Timed<R>[]> {
  const out: Timed<R>[] = new Array(inputs.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < inputs.length; i = next++) {
        const t0 = performance.now();
        const res = await call(inputs[i]!);
        out[i] = { ms: performance.now() - t0, res };
      }
    }),
  );
  return out;
}

function sizesOf(proofs: { hashes: Uint8Array[]; size: number; messageBytes: number }[]): ProofSizes {
  const counts = proofs.map((p) => p.hashes.length);
  const maxHashes = Math.max(...counts);
  const meanHashes = counts.reduce((a, b) => a + b, 0) / counts.length;
  return {
    maxHashes,
    meanHashes,
    maxBytes: maxHashes * HASH_BYTES,
    meanBytes: meanHashes * HASH_BYTES,
    boundBytes: proofBoundBytes(Math.max(...proofs.map((p) => p.size))),
    overBound: proofs.filter((p) => p.hashes.length * HASH_BYTES > proofBoundBytes(p.size)).length,
    meanMessageBytes: proofs.reduce((a, p) => a + p.messageBytes, 0) / proofs.length,
  };
}

export interface ProofRunOptions {
  samples: number;
  concurrency: number;
  /** Requests of each kind before the measurement (JIT, caches, connections). */
  warmup?: number;
  seed?: number;
}

/**
 * Measures proof generation on `chain` through `clients` (the first one is used for
 * sequential requests; all of them, one request each in flight, for concurrent ones).
 */
export async function proofLatency(clients: LedgerClient[], databaseUrl: string, chain: string, opts: ProofRunOptions, meter: Meter = noMeter): Promise<ProofsResult> {
  const client = clients[0]!;
  const keys = await trustedKeys(client, chain);
  const cp = (await client.ledger.getCheckpoint({ chain, fresh: true })).checkpoint;
  const signed = openSigned(cp, keys);
  const N = signed.size;
  if (N < 2) throw new Error(`chain ${chain} has ${N} entries: too few for proofs`);
  const rand = prng(opts.seed ?? 0x5eed);
  const seqs = (k: number) => Array.from({ length: k }, () => Math.floor(rand() * N));
  const pairs = (k: number) =>
    Array.from({ length: k }, (): [number, number] => {
      const to = 2 + Math.floor(rand() * (N - 1)); // 2..N
      return [1 + Math.floor(rand() * (to - 1)), to]; // 1..to-1
    });
  const include = (c: LedgerClient) => (seq: number) => c.ledger.proveInclusion({ chain, seq: BigInt(seq), treeSize: BigInt(N) });
  const consist = (c: LedgerClient) => ([from, to]: [number, number]) => c.ledger.proveConsistency({ chain, fromSize: BigInt(from), toSize: BigInt(to) });
  const pool = <I, R>(call: (c: LedgerClient) => (i: I) => Promise<R>) => {
    let k = 0;
    return (input: I) => call(clients[k++ % clients.length]!)(input);
  };

  const warmup = opts.warmup ?? 100;
  await timed(seqs(warmup), opts.concurrency, pool(include));
  await timed(pairs(warmup), opts.concurrency, pool(consist));

  const incSeqIn = seqs(opts.samples);
  const incConIn = seqs(opts.samples);
  const conSeqIn = pairs(opts.samples);
  const conConIn = pairs(opts.samples);
  await meter.start();
  const incSeq = await timed(incSeqIn, 1, include(client));
  const conSeq = await timed(conSeqIn, 1, consist(client));
  const incCon = await timed(incConIn, opts.concurrency, pool(include));
  const conCon = await timed(conConIn, opts.concurrency, pool(consist));
  const usage = await meter.stop();

  // Check every proof, outside the clock.
  let verified = 0;
  const inclusion = [...incSeq, ...incCon];
  const inclusionSeqs = [...incSeqIn, ...incConIn];
  inclusion.forEach(({ res }, i) => {
    checkInclusionResponse(res, inclusionSeqs[i]!, N, signed.root, keys);
    verified++;
  });
  const db = new PostgresDatabase({ connectionString: databaseUrl, max: 1 });
  const consistency = [...conSeq, ...conCon];
  const consistencyPairs = [...conSeqIn, ...conConIn];
  try {
    // The stored tree the consistency roots come from must be the signed one.
    if (!equalBytes(await rootAt(db, chain, N), signed.root)) throw new Error(`the stored tree's root at ${N} is not the signed one`);
    const roots = new Map<number, Uint8Array>();
    const root = async (size: number) => {
      let r = roots.get(size);
      if (!r) roots.set(size, (r = await rootAt(db, chain, size)));
      return r;
    };
    for (const [i, { res }] of consistency.entries()) {
      const [from, to] = consistencyPairs[i]!;
      if (Number(res.fromSize) !== from || Number(res.toSize) !== to) throw new Error(`consistency proof ${from} -> ${to}: the response is for ${res.fromSize} -> ${res.toSize}`);
      checkConsistency(from, to, await root(from), await root(to), res.hashes);
      verified++;
    }
  } finally {
    await db.close();
  }

  return {
    chain,
    treeSize: N,
    concurrency: opts.concurrency,
    inclusion: {
      sequential: summarize(incSeq.map((t) => t.ms)),
      concurrent: summarize(incCon.map((t) => t.ms)),
      sizes: sizesOf(inclusion.map(({ res }) => ({ hashes: res.proof!.hashes, size: N, messageBytes: toBinary(ProveInclusionResponseSchema, res).byteLength }))),
    },
    consistency: {
      sequential: summarize(conSeq.map((t) => t.ms)),
      concurrent: summarize(conCon.map((t) => t.ms)),
      sizes: sizesOf(consistency.map(({ res }) => ({ hashes: res.hashes, size: Number(res.toSize), messageBytes: toBinary(ProveConsistencyResponseSchema, res).byteLength }))),
    },
    verified,
    usage,
  };
}

/** An inclusion proof response holds the entry asked for, whose leaf the proof ties to the signed root. */
function checkInclusionResponse(res: ProveInclusionResponse, seq: number, size: number, root: Uint8Array, keys: VerifierKey[]): void {
  const proof = res.proof;
  if (!proof || !res.entry || Number(proof.leafIndex) !== seq || Number(proof.treeSize) !== size) throw new Error(`inclusion proof of seq ${seq}: wrong or missing proof`);
  const row = entryToRow(res.entry);
  if (row.seq !== seq || entryHash(row) !== row.hash) throw new Error(`inclusion proof of seq ${seq}: the entry does not hash to its hash`);
  const cp = openSigned(res.checkpoint, keys);
  if (cp.size !== size || !equalBytes(cp.root, root)) throw new Error(`inclusion proof of seq ${seq}: against checkpoint ${cp.size}, not ${size}`);
  if (!verifyInclusion(seq, size, entryLeafHash(row), proof.hashes, root)) throw new Error(`inclusion proof of seq ${seq} in ${size} does not verify`);
}

export interface SelfCheckReport {
  chain: string;
  valid: boolean;
  checked: number;
  reason: string;
  /** Checkpoints whose signature and root Verify checked (its verdict), and those stored in the range. */
  checkpointsChecked: number;
  checkpointsInRange: number;
  verifySeconds: number;
  proofsVerified: number;
}

/**
 * The loader's self-check: a bench server on the database Verifies the whole chain
 * (hashes, links, payload digests, Merkle tree, checkpoint roots and signatures), and
 * serves proofs that check out on the client.
 */
export async function selfCheck(databaseUrl: string, chain: string, log: (msg: string) => void = () => undefined): Promise<SelfCheckReport> {
  const { startBenchServer } = await import("./bench-server.js");
  const { connect } = await import("./bench-db.js");
  const server = await startBenchServer("child", databaseUrl);
  const admin = await connect(databaseUrl);
  try {
    const { token } = await createApiKey(admin as never, chain, ["append", "read"], "bench self-check");
    const client = createLedgerClient({ baseUrl: server.url, apiKey: token, protocol: "connect", httpVersion: "2" });
    const started = performance.now();
    let verdict;
    for await (const res of client.ledger.verify({ chain })) if (res.result.case === "verdict") verdict = res.result.value;
    const verifySeconds = (performance.now() - started) / 1000;
    if (!verdict) throw new Error("Verify returned no verdict");
    const checked = Number(verdict.checked);
    const checkpointsInRange = await countCheckpoints(admin, chain, checked);
    const checkpointsChecked = Number(verdict.checkpointsChecked);
    log(
      `Verify ${chain}: ${verdict.valid ? "valid" : "INVALID"}, ${checked} entries, ${checkpointsChecked} of the ${checkpointsInRange} checkpoints in range checked, ` +
        `${verifySeconds.toFixed(1)} s: ${verdict.reason}`,
    );
    const proofs = await proofLatency([client], databaseUrl, chain, { samples: 50, concurrency: 1, warmup: 5 });
    log(`proofs: ${proofs.verified} inclusion and consistency proofs verified on the client`);
    return { chain, valid: verdict.valid, checked, reason: verdict.reason, checkpointsChecked, checkpointsInRange, verifySeconds, proofsVerified: proofs.verified };
  } finally {
    await admin.end().catch(() => undefined);
    await server.close();
  }
}

/** Checkpoints of `chain` with 0 < tree_size <= upTo: those a Verify of [0, upTo) checks. */
export async function countCheckpoints(admin: pg.Client, chain: string, upTo: number): Promise<number> {
  const res = await admin.query<{ n: string }>("SELECT count(*) AS n FROM checkpoints WHERE chain = $1 AND tree_size > 0 AND tree_size <= $2", [chain, upTo]);
  return Number(res.rows[0]!.n);
}
