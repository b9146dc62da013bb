// Per assigned partition: how far the agent has made messages durable, and how far that
// is committed to the consumer group. Only the contiguous durable prefix is committed:
// committing offset N tells Kafka "everything below N is safe", so every commit the
// source makes is true, whoever owns the partition later.
import { parsePosition, partitionKeyOf } from "./message-event.js";
import type { SourcePosition } from "../source.js";

export interface OffsetCommit {
  topic: string;
  partition: number;
  /** The next offset to read: the last durable message's offset + 1. */
  offset: string;
}

interface Progress {
  topic: string;
  partition: number;
  /**
   * The first offset fetched since the partition was assigned. An acknowledgement below
   * it is from an earlier assignment and says nothing new: everything below the offset
   * the group resumed from was already committed.
   */
  floor: bigint;
  /** Offset after the last durable message. */
  durableNext: bigint | undefined;
  /** Last offset committed (or being committed). */
  committedNext: bigint | undefined;
}

export class PartitionProgress {
  private readonly partitions = new Map<string, Progress>();

  /** Called for every batch: starts tracking a partition at the offset its first fetch began. */
  track(topic: string, partition: number, fetchedOffset: string): void {
    const key = partitionKeyOf(topic, partition);
    if (!this.partitions.has(key)) {
      this.partitions.set(key, { topic, partition, floor: BigInt(fetchedOffset), durableNext: undefined, committedNext: undefined });
    }
  }

  /**
   * Keeps only the partitions of a new assignment (topic -> partitions). What the source
   * handed over from a revoked partition and the agent acknowledges later is not
   * committed: the partition's new owner reads it again, and its position dedups it.
   */
  retain(assignment: Record<string, number[]>): void {
    const keep = new Set(Object.entries(assignment).flatMap(([topic, parts]) => parts.map((p) => partitionKeyOf(topic, p))));
    for (const key of this.partitions.keys()) if (!keep.has(key)) this.partitions.delete(key);
  }

  /**
   * The message at `position`, and every message of its partition handed over before it,
   * is durable. Other partitions are not affected. Returns true when there is something
   * new to commit.
   */
  acknowledge(position: SourcePosition): boolean {
    const parsed = parsePosition(position);
    if (!parsed) throw new Error(`"${position.slice(0, 200)}" is not a kafka_consumer position (<topic>/<partition>/<offset>)`);
    const p = this.partitions.get(parsed.partitionKey);
    if (!p || parsed.offset < p.floor) return false; // revoked, or from an earlier assignment
    const next = parsed.offset + 1n;
    if (p.durableNext !== undefined && next <= p.durableNext) return false;
    p.durableNext = next;
    return p.committedNext === undefined || next > p.committedNext;
  }

  /**
   * Messages below `offset` are not to be recorded (they predate the source, with
   * from_beginning off): commit as if they were durable.
   */
  skipBelow(topic: string, partition: number, offset: bigint): boolean {
    const p = this.partitions.get(partitionKeyOf(topic, partition));
    if (!p || (p.durableNext !== undefined && p.durableNext >= offset)) return false;
    p.durableNext = offset;
    return p.committedNext === undefined || offset > p.committedNext;
  }

  /** What to commit now: each partition whose durable prefix grew past its commit. */
  due(): OffsetCommit[] {
    const out: OffsetCommit[] = [];
    for (const p of this.partitions.values()) {
      if (p.durableNext !== undefined && (p.committedNext === undefined || p.durableNext > p.committedNext)) {
        out.push({ topic: p.topic, partition: p.partition, offset: p.durableNext.toString() });
      }
    }
    return out;
  }

  /** Records that `commits` reached the group coordinator. */
  committed(commits: OffsetCommit[]): void {
    for (const c of commits) {
      const p = this.partitions.get(partitionKeyOf(c.topic, c.partition));
      if (!p) continue;
      const offset = BigInt(c.offset);
      if (p.committedNext === undefined || offset > p.committedNext) p.committedNext = offset;
    }
  }
}
