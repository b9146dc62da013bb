// SHA-256 for Node: the native one-shot implementation, several times faster than any
// JS one, which is what lets Verify keep pace with the bare hash rate.
import { createHash, hash } from "node:crypto";

/** SHA-256 of `data` (strings as UTF-8). */
export function sha256(data: Uint8Array | string): Uint8Array {
  const digest = hash("sha256", data, "buffer") as Buffer;
  return new Uint8Array(digest.buffer, digest.byteOffset, digest.byteLength);
}

/** Lowercase hex SHA-256 of `data` (strings as UTF-8), without an intermediate buffer. */
export function sha256Hex(data: Uint8Array | string): string {
  return hash("sha256", data, "hex");
}

/** An incremental SHA-256, for inputs that arrive in pieces (evidence bundles). */
export interface Sha256Stream {
  update(data: Uint8Array | string): void;
  /** Lowercase hex of the digest; the stream cannot be used afterwards. */
  digestHex(): string;
}

export function sha256Stream(): Sha256Stream {
  const h = createHash("sha256");
  return {
    update: (data) => void h.update(data),
    digestHex: () => h.digest("hex"),
  };
}
