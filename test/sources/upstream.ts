// What the shared source scenarios (source-scenarios.ts) need from one source type's
// upstream: a fresh place to read from, a way to make events happen there, and a way to
// recognise each one in the ledger. One file per source type beside this one
// (`<type>.upstream.ts`) implements it against the real service.
import type { StoredEntry } from "../../chain/index.js";

export interface UpstreamUnderTest {
  /** The source type, as in the agent config (`kafka_consumer`). */
  type: string;
  /**
   * Makes a fresh upstream place for one scenario (a topic, a table with its publication
   * and slot name, a collection, a queue, a stream...) and returns how to use it. Two
   * scenarios never share one.
   */
  prepare(): Promise<ScenarioUpstream>;
  /**
   * Configurations that must make `audit-ledger agent` fail at start, each with the
   * message that names the problem (wrong credentials, missing publication, unknown
   * topic, unreachable host...). At least one.
   */
  badConfigs(): Promise<BadConfig[]>;
}

export interface BadConfig {
  /** What is wrong, for the test name ("unknown topic"). */
  what: string;
  /** The source's config entry (without `name` and `type`). */
  config: Record<string, unknown>;
  /** Must match the agent's output. */
  message: RegExp;
  cleanup?(): Promise<void>;
}

export interface ScenarioUpstream {
  /** The source's config entry (without `name` and `type`). */
  config: Record<string, unknown>;
  /**
   * Makes events `from`..`to - 1` happen upstream, in order (insert / update / delete a
   * row, publish a message, put an object...). Each must become exactly one ledger entry.
   * Called while the agent runs, is killed, or is stopped: upstream keeps them.
   * `padBytes` > 0: each event also carries that many filler bytes (in its row, document,
   * message or object metadata), so a backlog fills the agent's outbox quickly.
   */
  produce(from: number, to: number, padBytes?: number): Promise<void>;
  /**
   * Returns which event `entry` is, after checking (with expect) that its kind, subject,
   * payload and source_position are right for that event. Entries come with payloads.
   */
  identify(entry: StoredEntry): number;
  /**
   * How many produced events the source has not taken from upstream yet (consumer-group
   * lag, messages still in the queue, WAL not confirmed by the slot...), for the
   * backpressure scenario: while the ledger is stalled it must stay above zero.
   */
  unconsumed(): Promise<number>;
  /** Removes what prepare() made (slots, topics, queues...). */
  cleanup(): Promise<void>;
}
