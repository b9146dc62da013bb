// The one interface every source implements (DEVELOPERS.md, SPEC §4). A source turns
// upstream events into SourceEvents, hands them to the agent in order, and tells its
// upstream "done" only when the agent says those events are durable in the outbox.
// A new source type is a new folder under agent/sources/ implementing this.

/**
 * A source's position, opaque to the agent: an LSN, a partition/offset map, a resume
 * token, a message id... Serialised so it can be written in the outbox and used as
 * part of the idempotency key (ZID + position): replays after a crash never duplicate.
 */
export type SourcePosition = string;

/** One upstream event, in the shape of the ledger's row (SPEC §2) minus what the server fills in. */
export interface SourceEvent {
  kind: string;
  subject?: string;
  actor?: string;
  occurredAt?: string;
  traceId?: string;
  spanId?: string;
  /** Where in the source it came from; unique per event within this source. */
  position: SourcePosition;
  payloadType?: string;
  payload?: Uint8Array;
}

/**
 * How the agent receives events. `emit` resolves once the events are durable in the
 * outbox; a source that must not run ahead awaits it. When the outbox is full the agent
 * calls the source's `pause()` and `emit` waits for space: events are delayed, never
 * dropped.
 */
export interface SourceSink {
  emit(events: SourceEvent[]): Promise<void>;
  /**
   * Records an explicit loss (SPEC §4: never silent): the source could not be paused
   * and events were lost, or upstream history is gone (slot invalidated, change-stream
   * history lost). Appends a `gap` entry saying what and why.
   */
  gap(reason: string, from?: SourcePosition, to?: SourcePosition): Promise<void>;
  /**
   * The source cannot go on by itself (upstream history lost and the config says not to
   * skip it, a permission it needs was revoked...): the agent stops and exits with an
   * error naming `reason`, so a supervisor sees it, rather than running on with a source
   * that silently reads nothing. Record a gap first if events were lost.
   */
  fail?(reason: string): void;
}

export interface Source {
  /** The SPEC §2 source type, e.g. "kafka_consumer". */
  readonly type: string;
  /**
   * Connects and starts delivering to `sink`, resuming after `resumeFrom` (the last
   * position acknowledged before a restart) when given. Rejects, naming the problem,
   * on bad configuration (wrong credentials, missing publication, unknown topic).
   */
  start(sink: SourceSink, resumeFrom?: SourcePosition): Promise<void>;
  /** Stops pulling from upstream (backpressure). Idempotent. */
  pause(): void;
  /** Pulls again after pause(). Idempotent. */
  resume(): void;
  /**
   * Everything up to and including `position` is durable: acknowledge it upstream
   * (commit offsets, PUBACK, flush the slot LSN, persist the resume token, XACK...).
   * Positions arrive in emission order.
   */
  acknowledge(position: SourcePosition): Promise<void>;
  /** Stops and releases upstream resources; unacknowledged events will be redelivered. */
  stop(): Promise<void>;
}
