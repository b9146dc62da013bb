// SHA-256 for browsers: synchronous (WebCrypto's digest is async), so the chain code
// stays identical in both places.
import { sha256 as nobleSha256 } from "@noble/hashes/sha2.js";
import { toHex } from "./hex.js";

const utf8 = new TextEncoder();

/** SHA-256 of `data`; strings are hashed as their UTF-8 bytes. */
export function sha256(data: Uint8Array | string): Uint8Array {
  return nobleSha256(typeof data === "string" ? utf8.encode(data) : data);
}

/** Lowercase hex SHA-256 of `data` (strings as UTF-8). */
export function sha256Hex(data: Uint8Array | string): string {
  return toHex(sha256(data));
}

/** An incremental SHA-256, for inputs that arrive in pieces (evidence bundles). */
export interface Sha256Stream {
  update(data: Uint8Array | string): void;
  /** Lowercase hex of the digest; the stream cannot be used afterwards. */
  digestHex(): string;
}

export function sha256Stream(): Sha256Stream {
  const h = nobleSha256.create();
  return {
    update: (data) => void h.update(typeof data === "string" ? utf8.encode(data) : data),
    digestHex: () => toHex(h.digest()),
  };
}
