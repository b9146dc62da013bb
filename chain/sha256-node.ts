// SHA-256 for Node: the native one-shot implementation, several times faster than any
// JS one, which is what lets Verify keep pace with the bare hash rate.
import { hash } from "node:crypto";

/** SHA-256 of `data` (strings as UTF-8). */
export function sha256(data: Uint8Array | string): Uint8Array {
  const digest = hash("sha256", data, "buffer") as Buffer;
  return new Uint8Array(digest.buffer, digest.byteOffset, digest.byteLength);
}

/** Lowercase hex SHA-256 of `data` (strings as UTF-8), without an intermediate buffer. */
export function sha256Hex(data: Uint8Array | string): string {
  return hash("sha256", data, "hex");
}
