/**
 * # The agent's durable outbox
 *
 * A local append-only log between the agent's sources and the Ingest stream (SPEC §4).
 * A source event is appended here before the source is acknowledged; the stream reads
 * unacked records in order and sends them; `ack(upToSeq)` after the server's COMMIT
 * is the only thing that lets records go.
 *
 * ```ts
 * const { outbox, report } = await openOutbox(dir);          // log `report` if it cut anything
 * const { lastSeq } = await outbox.append([body1, body2]);   // now ack the source
 * const batch = await outbox.readFrom(outbox.firstUnacked, 500, 1 << 20);
 * await outbox.ack(batch.at(-1)!.seq);                       // after the server acked it
 * ```
 *
 * ## On disk
 * A folder of segment files named by their first record's seq
 * (`00000000000000000000.seg`), rolled at `segmentBytes`, and an `ack` checkpoint. Each
 * record is length-prefixed and CRC-32C checked, with a 64-bit seq that runs without
 * gaps from one segment to the next; record-format.ts has the byte layout.
 *
 * ## What survives a crash
 * - With `fsync: "per-batch"` (the default), `append()` resolves only after its records
 *   and, for a new segment, the folder entry are fsynced: once it has resolved, the
 *   records survive a process crash, a kernel crash and a power loss.
 * - With `"interval"`, `append()` resolves once the OS has the records; they are fsynced
 *   within `fsyncIntervalMs`. A process crash (kill -9) loses nothing; a power loss or
 *   kernel crash can lose up to that interval's appends.
 * - With `"none"` nothing is fsynced: survives a process crash only. For tests and benchmarks.
 * - The ack position is written by replacing the `ack` file (temp file, fsync, rename,
 *   folder fsync), so after any crash it is the old position or the new one. Segments
 *   are deleted only after the position covering them is on disk, so a crash can make
 *   the agent resend acked records (the server dedups them by idempotency key) but never
 *   skip unacked ones. After a restart, reading resumes at the first unacked record.
 *
 * ## Recovery on open
 * A crash mid-write leaves a torn tail: a short or checksum-failing record at the end of
 * the last segment. Open cuts the last segment at its first bad record (ftruncate) and
 * says so in the `OpenReport` (file, offset, bytes dropped). Under `per-batch`, a torn
 * record belongs to an append that had not resolved, so its source was never
 * acknowledged and will deliver it again. The whole last segment counts as tail, because
 * after a power loss its unsynced end can come back with pages in any order; a bad record
 * in its fsynced part (media damage, not a crash) is cut the same way, with everything
 * after it, and shows in the report. Anything else (a bad record in a sealed segment, a
 * gap between segments, an unreadable checkpoint, an intact record with the wrong seq) is
 * damage no crash explains: open throws OutboxCorruptError naming the file and byte
 * offset instead of skipping records.
 *
 * ## Backpressure
 * When an append would take the segment files past `maxBytes`, it writes nothing and
 * rejects with OutboxFullError; the agent pauses its sources and awaits
 * `waitForSpace(err.bytesNeeded)`, which resolves when acks have freed enough. Space is
 * freed a whole segment at a time (keep `maxBytes` several times `segmentBytes`). The top
 * `reserveBytes` are kept for appends made with `{ useReserve: true }`, so an agent that
 * had to drop events can still record the `gap` entry saying so. `depth()` gives the
 * unacked records and bytes for heartbeats.
 *
 * ## Limits
 * One process per folder (nothing locks it). Memory is bounded: reads go through one
 * 64 KiB buffer (or one record, if larger), the seq index keeps an entry per 32 KiB.
 */
export { openOutbox, type OpenReport } from "./open-outbox.js";
export { Outbox, recordsBytes, type AppendResult, type OutboxCounters, type OutboxDepth, type OutboxRecord } from "./outbox.js";
export type { FsyncPolicy, OutboxOptions } from "./outbox-options.js";
export { OutboxClosedError, OutboxCorruptError, OutboxFullError } from "./errors.js";
