// RFC 8785 (JCS) canonical JSON.
import canonicalizeModule from "canonicalize";
import type { Envelope } from "./envelope.js";

/**
 * Generic JCS of any JSON value, through the reference library by the RFC's author.
 * Used for arbitrary documents (test vectors, bundles); entries use the faster
 * fixed-shape encoder below, which the tests hold equal to this one.
 */
// canonicalize is CommonJS whose types say "export default": Node hands over the
// function itself, bundlers may wrap it in { default }. Accept both.
type Canonicalize = (input: unknown) => string | undefined;
const canonicalize: Canonicalize =
  (canonicalizeModule as unknown as { default?: Canonicalize }).default ?? (canonicalizeModule as unknown as Canonicalize);

export function canonicalJson(value: unknown): string {
  const text = canonicalize(value);
  if (text === undefined) throw new Error("value has no JSON form");
  return text;
}

/**
 * JCS of an entry envelope. The envelope has a fixed set of ASCII keys, so their
 * sorted order is known in advance and only the string values need escaping, for
 * which JSON.stringify is exactly JCS (ES2019 well-formed stringify). Numbers are
 * non-negative safe integers, whose ES text form is their decimal digits.
 *
 * Precondition: strings are well-formed UTF-16 (no lone surrogates) and numbers are
 * safe integers; the server rejects anything else before it gets here.
 */
export function canonicalEnvelope(e: Envelope): string {
  // Keys in UTF-16 code-unit order, as RFC 8785 §3.2.3 requires.
  let out = "{";
  out += opt("actor", e.actor, out);
  out += sep(out) + '"agent":' + JSON.stringify(e.agent);
  out += opt("batch", e.batch, out);
  out += opt("cause", e.cause, out);
  out += ',"chain":' + JSON.stringify(e.chain);
  out += opt("idempotency_key", e.idempotency_key, out);
  out += ',"kind":' + JSON.stringify(e.kind);
  out += opt("occurred_at", e.occurred_at, out);
  out += opt("payload_digest", e.payload_digest, out);
  out += ',"payload_size":' + int(e.payload_size);
  out += opt("payload_type", e.payload_type, out);
  out += ',"prev_hash":' + JSON.stringify(e.prev_hash);
  out += ',"seq":' + int(e.seq);
  out += opt("source_position", e.source_position, out);
  out += ',"source_type":' + JSON.stringify(e.source_type);
  out += opt("span_id", e.span_id, out);
  out += opt("subject", e.subject, out);
  out += opt("trace_id", e.trace_id, out);
  out += ',"ts":' + JSON.stringify(e.ts);
  out += ',"v":' + int(e.v);
  return out + "}";
}

function sep(soFar: string): string {
  return soFar.length > 1 ? "," : "";
}

function opt(key: string, value: string | undefined, soFar: string): string {
  if (value === undefined || value === "") return "";
  return sep(soFar) + '"' + key + '":' + JSON.stringify(value);
}

function int(n: number): string {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`not a non-negative safe integer: ${n}`);
  return String(n);
}

/** The envelope as a plain object with absent fields removed (for JCS via the library). */
export function envelopeObject(e: Envelope): Record<string, string | number> {
  const out: Record<string, string | number> = {};
  for (const [k, v] of Object.entries(e)) {
    if (k === "hash" || v === undefined || v === "") continue;
    out[k] = v as string | number;
  }
  return out;
}
