// Verify (SPEC §3): walk a range of the chain, recompute every hash and link and
// payload digest, and report the first break. Yields progress while it walks.
import { ChainWalker, ZERO_HASH, type ChainBreak, type StoredEntry } from "../../chain/index.js";
import type { Database } from "../storage/database.js";
import { readEntry, readHead, readRange } from "../ledger/ledger-reader.js";

export interface VerifyProgress {
  checked: number;
  total: number;
}

export interface VerifyVerdict {
  valid: boolean;
  checked: number;
  firstBreak: ChainBreak | null;
  redacted: number[];
}

const PAGE = 5000;

export async function* verifyRange(
  db: Database,
  chain: string,
  from: number | undefined,
  to: number | undefined,
  progressEvery = PAGE,
): AsyncGenerator<VerifyProgress, VerifyVerdict> {
  const head = await readHead(db, chain);
  const start = from ?? 0;
  // Without an explicit end, read everything stored, so rows beyond the head show up.
  const end = to ?? Number.MAX_SAFE_INTEGER;
  const expectedEnd = Math.min(end, head.count);

  let prevHash = ZERO_HASH;
  if (start > 0) {
    const anchor = await readEntry(db, chain, start - 1, false);
    if (!anchor) {
      return { valid: false, checked: 0, firstBreak: { seq: start - 1, kind: "missing_entry", reason: `seq ${start - 1}, the anchor of the range, is missing` }, redacted: [] };
    }
    prevHash = anchor.hash;
  }
  const walker = new ChainWalker(start, prevHash, head.count);
  let lastReport = 0;
  // Read the next page while this one is hashed: Postgres and Node work side by side.
  let pending: Promise<StoredEntry[]> | null = start < end ? readRange(db, chain, start, end, PAGE, true) : null;
  while (pending) {
    const page = await pending;
    const nextFrom = page.length === PAGE ? page[page.length - 1]!.seq + 1 : end;
    pending = nextFrom < end ? readRange(db, chain, nextFrom, end, PAGE, true) : null;
    for (const entry of page) if (walker.push(entry)) break;
    if (walker.firstBreak) {
      await pending?.catch(() => undefined);
      break;
    }
    if (walker.checked - lastReport >= progressEvery) {
      lastReport = walker.checked;
      yield { checked: walker.checked, total: Math.max(expectedEnd - start, 0) };
    }
  }
  const firstBreak = walker.finish(expectedEnd);
  return { valid: firstBreak === null, checked: walker.checked, firstBreak, redacted: walker.redacted };
}
