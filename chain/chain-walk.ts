// Walks stored entries in seq order and finds the first place the chain breaks.
// Pure: the server's Verify, the CLI and the browser feed it rows from wherever.
import { entryHash } from "./entry-hash.js";
import { ZERO_HASH, type HashedEnvelope } from "./envelope.js";
import { payloadDigest } from "./payload-digest.js";

export type BreakKind =
  | "hash_mismatch"
  | "link_mismatch"
  | "payload_mismatch"
  | "missing_entry"
  | "unexpected_entry"
  | "truncated";

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
}

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
  private broken: ChainBreak | null = null;
  /** Entries checked so far. */
  checked = 0;
  /** Seqs whose payload was redacted: reported, not a break. */
  readonly redacted: number[] = [];

  constructor(startSeq = 0, prevHash: string = ZERO_HASH) {
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
    const recomputed = entryHash(e);
    if (recomputed !== e.hash) {
      return this.fail(e.seq, "hash_mismatch", `stored hash ${e.hash.slice(0, 12)}… differs from recomputed ${recomputed.slice(0, 12)}…: the entry was edited`);
    }
    if (e.prev_hash !== this.prevHash) {
      return this.fail(e.seq, "link_mismatch", `prev_hash does not equal the hash of seq ${e.seq - 1}: an entry was inserted, removed or reordered`);
    }
    const payloadBreak = checkPayload(e);
    if (payloadBreak) return this.fail(e.seq, "payload_mismatch", payloadBreak);
    if (e.redacted) this.redacted.push(e.seq);
    this.prevHash = e.hash;
    this.next = e.seq + 1;
    this.checked++;
    return null;
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

  /** The hash of the last good entry. */
  get headHash(): string {
    return this.prevHash;
  }

  private fail(seq: number, kind: BreakKind, reason: string): ChainBreak {
    this.broken = { seq, kind, reason };
    return this.broken;
  }
}

function checkPayload(e: StoredEntry): string | null {
  if (e.redacted) return null;
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
