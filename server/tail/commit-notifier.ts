// Wakes live-tail subscribers when any replica commits to their chain. One LISTEN
// connection per process; subscribers never get entries from here, only a nudge to
// read the next page from the database, so a slow subscriber costs nothing here.
import type { Database } from "../storage/database.js";
import { ENTRIES_CHANNEL } from "../ledger/sequencer.js";

export class CommitNotifier {
  /** Per chain: commits seen, bumped on every NOTIFY (and on reconnects). */
  private readonly versions = new Map<string, number>();
  private readonly waiters = new Map<string, Set<() => void>>();
  private unlisten: (() => Promise<void>) | null = null;

  async start(db: Database): Promise<void> {
    this.unlisten = await db.listen(
      ENTRIES_CHANNEL,
      (payload) => this.bump(payload.split("\t")[0]!),
      // Notifications may have been missed while disconnected: wake everyone to re-read.
      () => [...this.waiters.keys()].forEach((chain) => this.bump(chain)),
    );
  }

  async stop(): Promise<void> {
    await this.unlisten?.();
    this.unlisten = null;
    for (const chain of [...this.waiters.keys()]) this.bump(chain);
  }

  /** Take a ticket before reading; `wait(ticket)` then returns as soon as anything newer committed. */
  ticket(chain: string): number {
    return this.versions.get(chain) ?? 0;
  }

  /** Resolves once a commit newer than `ticket` happened on `chain`, or on abort. */
  wait(chain: string, ticket: number, signal: AbortSignal): Promise<void> {
    if ((this.versions.get(chain) ?? 0) !== ticket || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      let set = this.waiters.get(chain);
      if (!set) this.waiters.set(chain, (set = new Set()));
      const done = () => {
        set!.delete(done);
        if (set!.size === 0) this.waiters.delete(chain);
        signal.removeEventListener("abort", done);
        resolve();
      };
      set.add(done);
      signal.addEventListener("abort", done, { once: true });
    });
  }

  /** Marks a commit on `chain` (also used in-process right after a local commit). */
  bump(chain: string): void {
    this.versions.set(chain, (this.versions.get(chain) ?? 0) + 1);
    const set = this.waiters.get(chain);
    if (set) for (const w of [...set]) w();
  }
}
