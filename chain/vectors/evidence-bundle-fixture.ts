// A real evidence bundle built from the chain module alone (no server): entries hashed
// and linked, a Merkle tree over them, checkpoints signed by two keys of one name (a
// rotation), consistency proofs, and one payload erased by a redaction entry. Fully
// deterministic (fixed key seeds; Ed25519 signatures are deterministic), so the default
// bundle is the committed vector chain/vectors/evidence-bundle.ndjson. Shared by the
// chain tests, the CLI tests and generate-bundle-vectors.ts.
import { createHash } from "node:crypto";
import {
  buildBundleText,
  canonicalJson,
  consistencyProofRanges,
  entryHash,
  entryLeafHash,
  signerKeyFromSeed,
  payloadDigest,
  rangeNodes,
  rootOfLeaves,
  signCheckpoint,
  sodiumReady,
  ZERO_HASH,
  coverage,
  type BuildBundleInput,
  type BundleEntryInput,
  type SignerKey,
} from "../index.js";

export const FIXTURE_CHAIN = "bundle-test";
export const KEY_NAME = "ledger.test";
export const FIXTURE_ORIGIN = `${KEY_NAME}/${FIXTURE_CHAIN}`;

export interface FixtureOptions {
  /** Entries in the chain (seq 0 .. total-1). */
  total?: number;
  fromSeq?: number;
  toSeq?: number;
  /** Checkpoint sizes to include, ascending (the last is the anchor). */
  checkpointSizes?: number[];
  /** Which signer signs the checkpoint of a size (default: old key below 13, new key from 13). */
  signerFor?: (size: number, keys: FixtureKeys) => SignerKey;
  /** Seq whose payload is erased, and the seq of the redaction entry erasing it. */
  redact?: { seq: number; by: number } | null;
}

export interface FixtureKeys {
  old: SignerKey;
  current: SignerKey;
}

export interface BundleFixture {
  text: string;
  input: BuildBundleInput;
  keys: FixtureKeys;
  entries: BundleEntryInput[];
  leaves: Uint8Array[];
  /** Checkpoint notes by size. */
  notes: Map<number, string>;
}

/** Seed of a vector key: SHA-256("audit-ledger test vector key: " + label), as in checkpoints.json. */
export function vectorSeed(label: string): Uint8Array {
  return new Uint8Array(createHash("sha256").update(`audit-ledger test vector key: ${label}`).digest());
}

/** Two keys of the one ledger key name: the retired one and the current one. */
export async function fixtureKeys(): Promise<FixtureKeys> {
  await sodiumReady();
  return { old: signerKeyFromSeed(KEY_NAME, vectorSeed("bundle-2025")), current: signerKeyFromSeed(KEY_NAME, vectorSeed("bundle-2026")) };
}

/** Deterministic bytes (no randomness, so failures reproduce). */
function bytes(seed: string, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let block = createHash("sha256").update(seed).digest();
  for (let i = 0; i < length; i++) {
    if (i > 0 && i % 32 === 0) block = createHash("sha256").update(block).digest();
    out[i] = block[i % 32]!;
  }
  return out;
}

/** The chain: entries with a payload every third seq, one of them a binary payload. */
export function makeEntries(total: number, redact: { seq: number; by: number } | null): BundleEntryInput[] {
  const entries: BundleEntryInput[] = [];
  let prev = ZERO_HASH;
  for (let seq = 0; seq < total; seq++) {
    const isRedaction = redact !== null && seq === redact.by;
    let payload: Uint8Array | undefined;
    let payloadType: string | undefined;
    if (isRedaction) {
      payload = new TextEncoder().encode(canonicalJson({ redacts_seq: redact.seq, reason: "GDPR erasure request #7", requested_by: "dpo" }));
      payloadType = "application/json";
    } else if (seq % 3 === 0) {
      payload = seq === 3 ? bytes(`binary-${seq}`, 300) : new TextEncoder().encode(JSON.stringify({ n: seq, note: "zoë \u2028 \"quoted\"" }));
      payloadType = seq === 3 ? "application/octet-stream" : "application/json";
    }
    const salt = payload ? bytes(`salt-${seq}`, 32) : undefined;
    const env = {
      v: 1,
      chain: FIXTURE_CHAIN,
      seq,
      ts: new Date(Date.UTC(2026, 0, 1, 0, 0, seq)).toISOString(),
      source_type: "api",
      agent: "key_0001",
      kind: isRedaction ? "redaction" : seq % 2 ? "user.login" : "deploy",
      subject: `svc/${seq % 4}`,
      ...(seq % 5 === 1 ? { actor: "alice" } : {}),
      ...(isRedaction ? { actor: "dpo", cause: String(redact.seq) } : {}),
      ...(payload ? { payload_type: payloadType!, payload_digest: payloadDigest(salt!, payload) } : {}),
      payload_size: payload?.length ?? 0,
      prev_hash: prev,
    };
    const hash = entryHash(env);
    const entry: BundleEntryInput = { ...env, hash };
    if (payload && redact && seq === redact.seq) {
      entry.redacted = true;
      entry.redaction = { bySeq: redact.by, reason: "GDPR erasure request #7", actor: "dpo" };
    } else if (payload) {
      entry.payload = payload;
      entry.salt = salt!;
    }
    entries.push(entry);
    prev = hash;
  }
  return entries;
}

/** MTH of leaves [lo, hi) (RFC 6962): a consistency proof element or a subtree. */
export function rangeHash(leaves: Uint8Array[], lo: number, hi: number): Uint8Array {
  return rootOfLeaves(leaves.slice(lo, hi));
}

/**
 * Default: 20 entries, window [5, 13), checkpoints at 7 and 12 (old key) and the anchor
 * at 20 (current key), seq 9's payload erased by the redaction entry seq 11.
 */
export async function makeBundleFixture(o: FixtureOptions = {}): Promise<BundleFixture> {
  const keys = await fixtureKeys();
  const total = o.total ?? 20;
  const a = o.fromSeq ?? 5;
  const b = o.toSeq ?? 13;
  const sizes = o.checkpointSizes ?? [7, 12, 20];
  const signerFor = o.signerFor ?? ((size, k) => (size < 13 ? k.old : k.current));
  const entries = makeEntries(total, o.redact === undefined ? { seq: 9, by: 11 } : o.redact);
  const leaves = entries.map(entryLeafHash);
  const notes = new Map<number, string>();
  const used = new Set<SignerKey>();
  for (const size of sizes) {
    const signer = signerFor(size, keys);
    used.add(signer);
    notes.set(size, signCheckpoint({ origin: FIXTURE_ORIGIN, size, root: rootOfLeaves(leaves.slice(0, size)), extensions: [] }, signer));
  }
  const input: BuildBundleInput = {
    chain: FIXTURE_CHAIN,
    origin: FIXTURE_ORIGIN,
    fromSeq: a,
    toSeq: b,
    createdAt: "2026-02-01T12:00:00.000Z",
    keys: [...used].map((k) => (k === keys.old
      ? { key: k, createdAt: "2025-01-01T00:00:00.000Z", retiredAt: "2026-01-01T00:00:10.000Z" }
      : { key: k, createdAt: "2026-01-01T00:00:10.000Z" })),
    checkpoints: sizes.map((s) => notes.get(s)!),
    consistency: sizes.slice(1).map((toSize, i) => ({
      fromSize: sizes[i]!,
      toSize,
      proof: consistencyProofRanges(sizes[i]!, toSize).map(([lo, hi]) => rangeHash(leaves, lo, hi)),
    })),
    frontier: rangeNodes(0, a).map((node) => rangeHash(leaves, ...coverage(node))),
    entries: entries.slice(a, b),
    completion: rangeNodes(b, sizes[sizes.length - 1]!).map((node) => rangeHash(leaves, ...coverage(node))),
  };
  return { text: await buildBundleText(input), input, keys, entries, leaves, notes };
}

/** The bundle's lines without their newlines. */
export function linesOf(text: string): string[] {
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines;
}

export function textOf(lines: string[]): string {
  return lines.map((l) => l + "\n").join("");
}

/** 1-based line number of the first line whose record matches. */
export function lineWhere(lines: string[], match: (r: Record<string, unknown>) => boolean): number {
  const i = lines.findIndex((l) => {
    try {
      return match(JSON.parse(l) as Record<string, unknown>);
    } catch {
      return false;
    }
  });
  if (i < 0) throw new Error("no such line");
  return i + 1;
}

// Tampered variants of the vector (chain/vectors/evidence-bundle.json).

/** An edit of the valid bundle; applied in order, each to the result of the one before. */
export type BundleEdit =
  | { op: "replace"; line: number; text: string }
  | { op: "delete"; line: number }
  | { op: "insert"; before: number; text: string }
  | { op: "truncate"; bytes: number };

export interface TamperedCase {
  name: string;
  description: string;
  trusted_keys: "pinned" | "bundle";
  edits: BundleEdit[];
  expect: { ok: true } | { ok: false; line: number; item: string };
}

/** Applies edits to the bundle text, in order. */
export function applyEdits(text: string, edits: BundleEdit[]): string {
  let out = text;
  for (const e of edits) {
    if (e.op === "truncate") {
      out = new TextDecoder().decode(new TextEncoder().encode(out).subarray(0, e.bytes));
      continue;
    }
    const lines = linesOf(out);
    if (e.op === "replace") lines[e.line - 1] = e.text;
    else if (e.op === "delete") lines.splice(e.line - 1, 1);
    else lines.splice(e.before - 1, 0, e.text);
    out = textOf(lines);
  }
  return out;
}
