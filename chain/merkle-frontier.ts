// The right frontier of a tree (a compact range over [0, size)): the roots of its
// complete subtrees, largest first. It is all the sequencer needs to extend the tree
// and compute its root, in O(log n) memory whatever the chain length.
import { EMPTY_ROOT, nodeHash } from "./merkle-hash.js";
import { rangeNodes, width, type NodeId } from "./merkle-node.js";

export interface HashedNode extends NodeId {
  hash: Uint8Array;
}

export class MerkleFrontier {
  private readonly nodes: HashedNode[];
  private treeSize: number;

  /**
   * @param size number of leaves already in the tree
   * @param hashes the hashes of rangeNodes(0, size), in that order
   */
  constructor(size = 0, hashes: Uint8Array[] = []) {
    const ids = rangeNodes(0, size);
    if (ids.length !== hashes.length) {
      throw new RangeError(`a tree of ${size} leaves has ${ids.length} frontier nodes, got ${hashes.length}`);
    }
    this.nodes = ids.map((id, i) => ({ ...id, hash: hashes[i]! }));
    this.treeSize = size;
  }

  get size(): number {
    return this.treeSize;
  }

  /** The frontier's node hashes, largest subtree first (the constructor's input form). */
  hashes(): Uint8Array[] {
    return this.nodes.map((n) => n.hash);
  }

  copy(): MerkleFrontier {
    return new MerkleFrontier(this.treeSize, this.hashes());
  }

  /**
   * Adds one leaf and returns every subtree it completes, the leaf itself (level 0)
   * first and then each parent it closes, bottom up.
   */
  appendLeaf(hash: Uint8Array): HashedNode[] {
    const completed: HashedNode[] = [];
    this.push({ level: 0, index: this.treeSize, hash }, completed);
    this.treeSize += 1;
    return completed;
  }

  /**
   * Adds a whole complete subtree that starts where the tree ends (merging two compact
   * ranges). Precondition: size is a multiple of 2^level.
   */
  appendNode(level: number, hash: Uint8Array): HashedNode[] {
    if (this.treeSize % width(level) !== 0) {
      throw new RangeError(`a level-${level} subtree cannot start at leaf ${this.treeSize}`);
    }
    const completed: HashedNode[] = [];
    this.push({ level, index: this.treeSize / width(level), hash }, completed);
    this.treeSize += width(level);
    return completed;
  }

  /** Root of the tree: the frontier folded from the right (RFC 6962 MTH). */
  root(): Uint8Array {
    if (this.nodes.length === 0) return EMPTY_ROOT;
    let acc = this.nodes[this.nodes.length - 1]!.hash;
    for (let i = this.nodes.length - 2; i >= 0; i--) acc = nodeHash(this.nodes[i]!.hash, acc);
    return acc;
  }

  private push(node: HashedNode, completed: HashedNode[]): void {
    completed.push(node);
    this.nodes.push(node);
    // Two neighbours of one level are siblings: replace them with their parent.
    for (;;) {
      const n = this.nodes.length;
      if (n < 2 || this.nodes[n - 2]!.level !== this.nodes[n - 1]!.level) return;
      const right = this.nodes.pop()!;
      const left = this.nodes.pop()!;
      const parent = { level: left.level + 1, index: left.index / 2, hash: nodeHash(left.hash, right.hash) };
      this.nodes.push(parent);
      completed.push(parent);
    }
  }
}

/** Hash of the subtree over leaves [begin, end) from the hashes of rangeNodes(begin, end). */
export function foldRange(hashes: Uint8Array[]): Uint8Array {
  if (hashes.length === 0) throw new RangeError("an empty range has no hash");
  let acc = hashes[hashes.length - 1]!;
  for (let i = hashes.length - 2; i >= 0; i--) acc = nodeHash(hashes[i]!, acc);
  return acc;
}

/** Root of a tree over the given leaf hashes (for tests and small trees). */
export function rootOfLeaves(leaves: Uint8Array[]): Uint8Array {
  const f = new MerkleFrontier();
  for (const l of leaves) f.appendLeaf(l);
  return f.root();
}
