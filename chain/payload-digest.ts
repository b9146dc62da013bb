import { sha256Hex } from "#sha256";

/** Salt length in bytes. A fresh random salt per entry makes a digest unguessable
 * from a small payload space, and erasing the salt makes a redaction final. */
export const SALT_BYTES = 32;

/** Hex SHA-256 of (salt || payload), SPEC §2 `payload_digest`. */
export function payloadDigest(salt: Uint8Array, payload: Uint8Array): string {
  const joined = new Uint8Array(salt.length + payload.length);
  joined.set(salt, 0);
  joined.set(payload, salt.length);
  return sha256Hex(joined);
}
