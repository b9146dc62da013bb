// Walks stored entries in seq order and finds the first place the chain breaks.
// Pure: the server's Verify, the CLI and the browser feed it rows from wherever.
import { sha256Hex } from "#sha256";
import { canonicalEnvelope } from "./canonical-json.js";
import { entryHash } from "./entry-hash.js";
import { ZERO_HASH, type HashedEnvelope } from "./envelope.js";
import { payloadDigest } from "./payload-digest.js";

export type BreakKind =
  | "hash_mismatch"
  | "link_mismatch"
  | "payload_mismatch"
  | "missing_entry"
  | "unexpected_entry"
  | "moved_entry"
  | "truncated"
  | "root_mismatch"
  | "bad_signature";

export interface ChainBreak {
  /** The first bad seq. */
  seq: number;
  kind: BreakKind;
  reason: string;
}

/** A stored entry as the verifier sees it: the envelope, its hash, and the payload
 * with its salt when they are still held (both absent once redacted). */
export interface StoredEntry extends HashedEnvelope {
  payload?: Uint8Array | null;
  salt?: Uint8Array | null;
  redacted?: boolean;
  /** Seq of the `redaction` entry that erased the payload, when redacted. */
  redacted_by?: number;
}

/** "The payload of `seq` was erased by the redaction entry `by`." */
export interface RedactionClaim {
  seq: number;
  by: number;
}

/** Called for each entry that passed, with its canonical JSON (for the Merkle leaf). */
export type OnVerified = (e: StoredEntry, canonical: string) => void;

/**
 * Incremental chain verifier. Feed entries with `push` in the order the store returns
 * them (ascending seq); the first break is kept and later entries are ignored.
 *
 * Precondition: `prevHash` is the trusted hash of entry `startSeq - 1` (ZERO_HASH
 * when `startSeq` is 0).
 */
export class ChainWalker {
  private next: number;
  private prevHash: string;
  private last: StoredEntry | null = null;
  private broken: ChainBreak | null = null;
  /** Entries checked so far. */
  checked = 0;
  /** Seqs whose payload was redacted: reported, not a break. */
  readonly redacted: number[] = [];
  private readonly claims: RedactionClaim[] = [];

  /**
   * @param endSeq one past the last seq the chain committed (its head), when known:
   * any stored entry at or beyond it was not written by the ledger.
   */
  constructor(
    startSeq = 0,
    prevHash: string = ZERO_HASH,
    private readonly endSeq?: number,
    private readonly onVerified?: OnVerified,
  ) {
    this.next = startSeq;
    this.prevHash = prevHash;
  }

  get firstBreak(): ChainBreak | null {
    return this.broken;
  }

  /** Checks one entry; returns the first break found so far, if any. */
  push(e: StoredEntry): ChainBreak | null {
    if (this.broken) return this.broken;
    if (e.seq < this.next) {
      return this.fail(e.seq, "unexpected_entry", `seq ${e.seq} appears again after seq ${this.next - 1}`);
    }
    if (e.seq > this.next) {
      return this.fail(this.next, "missing_entry", `seq ${this.next} is missing (next stored entry is seq ${e.seq})`);
    }
    if (this.endSeq !== undefined && e.seq >= this.endSeq) {
      return this.fail(e.seq, "unexpected_entry", `seq ${e.seq} lies beyond the committed head (seq ${this.endSeq - 1}): it was inserted`);
    }
    const canonical = canonicalEnvelope(e);
    const recomputed = sha256Hex(canonical);
    if (recomputed !== e.hash) return this.explainMismatch(e, recomputed);
    if (e.prev_hash !== this.prevHash) {
      return this.fail(e.seq, "link_mismatch", `prev_hash does not equal the hash of seq ${e.seq - 1}: an entry was inserted, removed or reordered`);
    }
    const payloadBreak = checkPayload(e);
    if (payloadBreak) return this.fail(e.seq, "payload_mismatch", payloadBreak);
    if (e.redacted) {
      this.redacted.push(e.seq);
      if (e.redacted_by !== undefined) this.claims.push({ seq: e.seq, by: e.redacted_by });
    }
    this.prevHash = e.hash;
    this.next = e.seq + 1;
    this.checked++;
    this.last = e;
    this.onVerified?.(e, canonical);
    return this.broken;
  }

  /** The redactions the walked entries claim, for the caller to check against the
   * redaction entries they name. */
  redactionClaims(): RedactionClaim[] {
    return this.claims.filter((c) => c.seq < this.next);
  }

  /** Records a break found outside the walker (a Merkle root, stored node or signature
   * check). The first one recorded wins, unless `ifEarlier` and this one's seq is lower. */
  breakAt(seq: number, kind: BreakKind, reason: string, ifEarlier = false): ChainBreak {
    if (this.broken && !(ifEarlier && seq < this.broken.seq)) return this.broken;
    return this.fail(seq, kind, reason);
  }

  /**
   * A stored hash that does not match can mean an edit in place, or a genuine entry
   * moved to another seq (rows inserted, deleted or swapped and the rest renumbered).
   * A moved entry still hashes correctly under its original seq, which tells the cases
   * apart and puts the break where the tampering happened.
   */
  private explainMismatch(e: StoredEntry, recomputed: string): ChainBreak {
    const hashesAt = (seq: number) => seq >= 0 && entryHash({ ...e, seq }) === e.hash;
    const prev = this.last;
    if (prev && prev.seq === e.seq - 1 && hashesAt(e.seq - 1) && e.prev_hash === prev.prev_hash) {
      // The entry before this one took this entry's original place: it was inserted.
      this.checked--;
      if (prev.redacted) this.redacted.pop();
      return this.fail(prev.seq, "unexpected_entry", `seq ${prev.seq} was inserted: the entry now at seq ${e.seq} is the original seq ${prev.seq}, renumbered`);
    }
    for (const offset of [1, -1, 2, -2]) {
      if (hashesAt(e.seq + offset)) {
        return this.fail(e.seq, "moved_entry",
          `the entry at seq ${e.seq} is the original seq ${e.seq + offset}, moved: entries were deleted, inserted or reordered here`);
      }
    }
    return this.fail(e.seq, "hash_mismatch", `stored hash ${e.hash.slice(0, 12)}… differs from recomputed ${recomputed.slice(0, 12)}…: the entry was edited`);
  }

  /**
   * Ends the walk. `expectedEnd` is the seq one past the last entry the chain should
   * have in this range (from the chain head or a checkpoint); fewer entries is truncation.
   */
  finish(expectedEnd?: number): ChainBreak | null {
    if (this.broken) return this.broken;
    if (expectedEnd !== undefined && this.next < expectedEnd) {
      return this.fail(this.next, "truncated", `the chain ends at seq ${this.next - 1} but seq ${expectedEnd - 1} was committed: entries were removed from the tail`);
    }
    return null;
  }

  private fail(seq: number, kind: BreakKind, reason: string): ChainBreak {
    this.broken = { seq, kind, reason };
    return this.broken;
  }
}

function checkPayload(e: StoredEntry): string | null {
  if (e.redacted) {
    // An erased payload stays erased: bytes or a salt beside it were put back by someone.
    return (e.payload && e.payload.length > 0) || (e.salt && e.salt.length > 0) ? "a payload is stored for an entry whose payload was erased" : null;
  }
  if (e.payload_size === 0) {
    return e.payload && e.payload.length > 0 ? "a payload is stored for an entry that declared none" : null;
  }
  if (!e.payload || !e.salt) return "the payload or its salt is missing and no redaction records it";
  if (e.payload.length !== e.payload_size) {
    return `payload is ${e.payload.length} bytes, the entry declares ${e.payload_size}`;
  }
  if (payloadDigest(e.salt, e.payload) !== e.payload_digest) {
    return "payload does not match payload_digest: the payload was edited";
  }
  return null;
}
