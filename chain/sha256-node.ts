// SHA-256 for Node: the native implementation, several times faster than any JS one,
// which is what lets Verify keep pace with the bare hash rate.
import { createHash } from "node:crypto";

/** SHA-256 of `data`. */
export function sha256(data: Uint8Array | string): Uint8Array {
  const digest = createHash("sha256").update(data).digest();
  return new Uint8Array(digest.buffer, digest.byteOffset, digest.byteLength);
}
