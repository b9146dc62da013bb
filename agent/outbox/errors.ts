/**
 * Damage the outbox must not paper over: a bad record inside a sealed segment, a gap
 * between segments, an unreadable ack checkpoint. Names the file and byte offset so an
 * operator can look; the outbox refuses to open until someone has.
 */
export class OutboxCorruptError extends Error {
  override readonly name = "OutboxCorruptError";
  constructor(
    readonly file: string,
    readonly offset: number,
    readonly reason: string,
  ) {
    super(`outbox damaged: ${file} at byte ${offset}: ${reason}`);
  }
}

/**
 * An append that would take the outbox past its size cap. Nothing was written; the
 * caller pauses its sources and awaits `waitForSpace(bytesNeeded)` before trying again.
 */
export class OutboxFullError extends Error {
  override readonly name = "OutboxFullError";
  constructor(
    /** Bytes the refused append needs on disk (records and any new segment header). */
    readonly bytesNeeded: number,
    /** Bytes free under the cap that applied to it when it was refused. */
    readonly bytesFree: number,
  ) {
    super(`outbox full: append needs ${bytesNeeded} bytes, ${bytesFree} free`);
  }
}

/** The outbox was closed while an operation waited, or an operation came after close(). */
export class OutboxClosedError extends Error {
  override readonly name = "OutboxClosedError";
  constructor() {
    super("outbox is closed");
  }
}
