// What the source gives its two feeds (notifications, streams): one serialised way to the
// sink, the pause state, and waits that end early when the source stops.
import type { SourceContext } from "../source-factory.js";
import type { SourceEvent, SourcePosition } from "../source.js";

/** An event on its way to the sink; stream entries carry what XACK needs. */
export interface Outgoing {
  event: SourceEvent;
  entry?: StreamEntryRef;
}

export interface StreamEntryRef {
  stream: string;
  id: string;
}

export interface FeedHost {
  readonly name: string;
  readonly log: SourceContext["log"];
  readonly stopped: boolean;
  readonly paused: boolean;
  /** Resolves once not paused, or stopped. */
  runnable(): Promise<void>;
  /**
   * Hands events to the sink, after whatever either feed handed before (one emit at a
   * time). Resolves true once they are durable, false if the source stopped first;
   * rejects when the agent could not take them (they are then not pending acknowledgement).
   */
  emit(out: Outgoing[]): Promise<boolean>;
  /** Records a gap entry, in line with the events; false if the source stopped first. */
  gap(reason: string, from?: SourcePosition, to?: SourcePosition): Promise<boolean>;
  /** Waits `ms`, or less when the source stops. */
  sleep(ms: number): Promise<void>;
}

/** Delay after the n-th consecutive failure: exponential from 100 ms, capped, jittered. */
export function backoffMs(failures: number, maxMs: number, random: () => number = Math.random): number {
  const base = Math.min(maxMs, 100 * 2 ** Math.min(Math.max(failures - 1, 0), 16));
  return Math.round(base / 2 + (random() * base) / 2);
}
