// Addresses of complete subtrees, and the decomposition of any leaf range into them.
// Only complete subtrees are ever stored: every other node (the right edge of a tree
// whose size is not a power of two) is recomputed from O(log n) of them.

/** The complete subtree at `level` covering leaves [index·2^level, (index+1)·2^level). */
export interface NodeId {
  level: number;
  index: number;
}

/** 2^level as a plain number (sizes go past 2^31, so no bit shifts). */
export function width(level: number): number {
  return 2 ** level;
}

/** The leaves [begin, end) a node covers. */
export function coverage(node: NodeId): [begin: number, end: number] {
  const w = width(node.level);
  return [node.index * w, (node.index + 1) * w];
}

/**
 * The complete subtrees that exactly cover leaves [begin, end), left to right: at each
 * step the largest subtree that starts at `begin` (so is aligned to it) and fits.
 * At most 2·log2(end − begin) nodes.
 *
 * Precondition: 0 ≤ begin ≤ end, both safe integers.
 */
export function rangeNodes(begin: number, end: number): NodeId[] {
  if (!(Number.isSafeInteger(begin) && Number.isSafeInteger(end) && 0 <= begin && begin <= end)) {
    throw new RangeError(`bad leaf range [${begin}, ${end})`);
  }
  const nodes: NodeId[] = [];
  let at = begin;
  while (at < end) {
    let level = 0;
    while (at % width(level + 1) === 0 && at + width(level + 1) <= end) level++;
    nodes.push({ level, index: at / width(level) });
    at += width(level);
  }
  return nodes;
}

/** Largest power of two strictly less than n (n ≥ 2): the RFC 6962 split point. */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** A stable text key for a node, for maps and SQL parameters. */
export function nodeKey(node: NodeId): string {
  return `${node.level}/${node.index}`;
}
