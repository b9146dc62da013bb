// Polls whose events were emitted but not yet acknowledged, oldest first, each with the
// state the source will remember once they are durable. The next poll compares against
// the newest of them (so nothing is reported twice while the agent catches up); the
// persisted state advances only to the newest poll that is fully acknowledged.
import { generationOf } from "./position.js";
import type { PollState } from "./poll-state.js";

export interface PendingPoll {
  generation: number;
  /** The poll's last event position; undefined for a poll that reported nothing (only its state changed). */
  lastPosition: string | undefined;
  state: PollState;
}

export class PendingPolls {
  private readonly queue: PendingPoll[] = [];

  constructor(private committed: PollState) {}

  /** What the next poll compares against: the newest reported state, durable or not. */
  get working(): PollState {
    return this.queue.at(-1)?.state ?? this.committed;
  }

  get size(): number {
    return this.queue.length;
  }

  add(poll: PendingPoll): void {
    this.queue.push(poll);
  }

  /** Forgets a poll whose emission failed; its changes will be found again by the next poll. */
  discard(poll: PendingPoll): void {
    const at = this.queue.indexOf(poll);
    if (at >= 0) this.queue.splice(at);
  }

  /**
   * Everything up to and including `position` is durable. Returns the state to persist
   * when that completes one or more polls, else undefined (a position inside a poll, or
   * one this source no longer tracks).
   */
  acknowledge(position: string): PollState | undefined {
    const generation = generationOf(position);
    if (generation === undefined) return undefined;
    return this.settle((poll) => poll.generation < generation || (poll.generation === generation && poll.lastPosition === position));
  }

  /** The state to persist now that polls without events may be at the front, else undefined. */
  settleQuiet(): PollState | undefined {
    return this.settle(() => false);
  }

  /** Takes the longest prefix of polls that are acknowledged (or reported nothing). */
  private settle(acknowledged: (poll: PendingPoll) => boolean): PollState | undefined {
    let count = 0;
    for (const poll of this.queue) {
      if (poll.lastPosition !== undefined && !acknowledged(poll)) break;
      count++;
    }
    if (count === 0) return undefined;
    this.committed = this.queue[count - 1]!.state;
    this.queue.splice(0, count);
    return this.committed;
  }
}
