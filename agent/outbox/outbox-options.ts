// The outbox's options, their defaults and their checks.
import { MAX_BODY_BYTES, recordSize, SEGMENT_HEADER_BYTES } from "./record-format.js";

/**
 * When appended records reach the disk:
 * - `per-batch`: append() resolves only after its records are fsynced (the default);
 * - `interval`: append() resolves once the records are written to the OS; a timer fsyncs
 *   every `fsyncIntervalMs`, so a power loss can take that much, a process crash nothing;
 * - `none`: never fsyncs (tests, benchmarks); a process crash loses nothing, a power
 *   loss or kernel crash can lose anything not yet written back.
 */
export type FsyncPolicy = "per-batch" | "interval" | "none";

export interface OutboxOptions {
  /** A segment is sealed, and the next one started, before it would grow past this. Default 16 MiB. */
  segmentBytes?: number;
  /**
   * Cap on the total size of the segment files. Acked records count until their whole
   * segment is deleted, so keep this several times `segmentBytes`. Default 1 GiB.
   */
  maxBytes?: number;
  /**
   * The top of `maxBytes` that only appends with `useReserve` may fill: room for the
   * `gap` entry an agent writes when it had to drop events while full. Default 64 KiB.
   */
  reserveBytes?: number;
  /** Largest record body accepted. Default 4 MiB, at most 64 MiB. */
  maxRecordBytes?: number;
  fsync?: FsyncPolicy;
  /** fsync period of the `interval` policy. Default 100 ms. */
  fsyncIntervalMs?: number;
}

export interface ResolvedOptions {
  segmentBytes: number;
  maxBytes: number;
  reserveBytes: number;
  maxRecordBytes: number;
  fsync: FsyncPolicy;
  fsyncIntervalMs: number;
}

const MiB = 1024 * 1024;

export function resolveOptions(o: OutboxOptions): ResolvedOptions {
  const r: ResolvedOptions = {
    segmentBytes: o.segmentBytes ?? 16 * MiB,
    maxBytes: o.maxBytes ?? 1024 * MiB,
    reserveBytes: o.reserveBytes ?? 64 * 1024,
    maxRecordBytes: o.maxRecordBytes ?? 4 * MiB,
    fsync: o.fsync ?? "per-batch",
    fsyncIntervalMs: o.fsyncIntervalMs ?? 100,
  };
  const positive = (name: keyof ResolvedOptions, v: number, min = 1) => {
    if (!Number.isSafeInteger(v) || v < min) throw new RangeError(`outbox option ${name} must be an integer ≥ ${min}, got ${v}`);
  };
  positive("segmentBytes", r.segmentBytes, SEGMENT_HEADER_BYTES + recordSize(1));
  positive("maxBytes", r.maxBytes);
  positive("reserveBytes", r.reserveBytes, 0);
  positive("maxRecordBytes", r.maxRecordBytes);
  positive("fsyncIntervalMs", r.fsyncIntervalMs);
  if (r.reserveBytes >= r.maxBytes) throw new RangeError("outbox option reserveBytes must be below maxBytes");
  if (r.maxRecordBytes > MAX_BODY_BYTES) throw new RangeError(`outbox option maxRecordBytes must be at most ${MAX_BODY_BYTES}`);
  if (!["per-batch", "interval", "none"].includes(r.fsync)) throw new RangeError(`outbox option fsync must be per-batch, interval or none, got ${r.fsync}`);
  return r;
}
