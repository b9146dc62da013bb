// The live tail: committed entries from a seq onward, in order, with no gap and no
// duplicate, then new ones as they commit. Reads pages from the database and yields
// one entry at a time; the generator only advances when the client takes the entry
// (connect-node awaits 'drain'), so memory per subscriber is one page at most.
import type { StoredEntry } from "../../chain/index.js";
import type { Database } from "../storage/database.js";
import { queryEntries, type EntryFilter } from "../ledger/ledger-reader.js";
import type { CommitNotifier } from "./commit-notifier.js";

export const TAIL_PAGE = 256;

export async function* streamEntries(
  db: Database,
  notifier: CommitNotifier,
  chain: string,
  fromSeq: number,
  filter: EntryFilter,
  withPayload: boolean,
  signal: AbortSignal,
  /** Told +n when n entries are read from the database, -1 as each is taken, so the
   * caller can account for what subscribers hold. */
  onBuffered?: (delta: number) => void,
): AsyncGenerator<StoredEntry> {
  let next = fromSeq;
  while (!signal.aborted) {
    const ticket = notifier.ticket(chain);
    const { entries, more } = await queryEntries(db, {
      chain,
      filter,
      descending: false,
      afterSeq: next - 1 < 0 ? undefined : next - 1,
      limit: TAIL_PAGE,
      withPayload,
    });
    let held = entries.length;
    onBuffered?.(held);
    try {
      for (const entry of entries) {
        yield entry;
        held--;
        onBuffered?.(-1);
        next = entry.seq + 1;
      }
    } finally {
      // The subscriber left mid-page.
      if (held > 0) onBuffered?.(-held);
    }
    if (!more) await notifier.wait(chain, ticket, signal);
  }
}
