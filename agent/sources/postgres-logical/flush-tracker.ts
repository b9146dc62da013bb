// Which WAL position the source may report as flushed: only what the agent has
// acknowledged as durable, never merely what was received (SPEC §4).
//
// Every emitted event gets a running number. A transaction, once its Commit arrived, is
// safe when its last event (or, with no events, the last event emitted before it) is
// acknowledged; its end LSN then becomes the flush position. When every event is
// acknowledged and no transaction is open, the server's own position from a keepalive
// is safe too: every transaction committed before it has been received, and one still
// open commits after it, so the slot replays it. Reporting it stops an idle source's slot
// from holding WAL that other databases and tables write.

interface CommittedTransaction {
  /** Running number of the last event emitted up to its Commit. */
  lastEvent: number;
  endLsn: bigint;
}

export class FlushTracker {
  private emitted = 0;
  private acknowledged = 0;
  /** Outstanding positions → their running number. */
  private readonly numbers = new Map<string, number>();
  private readonly committed: CommittedTransaction[] = [];
  private inTransaction = false;
  private safe: bigint;

  constructor(startLsn: bigint) {
    this.safe = startLsn;
  }

  /** The highest LSN everything before which is durable. */
  get flushable(): bigint {
    return this.safe;
  }

  /** Whether events are emitted and not yet acknowledged. */
  get outstanding(): number {
    return this.emitted - this.acknowledged;
  }

  begin(): void {
    this.inTransaction = true;
  }

  track(position: string): void {
    this.numbers.set(position, ++this.emitted);
  }

  commit(endLsn: bigint): void {
    this.inTransaction = false;
    this.committed.push({ lastEvent: this.emitted, endLsn });
    this.advance();
  }

  /** The server's position (keepalive, or an XLogData's walEnd) when idle. */
  serverPosition(walEnd: bigint): void {
    if (!this.inTransaction && this.committed.length === 0 && this.emitted === this.acknowledged && walEnd > this.safe) this.safe = walEnd;
  }

  /** Everything up to and including `position` is durable; false when the position is not outstanding. */
  acknowledge(position: string): boolean {
    const n = this.numbers.get(position);
    if (n === undefined) return false;
    for (const [p, m] of this.numbers) {
      if (m > n) break;
      this.numbers.delete(p);
    }
    if (n > this.acknowledged) this.acknowledged = n;
    this.advance();
    return true;
  }

  private advance(): void {
    while (this.committed.length > 0 && this.committed[0]!.lastEvent <= this.acknowledged) {
      const t = this.committed.shift()!;
      if (t.endLsn > this.safe) this.safe = t.endLsn;
    }
  }
}
