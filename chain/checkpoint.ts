// C2SP tlog-checkpoint bodies (c2sp.org/tlog-checkpoint): the origin line, the tree
// size in decimal, the base64 root hash, then optional extension lines; signed as a
// C2SP signed note.
import { fromBase64, toBase64 } from "./base64.js";
import { HASH_BYTES } from "./merkle-hash.js";
import { NoteError, openNote, signNote, type SignerKey, type VerifierKey } from "./signed-note.js";

export interface Checkpoint {
  origin: string;
  size: number;
  root: Uint8Array;
  extensions: string[];
}

/** A checkpoint whose signature has been verified, with the key that signed it. */
export interface OpenedCheckpoint extends Checkpoint {
  signedBy: VerifierKey;
  note: string;
}

export function formatCheckpoint(c: Checkpoint): string {
  if (c.origin.length === 0 || /[\n\u0000-\u001f]/.test(c.origin)) throw new NoteError("origin must be one non-empty line");
  if (!Number.isSafeInteger(c.size) || c.size < 0) throw new NoteError(`bad tree size ${c.size}`);
  if (c.root.length !== HASH_BYTES) throw new NoteError(`root must be ${HASH_BYTES} bytes`);
  for (const e of c.extensions) if (e.length === 0 || e.includes("\n")) throw new NoteError("extension lines must be non-empty single lines");
  return [c.origin, String(c.size), toBase64(c.root), ...c.extensions].join("\n") + "\n";
}

/** Parses a checkpoint body strictly: decimal size without leading zeros, a 32-byte root. */
export function parseCheckpoint(text: string): Checkpoint {
  if (!text.endsWith("\n")) throw new NoteError("checkpoint must end in a newline");
  const lines = text.slice(0, -1).split("\n");
  if (lines.length < 3) throw new NoteError("checkpoint needs origin, size and root lines");
  const [origin, sizeText, rootText, ...extensions] = lines as [string, string, string, ...string[]];
  if (origin.length === 0) throw new NoteError("checkpoint origin is empty");
  if (!/^(0|[1-9][0-9]{0,15})$/.test(sizeText) || !Number.isSafeInteger(Number(sizeText))) {
    throw new NoteError(`checkpoint size ${JSON.stringify(sizeText)} is not a decimal integer`);
  }
  let root: Uint8Array;
  try {
    root = fromBase64(rootText);
  } catch {
    throw new NoteError("checkpoint root is not base64");
  }
  if (root.length !== HASH_BYTES) throw new NoteError(`checkpoint root is ${root.length} bytes, not ${HASH_BYTES}`);
  if (extensions.some((e) => e.length === 0)) throw new NoteError("checkpoint has an empty extension line");
  return { origin, size: Number(sizeText), root, extensions };
}

export function signCheckpoint(c: Checkpoint, signer: SignerKey): string {
  return signNote(formatCheckpoint(c), [signer]);
}

/**
 * Verifies a signed checkpoint against trusted keys and, when given, the origin it
 * must carry. Throws NoteError naming what failed.
 */
export function openCheckpoint(note: string, trusted: VerifierKey[], expectedOrigin?: string): OpenedCheckpoint {
  const { text, signedBy } = openNote(note, trusted);
  const body = parseCheckpoint(text);
  if (expectedOrigin !== undefined && body.origin !== expectedOrigin) {
    throw new NoteError(`checkpoint origin ${JSON.stringify(body.origin)} is not ${JSON.stringify(expectedOrigin)}`);
  }
  return { ...body, signedBy: signedBy[0]!, note };
}
