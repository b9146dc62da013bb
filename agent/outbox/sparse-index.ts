/**
 * Sparse seq → byte offset index of one segment: an entry at least every `stride`
 * bytes, so finding a record reads at most one stride of the file while the index
 * itself stays a few numbers per stride (about 64 K entries per GiB at 32 KiB).
 */
export class SparseIndex {
  private readonly seqs: number[];
  private readonly offsets: number[];

  /** `firstSeq` is the segment's base seq, `firstOffset` where its first record starts. */
  constructor(
    firstSeq: number,
    firstOffset: number,
    private readonly stride: number,
  ) {
    this.seqs = [firstSeq];
    this.offsets = [firstOffset];
  }

  /** Notes the record `seq` at `offset`. Precondition: seqs and offsets only grow. */
  note(seq: number, offset: number): void {
    if (offset - this.offsets[this.offsets.length - 1]! < this.stride) return;
    this.seqs.push(seq);
    this.offsets.push(offset);
  }

  /** The last indexed record at or before `seq`. Precondition: seq ≥ the first seq. */
  floor(seq: number): { seq: number; offset: number } {
    let lo = 0;
    let hi = this.seqs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.seqs[mid]! <= seq) lo = mid;
      else hi = mid - 1;
    }
    return { seq: this.seqs[lo]!, offset: this.offsets[lo]! };
  }
}
