// Writes chain/vectors/merkle-rfc6962.json, merkle-larger.json and checkpoints.json.
// Run only when the tree hashing or the note format deliberately changes:
//   npx tsx chain/vectors/generate-merkle-vectors.ts
// The committed files are the contract; chain/merkle.test.ts and chain/signed-note.test.ts
// hold the code to them and check them against published reference values and an
// independent RFC 6962 implementation. Everything here is deterministic (Ed25519
// signatures included), so rerunning reproduces the files byte for byte.
import { writeFileSync } from "node:fs";
import { sha256 } from "#sha256";
import { EMPTY_ROOT, leafHash } from "../merkle-hash.js";
import { rootOfLeaves } from "../merkle-frontier.js";
import { consistencyProofRanges, inclusionProofRanges, type LeafRange } from "../merkle-proof.js";
import { fromHex, toHex } from "../hex.js";
import { formatSignerKey, formatVerifierKey, keyIdHex, signerKeyFromSeed, signNote, sodiumReady, type SignerKey } from "../signed-note.js";
import { formatCheckpoint, type Checkpoint } from "../checkpoint.js";

await sodiumReady();

const write = (name: string, doc: unknown) => writeFileSync(new URL(`./${name}`, import.meta.url), JSON.stringify(doc, null, 2) + "\n");

/** A tree over fixed leaf hashes, with MTH of any leaf range and proofs built from ranges. */
function tree(leaves: Uint8Array[]) {
  const rangeHash = ([b, e]: LeafRange) => toHex(rootOfLeaves(leaves.slice(b, e)));
  return {
    root: (size: number) => toHex(rootOfLeaves(leaves.slice(0, size))),
    inclusion: (index: number, size: number) => inclusionProofRanges(index, size).map(rangeHash),
    consistency: (size1: number, size2: number) => consistencyProofRanges(size1, size2).map(rangeHash),
  };
}

// --- RFC 6962 reference tree -------------------------------------------------------
// The eight leaf inputs of the certificate-transparency / transparency-dev test trees.
const RFC_INPUTS = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];
const rfcLeaves = RFC_INPUTS.map((hex) => leafHash(fromHex(hex)));
const rfc = tree(rfcLeaves);

const inclusion = [];
for (let size = 1; size <= 8; size++) {
  for (let index = 0; index < size; index++) {
    inclusion.push({
      index,
      size,
      leaf_hash: toHex(rfcLeaves[index]!),
      root: rfc.root(size),
      proof_ranges: inclusionProofRanges(index, size),
      proof: rfc.inclusion(index, size),
    });
  }
}
const consistency = [];
for (let size2 = 1; size2 <= 8; size2++) {
  for (let size1 = 1; size1 <= size2; size1++) {
    consistency.push({
      size1,
      size2,
      root1: rfc.root(size1),
      root2: rfc.root(size2),
      proof_ranges: consistencyProofRanges(size1, size2),
      proof: rfc.consistency(size1, size2),
    });
  }
}

write("merkle-rfc6962.json", {
  description:
    "RFC 6962 / RFC 9162 Merkle tree vectors over the eight reference leaf inputs used by certificate-transparency and transparency-dev/merkle. " +
    "All hashes are lowercase hex SHA-256. leaf hash = SHA-256(0x00 || data); node hash = SHA-256(0x01 || left || right); the empty tree's root is SHA-256 of no bytes. " +
    "Inclusion proofs are RFC 9162 PATH (leaf side first), consistency proofs RFC 9162 PROOF; proof_ranges gives the leaf range [begin, end) whose subtree hash (MTH) each proof element is. " +
    "Indices are 0-based. A consistency proof from size 0, or between equal sizes, is empty.",
  empty_root: toHex(EMPTY_ROOT),
  leaves: RFC_INPUTS.map((data, index) => ({ index, data, hash: toHex(rfcLeaves[index]!) })),
  roots: Array.from({ length: 9 }, (_, size) => ({ size, root: rfc.root(size) })),
  inclusion,
  consistency,
});

// --- Larger trees ----------------------------------------------------------------
const be32 = (i: number) => Uint8Array.of((i >>> 24) & 0xff, (i >>> 16) & 0xff, (i >>> 8) & 0xff, i & 0xff);
const MAX_LARGE = 1025;
const bigLeaves = Array.from({ length: MAX_LARGE }, (_, i) => leafHash(be32(i)));
const big = tree(bigLeaves);
const trees = [1000, 1023, 1024, 1025].map((size) => ({
  size,
  root: big.root(size),
  inclusion: [0, 1, 511, 512, 999, size - 2, size - 1]
    .filter((index, i, all) => index < size && all.indexOf(index) === i)
    .map((index) => ({ index, leaf_hash: toHex(bigLeaves[index]!), proof: big.inclusion(index, size) })),
  consistency: [1, 2, 511, 512, 513, 1000, 1023, 1024, size - 1, size]
    .filter((size1, i, all) => size1 <= size && all.indexOf(size1) === i)
    .map((size1) => ({ size1, root1: big.root(size1), proof: big.consistency(size1, size) })),
}));

write("merkle-larger.json", {
  description:
    "RFC 6962 trees of a few larger sizes. Leaf i is the leaf hash of the 4-byte big-endian encoding of i: SHA-256(0x00 || uint32be(i)). " +
    "Each tree gives its root, inclusion proofs of some leaves (0-based index) and consistency proofs from some smaller sizes size1 to the tree's size. Hashes are lowercase hex.",
  leaf_data: "uint32 big-endian leaf index",
  trees,
});

// --- Signed checkpoints ------------------------------------------------------------
// Fixed Ed25519 seeds: seed = SHA-256("audit-ledger test vector key: " + label).
const ORIGIN = "audit-ledger.example/vectors";
const seedOf = (label: string) => sha256(`audit-ledger test vector key: ${label}`);
const keyDefs = [
  { label: "log-2025", name: ORIGIN, description: "the log's original key" },
  { label: "log-2026", name: ORIGIN, description: "the log's rotated key: same name as log-2025, different key ID" },
  { label: "witness", name: "witness.example/w1", description: "an unrelated cosigner, unknown to verifiers of the log" },
];
const keys = new Map<string, SignerKey>(keyDefs.map((d) => [d.label, signerKeyFromSeed(d.name, seedOf(d.label))]));
const key = (label: string) => keys.get(label)!;

const fromRfc = (size: number) => fromHex(rfc.root(size));
const cpDefs: Array<{ description: string; checkpoint: Checkpoint; signers: string[] }> = [
  { description: "the empty tree", checkpoint: { origin: ORIGIN, size: 0, root: EMPTY_ROOT, extensions: [] }, signers: ["log-2025"] },
  { description: "the RFC 6962 reference tree at size 7", checkpoint: { origin: ORIGIN, size: 7, root: fromRfc(7), extensions: [] }, signers: ["log-2025"] },
  {
    description: "the RFC 6962 reference tree at size 8, signed by both keys during the rotation and cosigned by a witness",
    checkpoint: { origin: ORIGIN, size: 8, root: fromRfc(8), extensions: [] },
    signers: ["log-2025", "log-2026", "witness"],
  },
  { description: "the RFC 6962 reference tree at size 8, signed by the rotated key only", checkpoint: { origin: ORIGIN, size: 8, root: fromRfc(8), extensions: [] }, signers: ["log-2026"] },
  {
    description: "a larger tree (merkle-larger.json, size 1025) with one extension line",
    checkpoint: { origin: ORIGIN, size: 1025, root: fromHex(big.root(1025)), extensions: ["audit-ledger chain vectors"] },
    signers: ["log-2026"],
  },
];

const logLabels = ["log-2025", "log-2026"];
write("checkpoints.json", {
  description:
    "C2SP tlog-checkpoint bodies signed as C2SP signed notes with Ed25519 (signature type 0x01). Keys come from fixed seeds " +
    "(seed = SHA-256(\"audit-ledger test vector key: \" + label)); Ed25519 is deterministic, so the signed notes are exact. " +
    "verifier_key is name+keyid+base64(0x01 || public key), signer_key the golang.org/x/mod/sumdb/note PRIVATE+KEY+name+keyid+base64(0x01 || seed) form. " +
    "key_id = SHA-256(name || 0x0A || 0x01 || public key)[:4]. log-2025 and log-2026 share a name (a key rotation). " +
    "opens_with says whether a verifier that trusts only that log key accepts the note (signatures by other keys are ignored); roots are those of merkle-rfc6962.json and merkle-larger.json.",
  keys: keyDefs.map((d) => {
    const k = key(d.label);
    return {
      label: d.label,
      description: d.description,
      name: k.name,
      seed: toHex(k.seed),
      public_key: toHex(k.publicKey),
      key_id: keyIdHex(k.keyId),
      verifier_key: formatVerifierKey(k),
      signer_key: formatSignerKey(k),
    };
  }),
  checkpoints: cpDefs.map((d) => ({
    description: d.description,
    origin: d.checkpoint.origin,
    size: d.checkpoint.size,
    root: toHex(d.checkpoint.root),
    extensions: d.checkpoint.extensions,
    body: formatCheckpoint(d.checkpoint),
    signed_by: d.signers,
    signed_note: signNote(formatCheckpoint(d.checkpoint), d.signers.map(key)),
    opens_with: Object.fromEntries(logLabels.map((l) => [l, d.signers.includes(l)])),
  })),
});

console.log(`wrote ${inclusion.length} inclusion and ${consistency.length} consistency proofs, ${trees.length} larger trees, ${cpDefs.length} checkpoints`);
