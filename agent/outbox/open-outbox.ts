// Opening an outbox: the recovery pass over what a crash may have left.
import { mkdir, open, readdir, unlink, type FileHandle } from "node:fs/promises";
import { dirname, join } from "node:path";
import { readAckCheckpoint, removeStaleAckTemp } from "./ack-checkpoint.js";
import { OutboxCorruptError } from "./errors.js";
import { Outbox } from "./outbox.js";
import { resolveOptions, type OutboxOptions } from "./outbox-options.js";
import { parseSegmentFileName, segmentFileName } from "./record-format.js";
import { createSegment, scanSegment, type Segment } from "./segment.js";
import { syncDir } from "../state/sync-dir.js";

/** What open found and repaired. */
export interface OpenReport {
  /** Intact records found on disk (acked ones still in a kept segment included). */
  recordsRecovered: number;
  unackedRecords: number;
  firstUnacked: number;
  nextSeq: number;
  /** Bytes cut off the end of the last segment (a torn write); 0 when it ended cleanly. */
  bytesDropped: number;
  /** Where the torn tail started and what was wrong with it, when there was one. */
  tornTail?: { file: string; offset: number; reason: string };
  /** Fully acked segments a crash kept from being deleted, deleted now. */
  deletedSegments: string[];
  /** A temp ack checkpoint left by a crash mid-write was found (and removed). */
  removedAckTemp: boolean;
  /**
   * The ack checkpoint was past the last record on disk: records the server had acked
   * were lost with their unsynced write (possible only without per-batch fsync). The
   * outbox continues at the acked position so no seq is used twice.
   */
  ackedPastEnd: boolean;
}

/**
 * Opens (creating if needed) the outbox in `dir`: checks every segment, cuts a torn
 * tail off the last one, deletes segments a crash left after their ack. Throws
 * OutboxCorruptError, naming file and offset, for damage a crash cannot explain.
 * Precondition: no other process or Outbox has `dir` open.
 */
export async function openOutbox(dir: string, options: OutboxOptions = {}): Promise<{ outbox: Outbox; report: OpenReport }> {
  const opts = resolveOptions(options);
  const durable = opts.fsync !== "none";
  const created = await mkdir(dir, { recursive: true });
  if (created !== undefined && durable) await syncDir(dirname(created));

  const report: OpenReport = {
    recordsRecovered: 0,
    unackedRecords: 0,
    firstUnacked: 0,
    nextSeq: 0,
    bytesDropped: 0,
    deletedSegments: [],
    removedAckTemp: await removeStaleAckTemp(dir),
    ackedPastEnd: false,
  };
  const stored = await readAckCheckpoint(dir);
  const bases = (await readdir(dir))
    .map(parseSegmentFileName)
    .filter((b): b is number => b !== undefined)
    .sort((a, b) => a - b);
  // No checkpoint means no ack ever happened (segments are deleted only after one is
  // written), so every record from 0 on must still be here.
  const firstUnacked = stored ?? 0;

  // Segments wholly below the acked position: an ack crashed between checkpoint and delete.
  while (bases.length > 1 && bases[1]! <= firstUnacked) {
    const name = segmentFileName(bases.shift()!);
    await unlink(join(dir, name));
    report.deletedSegments.push(name);
  }
  if (bases.length > 0 && firstUnacked < bases[0]!) {
    throw new OutboxCorruptError(
      join(dir, segmentFileName(bases[0]!)),
      0,
      `records ${firstUnacked}..${bases[0]! - 1} are missing: ` +
        (stored === undefined ? "there is no ack checkpoint, so they were never acked" : `the ack checkpoint says ${firstUnacked} is the first unacked record`),
    );
  }

  const segments: Segment[] = [];
  let activeFh: FileHandle | undefined;
  for (const [i, base] of bases.entries()) {
    const last = i === bases.length - 1;
    let { segment, damage } = await scanSegment(dir, base);
    const prev = segments[segments.length - 1];
    if (prev !== undefined && prev.end !== base) {
      throw new OutboxCorruptError(segment.path, 0, `segment starts at seq ${base}, but the one before it ends at seq ${prev.end - 1}`);
    }
    if (damage !== undefined) {
      // Only the last segment can hold the write a crash interrupted; anywhere else a
      // bad record is damage, and skipping it would lose records silently.
      if (!last) throw new OutboxCorruptError(segment.path, damage.offset, `${damage.reason} (in a sealed segment)`);
      if (!damage.tearable) throw new OutboxCorruptError(segment.path, damage.offset, damage.reason);
      report.tornTail = { file: segment.path, offset: damage.offset, reason: damage.reason };
      if (damage.offset === 0) {
        // The header itself never made it: start the segment again.
        report.bytesDropped += damage.fileSize;
        await unlink(segment.path);
        ({ segment, fh: activeFh } = await createSegment(dir, base, durable));
      } else {
        report.bytesDropped += damage.fileSize - damage.offset;
        const fh = await open(segment.path, "r+");
        try {
          await fh.truncate(damage.offset);
          if (durable) await fh.sync();
        } finally {
          await fh.close();
        }
      }
    }
    report.recordsRecovered += segment.end - segment.base;
    segments.push(segment);
  }

  if (segments.length === 0) {
    const made = await createSegment(dir, firstUnacked, durable);
    segments.push(made.segment);
    activeFh = made.fh;
  }
  if (firstUnacked > segments[segments.length - 1]!.end) {
    report.ackedPastEnd = true;
    await activeFh?.close();
    const made = await createSegment(dir, firstUnacked, durable);
    activeFh = made.fh;
    for (const old of segments.splice(0)) {
      await unlink(old.path);
      report.deletedSegments.push(segmentFileName(old.base));
    }
    segments.push(made.segment);
  }
  activeFh ??= await open(segments[segments.length - 1]!.path, "r+");

  const outbox = new Outbox(dir, opts, segments, activeFh, firstUnacked);
  await outbox.init();
  report.firstUnacked = firstUnacked;
  report.nextSeq = outbox.nextSeq;
  report.unackedRecords = outbox.nextSeq - firstUnacked;
  return { outbox, report };
}
