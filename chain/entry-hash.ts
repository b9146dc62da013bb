import { canonicalEnvelope } from "./canonical-json.js";
import type { Envelope } from "./envelope.js";
import { sha256Hex } from "#sha256";

/** Hex SHA-256 over the JCS bytes of the envelope (SPEC §2 `hash`). */
export function entryHash(e: Envelope): string {
  return sha256Hex(canonicalEnvelope(e));
}
