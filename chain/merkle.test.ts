import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { EMPTY_ROOT, HASH_BYTES, leafHash, nodeHash } from "./merkle-hash.js";
import { coverage, rangeNodes, width, type NodeId } from "./merkle-node.js";
import { foldRange, MerkleFrontier, rootOfLeaves } from "./merkle-frontier.js";
import {
  checkConsistency,
  consistencyProofRanges,
  inclusionProofRanges,
  ProofError,
  rootFromInclusionProof,
  verifyConsistency,
  verifyInclusion,
  type LeafRange,
} from "./merkle-proof.js";
import { fromHex, toHex } from "./hex.js";

// ---------------------------------------------------------------------------------
// An independent RFC 6962 §2.1 implementation, straight from the RFC text, hashing
// with node:crypto (not #sha256) and working from the leaf inputs D[n] themselves.
// Sub-lists D[lo:hi] are index ranges into one input list; MTH is memoised per range
// only to keep the sweeps fast.
// ---------------------------------------------------------------------------------
const sha = (...parts: Uint8Array[]) => new Uint8Array(createHash("sha256").update(Buffer.concat(parts)).digest());
const largestPowerOfTwoBelow = (n: number) => {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
};

function naiveTree(D: Uint8Array[]) {
  const memo = new Map<string, Uint8Array>();
  // MTH({}) = SHA-256(); MTH({d0}) = SHA-256(0x00 || d0);
  // MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])), k the largest power of two < n.
  const MTH = (lo: number, hi: number): Uint8Array => {
    const key = `${lo},${hi}`;
    let h = memo.get(key);
    if (h) return h;
    const n = hi - lo;
    if (n === 0) h = sha();
    else if (n === 1) h = sha(Uint8Array.of(0), D[lo]!);
    else {
      const k = largestPowerOfTwoBelow(n);
      h = sha(Uint8Array.of(1), MTH(lo, lo + k), MTH(lo + k, hi));
    }
    memo.set(key, h);
    return h;
  };
  // PATH(m, {d0}) = {}; for m < k: PATH(m, D[0:k]) : MTH(D[k:n]);
  // for m >= k: PATH(m - k, D[k:n]) : MTH(D[0:k]).
  const PATH = (m: number, lo: number, hi: number): Uint8Array[] => {
    const n = hi - lo;
    if (n === 1) return [];
    const k = largestPowerOfTwoBelow(n);
    if (m < k) return [...PATH(m, lo, lo + k), MTH(lo + k, hi)];
    return [...PATH(m - k, lo + k, hi), MTH(lo, lo + k)];
  };
  // PROOF(m, D[n]) = SUBPROOF(m, D[n], true);
  // SUBPROOF(m, D[m], true) = {}; SUBPROOF(m, D[m], false) = {MTH(D[m])};
  // m <= k: SUBPROOF(m, D[0:k], b) : MTH(D[k:n]);  m > k: SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k]).
  const SUBPROOF = (m: number, lo: number, hi: number, b: boolean): Uint8Array[] => {
    const n = hi - lo;
    if (m === n) return b ? [] : [MTH(lo, hi)];
    const k = largestPowerOfTwoBelow(n);
    if (m <= k) return [...SUBPROOF(m, lo, lo + k, b), MTH(lo + k, hi)];
    return [...SUBPROOF(m - k, lo + k, hi, false), MTH(lo, lo + k)];
  };
  return {
    root: (n: number) => MTH(0, n),
    leaf: (i: number) => MTH(i, i + 1),
    rangeHash: ([lo, hi]: LeafRange) => MTH(lo, hi),
    path: (m: number, n: number) => PATH(m, 0, n),
    proof: (m: number, n: number) => SUBPROOF(m, 0, n, true),
  };
}

const hexes = (hs: Uint8Array[]) => hs.map(toHex);
/** Byte-equal lists of hashes (Buffer.compare, not the code under test). */
const same = (a: readonly Uint8Array[], b: readonly Uint8Array[]) => a.length === b.length && a.every((x, i) => Buffer.compare(x, b[i]!) === 0);
/**
 * Runs a sweep that reports each failure by name, then asserts there were none: one
 * expect() per sweep keeps thousands of cases fast and lists every failing one.
 */
function sweepCheck(run: (fail: (what: string) => void) => void): void {
  const failures: string[] = [];
  run((what) => failures.push(what));
  expect(failures).toEqual([]);
}
const bytes = (hs: string[]) => hs.map(fromHex);
const flipBit = (h: Uint8Array, bit: number) => {
  const out = Uint8Array.from(h);
  out[bit >> 3]! ^= 1 << (bit & 7);
  return out;
};

interface InclusionVector {
  index: number;
  size: number;
  leaf_hash: string;
  root: string;
  proof_ranges: LeafRange[];
  proof: string[];
}
interface ConsistencyVector {
  size1: number;
  size2: number;
  root1: string;
  root2: string;
  proof_ranges: LeafRange[];
  proof: string[];
}
interface RfcVectors {
  empty_root: string;
  leaves: Array<{ index: number; data: string; hash: string }>;
  roots: Array<{ size: number; root: string }>;
  inclusion: InclusionVector[];
  consistency: ConsistencyVector[];
}
interface LargerVectors {
  trees: Array<{
    size: number;
    root: string;
    inclusion: Array<{ index: number; leaf_hash: string; proof: string[] }>;
    consistency: Array<{ size1: number; root1: string; proof: string[] }>;
  }>;
}
const load = <T>(name: string) => JSON.parse(readFileSync(new URL(`./vectors/${name}`, import.meta.url), "utf8")) as T;
const rfc = load<RfcVectors>("merkle-rfc6962.json");
const larger = load<LargerVectors>("merkle-larger.json");
const rfcInputs = rfc.leaves.map((l) => fromHex(l.data));
const rfcNaive = naiveTree(rfcInputs);
const rfcRoot = (size: number) => fromHex(rfc.roots[size]!.root);

// ---------------------------------------------------------------------------------
describe("published RFC 6962 reference values", () => {
  // Roots of the reference tree after each of its eight leaves, as published in
  // google/certificate-transparency cpp/merkletree/merkle_tree_test.cc (kSHA256Roots)
  // and transparency-dev/merkle proof/verify_test.go (roots).
  const PUBLISHED_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
  ];
  // Same sources (kSHA256Paths / inclusionProofs). They number leaves from 1; the
  // indices here are 0-based.
  const PUBLISHED_INCLUSION = [
    { index: 0, size: 8, proof: ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"] },
    { index: 5, size: 8, proof: ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b", "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0", "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"] },
    { index: 2, size: 3, proof: ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"] },
    { index: 1, size: 5, proof: ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"] },
  ];
  // kSHA256Proofs (certificate-transparency) / consistencyProofs (transparency-dev; 6→7
  // only in the latter).
  const PUBLISHED_CONSISTENCY = [
    { size1: 1, size2: 8, proof: ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"] },
    { size1: 6, size2: 8, proof: ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a", "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0", "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"] },
    { size1: 2, size2: 5, proof: ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"] },
    { size1: 6, size2: 7, proof: ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a", "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f", "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"] },
    { size1: 1, size2: 1, proof: [] },
  ];

  it("the empty root and hasher vectors of transparency-dev/merkle rfc6962/rfc6962_test.go", () => {
    expect(toHex(EMPTY_ROOT)).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect(rfc.empty_root).toBe(toHex(EMPTY_ROOT));
    expect(toHex(leafHash(new Uint8Array(0)))).toBe("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
    expect(toHex(leafHash(new TextEncoder().encode("L123456")))).toBe("395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56");
  });

  it("the vector file's leaf inputs are the published ones and its roots equal the published roots", () => {
    expect(rfc.leaves.map((l) => l.data)).toEqual(["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]);
    expect(rfc.roots.slice(1).map((r) => r.root)).toEqual(PUBLISHED_ROOTS);
  });

  it("our frontier reproduces the published roots", () => {
    const f = new MerkleFrontier();
    expect(toHex(f.root())).toBe(rfc.empty_root);
    for (const [i, input] of rfcInputs.entries()) {
      f.appendLeaf(leafHash(input));
      expect(toHex(f.root())).toBe(PUBLISHED_ROOTS[i]);
    }
  });

  it.each(PUBLISHED_INCLUSION)("inclusion proof of leaf $index in size $size equals the published one and verifies", ({ index, size, proof }) => {
    const v = rfc.inclusion.find((x) => x.index === index && x.size === size)!;
    expect(v.proof).toEqual(proof);
    expect(hexes(inclusionProofRanges(index, size).map(rfcNaive.rangeHash))).toEqual(proof);
    expect(verifyInclusion(index, size, leafHash(rfcInputs[index]!), bytes(proof), fromHex(PUBLISHED_ROOTS[size - 1]!))).toBe(true);
  });

  it.each(PUBLISHED_CONSISTENCY)("consistency proof $size1 → $size2 equals the published one and verifies", ({ size1, size2, proof }) => {
    const v = rfc.consistency.find((x) => x.size1 === size1 && x.size2 === size2)!;
    expect(v.proof).toEqual(proof);
    expect(hexes(consistencyProofRanges(size1, size2).map(rfcNaive.rangeHash))).toEqual(proof);
    expect(verifyConsistency(size1, size2, fromHex(PUBLISHED_ROOTS[size1 - 1]!), fromHex(PUBLISHED_ROOTS[size2 - 1]!), bytes(proof))).toBe(true);
  });

  // Proof shapes from transparency-dev/merkle proof/proof_test.go (TestInclusion,
  // TestConsistency), there given as node IDs (level, index); a "rehash" run of nodes
  // is one element of the RFC proof, the hash of the leaf range they cover together.
  it("proof shapes equal transparency-dev's published node lists", () => {
    const shapes: Array<[LeafRange[], LeafRange[]]> = [
      [inclusionProofRanges(0, 7), [[1, 2], [2, 4], [4, 7]]], // b h (j i → l)
      [inclusionProofRanges(4, 7), [[5, 6], [6, 7], [0, 4]]], // f j k
      [inclusionProofRanges(6, 7), [[4, 6], [0, 4]]], // i k
      [inclusionProofRanges(3, 5), [[2, 3], [0, 2], [4, 5]]], // c g e
      [inclusionProofRanges(10, 15), [[11, 12], [8, 10], [12, 15], [0, 8]]],
      [inclusionProofRanges(24, 31), [[25, 26], [26, 28], [28, 31], [16, 24], [0, 16]]],
      [inclusionProofRanges(81, 95), [[80, 81], [82, 84], [84, 88], [88, 95], [64, 80], [0, 64]]],
      [consistencyProofRanges(1, 6), [[1, 2], [2, 4], [4, 6]]], // b h i
      [consistencyProofRanges(3, 7), [[2, 3], [3, 4], [0, 2], [4, 7]]], // c d g (j i → l)
      [consistencyProofRanges(4, 7), [[4, 7]]], // (j i → l)
      [consistencyProofRanges(5, 7), [[4, 5], [5, 6], [6, 7], [0, 4]]], // e f j k
      [consistencyProofRanges(6, 7), [[4, 6], [6, 7], [0, 4]]], // i j k
      [consistencyProofRanges(7, 8), [[6, 7], [7, 8], [4, 6], [0, 4]]], // j leaf#7 i k
      [consistencyProofRanges(10, 15), [[8, 10], [10, 12], [12, 15], [0, 8]]],
      [consistencyProofRanges(24, 31), [[16, 24], [24, 31], [0, 16]]],
      [consistencyProofRanges(81, 95), [[80, 81], [81, 82], [82, 84], [84, 88], [88, 95], [64, 80], [0, 64]]],
    ];
    for (const [got, want] of shapes) expect(got).toEqual(want);
  });
});

// ---------------------------------------------------------------------------------
describe("merkle-rfc6962.json against the naive RFC 6962 implementation", () => {
  it("leaf hashes and roots 0..8", () => {
    for (const l of rfc.leaves) {
      expect(l.hash).toBe(toHex(rfcNaive.leaf(l.index)));
      expect(toHex(leafHash(fromHex(l.data)))).toBe(l.hash);
    }
    expect(rfc.roots.map((r) => r.size)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    for (const r of rfc.roots) expect(r.root).toBe(toHex(rfcNaive.root(r.size)));
  });

  it("every inclusion proof for sizes 1..8 is PATH and verifies", () => {
    expect(rfc.inclusion).toHaveLength(36);
    for (const v of rfc.inclusion) {
      expect(v.proof).toEqual(hexes(rfcNaive.path(v.index, v.size)));
      expect(v.proof_ranges).toEqual(inclusionProofRanges(v.index, v.size));
      expect(v.proof).toEqual(hexes(v.proof_ranges.map(rfcNaive.rangeHash)));
      expect(v.leaf_hash).toBe(rfc.leaves[v.index]!.hash);
      expect(v.root).toBe(rfc.roots[v.size]!.root);
      expect(toHex(rootFromInclusionProof(v.index, v.size, fromHex(v.leaf_hash), bytes(v.proof)))).toBe(v.root);
    }
  });

  it("every consistency proof for 1 ≤ size1 ≤ size2 ≤ 8 is PROOF and verifies", () => {
    expect(rfc.consistency).toHaveLength(36);
    for (const v of rfc.consistency) {
      expect(v.proof).toEqual(hexes(rfcNaive.proof(v.size1, v.size2)));
      expect(v.proof_ranges).toEqual(consistencyProofRanges(v.size1, v.size2));
      expect(v.proof).toEqual(hexes(v.proof_ranges.map(rfcNaive.rangeHash)));
      expect([v.root1, v.root2]).toEqual([rfc.roots[v.size1]!.root, rfc.roots[v.size2]!.root]);
      expect(() => checkConsistency(v.size1, v.size2, fromHex(v.root1), fromHex(v.root2), bytes(v.proof))).not.toThrow();
    }
  });
});

describe("merkle-larger.json", () => {
  const be32 = (i: number) => Uint8Array.of((i >>> 24) & 0xff, (i >>> 16) & 0xff, (i >>> 8) & 0xff, i & 0xff);
  const naive = naiveTree(Array.from({ length: 1025 }, (_, i) => be32(i)));

  it("has the promised sizes, and roots equal to the naive MTH and to the frontier's", () => {
    expect(larger.trees.map((t) => t.size)).toEqual([1000, 1023, 1024, 1025]);
    const f = new MerkleFrontier();
    for (let i = 0; i < 1025; i++) {
      f.appendLeaf(leafHash(be32(i)));
      const t = larger.trees.find((x) => x.size === f.size);
      if (t) {
        expect(t.root).toBe(toHex(f.root()));
        expect(t.root).toBe(toHex(naive.root(t.size)));
      }
    }
  });

  it("inclusion and consistency proofs are PATH and PROOF, and verify", () => {
    for (const t of larger.trees) {
      expect(t.inclusion.length).toBeGreaterThanOrEqual(5);
      expect(t.consistency.length).toBeGreaterThanOrEqual(5);
      for (const p of t.inclusion) {
        expect(p.leaf_hash).toBe(toHex(naive.leaf(p.index)));
        expect(p.proof).toEqual(hexes(naive.path(p.index, t.size)));
        expect(verifyInclusion(p.index, t.size, fromHex(p.leaf_hash), bytes(p.proof), fromHex(t.root))).toBe(true);
      }
      for (const p of t.consistency) {
        expect(p.root1).toBe(toHex(naive.root(p.size1)));
        expect(p.proof).toEqual(hexes(naive.proof(p.size1, t.size)));
        expect(verifyConsistency(p.size1, t.size, fromHex(p.root1), fromHex(t.root), bytes(p.proof))).toBe(true);
      }
    }
  });
});

// ---------------------------------------------------------------------------------
// Every size up to MAX: our ranges, frontier and verifiers against the naive code.
const MAX = 70;
const sweepInputs = Array.from({ length: MAX }, (_, i) => Uint8Array.of(i, 0xa5, i * 7));
const sweep = naiveTree(sweepInputs);
const sweepLeaves = sweepInputs.map(leafHash);

describe(`all sizes up to ${MAX} against the naive RFC 6962 implementation`, () => {
  it("leafHash and rootOfLeaves equal MTH", () => {
    sweepCheck((fail) => {
      if (!same(sweepLeaves, sweepInputs.map((_, i) => sweep.leaf(i)))) fail("leaf hashes");
      for (let n = 0; n <= MAX; n++) if (!same([rootOfLeaves(sweepLeaves.slice(0, n))], [sweep.root(n)])) fail(`root ${n}`);
    });
  });

  it("inclusionProofRanges hash to PATH, and the proofs verify", () => {
    sweepCheck((fail) => {
      for (let n = 1; n <= MAX; n++) {
        const root = sweep.root(n);
        for (let m = 0; m < n; m++) {
          const proof = inclusionProofRanges(m, n).map(sweep.rangeHash);
          if (!same(proof, sweep.path(m, n))) fail(`ranges(${m}, ${n}) are not PATH`);
          if (!same([rootFromInclusionProof(m, n, sweepLeaves[m]!, proof)], [root])) fail(`rootFromInclusionProof(${m}, ${n})`);
          if (!verifyInclusion(m, n, sweepLeaves[m]!, proof, root)) fail(`verifyInclusion(${m}, ${n})`);
        }
      }
    });
  });

  it("consistencyProofRanges hash to PROOF, and the proofs verify", () => {
    sweepCheck((fail) => {
      for (let n = 1; n <= MAX; n++) {
        for (let m = 1; m <= n; m++) {
          const proof = consistencyProofRanges(m, n).map(sweep.rangeHash);
          if (!same(proof, sweep.proof(m, n))) fail(`ranges(${m}, ${n}) are not PROOF`);
          try {
            checkConsistency(m, n, sweep.root(m), sweep.root(n), proof);
          } catch (err) {
            fail(`checkConsistency(${m}, ${n}): ${String(err)}`);
          }
        }
        if (consistencyProofRanges(0, n).length !== 0) fail(`ranges(0, ${n}) not empty`);
        if (!verifyConsistency(0, n, EMPTY_ROOT, sweep.root(n), [])) fail(`verifyConsistency(0, ${n})`);
      }
    });
  });

  it("a proof for one shape is refused for a neighbouring shape, or one element short or long", () => {
    sweepCheck((fail) => {
      for (let n = 2; n <= MAX; n++) {
        const root = sweep.root(n);
        for (let m = 0; m < n; m++) {
          const proof = sweep.path(m, n);
          if (m + 1 < n && verifyInclusion(m + 1, n, sweepLeaves[m]!, proof, root)) fail(`inclusion ${m} as ${m + 1} of ${n}`);
          if (verifyInclusion(m, n, sweepLeaves[m]!, proof.slice(0, -1), root)) fail(`inclusion ${m} of ${n} short`);
          if (verifyInclusion(m, n, sweepLeaves[m]!, [...proof, root], root)) fail(`inclusion ${m} of ${n} long`);
        }
        for (let m = 1; m < n; m++) {
          const proof = sweep.proof(m, n);
          if (verifyConsistency(m, n, sweep.root(m), root, proof.slice(0, -1))) fail(`consistency ${m}→${n} short`);
          if (verifyConsistency(m, n, sweep.root(m), root, [...proof, root])) fail(`consistency ${m}→${n} long`);
          if (verifyConsistency(m, n, root, sweep.root(m), proof)) fail(`consistency ${m}→${n} roots swapped`);
          if (m + 1 < n && verifyConsistency(m + 1, n, sweep.root(m), root, proof)) fail(`consistency ${m}→${n} as ${m + 1}`);
        }
      }
    });
  });
});

describe("MerkleFrontier", () => {
  it("appendLeaf: the root after every leaf is MTH, and every completed subtree is reported with its MTH", () => {
    const f = new MerkleFrontier();
    for (let i = 0; i < MAX; i++) {
      const completed = f.appendLeaf(sweepLeaves[i]!);
      expect(f.size).toBe(i + 1);
      expect(f.root()).toEqual(sweep.root(i + 1));
      // The leaf, then one parent per trailing 1-bit of i: the subtrees that end at leaf i.
      expect(completed.map((c) => c.level)).toEqual(Array.from({ length: completed.length }, (_, l) => l));
      expect(width(completed.length - 1)).toBe(((i + 1) & -(i + 1)));
      for (const c of completed) {
        expect(coverage(c)[1]).toBe(i + 1);
        expect(c.hash).toEqual(sweep.rangeHash(coverage(c)));
      }
      // The frontier's own nodes are rangeNodes(0, size) with their MTH.
      expect(f.hashes()).toEqual(rangeNodes(0, f.size).map((id) => sweep.rangeHash(coverage(id))));
    }
  });

  it("appendNode: any prefix of leaves followed by the compact range of the rest gives MTH", () => {
    sweepCheck((fail) => {
      for (let b = 0; b <= MAX; b++) {
        const prefix = new MerkleFrontier();
        for (let i = 0; i < b; i++) prefix.appendLeaf(sweepLeaves[i]!);
        for (let n = b; n <= MAX; n++) {
          const f = prefix.copy();
          for (const id of rangeNodes(b, n)) {
            const completed = f.appendNode(id.level, sweep.rangeHash(coverage(id)));
            if (completed[0]!.level !== id.level || completed[0]!.index !== id.index) fail(`[${b}, ${n}): first completed node is not the appended one`);
            for (const c of completed) if (!same([c.hash], [sweep.rangeHash(coverage(c))])) fail(`[${b}, ${n}): completed ${c.level}/${c.index}`);
          }
          if (f.size !== n) fail(`[${b}, ${n}): size ${f.size}`);
          if (!same([f.root()], [sweep.root(n)])) fail(`[${b}, ${n}): root`);
        }
      }
    });
  });

  it("is rebuilt from rangeNodes(0, size) hashes, copies independently, and refuses a wrong node count", () => {
    for (let n = 0; n <= MAX; n++) {
      const hashes = rangeNodes(0, n).map((id) => sweep.rangeHash(coverage(id)));
      const f = new MerkleFrontier(n, hashes);
      expect(f.root()).toEqual(sweep.root(n));
      if (n > 0) expect(foldRange(hashes)).toEqual(sweep.root(n));
      if (n < MAX) {
        const g = f.copy();
        g.appendLeaf(sweepLeaves[n]!);
        expect(g.root()).toEqual(sweep.root(n + 1));
        expect(f.root()).toEqual(sweep.root(n));
        expect(f.size).toBe(n);
      }
    }
    expect(() => new MerkleFrontier(5, [sweep.root(4)])).toThrow(RangeError);
    expect(() => new MerkleFrontier(0, [sweep.root(1)])).toThrow(RangeError);
  });

  it("refuses a subtree that would not be aligned where the tree ends", () => {
    const f = new MerkleFrontier();
    for (let i = 0; i < 6; i++) f.appendLeaf(sweepLeaves[i]!);
    expect(() => f.appendNode(2, sweep.rangeHash([6, 10]))).toThrow(RangeError); // 6 is not a multiple of 4
    expect(() => f.appendNode(3, sweep.rangeHash([6, 14]))).toThrow(RangeError);
    expect(f.size).toBe(6);
    expect(f.appendNode(1, sweep.rangeHash([6, 8])).map((c) => c.level)).toEqual([1, 2, 3]);
    expect(f.root()).toEqual(sweep.root(8));
  });
});

describe("rangeNodes", () => {
  /** What is wrong with rangeNodes(begin, end), or null. */
  const problem = (begin: number, end: number, nodes: NodeId[] = rangeNodes(begin, end)): string | null => {
    let at = begin;
    for (const node of nodes) {
      const [b, e] = coverage(node);
      // Exactly adjacent to the previous node, and aligned: a complete subtree.
      if (b !== at) return `node ${node.level}/${node.index} starts at ${b}, not ${at}`;
      if (!Number.isSafeInteger(node.index) || node.index < 0) return `bad index ${node.index}`;
      if (b % width(node.level) !== 0 || e - b !== width(node.level)) return `node ${node.level}/${node.index} is not aligned`;
      at = e;
    }
    if (at !== end) return `covers up to ${at}`;
    // Canonical: no two neighbours are siblings (they would merge into their parent),
    // and levels rise strictly, then fall strictly (the two peaks may be level).
    for (let i = 1; i < nodes.length; i++) {
      const [l, r] = [nodes[i - 1]!, nodes[i]!];
      if (l.level === r.level && l.index % 2 === 0) return `siblings ${l.level}/${l.index} and ${r.level}/${r.index}`;
    }
    const levels = nodes.map((n) => n.level);
    let i = 1;
    while (i < levels.length && levels[i]! > levels[i - 1]!) i++;
    if (i < levels.length && levels[i] === levels[i - 1]) i++;
    while (i < levels.length && levels[i]! < levels[i - 1]!) i++;
    if (i < levels.length) return `levels ${levels.join(",")} do not rise then fall`;
    return null;
  };

  it(`covers [begin, end) exactly with aligned, canonical subtrees for all 0 ≤ begin ≤ end ≤ ${MAX}`, () => {
    sweepCheck((fail) => {
      for (let end = 0; end <= MAX; end++) {
        for (let begin = 0; begin <= end; begin++) {
          const p = problem(begin, end);
          if (p) fail(`[${begin}, ${end}): ${p}`);
        }
      }
    });
    // The checker itself catches a non-canonical cover.
    expect(problem(0, 4, [{ level: 0, index: 0 }, { level: 0, index: 1 }, { level: 1, index: 1 }])).toMatch(/siblings/);
    expect(problem(1, 4, [{ level: 0, index: 1 }, { level: 1, index: 0 }])).toMatch(/starts at/);
  });

  it("of [0, n) is one subtree per set bit of n, largest first", () => {
    sweepCheck((fail) => {
      for (let n = 0; n <= 1025; n++) {
        const bits = [...n.toString(2)].map((c, i, all) => (c === "1" ? all.length - 1 - i : -1)).filter((l) => l >= 0);
        const levels = rangeNodes(0, n).map((x) => x.level);
        if (levels.join() !== bits.join()) fail(`[0, ${n}): levels ${levels.join()}`);
      }
    });
  });

  it("handles sizes beyond 2^32 and refuses bad ranges", () => {
    const nodes = rangeNodes(2 ** 40 + 3, 2 ** 41 - 5);
    expect(problem(2 ** 40 + 3, 2 ** 41 - 5, nodes)).toBeNull();
    expect(nodes.length).toBeLessThanOrEqual(2 * 41);
    expect(problem(2 ** 52, 2 ** 53 - 1)).toBeNull();
    expect(() => rangeNodes(5, 4)).toThrow(RangeError);
    expect(() => rangeNodes(-1, 4)).toThrow(RangeError);
    expect(() => rangeNodes(0, 2 ** 53)).toThrow(RangeError);
    expect(() => rangeNodes(0.5, 4)).toThrow(RangeError);
  });
});

describe("proofs in trees beyond 2^32 leaves", () => {
  // No naive tree is that big, but the inclusion root can be recombined independently
  // from the proof's ranges: each range lies left or right of the part covered so far.
  const pairs: Array<[number, number]> = [
    [0, 2 ** 32 + 1],
    [2 ** 32, 2 ** 32 + 1],
    [2 ** 32 - 1, 2 ** 33],
    [2 ** 40 + 5, 2 ** 41 + 3],
    [2 ** 52 + 12345, 2 ** 53 - 1],
    [2 ** 53 - 2, 2 ** 53 - 1],
  ];
  const fake = (i: number) => sha(Uint8Array.of(i, 0x5a));

  it("rootFromInclusionProof agrees with folding the proof along inclusionProofRanges", () => {
    for (const [index, size] of pairs) {
      const ranges = inclusionProofRanges(index, size);
      const proof = ranges.map((_, i) => fake(i));
      let acc = fake(255);
      let [lo, hi] = [index, index + 1];
      for (const [k, [b, e]] of ranges.entries()) {
        if (b === hi) [acc, hi] = [sha(Uint8Array.of(1), acc, proof[k]!), e];
        else if (e === lo) [acc, lo] = [sha(Uint8Array.of(1), proof[k]!, acc), b];
        else throw new Error(`range [${b}, ${e}) is not adjacent to [${lo}, ${hi})`);
      }
      expect([lo, hi]).toEqual([0, size]);
      expect(rootFromInclusionProof(index, size, fake(255), proof)).toEqual(acc);
      expect(() => rootFromInclusionProof(index, size, fake(255), proof.slice(1))).toThrow(/too short/);
      expect(() => rootFromInclusionProof(index, size, fake(255), [...proof, fake(9)])).toThrow(/too long/);
    }
  });

  it("checkConsistency accepts exactly the proof length of consistencyProofRanges", () => {
    for (const [size1, size2] of pairs) {
      if (size1 === 0) continue;
      const proof = consistencyProofRanges(size1, size2).map((_, i) => fake(i));
      // Right length: only the roots can be wrong, not the shape.
      expect(() => checkConsistency(size1, size2, fake(100), fake(101), proof)).toThrow(/does not lead to the root/);
      expect(() => checkConsistency(size1, size2, fake(100), fake(101), proof.slice(1))).toThrow(/too short|does not lead|empty consistency proof/);
      expect(() => checkConsistency(size1, size2, fake(100), fake(101), [...proof, fake(9)])).toThrow(/too long/);
    }
  });
});

// ---------------------------------------------------------------------------------
describe("malformed inclusion proofs are rejected", () => {
  const nontrivial = rfc.inclusion.filter((v) => v.proof.length > 0);
  const args = (v: InclusionVector) => [v.index, v.size, fromHex(v.leaf_hash), bytes(v.proof), fromHex(v.root)] as const;

  it("one element too few", () => {
    for (const v of nontrivial) {
      const [i, n, leaf, proof, root] = args(v);
      expect(verifyInclusion(i, n, leaf, proof.slice(0, -1), root)).toBe(false);
      expect(() => rootFromInclusionProof(i, n, leaf, proof.slice(0, -1))).toThrow(/too short/);
    }
  });

  it("one element too many, at either end", () => {
    for (const v of rfc.inclusion) {
      const [i, n, leaf, proof, root] = args(v);
      for (const extra of [root, EMPTY_ROOT, new Uint8Array(HASH_BYTES)]) {
        expect(verifyInclusion(i, n, leaf, [...proof, extra], root)).toBe(false);
        expect(verifyInclusion(i, n, leaf, [extra, ...proof], root)).toBe(false);
      }
      expect(() => rootFromInclusionProof(i, n, leaf, [...proof, root])).toThrow(/too long/);
    }
  });

  it("any single flipped bit in any element", () => {
    sweepCheck((fail) => {
      for (const v of nontrivial) {
        const [i, n, leaf, proof, root] = args(v);
        for (let e = 0; e < proof.length; e++) {
          for (let bit = 0; bit < HASH_BYTES * 8; bit++) {
            const bad = proof.map((h, k) => (k === e ? flipBit(h, bit) : h));
            if (verifyInclusion(i, n, leaf, bad, root)) fail(`leaf ${i} of ${n}: element ${e} bit ${bit}`);
          }
        }
      }
    });
  });

  it("a flipped bit in the leaf or the root, or the wrong index or size", () => {
    for (const v of nontrivial) {
      const [i, n, leaf, proof, root] = args(v);
      expect(verifyInclusion(i, n, flipBit(leaf, 0), proof, root)).toBe(false);
      expect(verifyInclusion(i, n, leaf, proof, flipBit(root, 255))).toBe(false);
      for (const [i2, n2] of [[i - 1, n], [i + 1, n], [i ^ 2, n], [i, n * 2], [i, Math.floor(n / 2)]] as const) {
        if (i2 === i && n2 === n) continue;
        if (i2 >= 0) expect(verifyInclusion(i2, n2, leaf, proof, root)).toBe(false);
      }
    }
  });

  it("index ≥ size", () => {
    const leaf = fromHex(rfc.leaves[0]!.hash);
    for (const [i, n] of [[0, 0], [1, 1], [8, 8], [9, 8], [2, 1]] as const) {
      expect(verifyInclusion(i, n, leaf, [], leaf)).toBe(false);
      expect(() => rootFromInclusionProof(i, n, leaf, [])).toThrow(ProofError);
      expect(() => inclusionProofRanges(i, n)).toThrow(RangeError);
    }
    // (The same empty proof is valid at index 0 of size 1, whose root is the leaf.)
    expect(verifyInclusion(0, 1, leaf, [], leaf)).toBe(true);
  });

  it("negative or fractional indices and sizes", () => {
    const v = rfc.inclusion.find((x) => x.index === 5 && x.size === 8)!;
    const [, , leaf, proof, root] = args(v);
    for (const [i, n] of [[-1, 8], [5.5, 8], [5, 8.5], [5, -8], [5, Number.NaN]] as const) {
      expect(verifyInclusion(i, n, leaf, proof, root)).toBe(false);
    }
  });

  it("hash elements of the wrong size", () => {
    for (const v of nontrivial) {
      const [i, n, leaf, proof, root] = args(v);
      for (let e = 0; e < proof.length; e++) {
        for (const bad of [proof[e]!.subarray(0, 31), Uint8Array.of(...proof[e]!, 0), new Uint8Array(0)]) {
          const p = proof.map((h, k) => (k === e ? bad : h));
          expect(verifyInclusion(i, n, leaf, p, root)).toBe(false);
          expect(() => rootFromInclusionProof(i, n, leaf, p)).toThrow(/bytes, not 32/);
        }
      }
      expect(verifyInclusion(i, n, leaf.subarray(1), proof, root)).toBe(false);
      expect(verifyInclusion(i, n, leaf, proof, root.subarray(1))).toBe(false);
    }
  });
});

describe("malformed consistency proofs are rejected", () => {
  const nontrivial = rfc.consistency.filter((v) => v.proof.length > 0);
  const args = (v: ConsistencyVector) => [v.size1, v.size2, fromHex(v.root1), fromHex(v.root2), bytes(v.proof)] as const;

  it("one element too few", () => {
    for (const v of nontrivial) {
      const [m, n, r1, r2, proof] = args(v);
      expect(verifyConsistency(m, n, r1, r2, proof.slice(0, -1))).toBe(false);
      expect(verifyConsistency(m, n, r1, r2, proof.slice(1))).toBe(false);
    }
  });

  it("one element too many, at either end", () => {
    for (const v of nontrivial) {
      const [m, n, r1, r2, proof] = args(v);
      for (const extra of [r1, r2, proof[0]!, proof.at(-1)!, new Uint8Array(HASH_BYTES)]) {
        expect(verifyConsistency(m, n, r1, r2, [...proof, extra])).toBe(false);
        expect(verifyConsistency(m, n, r1, r2, [extra, ...proof])).toBe(false);
      }
      expect(() => checkConsistency(m, n, r1, r2, [...proof, r2])).toThrow(/too long/);
    }
  });

  it("any single flipped bit in any element", () => {
    sweepCheck((fail) => {
      for (const v of nontrivial) {
        const [m, n, r1, r2, proof] = args(v);
        for (let e = 0; e < proof.length; e++) {
          for (let bit = 0; bit < HASH_BYTES * 8; bit++) {
            const bad = proof.map((h, k) => (k === e ? flipBit(h, bit) : h));
            if (verifyConsistency(m, n, r1, r2, bad)) fail(`${m}→${n}: element ${e} bit ${bit}`);
          }
        }
      }
    });
  });

  it("a flipped bit in either root, swapped roots, or neighbouring sizes", () => {
    for (const v of nontrivial) {
      const [m, n, r1, r2, proof] = args(v);
      // (When size1 is a power of two, root1 is itself the first node of the path, so
      // a wrong root1 shows up in the recomputed root2 instead.)
      expect(() => checkConsistency(m, n, flipBit(r1, 7), r2, proof)).toThrow(`root of the tree of ${(m & (m - 1)) === 0 ? n : m}`);
      expect(() => checkConsistency(m, n, r1, flipBit(r2, 7), proof)).toThrow(`root of the tree of ${n}`);
      expect(verifyConsistency(m, n, r2, r1, proof)).toBe(false);
      for (const [m2, n2] of [[m - 1, n], [m + 1, n], [m ^ 2, n], [m, n * 2], [m, Math.floor(n / 2)]] as const) {
        if (m2 === m && n2 === n) continue;
        expect(verifyConsistency(m2, n2, r1, r2, proof)).toBe(false);
      }
    }
  });

  it("size1 > size2", () => {
    for (const [m, n] of [[1, 0], [2, 1], [8, 7], [9, 8]] as const) {
      expect(verifyConsistency(m, n, rfcRoot(Math.min(m, 8)), rfcRoot(Math.min(n, 8)), [])).toBe(false);
      expect(() => checkConsistency(m, n, rfcRoot(Math.min(m, 8)), rfcRoot(Math.min(n, 8)), [])).toThrow(/never shrinks/);
      expect(() => consistencyProofRanges(m, n)).toThrow(RangeError);
    }
    // The 6→8 proof offered backwards.
    const v = rfc.consistency.find((x) => x.size1 === 6 && x.size2 === 8)!;
    expect(verifyConsistency(8, 6, fromHex(v.root2), fromHex(v.root1), bytes(v.proof))).toBe(false);
  });

  it("hash elements of the wrong size", () => {
    for (const v of nontrivial) {
      const [m, n, r1, r2, proof] = args(v);
      for (let e = 0; e < proof.length; e++) {
        for (const bad of [proof[e]!.subarray(0, 31), Uint8Array.of(...proof[e]!, 0), new Uint8Array(0)]) {
          const p = proof.map((h, k) => (k === e ? bad : h));
          expect(() => checkConsistency(m, n, r1, r2, p)).toThrow(/bytes, not 32/);
        }
      }
      expect(verifyConsistency(m, n, r1.subarray(1), r2, proof)).toBe(false);
      expect(verifyConsistency(m, n, r1, Uint8Array.of(...r2, 0), proof)).toBe(false);
    }
  });

  it("an empty proof for 0 < size1 < size2", () => {
    for (let n = 2; n <= 8; n++) {
      for (let m = 1; m < n; m++) {
        expect(() => checkConsistency(m, n, rfcRoot(m), rfcRoot(n), [])).toThrow("empty consistency proof");
      }
    }
    // Even when the roots happen to be equal.
    expect(verifyConsistency(1, 2, rfcRoot(2), rfcRoot(2), [])).toBe(false);
  });

  it("equal sizes need an empty proof and equal roots; from size 0 the proof must be empty", () => {
    for (let n = 1; n <= 8; n++) {
      expect(verifyConsistency(n, n, rfcRoot(n), rfcRoot(n), [])).toBe(true);
      expect(verifyConsistency(n, n, rfcRoot(n), rfcRoot(n), [rfcRoot(n)])).toBe(false);
      expect(() => checkConsistency(n, n, rfcRoot(n), rfcRoot(n === 1 ? 2 : 1), [])).toThrow(/two different roots/);
      expect(verifyConsistency(0, n, EMPTY_ROOT, rfcRoot(n), [])).toBe(true);
      expect(verifyConsistency(0, n, EMPTY_ROOT, rfcRoot(n), [rfcRoot(n)])).toBe(false);
    }
    expect(verifyConsistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])).toBe(true);
  });
});

describe("nodeHash and leafHash", () => {
  it("domain-separate leaves from nodes", () => {
    const [a, b] = [rfcNaive.leaf(0), rfcNaive.leaf(1)];
    expect(nodeHash(a, b)).toEqual(sha(Uint8Array.of(1), a, b));
    expect(nodeHash(a, b)).not.toEqual(leafHash(Uint8Array.of(...a, ...b)));
    expect(nodeHash(a, b)).not.toEqual(nodeHash(b, a));
  });
});
