// Reads records from a byte range of a segment through one reusable buffer, so memory
// stays at one chunk (or one record, if a record is larger) however big the segment is.
import type { FileHandle } from "node:fs/promises";
import { decodeRecordHeader, MAX_BODY_BYTES, RECORD_HEADER_BYTES, recordChecksumOk, recordSize } from "./record-format.js";

export const READ_CHUNK_BYTES = 64 * 1024;

export type ReadStep =
  /** `body` is a view into the reader's buffer, valid only until the next call to next(). */
  | { kind: "record"; offset: number; seq: number; size: number; body: Uint8Array }
  | { kind: "end" }
  /** The bytes at `offset` are not an intact record; the reader does not go past them. */
  | { kind: "bad"; offset: number; reason: string };

export class RecordReader {
  private buf: Buffer;
  /** File offset of buf[0]. */
  private bufStart: number;
  private bufLen = 0;
  private cursor: number;

  /** Reads records in [start, end) of `fh`. Precondition: `start` is a record boundary. */
  constructor(
    private readonly fh: FileHandle,
    start: number,
    private readonly end: number,
    chunkBytes = READ_CHUNK_BYTES,
  ) {
    this.buf = Buffer.allocUnsafe(chunkBytes);
    this.bufStart = start;
    this.cursor = start;
  }

  /** File offset of the next record. */
  get offset(): number {
    return this.cursor;
  }

  async next(): Promise<ReadStep> {
    if (this.cursor >= this.end) return { kind: "end" };
    const offset = this.cursor;
    if (!(await this.fill(RECORD_HEADER_BYTES))) {
      return { kind: "bad", offset, reason: `truncated record header (${this.end - offset} bytes left)` };
    }
    const at = offset - this.bufStart;
    const header = decodeRecordHeader(this.buf, at);
    if (header.len > MAX_BODY_BYTES) return { kind: "bad", offset, reason: `record length ${header.len} is over the format's limit` };
    const size = recordSize(header.len);
    if (!(await this.fill(size))) {
      return { kind: "bad", offset, reason: `truncated record (${size} bytes declared, ${this.end - offset} left)` };
    }
    // fill() may have moved the buffer.
    const pos = offset - this.bufStart;
    if (!recordChecksumOk(this.buf, pos, header)) return { kind: "bad", offset, reason: "checksum mismatch" };
    if (header.seq === undefined) return { kind: "bad", offset, reason: "seq out of range" };
    this.cursor = offset + size;
    return { kind: "record", offset, seq: header.seq, size, body: this.buf.subarray(pos + RECORD_HEADER_BYTES, pos + size) };
  }

  /** Makes sure `n` bytes from the cursor are in the buffer; false if the range ends first. */
  private async fill(n: number): Promise<boolean> {
    if (this.cursor + n > this.end) return false;
    const have = this.bufStart + this.bufLen - this.cursor;
    if (have >= n) return true;
    // Keep the unread tail, at the front of the buffer or of a bigger one for a large record.
    const from = this.cursor - this.bufStart;
    if (this.buf.length < n) {
      const bigger = Buffer.allocUnsafe(n);
      this.buf.copy(bigger, 0, from, from + have);
      this.buf = bigger;
    } else {
      this.buf.copyWithin(0, from, from + have);
    }
    this.bufStart = this.cursor;
    this.bufLen = have;
    while (this.bufLen < n) {
      const filePos = this.bufStart + this.bufLen;
      const want = Math.min(this.buf.length - this.bufLen, this.end - filePos);
      const { bytesRead } = await this.fh.read(this.buf, this.bufLen, want, filePos);
      if (bytesRead === 0) return false; // the file is shorter than the caller said
      this.bufLen += bytesRead;
    }
    return true;
  }
}
