// The outbox's bytes on disk, format version 1. Every integer is little-endian.
//
// Segment file, named `<base seq as 20 decimal digits>.seg` (00000000000000000000.seg):
//   offset  size  field
//        0     4  magic "ALOB"
//        4     2  format version, 1
//        6     2  reserved, 0
//        8     8  base seq: the seq of the segment's first record (the same as the name)
//       16        records, back to back, to the end of the file
//
// Record (16-byte header, then the body):
//        0     4  crc   CRC-32C of bytes 4 .. 16+len of this record (len, seq and body)
//        4     4  len   body length in bytes, at most MAX_BODY_BYTES
//        8     8  seq   outbox sequence number: base seq + the record's index in the segment,
//                       so seqs run without gaps across segments
//       16   len  body  opaque bytes (the caller serialises events)
//
// Ack checkpoint file `ack` (16 bytes), only ever replaced whole through `ack.tmp`:
//        0     4  magic "ALOA"
//        4     4  crc   CRC-32C of bytes 8..16
//        8     8  first unacked seq: every record below it has been acked by the server
//
// Seqs are u64 on disk; in memory they are JS numbers, so a seq at or above 2^53 is
// treated as damage (an outbox would need centuries at a million records a second).
import { crc32c } from "./crc32c.js";

export const FORMAT_VERSION = 1;
export const SEGMENT_HEADER_BYTES = 16;
export const RECORD_HEADER_BYTES = 16;
export const ACK_CHECKPOINT_BYTES = 16;
/** Hard limit of the format: a larger `len` can only be damage. */
export const MAX_BODY_BYTES = 64 * 1024 * 1024;

const SEGMENT_MAGIC = [0x41, 0x4c, 0x4f, 0x42]; // "ALOB"
const ACK_MAGIC = [0x41, 0x4c, 0x4f, 0x41]; // "ALOA"
const SEGMENT_NAME = /^(\d{20})\.seg$/;

export function segmentFileName(baseSeq: number): string {
  return `${String(baseSeq).padStart(20, "0")}.seg`;
}

/** The base seq a segment file name encodes, or undefined if `name` is not a segment. */
export function parseSegmentFileName(name: string): number | undefined {
  const m = SEGMENT_NAME.exec(name);
  if (!m) return undefined;
  const seq = Number(m[1]);
  return Number.isSafeInteger(seq) ? seq : undefined;
}

/** Encoded size of one record with a body of `bodyLength` bytes. */
export function recordSize(bodyLength: number): number {
  return RECORD_HEADER_BYTES + bodyLength;
}

export function encodeSegmentHeader(baseSeq: number): Uint8Array {
  const out = new Uint8Array(SEGMENT_HEADER_BYTES);
  out.set(SEGMENT_MAGIC, 0);
  writeU16(out, 4, FORMAT_VERSION);
  writeU64(out, 8, baseSeq);
  return out;
}

/**
 * Checks a segment header against the base seq its file name gives. Returns undefined
 * when it is good, else why not. Precondition: `bytes` holds SEGMENT_HEADER_BYTES.
 */
export function segmentHeaderProblem(bytes: Uint8Array, baseSeq: number): string | undefined {
  if (!SEGMENT_MAGIC.every((b, i) => bytes[i] === b)) return "not an outbox segment (bad magic)";
  const version = readU16(bytes, 4);
  if (version !== FORMAT_VERSION) return `segment format version ${version}, this code reads ${FORMAT_VERSION}`;
  const base = readU64(bytes, 8);
  if (base !== baseSeq) return `segment header says base seq ${base ?? "(out of range)"}, file name says ${baseSeq}`;
  return undefined;
}

/**
 * Writes one record (header and body) into `target` at `offset`; returns its size.
 * Precondition: target has recordSize(body.length) bytes free at offset.
 */
export function encodeRecord(target: Uint8Array, offset: number, seq: number, body: Uint8Array): number {
  writeU32(target, offset + 4, body.length);
  writeU64(target, offset + 8, seq);
  target.set(body, offset + RECORD_HEADER_BYTES);
  const end = offset + RECORD_HEADER_BYTES + body.length;
  writeU32(target, offset, crc32c(target, 0, offset + 4, end));
  return end - offset;
}

export interface RecordHeader {
  crc: number;
  len: number;
  /** undefined when the stored u64 is not a safe integer (only damage produces that). */
  seq: number | undefined;
}

/** Precondition: `bytes` holds RECORD_HEADER_BYTES at `offset`. */
export function decodeRecordHeader(bytes: Uint8Array, offset: number): RecordHeader {
  return { crc: readU32(bytes, offset), len: readU32(bytes, offset + 4), seq: readU64(bytes, offset + 8) };
}

/** Whether the record at `offset` matches its checksum. Precondition: all of it is in `bytes`. */
export function recordChecksumOk(bytes: Uint8Array, offset: number, header: RecordHeader): boolean {
  return crc32c(bytes, 0, offset + 4, offset + RECORD_HEADER_BYTES + header.len) === header.crc;
}

export function encodeAckCheckpoint(firstUnacked: number): Uint8Array {
  const out = new Uint8Array(ACK_CHECKPOINT_BYTES);
  out.set(ACK_MAGIC, 0);
  writeU64(out, 8, firstUnacked);
  writeU32(out, 4, crc32c(out, 0, 8, 16));
  return out;
}

/** The first unacked seq in an ack checkpoint, or a string saying why it is unreadable. */
export function decodeAckCheckpoint(bytes: Uint8Array): number | string {
  if (bytes.length !== ACK_CHECKPOINT_BYTES) return `ack checkpoint is ${bytes.length} bytes, not ${ACK_CHECKPOINT_BYTES}`;
  if (!ACK_MAGIC.every((b, i) => bytes[i] === b)) return "not an outbox ack checkpoint (bad magic)";
  if (crc32c(bytes, 0, 8, 16) !== readU32(bytes, 4)) return "ack checkpoint checksum mismatch";
  return readU64(bytes, 8) ?? "ack checkpoint seq out of range";
}

function writeU16(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
}

function readU16(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}

function writeU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = (v >>> 24) & 0xff;
}

function readU32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

/** Precondition: v is a non-negative safe integer. */
function writeU64(b: Uint8Array, o: number, v: number): void {
  writeU32(b, o, v >>> 0);
  writeU32(b, o + 4, Math.floor(v / 0x1_0000_0000));
}

/** undefined when the value does not fit a safe integer. */
function readU64(b: Uint8Array, o: number): number | undefined {
  const hi = readU32(b, o + 4);
  if (hi > 0x1f_ffff) return undefined;
  return hi * 0x1_0000_0000 + readU32(b, o);
}
