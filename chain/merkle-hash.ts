// RFC 6962 / RFC 9162 tree hashing (SPEC §2): leaves and interior nodes are hashed
// with distinct one-byte prefixes so a leaf can never be passed off as a node.
import { sha256 } from "#sha256";
import { canonicalEnvelope } from "./canonical-json.js";
import type { Envelope } from "./envelope.js";

/** Length in bytes of every hash in the tree. */
export const HASH_BYTES = 32;

/** Root of the empty tree: SHA-256 of no bytes (RFC 9162 §2.1.1). */
export const EMPTY_ROOT: Uint8Array = sha256(new Uint8Array(0));

/** Leaf hash of arbitrary bytes: SHA-256(0x00 || data). */
export function leafHash(data: Uint8Array): Uint8Array {
  const joined = new Uint8Array(data.length + 1);
  joined.set(data, 1);
  return sha256(joined);
}

/**
 * Leaf hash of an entry: SHA-256(0x00 || JCS bytes of its envelope), the same bytes
 * its `hash` is taken over. "\u0000" encodes to the single byte 0x00 in UTF-8, so the
 * string form avoids copying the canonical bytes.
 */
export function leafHashOfCanonical(canonical: string): Uint8Array {
  return sha256("\u0000" + canonical);
}

/** Leaf hash of an entry envelope. */
export function entryLeafHash(e: Envelope): Uint8Array {
  return leafHashOfCanonical(canonicalEnvelope(e));
}

/** Interior node hash: SHA-256(0x01 || left || right). */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  const joined = new Uint8Array(1 + HASH_BYTES * 2);
  joined[0] = 1;
  joined.set(left, 1);
  joined.set(right, 1 + HASH_BYTES);
  return sha256(joined);
}

/** Constant-shape byte comparison (hashes are public, so timing is not a concern). */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
