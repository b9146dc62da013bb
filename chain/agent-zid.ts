// Agent identity (SPEC §4): an agent is its Ed25519 public key; its ZID is a short,
// human-friendly name derived from that key, so anyone holding the key (the server,
// an offline verifier) can recompute it and nobody can choose it.
import { sha256 } from "#sha256";

/** Crockford base32: no I, L, O, U, so a ZID read aloud or retyped is unambiguous. */
const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const ZID_CHARS = 8;
export const ZID_PATTERN = /^ZID-[0-9A-HJKMNP-TV-Z]{8}$/;

/**
 * "ZID-" + the first 40 bits of SHA-256(public key) in Crockford base32 (8 characters).
 * 40 bits make an accidental collision unlikely below about a million agents; the
 * registry still refuses a second key with a ZID already taken.
 *
 * Precondition: `publicKey` is a 32-byte Ed25519 public key.
 */
export function zidOf(publicKey: Uint8Array): string {
  if (publicKey.length !== 32) throw new RangeError(`an Ed25519 public key is 32 bytes, got ${publicKey.length}`);
  const h = sha256(publicKey);
  // 5 bytes = 40 bits = 8 groups of 5 bits, most significant first.
  let bits = 0n;
  for (let i = 0; i < 5; i++) bits = (bits << 8n) | BigInt(h[i]!);
  let out = "";
  for (let i = ZID_CHARS - 1; i >= 0; i--) out += CROCKFORD[Number((bits >> BigInt(i * 5)) & 31n)];
  return `ZID-${out}`;
}
