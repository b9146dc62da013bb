// Evidence bundles (SPEC §7, docs/evidence-bundle.md): one NDJSON file that carries a
// window [from_seq, to_seq) of a chain with everything an auditor needs to check it
// offline: the entries and payloads, the signed checkpoints over them, consistency
// proofs between those checkpoints, the public keys, the Merkle hashes left and right
// of the window that tie the entries to the signed roots, and the agents' signatures
// over the batches the window's agent entries came in.
//
// No I/O: the builder yields lines, the verifier reads lines; the server's Export, the
// CLI and the browser supply the bytes.
import { sha256Hex, sha256Stream } from "#sha256";
import { batchId, eventCommitment, verifyBatchSignature, type CommittedEvent } from "./agent-batch.js";
import { zidOf } from "./agent-zid.js";
import { fromBase64, toBase64 } from "./base64.js";
import { canonicalEnvelope } from "./canonical-json.js";
import { parseCheckpoint, openCheckpoint } from "./checkpoint.js";
import { ENVELOPE_VERSION, ZERO_HASH, type HashedEnvelope } from "./envelope.js";
import { toHex } from "./hex.js";
import { equalBytes, HASH_BYTES, leafHashOfCanonical } from "./merkle-hash.js";
import { MerkleFrontier } from "./merkle-frontier.js";
import { rangeNodes, type NodeId } from "./merkle-node.js";
import { checkConsistency, consistencyProofRanges, ProofError, type LeafRange } from "./merkle-proof.js";
import { payloadDigest, SALT_BYTES } from "./payload-digest.js";
import { formatVerifierKey, keyIdHex, NoteError, parseNote, parseVerifierKey, sodiumReady, type VerifierKey } from "./signed-note.js";

/** The `format` of the header record this code writes and reads. */
export const BUNDLE_FORMAT = "audit-ledger-evidence/1";

/** Longest line the verifier accepts, in UTF-8 bytes without the newline. A payload
 * record carries its payload in base64 (4/3 of its size), and the server refuses any
 * request over 32 MiB, so every line a ledger can export fits. */
export const DEFAULT_MAX_LINE_BYTES = 64 * 1024 * 1024;

/** `kind` of the entry a redaction appends (SPEC §2); `redacted.by_seq` names one. Its
 * payload is the JCS object {"reason", "redacts_seq", "requested_by"}
 * (server/redaction/redact-payload.ts). */
export const REDACTION_KIND = "redaction";

// ---------------------------------------------------------------------------------
// Records

/** 1. The header: the chain and the window [from_seq, to_seq) of entries. */
export interface HeaderRecord {
  t: "bundle";
  format: typeof BUNDLE_FORMAT;
  chain: string;
  /** The checkpoint origin line of this chain. */
  origin: string;
  from_seq: number;
  /** Exclusive. */
  to_seq: number;
  created_at: string;
}

/** 2. A public key that signed an included checkpoint (current or retired). */
export interface KeyRecord {
  t: "key";
  /** C2SP verifier key: name+hex8+base64(0x01 || public key). */
  vkey: string;
  created_at: string;
  retired_at?: string;
}

/** 3. A whole C2SP signed note holding a tlog-checkpoint. */
export interface CheckpointRecord {
  t: "checkpoint";
  note: string;
}

/** 4. RFC 9162 consistency proof between two consecutive included checkpoints. */
export interface ConsistencyRecord {
  t: "consistency";
  from_size: number;
  to_size: number;
  /** Base64 hashes. */
  proof: string[];
}

/** 5. Hashes of rangeNodes(0, from_seq): the compact range left of the window. */
export interface FrontierRecord {
  t: "frontier";
  size: number;
  hashes: string[];
}

/** 6. One entry: every envelope field of docs/entry-format.md, plus its hash. */
export type EntryRecord = { t: "entry" } & HashedEnvelope;

/** 6a. The payload of the entry just before, with its salt. */
export interface PayloadRecord {
  t: "payload";
  seq: number;
  /** Base64. */
  salt: string;
  /** Base64. */
  payload: string;
}

/** 6b. In place of a payload that was erased: who erased it, why, and in which entry. */
export interface RedactedRecord {
  t: "redacted";
  seq: number;
  /** Seq of the `redaction` entry that erased it. */
  by_seq: number;
  reason: string;
  actor: string;
}

/**
 * 7. An agent's signature over one batch it sent (chain/agent-batch.ts): the signed
 * statement is BATCH_SIGNATURE_CONTEXT + JCS {agent, batch_number, chain, events}, the
 * chain being the bundle's.
 */
export interface BatchRecord {
  t: "batch";
  /** The agent's ZID: zidOf(public_key). */
  agent: string;
  /** The batch id the entries carry: batchId(batch_number, signature). */
  batch: string;
  batch_number: number;
  /** Base64 Ed25519 public key (32 bytes). */
  public_key: string;
  /** Base64 Ed25519 signature (64 bytes). */
  signature: string;
  /** Lowercase hex eventCommitment of every event the agent signed, in signed order. */
  events: string[];
  /** Seqs of the bundle's entries whose `batch` is this batch, ascending. */
  seqs: number[];
}

/** 8. Hashes of rangeNodes(to_seq, N), N the anchor checkpoint's size. */
export interface CompletionRecord {
  t: "completion";
  from_size: number;
  to_size: number;
  hashes: string[];
}

/** 9. Last line: how many records precede it and the SHA-256 of their bytes. */
export interface EndRecord {
  t: "end";
  records: number;
  /** Lowercase hex SHA-256 of every byte before this line. */
  sha256: string;
}

export type BundleRecord =
  | HeaderRecord
  | KeyRecord
  | CheckpointRecord
  | ConsistencyRecord
  | FrontierRecord
  | EntryRecord
  | PayloadRecord
  | RedactedRecord
  | BatchRecord
  | CompletionRecord
  | EndRecord;

/** One record as one line of the file: its JSON and a newline. */
export function bundleRecordLine(record: BundleRecord): string {
  return JSON.stringify(record) + "\n";
}

/** Envelope fields in canonical (JCS) order: the order entry records are written in. */
const ENVELOPE_FIELDS = [
  "actor", "agent", "batch", "cause", "chain", "idempotency_key", "kind", "occurred_at",
  "payload_digest", "payload_size", "payload_type", "prev_hash", "seq", "source_position",
  "source_type", "span_id", "subject", "trace_id", "ts", "v",
] as const;
const INTEGER_FIELDS = new Set<string>(["v", "seq", "payload_size"]);
const REQUIRED_FIELDS = new Set<string>(["v", "chain", "seq", "ts", "source_type", "agent", "kind", "payload_size", "prev_hash"]);

/** The entry record of an envelope: `t`, the fields present in canonical order, `hash`. */
export function entryRecord(e: HashedEnvelope): EntryRecord {
  const out: Record<string, unknown> = { t: "entry" };
  for (const k of ENVELOPE_FIELDS) {
    const v = e[k];
    if (v !== undefined && v !== "") out[k] = v;
  }
  out.hash = e.hash;
  return out as unknown as EntryRecord;
}

// ---------------------------------------------------------------------------------
// Building

/** Thrown by the builder on input the format cannot express (a programming error). */
export class BundleBuildError extends Error {
  override name = "BundleBuildError";
}

export interface BundleKeyInput {
  /** The key, or its verifier-key text (name+hex8+base64). */
  key: VerifierKey | string;
  /** RFC 3339. */
  createdAt: string;
  /** RFC 3339; absent while the key is current. */
  retiredAt?: string;
}

export interface BundleConsistencyInput {
  fromSize: number;
  toSize: number;
  /** The proof's hashes, in RFC 9162 order (the hashes of consistencyProofRanges). */
  proof: Uint8Array[];
}

export interface BundleRedactionInput {
  /** Seq of the `redaction` entry that erased the payload. */
  bySeq: number;
  reason: string;
  actor: string;
}

/**
 * One entry of the window: the stored entry (a chain-walk StoredEntry fits) and, when
 * its payload was erased, who erased it. An entry with `payload_size` > 0 needs either
 * `payload` and `salt`, or `redaction`.
 */
export interface BundleEntryInput extends HashedEnvelope {
  payload?: Uint8Array | null;
  salt?: Uint8Array | null;
  redacted?: boolean;
  redaction?: BundleRedactionInput;
}

/** One agent batch with entries in the window (a StoredBatch of agent-store fits). */
export interface BundleBatchInput {
  agent: string;
  batch: string;
  batchNumber: number;
  publicKey: Uint8Array;
  signature: Uint8Array;
  /** eventCommitment of every signed event, in signed order: 32 bytes or 64 hex each. */
  events: readonly (Uint8Array | string)[];
  /** Seqs of the window's entries naming this batch; by default those the builder wrote. */
  seqs?: number[];
}

export interface BuildBundleInput {
  chain: string;
  /** The checkpoint origin line of the chain; every checkpoint must carry it. */
  origin: string;
  fromSeq: number;
  /** Exclusive. */
  toSeq: number;
  /** RFC 3339; defaults to now. */
  createdAt?: string;
  /** Every key that signed one of `checkpoints`. */
  keys: BundleKeyInput[];
  /**
   * Signed checkpoint notes, ascending by size: every checkpoint with a size in
   * (fromSeq, toSeq], then the anchor (size >= toSeq) last. planBundle picks them.
   */
  checkpoints: string[];
  /** One proof per consecutive pair of `checkpoints`, in order. */
  consistency: BundleConsistencyInput[];
  /** Hashes of rangeNodes(0, fromSeq), in that order. */
  frontier: Uint8Array[];
  /** The entries fromSeq .. toSeq-1, ascending; may be streamed. */
  entries: Iterable<BundleEntryInput> | AsyncIterable<BundleEntryInput>;
  /**
   * The agent batches the window's entries name, one each; may be streamed (read after
   * the entries). The builder writes them as given: a missing one is the verifier's
   * finding, not the builder's.
   */
  batches?: Iterable<BundleBatchInput> | AsyncIterable<BundleBatchInput>;
  /** Hashes of rangeNodes(toSeq, anchor size), in that order. */
  completion: Uint8Array[];
}

/** Counts the records and hashes their bytes, so it can write the end record. */
export class BundleEncoder {
  private count = 0;
  private readonly digest = sha256Stream();

  /** The line of `record`, counted and hashed. */
  line(record: Exclude<BundleRecord, EndRecord>): string {
    const text = bundleRecordLine(record);
    this.digest.update(text);
    this.count++;
    return text;
  }

  /** The end record's line; the encoder is spent afterwards. */
  end(): string {
    return bundleRecordLine({ t: "end", records: this.count, sha256: this.digest.digestHex() });
  }
}

/**
 * Writes an evidence bundle: yields its lines (each ending in "\n") in file order. Checks
 * the structure as it goes (sizes, counts, seq order, payload or redaction for every
 * entry with a payload, batches naming entries of the window) and throws
 * BundleBuildError on anything the format cannot express. It does not check hashes or
 * signatures: an export shows what is stored, and verifyBundle judges it.
 */
export async function* buildBundle(input: BuildBundleInput): AsyncGenerator<string, void, undefined> {
  const { chain, origin, fromSeq: a, toSeq: b } = input;
  if (!isSeq(a) || !isSeq(b) || a > b) throw new BundleBuildError(`bad window [${a}, ${b})`);
  const sizes = checkpointSizesOf(input.checkpoints, origin);
  checkCheckpointSizes(sizes, a, b);
  const anchor = sizes[sizes.length - 1]!;
  if (input.consistency.length !== sizes.length - 1) {
    throw new BundleBuildError(`${sizes.length} checkpoints need ${sizes.length - 1} consistency proofs, got ${input.consistency.length}`);
  }
  input.consistency.forEach((c, i) => {
    if (c.fromSize !== sizes[i] || c.toSize !== sizes[i + 1]) {
      throw new BundleBuildError(`consistency proof ${i} is ${c.fromSize}->${c.toSize}, expected ${sizes[i]}->${sizes[i + 1]}`);
    }
    checkHashList(`consistency proof ${c.fromSize}->${c.toSize}`, c.proof, consistencyProofRanges(c.fromSize, c.toSize).length);
  });
  checkHashList("frontier", input.frontier, rangeNodes(0, a).length);
  checkHashList("completion", input.completion, rangeNodes(b, anchor).length);

  const enc = new BundleEncoder();
  yield enc.line({ t: "bundle", format: BUNDLE_FORMAT, chain, origin, from_seq: a, to_seq: b, created_at: input.createdAt ?? new Date().toISOString() });
  for (const k of input.keys) {
    const vkey = typeof k.key === "string" ? k.key : formatVerifierKey(k.key);
    const rec: KeyRecord = { t: "key", vkey, created_at: k.createdAt };
    if (k.retiredAt) rec.retired_at = k.retiredAt;
    yield enc.line(rec);
  }
  for (const note of input.checkpoints) yield enc.line({ t: "checkpoint", note });
  for (const c of input.consistency) yield enc.line({ t: "consistency", from_size: c.fromSize, to_size: c.toSize, proof: c.proof.map(toBase64) });
  yield enc.line({ t: "frontier", size: a, hashes: input.frontier.map(toBase64) });

  let next = a;
  /** batch id -> seqs of the entries naming it (one number per agent entry). */
  const batchSeqs = new Map<string, number[]>();
  for await (const e of input.entries) {
    if (e.seq !== next) throw new BundleBuildError(next >= b ? `entry seq ${e.seq} is beyond the window [${a}, ${b})` : `expected entry seq ${next}, got ${e.seq}`);
    yield enc.line(entryRecord(e));
    if (e.batch) {
      const seqs = batchSeqs.get(e.batch);
      if (seqs) seqs.push(e.seq);
      else batchSeqs.set(e.batch, [e.seq]);
    }
    if (e.payload_size > 0) {
      if (e.redaction) {
        const r = e.redaction;
        yield enc.line({ t: "redacted", seq: e.seq, by_seq: r.bySeq, reason: r.reason, actor: r.actor });
      } else if (e.redacted) {
        throw new BundleBuildError(`entry seq ${e.seq} is redacted but no redaction (bySeq, reason, actor) was given`);
      } else if (e.payload && e.salt) {
        yield enc.line({ t: "payload", seq: e.seq, salt: toBase64(e.salt), payload: toBase64(e.payload) });
      } else {
        throw new BundleBuildError(`entry seq ${e.seq} has a payload but neither its bytes and salt nor a redaction were given`);
      }
    } else if (e.redaction || (e.payload && e.payload.length > 0)) {
      throw new BundleBuildError(`entry seq ${e.seq} declares no payload but one (or a redaction) was given`);
    }
    next++;
  }
  if (next !== b) throw new BundleBuildError(`the entries end at seq ${next - 1}; the window ends at seq ${b - 1}`);
  const written = new Set<string>();
  for await (const x of input.batches ?? []) {
    if (written.has(x.batch)) throw new BundleBuildError(`batch ${x.batch} given twice`);
    written.add(x.batch);
    const seqs = x.seqs ?? batchSeqs.get(x.batch);
    if (!seqs || seqs.length === 0) throw new BundleBuildError(`batch ${x.batch}: no entry of the window [${a}, ${b}) names it`);
    const events = x.events.map((c) => {
      const hex = typeof c === "string" ? c : toHex(c);
      if (!HEX64.test(hex)) throw new BundleBuildError(`batch ${x.batch}: an event commitment is not 32 bytes`);
      return hex;
    });
    yield enc.line({
      t: "batch",
      agent: x.agent,
      batch: x.batch,
      batch_number: x.batchNumber,
      public_key: toBase64(x.publicKey),
      signature: toBase64(x.signature),
      events,
      seqs: [...seqs],
    });
  }
  yield enc.line({ t: "completion", from_size: b, to_size: anchor, hashes: input.completion.map(toBase64) });
  yield enc.end();
}

/** The whole bundle as one string (for tests and small windows). */
export async function buildBundleText(input: BuildBundleInput): Promise<string> {
  let out = "";
  for await (const line of buildBundle(input)) out += line;
  return out;
}

/** What an exporter must fetch for a window, given the checkpoint sizes it has. */
export interface BundlePlan {
  /** Sizes of the checkpoints to include, ascending: all in (fromSeq, toSeq], then the anchor. */
  checkpointSizes: number[];
  /** The last of checkpointSizes: the smallest available size >= toSeq. */
  anchorSize: number;
  /** Nodes whose hashes make the frontier record: rangeNodes(0, fromSeq). */
  frontier: NodeId[];
  /** Nodes whose hashes make the completion record: rangeNodes(toSeq, anchorSize). */
  completion: NodeId[];
  /** For each consecutive pair of checkpoints, the leaf ranges whose subtree hashes form the proof. */
  consistency: { fromSize: number; toSize: number; ranges: LeafRange[] }[];
}

/**
 * Picks the checkpoints of a window and lists the Merkle nodes and proof ranges to
 * fetch. Throws BundleBuildError when no checkpoint covers toSeq yet (cut one first).
 */
export function planBundle(fromSeq: number, toSeq: number, availableSizes: Iterable<number>): BundlePlan {
  if (!isSeq(fromSeq) || !isSeq(toSeq) || fromSeq > toSeq) throw new BundleBuildError(`bad window [${fromSeq}, ${toSeq})`);
  const all = [...new Set(availableSizes)].sort((x, y) => x - y);
  const anchorSize = all.find((s) => s >= toSeq);
  if (anchorSize === undefined) throw new BundleBuildError(`no checkpoint covers seq ${toSeq - 1} yet (largest size: ${all.at(-1) ?? "none"})`);
  const checkpointSizes = all.filter((s) => s > fromSeq && s < anchorSize);
  checkpointSizes.push(anchorSize);
  const consistency = checkpointSizes.slice(1).map((toSize, i) => {
    const fromSize = checkpointSizes[i]!;
    return { fromSize, toSize, ranges: consistencyProofRanges(fromSize, toSize) };
  });
  return { checkpointSizes, anchorSize, frontier: rangeNodes(0, fromSeq), completion: rangeNodes(toSeq, anchorSize), consistency };
}

function checkpointSizesOf(notes: string[], origin: string): number[] {
  return notes.map((note, i) => {
    let body;
    try {
      body = parseCheckpoint(parseNote(note).text);
    } catch (err) {
      throw new BundleBuildError(`checkpoint ${i} is not a signed checkpoint: ${(err as Error).message}`);
    }
    if (body.origin !== origin) throw new BundleBuildError(`checkpoint ${i} has origin ${JSON.stringify(body.origin)}, not ${JSON.stringify(origin)}`);
    return body.size;
  });
}

function checkCheckpointSizes(sizes: number[], a: number, b: number): void {
  if (sizes.length === 0) throw new BundleBuildError("a bundle needs at least the anchor checkpoint");
  sizes.forEach((s, i) => {
    const last = i === sizes.length - 1;
    if (i > 0 && s <= sizes[i - 1]!) throw new BundleBuildError(`checkpoint sizes must strictly increase (${sizes[i - 1]} then ${s})`);
    if (last ? s < b : !(s > a && s <= b)) {
      throw new BundleBuildError(last ? `the anchor checkpoint (size ${s}) must cover the window (size >= ${b})` : `checkpoint size ${s} is not in (${a}, ${b}]`);
    }
  });
}

function checkHashList(what: string, hashes: Uint8Array[], expected: number): void {
  if (hashes.length !== expected) throw new BundleBuildError(`${what} needs ${expected} hashes, got ${hashes.length}`);
  for (const h of hashes) if (h.length !== HASH_BYTES) throw new BundleBuildError(`${what}: a hash is ${h.length} bytes, not ${HASH_BYTES}`);
}

// ---------------------------------------------------------------------------------
// Reading lines

/**
 * Splits a byte stream into the bundle's lines, without their "\n". A line longer than
 * `maxLineBytes` is cut to maxLineBytes + 1 bytes (so the verifier still refuses it)
 * and the rest of it skipped, so memory stays bounded whatever the input. A last line
 * without a newline is yielded as it is.
 */
export async function* splitBundleLines(
  chunks: AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string>,
  maxLineBytes = DEFAULT_MAX_LINE_BYTES,
): AsyncGenerator<Uint8Array, void, undefined> {
  const utf8 = new TextEncoder();
  let parts: Uint8Array[] = [];
  let held = 0; // bytes in parts
  let overflow = false;
  const keep = (piece: Uint8Array) => {
    const room = maxLineBytes + 1 - held;
    if (room <= 0) {
      overflow = true;
      return;
    }
    if (piece.length > room) overflow = true;
    const kept = piece.length > room ? piece.subarray(0, room) : piece;
    if (kept.length > 0) {
      parts.push(kept.slice());
      held += kept.length;
    }
  };
  const take = (): Uint8Array => {
    const out = parts.length === 1 ? parts[0]! : concatAll(parts, held);
    parts = [];
    held = 0;
    overflow = false;
    return out;
  };
  for await (const chunk of chunks) {
    const bytes = typeof chunk === "string" ? utf8.encode(chunk) : chunk;
    let at = 0;
    for (;;) {
      const nl = bytes.indexOf(10, at);
      if (nl < 0) break;
      keep(bytes.subarray(at, nl));
      yield take();
      at = nl + 1;
    }
    if (at < bytes.length) keep(bytes.subarray(at));
  }
  if (held > 0 || overflow) yield take();
}

function concatAll(parts: Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------
// Verifying

export interface VerifyBundleOptions {
  /**
   * The ledger's public keys, pinned by the auditor. When given (non-empty), only they
   * are trusted and the bundle's own key records are informational; without them the
   * bundle's keys are trusted and the verdict warns that they are self-asserted.
   */
  trustedKeys?: VerifierKey[];
  /** Refuse the bundle unless its origin is exactly this. */
  origin?: string;
  /** Longest line accepted, in UTF-8 bytes without the newline. */
  maxLineBytes?: number;
}

export interface BundleFailure {
  /** 1-based line number of the first bad record. */
  line: number;
  /** What is bad, e.g. "entry seq 12", "checkpoint size 40", "frontier", "end". */
  item: string;
  reason: string;
}

export interface VerifiedCheckpoint {
  line: number;
  size: number;
  /** Base64 root hash. */
  root: string;
  /** The key that signed it: name+hex8. */
  key: string;
  anchor: boolean;
}

export interface BundleVerdict {
  ok: boolean;
  format: string | null;
  chain: string | null;
  origin: string | null;
  from_seq: number | null;
  to_seq: number | null;
  /** Entries whose hash, link and Merkle leaf were checked. */
  entries: number;
  /** Payloads whose size and salted digest were checked. */
  payloads_checked: number;
  /** Seqs whose payload was erased by a redaction (reported, not a failure). */
  redacted: number[];
  /** Checkpoints whose signature and Merkle root both verified. */
  checkpoints_checked: number;
  /** Checkpoints whose signature verified, in file order; the last is the anchor. */
  checkpoints: VerifiedCheckpoint[];
  consistency_checked: number;
  /** Agent batch records read. */
  batches: number;
  /** Of those, how many verified: the agent's signature, and every entry naming the batch among its signed events. */
  batches_checked: number;
  /** The key records of the bundle, as name+hex8. */
  keys: string[];
  keys_trusted_from: "pinned" | "bundle";
  first_failure?: BundleFailure;
  warnings: string[];
}

/**
 * Verifies an evidence bundle read line by line (strings or UTF-8 bytes, each one line
 * with or without its "\n"). Stops reading at the first failure (after a little
 * look-ahead to name it well) and reports it with its line number.
 */
export async function verifyBundle(
  lines: AsyncIterable<string | Uint8Array> | Iterable<string | Uint8Array>,
  options: VerifyBundleOptions = {},
): Promise<BundleVerdict> {
  await sodiumReady();
  const v = new BundleVerifier(options);
  for await (const line of lines) {
    if (v.push(line)) break;
  }
  return v.finish();
}

const STAGES = ["bundle", "key", "checkpoint", "consistency", "frontier", "entry", "batch", "completion", "end"] as const;
type RecordType = "bundle" | "key" | "checkpoint" | "consistency" | "frontier" | "entry" | "payload" | "redacted" | "batch" | "completion" | "end";
const STAGE_OF: Record<RecordType, number> = {
  bundle: 0, key: 1, checkpoint: 2, consistency: 3, frontier: 4, entry: 5, payload: 5, redacted: 5, batch: 6, completion: 7, end: 8,
};
const AFTER_END = 9;

interface Cp {
  line: number;
  size: number;
  root: Uint8Array;
  key: string;
  rootChecked: boolean;
}

/** A failure found, thrown inside the verifier and caught by push. */
class Fail extends Error {
  constructor(readonly line: number, readonly item: string, readonly why: string, readonly notJson = false) {
    super(why);
  }
}

type Json = Record<string, unknown>;

/** An entry that names an agent batch, waiting for that batch's record. */
interface BatchMember {
  seq: number;
  line: number;
  agent: string;
  /** eventCommitment of the entry's committed fields (hex). */
  commitment: string;
}

/**
 * The verifier as a push parser, for callers that read the file themselves (a browser
 * FileReader, a network stream). `push` each line in order; it returns true once it
 * needs no more input. Then `finish` gives the verdict. Call `await sodiumReady()` first.
 */
export class BundleVerifier {
  private readonly maxLine: number;
  private readonly pinned: VerifierKey[] | null;
  private readonly utf8In = new TextDecoder("utf-8", { fatal: true });
  private readonly utf8Out = new TextEncoder();
  private readonly digest = sha256Stream();
  private lineNo = 0;
  private stage = -1;
  private failure: BundleFailure | null = null;
  private failureNotJson = false;
  /** After a failure: done reading, or still looking ahead to explain it. */
  private stopped = false;
  private readonly warnings: string[] = [];
  private seenEnd = false;

  private header: { chain: string; origin: string; a: number; b: number; format: string } | null = null;
  private readonly bundleKeys: VerifierKey[] = [];
  private readonly keyNames: string[] = [];
  private readonly cps: Cp[] = [];
  /** A checkpoint larger than to_seq (or the degenerate a == b == size) must be the last. */
  private mustBeLastAt: number | null = null;
  private consistencyCount = 0;
  private frontier: MerkleFrontier | null = null;
  private nextSeq = 0;
  private prevHash: string | null = null;
  private entryCount = 0;
  private nextRootCheck = 0;
  private awaiting: { seq: number; line: number; size: number; digest: string } | null = null;
  private payloadsChecked = 0;
  private readonly redacted: number[] = [];
  /** by_seq -> the redacted records naming it, checked when that entry and its payload arrive. */
  private readonly redactionsBy = new Map<number, RedactionClaimAt[]>();
  /** The redaction entry just read, whose payload must confirm these claims. */
  private claimsAwaitingPayload: { by: number; claims: RedactionClaimAt[] } | null = null;
  /** batch id -> the entries naming it, until its batch record has checked them. */
  private readonly batchMembers = new Map<string, BatchMember[]>();
  /** Batch ids whose record was read (one record per batch). */
  private readonly batchesRead = new Set<string>();
  private batches = 0;
  private batchesChecked = 0;
  private completionSeen = false;
  /** A seq jump waiting to be told apart: missing, or only out of order. */
  private jump: { missing: number; line: number; found: number } | null = null;

  constructor(private readonly options: VerifyBundleOptions = {}) {
    this.maxLine = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
    this.pinned = options.trustedKeys && options.trustedKeys.length > 0 ? options.trustedKeys : null;
  }

  /** Reads one line; returns true when no more input is needed. */
  push(line: string | Uint8Array): boolean {
    this.lineNo++;
    if (this.stopped) return true;
    if (this.failure) return this.lookAhead(line);
    try {
      this.readLine(line);
    } catch (err) {
      if (!(err instanceof Fail)) throw err;
      this.failure = { line: err.line, item: err.item, reason: err.why };
      this.failureNotJson = err.notJson;
      // A non-JSON line may be the cut-off end of the file: look one line further.
      // A seq jump needs the rest of the entries to say whether it is a gap or a swap.
      if (!err.notJson && !this.jump) this.stopped = true;
    }
    return this.stopped;
  }

  finish(): BundleVerdict {
    if (!this.failure) {
      try {
        if (!this.seenEnd) this.truncated();
      } catch (err) {
        if (!(err instanceof Fail)) throw err;
        this.failure = { line: err.line, item: err.item, reason: err.why };
      }
    } else {
      if (this.jump) this.settleJump(null);
      if (this.failureNotJson && !this.stopped && this.failure.line === this.lineNo) {
        this.failure.reason = `truncated: the last line (${this.lineNo}) is cut off mid-record: ${this.failure.reason}`;
        this.failure.item = "file";
      }
    }
    this.stopped = true;
    return this.verdict();
  }

  // ------------------------------------------------------------------ lines

  private lookAhead(line: string | Uint8Array): boolean {
    if (this.failureNotJson && !this.jump) {
      // There is a line after the bad one, so the file was not merely cut off.
      this.stopped = true;
      return true;
    }
    if (this.jump) {
      const rec = this.quietParse(line);
      const t = rec?.t;
      if (t === "entry" || t === "payload" || t === "redacted" || rec === null) {
        if (t === "entry" && rec!.seq === this.jump.missing) this.settleJump(this.lineNo);
      } else {
        this.settleJump(null);
      }
      if (!this.jump) this.stopped = true;
    }
    return this.stopped;
  }

  private quietParse(line: string | Uint8Array): Json | null {
    try {
      const v: unknown = JSON.parse(typeof line === "string" ? line : this.utf8In.decode(line));
      return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Json) : null;
    } catch {
      return null;
    }
  }

  private settleJump(foundAt: number | null): void {
    const j = this.jump!;
    this.jump = null;
    this.stopped = true;
    if (foundAt === null) {
      this.failure = { line: j.line, item: `entry seq ${j.missing}`, reason: `entry seq ${j.missing} missing: line ${j.line} holds seq ${j.found} where seq ${j.missing} belongs` };
    } else {
      this.failure = {
        line: j.line,
        item: `entry seq ${j.found}`,
        reason: `entries out of order: line ${j.line} holds seq ${j.found} where seq ${j.missing} belongs (seq ${j.missing} comes later, at line ${foundAt})`,
      };
    }
  }

  private readLine(raw: string | Uint8Array): void {
    const n = this.lineNo;
    let bytes: Uint8Array;
    let text: string;
    if (typeof raw === "string") {
      text = raw.endsWith("\n") ? raw.slice(0, -1) : raw;
      bytes = this.utf8Out.encode(text);
    } else {
      bytes = raw.length > 0 && raw[raw.length - 1] === 10 ? raw.subarray(0, raw.length - 1) : raw;
      if (bytes.length > this.maxLine) throw new Fail(n, "line", `line is longer than the limit of ${this.maxLine} bytes`);
      try {
        text = this.utf8In.decode(bytes);
      } catch {
        throw new Fail(n, "line", "line is not valid UTF-8");
      }
    }
    if (bytes.length > this.maxLine) throw new Fail(n, "line", `line is longer than the limit of ${this.maxLine} bytes`);
    if (this.stage === AFTER_END) throw new Fail(n, "line", "data after the end record");
    if (text.trim() === "") throw new Fail(n, "line", "empty line");
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw new Fail(n, "line", `not valid JSON (${(err as Error).message})`, true);
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Fail(n, "line", "not a JSON object");
    const rec = value as Json;
    const t = rec.t;
    if (typeof t !== "string" || !Object.hasOwn(STAGE_OF, t)) {
      throw new Fail(n, "line", typeof t === "string" ? `unknown record type ${JSON.stringify(t)}` : 'record has no "t" (record type)');
    }
    const type = t as RecordType;
    if (type !== "end") {
      this.digest.update(bytes);
      this.digest.update(NEWLINE);
    }
    this.advanceTo(STAGE_OF[type], type, n);
    switch (type) {
      case "bundle": return this.onHeader(rec, n);
      case "key": return this.onKey(rec, n);
      case "checkpoint": return this.onCheckpoint(rec, n);
      case "consistency": return this.onConsistency(rec, n);
      case "frontier": return this.onFrontier(rec, n);
      case "entry": return this.onEntry(rec, n);
      case "payload": return this.onPayload(rec, n);
      case "redacted": return this.onRedacted(rec, n);
      case "batch": return this.onBatch(rec, n);
      case "completion": return this.onCompletion(rec, n);
      case "end": return this.onEnd(rec, n);
    }
  }

  /** Enforces the record order and runs the checks due when a section ends. */
  private advanceTo(stage: number, type: RecordType, n: number): void {
    if (this.stage === -1 && type !== "bundle") throw new Fail(n, "header", `the first record must be the bundle header, found a ${type} record`);
    if (stage < this.stage) {
      const what = type === "bundle" ? "a second bundle header" : `${type} record`;
      throw new Fail(n, type, `${what} out of place: ${type} records come before ${STAGES[this.stage]} records`);
    }
    if (stage === this.stage && (type === "bundle" || type === "frontier" || type === "completion")) {
      throw new Fail(n, type, `a second ${type} record`);
    }
    if (this.awaiting && type !== "payload" && type !== "redacted") this.missingPayload();
    while (this.stage < stage) {
      this.leave(this.stage, n);
      this.stage++;
    }
  }

  /** Checks that the section `stage` was complete, before line `n` starts a later one. */
  private leave(stage: number, n: number): void {
    const h = this.header;
    switch (STAGES[stage]) {
      case "checkpoint": {
        if (this.cps.length === 0) throw new Fail(n, "checkpoint", "no checkpoint: a bundle needs at least the anchor checkpoint");
        const anchor = this.cps[this.cps.length - 1]!;
        if (h && anchor.size < h.b) {
          throw new Fail(anchor.line, `checkpoint ${anchor.size}`, `the last checkpoint (size ${anchor.size}) does not cover the window, which ends at seq ${h.b - 1}: the anchor checkpoint is missing`);
        }
        return;
      }
      case "consistency":
        if (this.consistencyCount < this.cps.length - 1) {
          const i = this.consistencyCount;
          throw new Fail(n, `consistency ${this.cps[i]!.size}->${this.cps[i + 1]!.size}`,
            `consistency proof ${this.cps[i]!.size}->${this.cps[i + 1]!.size} missing (${this.cps.length - 1} needed, ${i} given)`);
        }
        return;
      case "frontier":
        if (!this.frontier) throw new Fail(n, "frontier", "frontier record missing");
        return;
      case "entry":
        if (h && this.nextSeq < h.b) {
          throw new Fail(n, `entry seq ${this.nextSeq}`, this.entryCount === 0
            ? `entry seq ${this.nextSeq} missing: the bundle has no entries, the header promises [${h.a}, ${h.b})`
            : `entry seq ${this.nextSeq} missing: the entries end at seq ${this.nextSeq - 1}, the header promises up to seq ${h.b - 1}`);
        }
        return;
      case "batch": {
        // Entries come in seq order, so the first batch still waiting holds the lowest seq.
        const first = this.batchMembers.entries().next();
        if (!first.done) {
          const [batch, members] = first.value;
          const m = members[0]!;
          throw new Fail(m.line, `batch ${batch}`,
            `entry seq ${m.seq} names agent batch ${batch}, but the bundle has no batch record for it: agent ${m.agent}'s signature over the entry cannot be checked`);
        }
        return;
      }
      case "completion":
        if (!this.completionSeen) throw new Fail(n, "completion", "completion record missing");
        return;
    }
  }

  private missingPayload(): void {
    const w = this.awaiting!;
    this.awaiting = null;
    throw new Fail(w.line, `payload seq ${w.seq}`,
      `entry seq ${w.seq} declares a ${w.size}-byte payload, but neither a payload nor a redacted record follows it`);
  }

  /** End of input without an end record. */
  private truncated(): void {
    const n = this.lineNo;
    if (n === 0) throw new Fail(1, "file", "truncated: the file is empty");
    const where = this.stage <= STAGE_OF.frontier
      ? `in the ${STAGES[Math.max(this.stage, 0)]} records`
      : this.stage === STAGE_OF.entry && this.header
        ? `after entry seq ${this.nextSeq - 1} of [${this.header.a}, ${this.header.b})`
        : `after the ${STAGES[this.stage]} records`;
    throw new Fail(n + 1, "end", `truncated: the file ends after line ${n} (${where}) without an end record`);
  }

  // ---------------------------------------------------------------- records

  private onHeader(r: Json, n: number): void {
    const item = "header";
    only(r, ["t", "format", "chain", "origin", "from_seq", "to_seq", "created_at"], n, item);
    if (r.format !== BUNDLE_FORMAT) throw new Fail(n, item, `unsupported format ${JSON.stringify(r.format)} (this verifier reads ${BUNDLE_FORMAT})`);
    const chain = str(r, "chain", n, item);
    const origin = str(r, "origin", n, item);
    if (origin.includes("\n")) throw new Fail(n, item, "origin must be one line");
    const a = int(r, "from_seq", n, item);
    const b = int(r, "to_seq", n, item);
    if (a > b) throw new Fail(n, item, `from_seq ${a} is after to_seq ${b}`);
    rfc3339(r, "created_at", n, item);
    if (this.options.origin !== undefined && origin !== this.options.origin) {
      throw new Fail(n, item, `origin ${JSON.stringify(origin)} is not the expected ${JSON.stringify(this.options.origin)}`);
    }
    this.header = { chain, origin, a, b, format: BUNDLE_FORMAT };
    this.nextSeq = a;
    if (!this.pinned) {
      this.warnings.push("no trusted key was pinned: the checkpoints were checked against the keys the bundle itself lists (self-asserted); pin the ledger's public key (--trusted-key) for a meaningful verdict");
    }
  }

  private onKey(r: Json, n: number): void {
    let item = `key #${this.keyNames.length + 1}`;
    only(r, ["t", "vkey", "created_at", "retired_at"], n, item);
    const text = str(r, "vkey", n, item);
    let key: VerifierKey;
    try {
      key = parseVerifierKey(text);
    } catch (err) {
      throw new Fail(n, item, `vkey does not parse: ${(err as Error).message}`);
    }
    item = `key ${keyName(key)}`;
    if (text !== formatVerifierKey(key)) throw new Fail(n, item, "vkey is not in canonical form");
    rfc3339(r, "created_at", n, item);
    if (r.retired_at !== undefined) rfc3339(r, "retired_at", n, item);
    if (this.keyNames.includes(keyName(key))) throw new Fail(n, item, "key listed twice");
    this.bundleKeys.push(key);
    this.keyNames.push(keyName(key));
  }

  private onCheckpoint(r: Json, n: number): void {
    const h = this.header!;
    let item = `checkpoint #${this.cps.length + 1}`;
    only(r, ["t", "note"], n, item);
    const note = str(r, "note", n, item);
    try {
      item = `checkpoint size ${parseCheckpoint(parseNote(note).text).size}`;
    } catch {
      // openCheckpoint below names the syntax error.
    }
    const trusted = this.pinned ?? this.bundleKeys;
    let cp;
    try {
      cp = openCheckpoint(note, trusted, h.origin);
    } catch (err) {
      if (!(err instanceof NoteError)) throw err;
      const hint = this.pinned ? " (checked against the pinned keys)" : " (checked against the bundle's key records)";
      throw new Fail(n, item, `${err.message}${hint}`);
    }
    const prev = this.cps[this.cps.length - 1];
    if (this.mustBeLastAt !== null) {
      throw new Fail(n, item, `checkpoint after the anchor: only the last checkpoint may be larger than to_seq (line ${this.mustBeLastAt} has size ${prev!.size})`);
    }
    if (prev && cp.size <= prev.size) throw new Fail(n, item, `checkpoint sizes must strictly increase: ${prev.size} then ${cp.size}`);
    if (cp.size <= h.a && !(cp.size === h.a && h.a === h.b)) {
      throw new Fail(n, item, `checkpoint size ${cp.size} does not reach into the window [${h.a}, ${h.b}) (sizes must be in (${h.a}, ${h.b}], or >= ${h.b} for the anchor)`);
    }
    if (cp.size > h.b || cp.size <= h.a) this.mustBeLastAt = n;
    this.cps.push({ line: n, size: cp.size, root: cp.root, key: keyName(cp.signedBy), rootChecked: false });
  }

  private onConsistency(r: Json, n: number): void {
    const i = this.consistencyCount;
    if (i >= this.cps.length - 1) {
      throw new Fail(n, "consistency", `one consistency record too many: ${this.cps.length} checkpoints need ${this.cps.length - 1}`);
    }
    const c1 = this.cps[i]!;
    const c2 = this.cps[i + 1]!;
    const item = `consistency ${c1.size}->${c2.size}`;
    only(r, ["t", "from_size", "to_size", "proof"], n, item);
    const s1 = int(r, "from_size", n, item);
    const s2 = int(r, "to_size", n, item);
    if (s1 !== c1.size || s2 !== c2.size) {
      throw new Fail(n, item, `expected the consistency proof ${c1.size}->${c2.size} here, found ${s1}->${s2}${s1 > c1.size ? `: the proof ${c1.size}->${c2.size} is missing` : ""}`);
    }
    const proof = hashes(r, "proof", n, item);
    try {
      checkConsistency(s1, s2, c1.root, c2.root, proof);
    } catch (err) {
      if (!(err instanceof ProofError || err instanceof RangeError)) throw err;
      throw new Fail(n, item, `consistency proof fails: ${err.message}`);
    }
    this.consistencyCount++;
  }

  private onFrontier(r: Json, n: number): void {
    const h = this.header!;
    const item = "frontier";
    only(r, ["t", "size", "hashes"], n, item);
    const size = int(r, "size", n, item);
    if (size !== h.a) throw new Fail(n, item, `frontier size ${size} is not from_seq ${h.a}`);
    const list = hashes(r, "hashes", n, item);
    const need = rangeNodes(0, size).length;
    if (list.length !== need) throw new Fail(n, item, `a tree of ${size} leaves has ${need} frontier hashes, the record has ${list.length}`);
    this.frontier = new MerkleFrontier(size, list);
    while (this.nextRootCheck < this.cps.length && this.cps[this.nextRootCheck]!.size <= size) this.nextRootCheck++;
  }

  private onEntry(r: Json, n: number): void {
    const h = this.header!;
    const seqValue = r.seq;
    const item = `entry seq ${typeof seqValue === "number" ? seqValue : "?"}`;
    const e = envelopeOf(r, n, item);
    // Order first: a gap or a swap explains a broken link better than the link does.
    if (e.seq !== this.nextSeq) {
      if (e.seq >= h.b && this.nextSeq === h.b) throw new Fail(n, item, `entry seq ${e.seq} is outside the bundle's window [${h.a}, ${h.b})`);
      if (e.seq < this.nextSeq) {
        throw new Fail(n, item, e.seq < h.a
          ? `entry seq ${e.seq} is before the bundle's window [${h.a}, ${h.b})`
          : `entries out of order: seq ${e.seq} appears again after seq ${this.nextSeq - 1} (expected seq ${this.nextSeq})`);
      }
      this.jump = { missing: this.nextSeq, line: n, found: e.seq };
      throw new Fail(n, item, "seq jump");
    }
    if (e.chain !== h.chain) throw new Fail(n, item, `entry belongs to chain ${JSON.stringify(e.chain)}, not the bundle's ${JSON.stringify(h.chain)}`);
    if (e.v !== ENVELOPE_VERSION) throw new Fail(n, item, `unsupported envelope version ${e.v}`);
    const canonical = canonicalEnvelope(e);
    const recomputed = sha256Hex(canonical);
    if (recomputed !== e.hash) {
      throw new Fail(n, item, `hash mismatch: the record says ${e.hash.slice(0, 12)}…, the fields hash to ${recomputed.slice(0, 12)}…: the entry was edited`);
    }
    if (e.seq > h.a) {
      if (e.prev_hash !== this.prevHash) throw new Fail(n, item, `prev_hash is not the hash of seq ${e.seq - 1}: the chain is broken here`);
    } else if (e.seq === 0 && e.prev_hash !== ZERO_HASH) {
      throw new Fail(n, item, "prev_hash of seq 0 must be 64 zeros");
    }
    if ((e.payload_size > 0) !== (e.payload_digest !== undefined)) {
      throw new Fail(n, item, e.payload_size > 0 ? "the entry declares a payload but has no payload_digest" : "payload_digest without a payload (payload_size is 0)");
    }
    const claims = this.redactionsBy.get(e.seq);
    if (claims) {
      const c = claims[0]!;
      if (e.kind !== REDACTION_KIND) {
        throw new Fail(c.line, `redacted seq ${c.seq}`, `the record says entry seq ${e.seq} (line ${n}) erased the payload of seq ${c.seq}, but that entry's kind is ${JSON.stringify(e.kind)}, not "${REDACTION_KIND}"`);
      }
      if (e.payload_size === 0) {
        throw new Fail(c.line, `redacted seq ${c.seq}`, `the record says entry seq ${e.seq} (line ${n}) erased the payload of seq ${c.seq}, but that redaction entry has no payload saying so`);
      }
      this.redactionsBy.delete(e.seq);
      this.claimsAwaitingPayload = { by: e.seq, claims };
    }

    const frontier = this.frontier!;
    frontier.appendLeaf(leafHashOfCanonical(canonical));
    this.prevHash = e.hash;
    this.nextSeq++;
    this.entryCount++;
    if (e.batch !== undefined) {
      // Checked when the batch's record arrives; kept per batched entry until then.
      const m: BatchMember = { seq: e.seq, line: n, agent: e.agent, commitment: eventCommitment(e as unknown as CommittedEvent) };
      const members = this.batchMembers.get(e.batch);
      if (members) members.push(m);
      else this.batchMembers.set(e.batch, [m]);
    }
    while (this.nextRootCheck < this.cps.length && this.cps[this.nextRootCheck]!.size === frontier.size) {
      const cp = this.cps[this.nextRootCheck++]!;
      this.checkRoot(cp, frontier.root(), n, `root at size ${cp.size}`,
        `the Merkle root of entries [0, ${cp.size}) (the frontier and entries ${h.a}..${cp.size - 1}) differs from the root that checkpoint ${cp.size} (line ${cp.line}) signs: the frontier or an entry before it was altered`);
    }
    if (e.payload_size > 0) this.awaiting = { seq: e.seq, line: n, size: e.payload_size, digest: e.payload_digest! };
  }

  private checkRoot(cp: Cp, root: Uint8Array, n: number, item: string, reason: string): void {
    if (!equalBytes(root, cp.root)) throw new Fail(n, item, `${reason} (computed ${toBase64(root).slice(0, 12)}…, signed ${toBase64(cp.root).slice(0, 12)}…)`);
    cp.rootChecked = true;
  }

  private takeAwaiting(r: Json, n: number, item: string): { seq: number; line: number; size: number; digest: string } {
    const seq = int(r, "seq", n, item);
    const w = this.awaiting;
    if (!w || w.seq !== seq) {
      throw new Fail(n, item, `a ${String(r.t)} record for seq ${seq} must directly follow entry seq ${seq}, and only when that entry declares a payload`);
    }
    this.awaiting = null;
    return w;
  }

  private onPayload(r: Json, n: number): void {
    const item = `payload seq ${String(r.seq)}`;
    only(r, ["t", "seq", "salt", "payload"], n, item);
    const w = this.takeAwaiting(r, n, item);
    const salt = b64(r, "salt", n, item);
    if (salt.length !== SALT_BYTES) throw new Fail(n, item, `salt is ${salt.length} bytes, not ${SALT_BYTES}`);
    const payload = b64(r, "payload", n, item);
    if (payload.length !== w.size) throw new Fail(n, item, `payload is ${payload.length} bytes, entry seq ${w.seq} declares ${w.size}: the payload was edited`);
    if (payloadDigest(salt, payload) !== w.digest) {
      throw new Fail(n, item, `payload digest mismatch: SHA-256(salt || payload) is not the payload_digest of entry seq ${w.seq}: the payload was edited`);
    }
    this.payloadsChecked++;
    if (this.claimsAwaitingPayload?.by === w.seq) {
      const { claims } = this.claimsAwaitingPayload;
      this.claimsAwaitingPayload = null;
      checkRedactionClaims(w.seq, n, payload, claims);
    }
  }

  private onRedacted(r: Json, n: number): void {
    const h = this.header!;
    const item = `redacted seq ${String(r.seq)}`;
    only(r, ["t", "seq", "by_seq", "reason", "actor"], n, item);
    const w = this.takeAwaiting(r, n, item);
    if (this.claimsAwaitingPayload?.by === w.seq) {
      throw new Fail(n, item, `entry seq ${w.seq} is the redaction entry that erased the payload of seq ${this.claimsAwaitingPayload.claims[0]!.seq}: its own payload (the record of the erasure) cannot be redacted`);
    }
    const by = int(r, "by_seq", n, item);
    if (typeof r.reason !== "string") throw new Fail(n, item, '"reason" must be a string');
    const actor = str(r, "actor", n, item);
    if (by <= w.seq) throw new Fail(n, item, `by_seq ${by} must be after the redacted entry seq ${w.seq}`);
    if (by < h.b) {
      const list = this.redactionsBy.get(by) ?? [];
      list.push({ seq: w.seq, line: n, reason: r.reason, actor });
      this.redactionsBy.set(by, list);
    } else {
      this.warnings.push(`the payload of seq ${w.seq} was erased by entry seq ${by}, which lies outside the bundle: that redaction entry is not checked`);
    }
    this.redacted.push(w.seq);
  }

  private onBatch(r: Json, n: number): void {
    const h = this.header!;
    const item = `batch ${typeof r.batch === "string" ? r.batch : "#" + (this.batches + 1)}`;
    only(r, ["t", "agent", "batch", "batch_number", "public_key", "signature", "events", "seqs"], n, item);
    const agent = str(r, "agent", n, item);
    const batch = str(r, "batch", n, item);
    const batchNumber = int(r, "batch_number", n, item);
    const publicKey = b64(r, "public_key", n, item);
    if (publicKey.length !== 32) throw new Fail(n, item, `public_key is ${publicKey.length} bytes, not 32 (Ed25519)`);
    const signature = b64(r, "signature", n, item);
    if (signature.length !== 64) throw new Fail(n, item, `signature is ${signature.length} bytes, not 64 (Ed25519)`);
    const events = r.events;
    if (!Array.isArray(events) || events.length === 0 || !events.every((c) => typeof c === "string" && HEX64.test(c))) {
      throw new Fail(n, item, '"events" must be a non-empty list of 64-digit lowercase hex event commitments');
    }
    const signed = events as string[];
    const seqs = r.seqs;
    if (!Array.isArray(seqs) || seqs.length === 0 || !seqs.every((s, i) => isSeq(s) && (i === 0 || s > (seqs[i - 1] as number)))) {
      throw new Fail(n, item, '"seqs" must be a non-empty ascending list of seqs');
    }
    this.batches++;
    if (this.batchesRead.has(batch)) throw new Fail(n, item, `a second batch record for batch ${batch}`);
    this.batchesRead.add(batch);

    // The signature: by the agent's own key, over these events, on this chain.
    const zid = zidOf(publicKey);
    if (zid !== agent) throw new Fail(n, item, `public_key is not agent ${agent}'s key: its ZID is ${zid}`);
    if (!verifyBatchSignature({ agent, chain: h.chain, batchNumber, events: signed }, signature, publicKey)) {
      throw new Fail(n, item, `batch signature does not verify: agent ${agent}'s key did not sign batch number ${batchNumber} with these ${signed.length} events on chain ${JSON.stringify(h.chain)}`);
    }
    const id = batchId(batchNumber, signature);
    if (batch !== id) throw new Fail(n, item, `batch id ${batch} is not that of this signature and batch number (${id})`);

    // The entries naming the batch: the agent's, exactly the listed seqs, each a signed event.
    const members = this.batchMembers.get(batch) ?? [];
    this.batchMembers.delete(batch);
    for (const m of members) {
      if (m.agent !== agent) throw new Fail(n, item, `entry seq ${m.seq} (line ${m.line}) names batch ${batch} but its agent is ${m.agent}, not ${agent}`);
    }
    const have = members.map((m) => m.seq);
    if (have.length !== seqs.length || have.some((s, i) => s !== seqs[i])) {
      const listed = new Set(seqs as number[]);
      const extra = have.find((s) => !listed.has(s));
      throw new Fail(n, item, extra !== undefined
        ? `entry seq ${extra} names batch ${batch} but the record's seqs do not list it`
        : `the record lists seq ${(seqs as number[]).find((s) => !have.includes(s))}, but no entry of the bundle at that seq names batch ${batch}`);
    }
    const unused = new Map<string, number>();
    for (const c of signed) unused.set(c, (unused.get(c) ?? 0) + 1);
    for (const m of members) {
      const left = unused.get(m.commitment);
      if (!left) {
        throw new Fail(n, item, left === 0
          ? `entry seq ${m.seq} (line ${m.line}) repeats an event of batch ${batch} more often than the agent signed it`
          : `entry seq ${m.seq} (line ${m.line}) is not among the events agent ${agent} signed in batch ${batch}: its committed fields were edited, or it never was in this batch`);
      }
      unused.set(m.commitment, left - 1);
    }
    this.batchesChecked++;
  }

  private onCompletion(r: Json, n: number): void {
    const h = this.header!;
    const item = "completion";
    only(r, ["t", "from_size", "to_size", "hashes"], n, item);
    const anchor = this.cps[this.cps.length - 1]!;
    const from = int(r, "from_size", n, item);
    const to = int(r, "to_size", n, item);
    if (from !== h.b) throw new Fail(n, item, `from_size ${from} is not to_seq ${h.b}`);
    if (to !== anchor.size) throw new Fail(n, item, `to_size ${to} is not the anchor checkpoint's size ${anchor.size}`);
    const list = hashes(r, "hashes", n, item);
    const nodes = rangeNodes(from, to);
    if (list.length !== nodes.length) throw new Fail(n, item, `the range [${from}, ${to}) has ${nodes.length} subtree hashes, the record has ${list.length}`);
    const f = this.frontier!;
    nodes.forEach((node, i) => f.appendNode(node.level, list[i]!));
    this.checkRoot(anchor, f.root(), n, item,
      `the Merkle root of the window extended by the completion hashes differs from the root that the anchor checkpoint ${anchor.size} (line ${anchor.line}) signs: the completion (or the frontier) was altered`);
    this.completionSeen = true;
  }

  private onEnd(r: Json, n: number): void {
    const item = "end";
    only(r, ["t", "records", "sha256"], n, item);
    const records = int(r, "records", n, item);
    const sha = str(r, "sha256", n, item);
    if (records !== n - 1) throw new Fail(n, item, `the end record counts ${records} records, the file has ${n - 1} before it: records were added or removed`);
    const actual = this.digest.digestHex();
    if (sha !== actual) throw new Fail(n, item, `SHA-256 of the file before the end record is ${actual.slice(0, 12)}…, the end record says ${sha.slice(0, 12)}…: the file was altered`);
    this.seenEnd = true;
    this.stage = AFTER_END;
  }

  // ---------------------------------------------------------------- verdict

  private verdict(): BundleVerdict {
    const h = this.header;
    const out: BundleVerdict = {
      ok: this.failure === null && this.seenEnd,
      format: h?.format ?? null,
      chain: h?.chain ?? null,
      origin: h?.origin ?? null,
      from_seq: h?.a ?? null,
      to_seq: h?.b ?? null,
      entries: this.entryCount,
      payloads_checked: this.payloadsChecked,
      redacted: [...this.redacted],
      checkpoints_checked: this.cps.filter((c) => c.rootChecked).length,
      checkpoints: this.cps.map((c, i) => ({ line: c.line, size: c.size, root: toBase64(c.root), key: c.key, anchor: i === this.cps.length - 1 })),
      consistency_checked: this.consistencyCount,
      batches: this.batches,
      batches_checked: this.batchesChecked,
      keys: [...this.keyNames],
      keys_trusted_from: this.pinned ? "pinned" : "bundle",
      warnings: [...this.warnings],
    };
    if (this.failure) out.first_failure = { ...this.failure };
    return out;
  }
}

const NEWLINE = Uint8Array.of(10);

/** A redacted record, waiting for the redaction entry it names. */
interface RedactionClaimAt {
  seq: number;
  line: number;
  reason: string;
  actor: string;
}

/**
 * The payload of redaction entry `by` (at line n) must say it erased each claimed seq,
 * with the reason and actor the redacted record gives. One redaction erases one payload.
 */
function checkRedactionClaims(by: number, n: number, payload: Uint8Array, claims: RedactionClaimAt[]): void {
  let record: { redacts_seq?: unknown; reason?: unknown; requested_by?: unknown } | null = null;
  try {
    const v: unknown = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(payload));
    if (v !== null && typeof v === "object" && !Array.isArray(v)) record = v;
  } catch {
    // record stays null
  }
  for (const c of claims) {
    const item = `redacted seq ${c.seq}`;
    const says = `the record says entry seq ${by} erased the payload of seq ${c.seq}, but`;
    if (!record) throw new Fail(c.line, item, `${says} that entry's payload (line ${n}) is not a redaction record`);
    if (record.redacts_seq !== c.seq) throw new Fail(c.line, item, `${says} that entry's payload (line ${n}) says it erased seq ${String(record.redacts_seq)}`);
    if (record.reason !== c.reason || record.requested_by !== c.actor) {
      throw new Fail(c.line, item, `${says} the reason or actor differ from those in that entry's payload (line ${n})`);
    }
  }
}

function keyName(k: VerifierKey): string {
  return `${k.name}+${keyIdHex(k.keyId)}`;
}

function isSeq(x: unknown): x is number {
  return typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
}

function only(r: Json, fields: string[], n: number, item: string): void {
  for (const k of Object.keys(r)) if (!fields.includes(k)) throw new Fail(n, item, `unknown field ${JSON.stringify(k)}`);
}

function str(r: Json, field: string, n: number, item: string): string {
  const v = r[field];
  if (typeof v !== "string" || v === "") throw new Fail(n, item, `"${field}" must be a non-empty string`);
  if (!v.isWellFormed()) throw new Fail(n, item, `"${field}" is not well-formed Unicode`);
  return v;
}

function int(r: Json, field: string, n: number, item: string): number {
  const v = r[field];
  if (!isSeq(v)) throw new Fail(n, item, `"${field}" must be a non-negative integer`);
  return v;
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

function rfc3339(r: Json, field: string, n: number, item: string): string {
  const v = str(r, field, n, item);
  if (!RFC3339.test(v)) throw new Fail(n, item, `"${field}" is not an RFC 3339 time`);
  return v;
}

function b64(r: Json, field: string, n: number, item: string): Uint8Array {
  const v = r[field];
  if (typeof v !== "string") throw new Fail(n, item, `"${field}" must be a base64 string`);
  try {
    return fromBase64(v);
  } catch {
    throw new Fail(n, item, `"${field}" is not canonical standard base64`);
  }
}

function hashes(r: Json, field: string, n: number, item: string): Uint8Array[] {
  const v = r[field];
  if (!Array.isArray(v)) throw new Fail(n, item, `"${field}" must be a list of base64 hashes`);
  return v.map((x, i) => {
    let h: Uint8Array;
    try {
      if (typeof x !== "string") throw new Error();
      h = fromBase64(x);
    } catch {
      throw new Fail(n, item, `${field}[${i}] is not a base64 string`);
    }
    if (h.length !== HASH_BYTES) throw new Fail(n, item, `${field}[${i}] is ${h.length} bytes, not ${HASH_BYTES}`);
    return h;
  });
}

const HEX64 = /^[0-9a-f]{64}$/;

/** The entry record's envelope, every field type-checked; unknown fields refused. */
function envelopeOf(r: Json, n: number, item: string): HashedEnvelope {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(r)) {
    if (k === "t") continue;
    if (k === "hash") {
      if (typeof v !== "string" || !HEX64.test(v)) throw new Fail(n, item, '"hash" must be 64 lowercase hex digits');
      out.hash = v;
      continue;
    }
    if (!(ENVELOPE_FIELDS as readonly string[]).includes(k)) throw new Fail(n, item, `unknown field ${JSON.stringify(k)}`);
    if (INTEGER_FIELDS.has(k)) {
      if (!isSeq(v)) throw new Fail(n, item, `"${k}" must be a non-negative integer`);
    } else {
      if (typeof v !== "string") throw new Fail(n, item, `"${k}" must be a string`);
      if (v === "") throw new Fail(n, item, `"${k}" is empty: an absent field is left out, never ""`);
      if (!v.isWellFormed()) throw new Fail(n, item, `"${k}" is not well-formed Unicode`);
    }
    out[k] = v;
  }
  for (const k of REQUIRED_FIELDS) if (!(k in out)) throw new Fail(n, item, `required field "${k}" missing`);
  if (!("hash" in out)) throw new Fail(n, item, 'required field "hash" missing');
  if (!HEX64.test(out.prev_hash as string)) throw new Fail(n, item, '"prev_hash" must be 64 lowercase hex digits');
  if (out.payload_digest !== undefined && !HEX64.test(out.payload_digest as string)) throw new Fail(n, item, '"payload_digest" must be 64 lowercase hex digits');
  return out as unknown as HashedEnvelope;
}
