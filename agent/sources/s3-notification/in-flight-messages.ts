// Which received SQS messages wait on which events. The agent acknowledges positions in
// emission order; a message may be deleted once every event it carries is acknowledged.
// An event seen again while its first copy is still unacknowledged (S3 sent the
// notification twice, or SQS redelivered a message held past its 12-hour limit) is not
// handed over again: the later message just waits on the earlier event too. That keeps
// every unacknowledged position unique, so an acknowledgement names exactly one event.
import type { SourceEvent, SourcePosition } from "../source.js";

export type MessageState =
  /** Some of its events are not acknowledged yet: its visibility is kept extended. */
  | "waiting"
  /** All acknowledged; a DeleteMessageBatch carrying it is under way. */
  | "deleting"
  /** All acknowledged, but the delete failed: retried, visibility still extended. */
  | "delete_failed";

export interface HeldMessage {
  messageId: string;
  receiptHandle: string;
  /** Unacknowledged events it waits on (one per record, shared ones included). */
  waitingOn: number;
  state: MessageState;
  /**
   * When its visibility timeout was last set (received or extended), in performance.now()
   * milliseconds: monotonic, so a wall-clock step cannot make an extension look not due.
   */
  visibleFrom: number;
  /** Delete attempts that failed since its events were all acknowledged. */
  deleteFailures: number;
  /** SQS no longer knows this receipt handle (it came back, or was deleted): not extended. */
  handleLost: boolean;
}

interface PendingEvent {
  position: SourcePosition;
  messages: HeldMessage[];
}

export class InFlightMessages {
  /** Handed over and not yet acknowledged, in emission order. */
  private pending: PendingEvent[] = [];
  private readonly byPosition = new Map<SourcePosition, PendingEvent>();
  private readonly messages = new Set<HeldMessage>();

  /** Messages received and not yet deleted. */
  get size(): number {
    return this.messages.size;
  }

  all(): HeldMessage[] {
    return [...this.messages];
  }

  /**
   * Holds `message` until `events` are acknowledged; returns those to hand over (the
   * ones not already waiting for an acknowledgement).
   */
  hold(message: Omit<HeldMessage, "waitingOn" | "state" | "handleLost" | "deleteFailures">, events: SourceEvent[]): { held: HeldMessage; fresh: SourceEvent[] } {
    const held: HeldMessage = { ...message, waitingOn: 0, state: "waiting", handleLost: false, deleteFailures: 0 };
    this.messages.add(held);
    const fresh: SourceEvent[] = [];
    for (const event of events) {
      let pending = this.byPosition.get(event.position);
      if (pending === undefined) {
        pending = { position: event.position, messages: [] };
        this.byPosition.set(event.position, pending);
        this.pending.push(pending);
        fresh.push(event);
      }
      pending.messages.push(held);
      held.waitingOn++;
    }
    return { held, fresh };
  }

  /** Whether `position` is handed over and not yet acknowledged. */
  isPending(position: SourcePosition): boolean {
    return this.byPosition.has(position);
  }

  /**
   * Acknowledges everything up to and including `position`; returns the messages that
   * now wait on nothing (to delete), or undefined when `position` is not pending.
   */
  acknowledge(position: SourcePosition): HeldMessage[] | undefined {
    if (!this.byPosition.has(position)) return undefined;
    const upTo = this.pending.findIndex((p) => p.position === position);
    const done = this.pending.slice(0, upTo + 1);
    this.pending = this.pending.slice(upTo + 1);
    const complete: HeldMessage[] = [];
    for (const p of done) {
      this.byPosition.delete(p.position);
      for (const m of p.messages) {
        if (--m.waitingOn === 0 && m.state === "waiting") complete.push(m);
      }
    }
    return complete;
  }

  /** Forgets a message (deleted, or given up on). */
  release(message: HeldMessage): void {
    this.messages.delete(message);
  }
}
