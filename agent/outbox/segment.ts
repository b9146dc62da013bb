// One segment file: its in-memory description, its creation, and the check run over it
// when the outbox opens.
import { open, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { RecordReader } from "./record-reader.js";
import { encodeSegmentHeader, SEGMENT_HEADER_BYTES, segmentFileName, segmentHeaderProblem } from "./record-format.js";
import { SparseIndex } from "./sparse-index.js";
import { syncDir } from "../state/sync-dir.js";

export const INDEX_STRIDE_BYTES = 32 * 1024;

export interface Segment {
  /** Seq of its first record (also its file name). */
  readonly base: number;
  readonly path: string;
  /** Bytes of header and intact records: where the next append to it goes. */
  size: number;
  /** One past the seq of its last record; `base` while it is empty. */
  end: number;
  readonly index: SparseIndex;
}

/** Bytes at `offset` that are not an intact record (or header). */
export interface SegmentDamage {
  offset: number;
  reason: string;
  /**
   * Whether a crash mid-write can leave this (a short or checksum-failing record, a
   * header of zeros). A record that checks out but carries the wrong seq, or a foreign
   * header, cannot come from a torn write and is never cut off silently.
   */
  tearable: boolean;
  fileSize: number;
}

function emptySegment(dir: string, base: number): Segment {
  return {
    base,
    path: join(dir, segmentFileName(base)),
    size: SEGMENT_HEADER_BYTES,
    end: base,
    index: new SparseIndex(base, SEGMENT_HEADER_BYTES, INDEX_STRIDE_BYTES),
  };
}

/**
 * Creates the empty segment `base` and returns it with a handle open for writing. With
 * `durable`, the header and the new name are fsynced before it is used, so records
 * fsynced into it later cannot vanish with a lost directory entry.
 */
export async function createSegment(dir: string, base: number, durable: boolean): Promise<{ segment: Segment; fh: FileHandle }> {
  const segment = emptySegment(dir, base);
  const fh = await open(segment.path, "wx");
  try {
    await fh.write(encodeSegmentHeader(base), 0, SEGMENT_HEADER_BYTES, 0);
    if (durable) {
      await fh.sync();
      await syncDir(dir);
    }
  } catch (err) {
    await fh.close();
    throw err;
  }
  return { segment, fh };
}

/**
 * Reads a whole segment through a bounded buffer, checking the header, every record's
 * checksum and that seqs run base, base+1, ... Returns the segment as far as it is
 * intact, and the first damage found, if any.
 */
export async function scanSegment(dir: string, base: number): Promise<{ segment: Segment; damage?: SegmentDamage }> {
  const segment = emptySegment(dir, base);
  const fh = await open(segment.path, "r");
  try {
    const fileSize = (await fh.stat()).size;
    if (fileSize < SEGMENT_HEADER_BYTES) {
      return { segment, damage: { offset: 0, reason: `truncated segment header (${fileSize} bytes)`, tearable: true, fileSize } };
    }
    const header = new Uint8Array(SEGMENT_HEADER_BYTES);
    await fh.read(header, 0, SEGMENT_HEADER_BYTES, 0);
    const problem = segmentHeaderProblem(header, base);
    if (problem !== undefined) {
      // Zeros are what a file system can show for a block whose write never reached disk.
      return { segment, damage: { offset: 0, reason: problem, tearable: header.every((b) => b === 0), fileSize } };
    }
    const reader = new RecordReader(fh, SEGMENT_HEADER_BYTES, fileSize);
    for (;;) {
      const step = await reader.next();
      if (step.kind === "end") return { segment };
      if (step.kind === "bad") return { segment, damage: { offset: step.offset, reason: step.reason, tearable: true, fileSize } };
      if (step.seq !== segment.end) {
        return { segment, damage: { offset: step.offset, reason: `record has seq ${step.seq}, ${segment.end} expected`, tearable: false, fileSize } };
      }
      segment.index.note(step.seq, step.offset);
      segment.size = step.offset + step.size;
      segment.end++;
    }
  } finally {
    await fh.close();
  }
}
