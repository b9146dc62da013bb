// Inclusion and consistency proofs (RFC 9162 §2.1.3–2.1.4): which subtrees a proof is
// made of, and the client-side checks. The checks are the RFC's iterative algorithms,
// with plain arithmetic instead of bit shifts so sizes may exceed 2^32.
import { EMPTY_ROOT, equalBytes, HASH_BYTES, nodeHash } from "./merkle-hash.js";
import { splitPoint } from "./merkle-node.js";

/** A leaf range [begin, end) whose subtree hash is one element of a proof. */
export type LeafRange = [begin: number, end: number];

function checkSize(name: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${name} must be a non-negative integer, got ${n}`);
}

/**
 * The ranges whose hashes form the inclusion proof of leaf `index` in a tree of
 * `size` leaves, leaf side first (RFC 9162 PATH).
 *
 * Precondition: 0 ≤ index < size.
 */
export function inclusionProofRanges(index: number, size: number): LeafRange[] {
  checkSize("index", index);
  checkSize("size", size);
  if (index >= size) throw new RangeError(`leaf ${index} is not in a tree of ${size}`);
  const out: LeafRange[] = [];
  const path = (lo: number, hi: number): void => {
    if (hi - lo === 1) return;
    const k = splitPoint(hi - lo);
    if (index < lo + k) {
      path(lo, lo + k);
      out.push([lo + k, hi]);
    } else {
      path(lo + k, hi);
      out.push([lo, lo + k]);
    }
  };
  path(0, size);
  return out;
}

/**
 * The ranges whose hashes form the consistency proof from a tree of `size1` leaves to
 * one of `size2` (RFC 9162 PROOF/SUBPROOF). Empty when size1 is 0 or equals size2.
 *
 * Precondition: 0 ≤ size1 ≤ size2.
 */
export function consistencyProofRanges(size1: number, size2: number): LeafRange[] {
  checkSize("size1", size1);
  checkSize("size2", size2);
  if (size1 > size2) throw new RangeError(`a tree of ${size1} cannot grow into one of ${size2}`);
  const out: LeafRange[] = [];
  if (size1 === 0 || size1 === size2) return out;
  const subproof = (lo: number, hi: number, whole: boolean): void => {
    const m = size1 - lo;
    if (lo + m === hi) {
      if (!whole) out.push([lo, hi]);
      return;
    }
    const k = splitPoint(hi - lo);
    if (m <= k) {
      subproof(lo, lo + k, whole);
      out.push([lo + k, hi]);
    } else {
      subproof(lo + k, hi, false);
      out.push([lo, lo + k]);
    }
  };
  subproof(0, size2, true);
  return out;
}

/** Why a proof failed, for a person to read. */
export class ProofError extends Error {
  override name = "ProofError";
}

function checkHashes(proof: readonly Uint8Array[]): void {
  for (const [i, h] of proof.entries()) {
    if (h.length !== HASH_BYTES) throw new ProofError(`proof element ${i} is ${h.length} bytes, not ${HASH_BYTES}`);
  }
}

const isOdd = (n: number) => n % 2 === 1;
const half = (n: number) => Math.floor(n / 2);

/**
 * The root implied by an inclusion proof (RFC 9162 §2.1.3.2). Throws ProofError when
 * the proof has the wrong shape for (index, size).
 */
export function rootFromInclusionProof(index: number, size: number, leaf: Uint8Array, proof: readonly Uint8Array[]): Uint8Array {
  checkSize("index", index);
  checkSize("size", size);
  if (index >= size) throw new ProofError(`leaf index ${index} is not below tree size ${size}`);
  if (leaf.length !== HASH_BYTES) throw new ProofError(`leaf hash is ${leaf.length} bytes, not ${HASH_BYTES}`);
  checkHashes(proof);
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) throw new ProofError(`inclusion proof is too long for leaf ${index} of ${size}`);
    if (isOdd(fn) || fn === sn) {
      r = nodeHash(p, r);
      if (!isOdd(fn)) {
        while (!isOdd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0) throw new ProofError(`inclusion proof is too short for leaf ${index} of ${size}`);
  return r;
}

/** True when `proof` shows leaf `index` (hash `leaf`) is in the tree of `size` with `root`. */
export function verifyInclusion(index: number, size: number, leaf: Uint8Array, proof: readonly Uint8Array[], root: Uint8Array): boolean {
  try {
    return equalBytes(rootFromInclusionProof(index, size, leaf, proof), root);
  } catch (err) {
    if (err instanceof ProofError || err instanceof RangeError) return false;
    throw err;
  }
}

/**
 * Checks that the tree (size2, root2) extends the tree (size1, root1)
 * (RFC 9162 §2.1.4.2). Throws ProofError saying what is wrong; returns on success.
 */
export function checkConsistency(size1: number, size2: number, root1: Uint8Array, root2: Uint8Array, proof: readonly Uint8Array[]): void {
  checkSize("size1", size1);
  checkSize("size2", size2);
  if (size1 > size2) throw new ProofError(`tree size ${size1} is larger than ${size2}: a log never shrinks`);
  checkHashes(proof);
  if (root1.length !== HASH_BYTES || root2.length !== HASH_BYTES) throw new ProofError(`roots must be ${HASH_BYTES} bytes`);
  if (size1 === size2) {
    if (proof.length !== 0) throw new ProofError("a proof between equal sizes must be empty");
    if (!equalBytes(root1, root2)) throw new ProofError(`two different roots for the same size ${size1}`);
    return;
  }
  if (size1 === 0) {
    if (proof.length !== 0) throw new ProofError("a proof from the empty tree must be empty");
    if (!equalBytes(root1, EMPTY_ROOT)) throw new ProofError("the root of the empty tree is SHA-256 of nothing");
    return;
  }
  if (proof.length === 0) throw new ProofError("empty consistency proof");
  // When size1 is a power of two its root is itself a node of the proof path.
  const path = isPowerOfTwo(size1) ? [root1, ...proof] : [...proof];
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (isOdd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (const c of path.slice(1)) {
    if (sn === 0) throw new ProofError(`consistency proof ${size1}→${size2} is too long`);
    if (isOdd(fn) || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (!isOdd(fn)) {
        while (!isOdd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0) throw new ProofError(`consistency proof ${size1}→${size2} is too short`);
  if (!equalBytes(fr, root1)) throw new ProofError(`consistency proof does not lead to the root of the tree of ${size1}`);
  if (!equalBytes(sr, root2)) throw new ProofError(`consistency proof does not lead to the root of the tree of ${size2}`);
}

/** True when `proof` shows (size2, root2) is an append-only extension of (size1, root1). */
export function verifyConsistency(size1: number, size2: number, root1: Uint8Array, root2: Uint8Array, proof: readonly Uint8Array[]): boolean {
  try {
    checkConsistency(size1, size2, root1, root2, proof);
    return true;
  } catch (err) {
    if (err instanceof ProofError || err instanceof RangeError) return false;
    throw err;
  }
}

function isPowerOfTwo(n: number): boolean {
  while (n > 1 && n % 2 === 0) n /= 2;
  return n === 1;
}
