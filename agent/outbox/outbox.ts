// The durable outbox once open: appends go to the newest segment, reads follow the
// server's acks, acked segments are deleted. See index.ts for the guarantees and
// open-outbox.ts for recovery.
import { open, unlink, type FileHandle } from "node:fs/promises";
import { writeAckCheckpoint } from "./ack-checkpoint.js";
import { OutboxClosedError, OutboxCorruptError, OutboxFullError } from "./errors.js";
import type { ResolvedOptions } from "./outbox-options.js";
import { encodeRecord, recordSize, SEGMENT_HEADER_BYTES } from "./record-format.js";
import { RecordReader } from "./record-reader.js";
import { createSegment, type Segment } from "./segment.js";
import { WaitList } from "./wait-list.js";

export interface OutboxRecord {
  seq: number;
  body: Uint8Array;
}

export interface AppendResult {
  firstSeq: number;
  lastSeq: number;
}

export interface OutboxDepth {
  /** Records appended and not yet acked. */
  records: number;
  /** Their encoded bytes. */
  bytes: number;
  /** Total size of the segment files, what `maxBytes` caps. */
  diskBytes: number;
  segments: number;
}

export interface OutboxCounters {
  appendedRecords: number;
  /** Write rounds: concurrent appends queued behind a write share the next round and its fsync. */
  writeRounds: number;
  fsyncs: number;
}

interface PendingAppend {
  bodies: readonly Uint8Array[];
  useReserve: boolean;
  overCap: boolean;
  resolve: (r: AppendResult) => void;
  reject: (e: unknown) => void;
}

/** Records encoded for the active segment, written in one go. */
interface WriteBatch {
  offset: number;
  bytes: number;
  records: { seq: number; body: Uint8Array }[];
}

/** A write round flushes its buffer whenever this much is encoded, to bound the copy. */
const WRITE_CHUNK_BYTES = 4 * 1024 * 1024;
/** Positions remembered from reads, so acks after a read find their offset without I/O. */
const POSITION_HINTS = 256;

/** Encoded size of records with these bodies, ignoring segment headers. */
export function recordsBytes(bodies: readonly Uint8Array[]): number {
  let n = 0;
  for (const b of bodies) n += recordSize(b.length);
  return n;
}

export class Outbox {
  /** One past the last record written or being written. */
  private assignedEnd: number;
  /** One past the last record append() has resolved for: what readers may see. */
  private visibleEnd: number;
  private firstUnackedSeq: number;
  private ackTarget: number;
  private diskBytes: number;
  private unackedBytes = 0;
  /** Bytes written to the active segment since its last fsync. */
  private dirty = false;

  private pending: PendingAppend[] = [];
  private drainQueued = false;
  /** Every mutation (write round, ack, fsync, close) runs in turn on this chain. */
  private chain: Promise<void> = Promise.resolve();
  private failure: unknown;
  private closing: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly spaceWaiters = new WaitList();
  private readonly recordWaiters = new WaitList();
  /** seq → byte offset in the segment holding it, learnt from reads. */
  private readonly positions = new Map<number, number>();
  private readonly stats: OutboxCounters = { appendedRecords: 0, writeRounds: 0, fsyncs: 0 };

  /** @internal Use openOutbox(). */
  constructor(
    readonly dir: string,
    private readonly options: ResolvedOptions,
    private readonly segments: Segment[],
    private activeFh: FileHandle,
    firstUnacked: number,
  ) {
    this.assignedEnd = this.visibleEnd = this.active.end;
    this.firstUnackedSeq = this.ackTarget = firstUnacked;
    this.diskBytes = segments.reduce((n, s) => n + s.size, 0);
    if (options.fsync === "interval") {
      this.timer = setInterval(() => {
        this.exclusive(() => this.syncActive()).catch((err) => this.fail(err));
      }, options.fsyncIntervalMs);
      this.timer.unref();
    }
  }

  /** @internal */
  async init(): Promise<void> {
    this.unackedBytes = await this.bytesFrom(this.firstUnackedSeq);
  }

  /** Seq the next appended record will get; every record below it is readable. */
  get nextSeq(): number {
    return this.visibleEnd;
  }

  /** Seq of the first record the server has not acked; reading resumes here after a restart. */
  get firstUnacked(): number {
    return this.firstUnackedSeq;
  }

  /** For heartbeats. */
  depth(): OutboxDepth {
    return {
      records: this.visibleEnd - this.firstUnackedSeq,
      bytes: this.unackedBytes,
      diskBytes: this.diskBytes,
      segments: this.segments.length,
    };
  }

  counters(): OutboxCounters {
    return { ...this.stats };
  }

  /**
   * Appends records, one per body, in order, with consecutive seqs; resolves once they
   * are as durable as the fsync policy makes them (fsynced, under `per-batch`). Appends
   * run one at a time in call order; those queued behind a running write share the next
   * write and fsync. Rejects with OutboxFullError, having written nothing, when the
   * records would take the segment files past `maxBytes` (past `maxBytes - reserveBytes`
   * unless `useReserve`; never with `overCap`, for the one small record that says the
   * server refused a batch, which the agent must write before it can free any room);
   * RangeError for an empty batch, a body over `maxRecordBytes`, or a
   * batch that could never fit. Precondition: the bodies are not modified until the
   * append settles (they are encoded when their write round runs, not on the call).
   */
  append(bodies: readonly Uint8Array[], opts: { useReserve?: boolean; overCap?: boolean } = {}): Promise<AppendResult> {
    const refused = this.refusal();
    if (refused !== undefined) return Promise.reject(refused);
    if (bodies.length === 0) return Promise.reject(new RangeError("append needs at least one record"));
    for (const b of bodies) {
      if (!(b instanceof Uint8Array)) return Promise.reject(new TypeError("record bodies must be Uint8Array"));
      if (b.length > this.options.maxRecordBytes) {
        return Promise.reject(new RangeError(`record body of ${b.length} bytes is over maxRecordBytes (${this.options.maxRecordBytes})`));
      }
    }
    const useReserve = opts.useReserve === true;
    const overCap = opts.overCap === true;
    const limit = this.limit(useReserve, overCap);
    if (recordsBytes(bodies) + SEGMENT_HEADER_BYTES > limit) {
      return Promise.reject(new RangeError(`batch of ${recordsBytes(bodies)} bytes can never fit under the cap of ${limit}`));
    }
    return new Promise<AppendResult>((resolve, reject) => {
      this.pending.push({ bodies, useReserve, overCap, resolve, reject });
      if (!this.drainQueued) {
        this.drainQueued = true;
        void this.exclusive(() => this.writeRound());
      }
    });
  }

  /**
   * Up to `maxRecords` records from `seq` on (from the first unacked record, if `seq` is
   * below it), in order, holding at most `maxBytes` of bodies, except that the first
   * record is returned even when it alone is larger. Empty when there is nothing at or
   * after `seq` yet (see waitForRecords). Reads through a bounded buffer, never a whole
   * segment. Throws OutboxCorruptError if a record went bad on disk since open.
   */
  async readFrom(seq: number, maxRecords: number, maxBytes: number): Promise<OutboxRecord[]> {
    if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError(`bad seq ${seq}`);
    if (!Number.isSafeInteger(maxRecords) || maxRecords < 1) throw new RangeError(`bad maxRecords ${maxRecords}`);
    if (!(maxBytes >= 1)) throw new RangeError(`bad maxBytes ${maxBytes}`);
    const refused = this.refusal();
    if (refused !== undefined) throw refused;
    const out: OutboxRecord[] = [];
    let bytes = 0;
    const visible = this.visibleEnd;
    let from = Math.max(seq, this.firstUnackedSeq);
    while (out.length < maxRecords && from < visible) {
      const seg = this.segmentFor(from);
      let fh: FileHandle;
      try {
        fh = await open(seg.path, "r");
      } catch (err) {
        // An ack deleted the segment meanwhile: carry on from the new first unacked record.
        if ((err as NodeJS.ErrnoException).code === "ENOENT" && !this.segments.includes(seg)) {
          from = Math.max(from, this.firstUnackedSeq);
          continue;
        }
        throw err;
      }
      let full = false;
      try {
        const reader = new RecordReader(fh, await this.offsetOf(seg, from, fh), seg.size);
        const stop = Math.min(visible, seg.end);
        while (from < stop && out.length < maxRecords) {
          const step = await reader.next();
          if (step.kind !== "record") {
            throw new OutboxCorruptError(seg.path, step.kind === "bad" ? step.offset : reader.offset, step.kind === "bad" ? step.reason : "segment ends early");
          }
          if (step.seq !== from) throw new OutboxCorruptError(seg.path, step.offset, `record has seq ${step.seq}, ${from} expected`);
          if (out.length > 0 && bytes + step.body.length > maxBytes) {
            full = true;
            break;
          }
          // A copy: step.body is a view into the reader's buffer, which the next read reuses.
          out.push({ seq: step.seq, body: new Uint8Array(step.body) });
          bytes += step.body.length;
          from++;
          if (from < seg.end) this.rememberPosition(from, step.offset + step.size);
        }
      } finally {
        await fh.close();
      }
      if (full) break;
    }
    return out;
  }

  /** Resolves once a record with this seq (or later) can be read. */
  waitForRecords(seq: number, signal?: AbortSignal): Promise<void> {
    return this.wait(this.recordWaiters, () => this.visibleEnd > seq, signal);
  }

  /**
   * Records that the server has acked every record up to and including `upToSeq`:
   * writes the ack checkpoint durably, then deletes segments whose records are all
   * acked. Acks at or below the current position are no-ops; concurrent acks are
   * coalesced into one checkpoint write. Precondition: upToSeq < nextSeq.
   */
  ack(upToSeq: number): Promise<void> {
    if (!Number.isSafeInteger(upToSeq) || upToSeq < -1) return Promise.reject(new RangeError(`bad seq ${upToSeq}`));
    const refused = this.refusal();
    if (refused !== undefined) return Promise.reject(refused);
    if (upToSeq >= this.visibleEnd) {
      return Promise.reject(new RangeError(`cannot ack seq ${upToSeq}: the outbox holds records below ${this.visibleEnd} only`));
    }
    const target = upToSeq + 1;
    if (target <= this.firstUnackedSeq) return Promise.resolve();
    if (target > this.ackTarget) this.ackTarget = target;
    return this.exclusive(() => this.applyAck());
  }

  /**
   * Resolves once an append of `bytes` (OutboxFullError.bytesNeeded) fits under the cap
   * for appends without the reserve, which happens when acks let segments be deleted.
   * Another appender may take the space first, so callers retry in a loop.
   */
  waitForSpace(bytes: number, signal?: AbortSignal): Promise<void> {
    if (bytes > this.limit(false)) return Promise.reject(new RangeError(`${bytes} bytes can never fit under the cap of ${this.limit(false)}`));
    const ready = () => this.diskBytes + bytes <= this.limit(false);
    const waiting = this.wait(this.spaceWaiters, ready, signal);
    if (!ready()) {
      // Everything may be acked already, with the space held by the live segment.
      this.exclusive(() => this.reclaimActiveIfAcked().then(() => this.spaceWaiters.notify())).catch(() => undefined);
    }
    return waiting;
  }

  /** fsyncs what has been written (a no-op under `per-batch`, where appends already are). */
  sync(): Promise<void> {
    const refused = this.refusal();
    if (refused !== undefined) return Promise.reject(refused);
    return this.exclusive(() => this.syncActive());
  }

  /** Lets queued appends and acks finish, fsyncs (unless `none`) and closes. Waiters reject. */
  close(): Promise<void> {
    if (this.closing !== undefined) return this.closing;
    clearInterval(this.timer);
    const closed = new OutboxClosedError();
    this.rejectWaiters(closed);
    this.closing = this.exclusive(async () => {
      try {
        if (this.failure === undefined && this.options.fsync !== "none") await this.syncActive();
      } finally {
        await this.activeFh.close();
      }
    });
    return this.closing;
  }

  private get active(): Segment {
    return this.segments[this.segments.length - 1]!;
  }

  private limit(useReserve: boolean, overCap = false): number {
    if (overCap) return Number.POSITIVE_INFINITY;
    return this.options.maxBytes - (useReserve ? 0 : this.options.reserveBytes);
  }

  private refusal(): unknown {
    if (this.failure !== undefined) return this.failure;
    if (this.closing !== undefined) return new OutboxClosedError();
    return undefined;
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn);
    this.chain = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /** A write or fsync failed: what reached the disk is unknown, so nothing more is accepted. Reopen to recover. */
  private fail(err: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = err;
    clearInterval(this.timer);
    this.rejectWaiters(err);
  }

  /** Takes every append queued so far, writes them in order, fsyncs once, resolves them. */
  private async writeRound(): Promise<void> {
    this.drainQueued = false;
    const jobs = this.pending.splice(0);
    const accepted: { job: PendingAppend; result: AppendResult }[] = [];
    let batch: WriteBatch = { offset: this.active.size, bytes: 0, records: [] };
    let i = 0;
    try {
      for (; i < jobs.length; i++) {
        const job = jobs[i]!;
        if (this.failure !== undefined) {
          job.reject(this.failure);
          continue;
        }
        const limit = this.limit(job.useReserve, job.overCap);
        let need = this.plannedBytes(job.bodies);
        if (this.diskBytes + need > limit && accepted.length === 0 && (await this.reclaimActiveIfAcked())) {
          batch = { offset: this.active.size, bytes: 0, records: [] };
          need = this.plannedBytes(job.bodies);
        }
        if (this.diskBytes + need > limit) {
          job.reject(new OutboxFullError(need, Math.max(0, limit - this.diskBytes)));
          continue;
        }
        const firstSeq = this.assignedEnd;
        for (const body of job.bodies) {
          const size = recordSize(body.length);
          if (this.active.end > this.active.base && this.active.size + size > this.options.segmentBytes) {
            await this.flush(batch);
            await this.roll(true);
            batch = { offset: this.active.size, bytes: 0, records: [] };
          } else if (batch.bytes >= WRITE_CHUNK_BYTES) {
            await this.flush(batch);
            batch = { offset: this.active.size, bytes: 0, records: [] };
          }
          const seg = this.active;
          const seq = this.assignedEnd++;
          batch.records.push({ seq, body });
          batch.bytes += size;
          seg.index.note(seq, seg.size);
          seg.size += size;
          seg.end = seq + 1;
          this.diskBytes += size;
        }
        accepted.push({ job, result: { firstSeq, lastSeq: this.assignedEnd - 1 } });
      }
      await this.flush(batch);
      if (this.options.fsync === "per-batch") await this.syncActive();
    } catch (err) {
      this.fail(err);
      for (const { job } of accepted) job.reject(err);
      for (const job of jobs.slice(i)) job.reject(err);
      return;
    }
    if (accepted.length === 0) return;
    this.stats.writeRounds++;
    for (const { job, result } of accepted) {
      this.stats.appendedRecords += job.bodies.length;
      this.unackedBytes += recordsBytes(job.bodies);
      job.resolve(result);
    }
    this.visibleEnd = this.assignedEnd;
    this.recordWaiters.notify();
  }

  /** Disk bytes `bodies` would add, counting the header of any segment they would start. */
  private plannedBytes(bodies: readonly Uint8Array[]): number {
    let size = this.active.size;
    let hasRecords = this.active.end > this.active.base;
    let total = 0;
    for (const b of bodies) {
      const r = recordSize(b.length);
      if (hasRecords && size + r > this.options.segmentBytes) {
        total += SEGMENT_HEADER_BYTES;
        size = SEGMENT_HEADER_BYTES;
      }
      total += r;
      size += r;
      hasRecords = true;
    }
    return total;
  }

  private async flush(batch: WriteBatch): Promise<void> {
    if (batch.records.length === 0) return;
    const buf = Buffer.allocUnsafe(batch.bytes);
    let at = 0;
    for (const r of batch.records) at += encodeRecord(buf, at, r.seq, r.body);
    let done = 0;
    while (done < buf.length) {
      const { bytesWritten } = await this.activeFh.write(buf, done, buf.length - done, batch.offset + done);
      done += bytesWritten;
    }
    this.dirty = true;
    batch.records = [];
    batch.bytes = 0;
  }

  private async syncActive(): Promise<void> {
    if (!this.dirty) return;
    await this.activeFh.sync();
    this.dirty = false;
    this.stats.fsyncs++;
  }

  /**
   * Seals the active segment and starts the next, named by the next seq. `keep` false
   * skips the fsync of a segment about to be deleted.
   */
  private async roll(keep: boolean): Promise<void> {
    const durable = this.options.fsync !== "none";
    if (keep && durable) await this.syncActive();
    await this.activeFh.close();
    const { segment, fh } = await createSegment(this.dir, this.assignedEnd, durable);
    this.activeFh = fh;
    this.dirty = false;
    this.segments.push(segment);
    this.diskBytes += segment.size;
  }

  /**
   * When every record is acked, the live segment's space can only be had back by
   * starting a fresh one: done only when space is wanted, not on every ack that
   * catches up. Returns whether it freed anything.
   */
  private async reclaimActiveIfAcked(): Promise<boolean> {
    const old = this.active;
    if (this.failure !== undefined) return false;
    if (this.firstUnackedSeq !== this.assignedEnd || old.end === old.base) return false;
    await this.roll(false);
    this.segments.splice(this.segments.indexOf(old), 1);
    this.diskBytes -= old.size;
    await unlinkIfPresent(old.path);
    return true;
  }

  private async applyAck(): Promise<void> {
    const target = this.ackTarget;
    if (target <= this.firstUnackedSeq) return;
    await writeAckCheckpoint(this.dir, target, this.options.fsync !== "none");
    this.unackedBytes = await this.bytesFrom(target);
    this.firstUnackedSeq = target;
    while (this.segments.length > 1 && this.segments[1]!.base <= target) {
      const seg = this.segments.shift()!;
      this.diskBytes -= seg.size;
      // Not fsynced: a deleted segment that comes back after a crash is deleted again at open.
      await unlinkIfPresent(seg.path);
    }
    for (const seq of this.positions.keys()) if (seq < target) this.positions.delete(seq);
    if (this.spaceWaiters.length > 0) await this.reclaimActiveIfAcked();
    this.spaceWaiters.notify();
  }

  /** Encoded bytes of the records from `seq` to the end. Precondition: seq ≥ the oldest segment's base. */
  private async bytesFrom(seq: number): Promise<number> {
    if (seq >= this.assignedEnd) return 0;
    const seg = this.segmentFor(seq);
    let total = seg.size - (await this.offsetOf(seg, seq));
    for (let i = this.segments.indexOf(seg) + 1; i < this.segments.length; i++) total += this.segments[i]!.size - SEGMENT_HEADER_BYTES;
    return total;
  }

  /** The segment holding `seq`. Precondition: seq ≥ the oldest segment's base. */
  private segmentFor(seq: number): Segment {
    let lo = 0;
    let hi = this.segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.segments[mid]!.base <= seq) lo = mid;
      else hi = mid - 1;
    }
    return this.segments[lo]!;
  }

  /** Byte offset of record `seq` in `seg`. Precondition: seg.base ≤ seq < seg.end. */
  private async offsetOf(seg: Segment, seq: number, openFh?: FileHandle): Promise<number> {
    const hint = this.positions.get(seq);
    if (hint !== undefined) return hint;
    const floor = seg.index.floor(seq);
    if (floor.seq === seq) return floor.offset;
    const fh = openFh ?? (await open(seg.path, "r"));
    try {
      const reader = new RecordReader(fh, floor.offset, seg.size);
      for (let s = floor.seq; s < seq; s++) {
        const step = await reader.next();
        if (step.kind === "bad") throw new OutboxCorruptError(seg.path, step.offset, step.reason);
        if (step.kind === "end" || step.seq !== s) throw new OutboxCorruptError(seg.path, reader.offset, `record ${s} not where the index says`);
      }
      return reader.offset;
    } finally {
      if (openFh === undefined) await fh.close();
    }
  }

  private rememberPosition(seq: number, offset: number): void {
    this.positions.set(seq, offset);
    if (this.positions.size > POSITION_HINTS) this.positions.delete(this.positions.keys().next().value!);
  }

  private wait(list: WaitList, ready: () => boolean, signal?: AbortSignal): Promise<void> {
    const refused = this.refusal();
    if (refused !== undefined) return Promise.reject(refused);
    return list.wait(ready, signal);
  }

  private rejectWaiters(err: unknown): void {
    this.spaceWaiters.rejectAll(err);
    this.recordWaiters.rejectAll(err);
  }
}

async function unlinkIfPresent(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
}
