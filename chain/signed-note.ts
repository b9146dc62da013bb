// C2SP signed notes (c2sp.org/signed-note) with Ed25519 through libsodium: text, a
// blank line, then "— <key name> base64(key ID || signature)" lines. Call
// `await sodiumReady()` once before signing or verifying.
import sodium from "libsodium-wrappers";
import { sha256 } from "#sha256";
import { fromBase64, toBase64 } from "./base64.js";
import { toHex } from "./hex.js";

/** Signature type byte of Ed25519 in the key ID and key encodings. */
export const ED25519_TYPE = 0x01;
const SIGNATURE_BYTES = 64;
const PUBLIC_KEY_BYTES = 32;
const SEED_BYTES = 32;
/** Verifiers must accept at least 16 signatures; more than this is refused as abuse. */
const MAX_SIGNATURES = 64;

export function sodiumReady(): Promise<void> {
  return sodium.ready;
}

export class NoteError extends Error {
  override name = "NoteError";
}

/** A public key a note may be checked against. */
export interface VerifierKey {
  name: string;
  /** uint32 key ID (signed-note §Signatures). */
  keyId: number;
  publicKey: Uint8Array;
}

/** A private key that signs notes. */
export interface SignerKey extends VerifierKey {
  seed: Uint8Array;
}

/** Key names must be non-empty with no Unicode spaces and no "+". */
export function checkKeyName(name: string): void {
  if (name.length === 0 || /[\s+]/u.test(name) || hasControl(name)) throw new NoteError(`invalid key name ${JSON.stringify(name)}`);
}

/** key ID = SHA-256(name || 0x0A || 0x01 || public key)[:4], big-endian. */
export function keyIdOf(name: string, publicKey: Uint8Array): number {
  const nameBytes = new TextEncoder().encode(name);
  const buf = new Uint8Array(nameBytes.length + 2 + publicKey.length);
  buf.set(nameBytes, 0);
  buf[nameBytes.length] = 0x0a;
  buf[nameBytes.length + 1] = ED25519_TYPE;
  buf.set(publicKey, nameBytes.length + 2);
  const h = sha256(buf);
  return ((h[0]! << 24) | (h[1]! << 16) | (h[2]! << 8) | h[3]!) >>> 0;
}

/** The key ID as 8 lowercase hex digits, as verifier keys spell it. */
export function keyIdHex(keyId: number): string {
  return keyId.toString(16).padStart(8, "0");
}

/** A fresh Ed25519 key named `name`. */
export function generateSignerKey(name: string): SignerKey {
  return signerKeyFromSeed(name, sodium.randombytes_buf(SEED_BYTES));
}

export function signerKeyFromSeed(name: string, seed: Uint8Array): SignerKey {
  checkKeyName(name);
  if (seed.length !== SEED_BYTES) throw new NoteError(`an Ed25519 seed is ${SEED_BYTES} bytes, got ${seed.length}`);
  const { publicKey } = sodium.crypto_sign_seed_keypair(seed);
  return { name, keyId: keyIdOf(name, publicKey), publicKey, seed: Uint8Array.from(seed) };
}

/** "name+hex8+base64(0x01 || public key)": the form a verifier is configured with. */
export function formatVerifierKey(k: VerifierKey): string {
  return `${k.name}+${keyIdHex(k.keyId)}+${toBase64(typed(k.publicKey))}`;
}

/** "PRIVATE+KEY+name+hex8+base64(0x01 || seed)", the golang.org/x/mod/sumdb/note form. */
export function formatSignerKey(k: SignerKey): string {
  return `PRIVATE+KEY+${k.name}+${keyIdHex(k.keyId)}+${toBase64(typed(k.seed))}`;
}

export function parseVerifierKey(text: string): VerifierKey {
  const parts = splitKey(text.trim());
  if (!parts) throw new NoteError("a verifier key is name+keyid+base64key");
  const [name, hex, b64] = parts;
  const publicKey = untyped(b64, PUBLIC_KEY_BYTES, "public key");
  return checkedKey(name, hex, publicKey);
}

export function parseSignerKey(text: string): SignerKey {
  const trimmed = text.trim();
  const parts = trimmed.startsWith("PRIVATE+KEY+") ? splitKey(trimmed.slice("PRIVATE+KEY+".length)) : null;
  if (!parts) throw new NoteError("a signer key is PRIVATE+KEY+name+keyid+base64seed");
  const [name, hex, b64] = parts;
  const signer = signerKeyFromSeed(name, untyped(b64, SEED_BYTES, "seed"));
  checkedKey(name, hex, signer.publicKey);
  return signer;
}

/** "name+hex8+base64" split at the first two "+": the base64 key may itself contain "+". */
function splitKey(text: string): [name: string, hex: string, b64: string] | null {
  const i = text.indexOf("+");
  const j = i < 0 ? -1 : text.indexOf("+", i + 1);
  if (j < 0) return null;
  return [text.slice(0, i), text.slice(i + 1, j), text.slice(j + 1)];
}

/** Signs `text` (which must end in a newline) with each signer. */
export function signNote(text: string, signers: SignerKey[]): string {
  checkText(text);
  const message = new TextEncoder().encode(text);
  let out = `${text}\n`;
  for (const s of signers) {
    const sig = sodium.crypto_sign_detached(message, ed25519SecretKey(s));
    out += `— ${s.name} ${toBase64(concat(keyIdBytes(s.keyId), sig))}\n`;
  }
  return out;
}

export interface NoteSignature {
  name: string;
  keyId: number;
  signature: Uint8Array;
}

/** Splits a signed note into its text and signature lines, checking only the syntax. */
export function parseNote(note: string): { text: string; signatures: NoteSignature[] } {
  const split = note.lastIndexOf("\n\n");
  if (split < 0) throw new NoteError("malformed note: no blank line before the signatures");
  const text = note.slice(0, split + 1);
  checkText(text);
  const block = note.slice(split + 2);
  if (!block.endsWith("\n")) throw new NoteError("malformed note: signature block must end in a newline");
  const lines = block.slice(0, -1).split("\n");
  if (lines.length > MAX_SIGNATURES) throw new NoteError(`note has more than ${MAX_SIGNATURES} signatures`);
  const signatures = lines.map((line, i): NoteSignature => {
    const m = /^— (\S+) (\S+)$/u.exec(line);
    if (!m) throw new NoteError(`malformed signature line ${i + 1}`);
    let raw: Uint8Array;
    try {
      raw = fromBase64(m[2]!);
    } catch {
      throw new NoteError(`signature line ${i + 1} is not base64`);
    }
    if (raw.length < 5) throw new NoteError(`signature line ${i + 1} is too short`);
    const keyId = ((raw[0]! << 24) | (raw[1]! << 16) | (raw[2]! << 8) | raw[3]!) >>> 0;
    return { name: m[1]!, keyId, signature: raw.subarray(4) };
  });
  if (signatures.length === 0) throw new NoteError("note has no signatures");
  return { text, signatures };
}

/**
 * Opens a signed note against trusted keys (signed-note §Signatures): signatures by
 * unknown keys are ignored, a bad signature by a known key rejects the note, and at
 * least one known key must have signed. Returns the text and the keys that signed it.
 */
export function openNote(note: string, trusted: VerifierKey[]): { text: string; signedBy: VerifierKey[] } {
  const { text, signatures } = parseNote(note);
  const message = new TextEncoder().encode(text);
  const signedBy: VerifierKey[] = [];
  for (const sig of signatures) {
    const key = trusted.find((k) => k.name === sig.name && k.keyId === sig.keyId);
    if (!key) continue;
    const ok = sig.signature.length === SIGNATURE_BYTES && sodium.crypto_sign_verify_detached(sig.signature, message, key.publicKey);
    if (!ok) throw new NoteError(`signature by ${sig.name}+${keyIdHex(sig.keyId)} does not verify`);
    signedBy.push(key);
  }
  if (signedBy.length === 0) {
    const ids = signatures.map((s) => `${s.name}+${keyIdHex(s.keyId)}`).join(", ");
    throw new NoteError(`note is not signed by a trusted key (signed by ${ids})`);
  }
  return { text, signedBy };
}

function checkedKey(name: string, hex: string, publicKey: Uint8Array): VerifierKey {
  checkKeyName(name);
  if (!/^[0-9a-f]{8}$/.test(hex)) throw new NoteError(`key ID must be 8 hex digits, got ${JSON.stringify(hex)}`);
  const keyId = keyIdOf(name, publicKey);
  if (keyIdHex(keyId) !== hex) throw new NoteError(`key ID ${hex} does not match the key (expected ${keyIdHex(keyId)})`);
  return { name, keyId, publicKey };
}

function untyped(b64: string, length: number, what: string): Uint8Array {
  let raw: Uint8Array;
  try {
    raw = fromBase64(b64);
  } catch {
    throw new NoteError(`${what} is not base64`);
  }
  if (raw.length !== length + 1 || raw[0] !== ED25519_TYPE) throw new NoteError(`${what} is not an Ed25519 key (type 0x01 + ${length} bytes)`);
  return raw.subarray(1);
}

function typed(key: Uint8Array): Uint8Array {
  return concat(Uint8Array.of(ED25519_TYPE), key);
}

function ed25519SecretKey(s: SignerKey): Uint8Array {
  return sodium.crypto_sign_seed_keypair(s.seed).privateKey;
}

function keyIdBytes(id: number): Uint8Array {
  return Uint8Array.of((id >>> 24) & 0xff, (id >>> 16) & 0xff, (id >>> 8) & 0xff, id & 0xff);
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

function hasControl(s: string): boolean {
  return /[\u0000-\u0009\u000b-\u001f]/.test(s);
}

/** Note text: well-formed UTF-16 (so valid UTF-8), no control characters but newline, ending in one. */
function checkText(text: string): void {
  if (!text.endsWith("\n")) throw new NoteError("note text must end in a newline");
  if (hasControl(text)) throw new NoteError("note text contains a control character");
  if (!text.isWellFormed()) throw new NoteError("note text is not valid UTF-8");
}
