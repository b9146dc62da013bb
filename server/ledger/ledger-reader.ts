// Reads of the ledger: one entry, seq ranges, filtered queries and the chain head.
import { ZERO_HASH, type StoredEntry } from "../../chain/index.js";
import type { Queryable } from "../storage/database.js";
import { ENTRY_COLUMNS, PAYLOAD_COLUMNS, PAYLOAD_JOIN, rowToEntry, type EntryRow } from "./entry-row.js";

export interface ChainHead {
  /** Entries committed (= the next seq, the chain being gapless). */
  count: number;
  headHash: string;
  lastTs: Date | null;
}

export async function readHead(db: Queryable, chain: string): Promise<ChainHead> {
  const res = await db.query<{ next_seq: number; head_hash: string; head_ts: Date | null }>(
    "SELECT next_seq, encode(head_hash, 'hex') AS head_hash, head_ts FROM chains WHERE chain = $1",
    [chain],
  );
  const row = res.rows[0];
  return row ? { count: row.next_seq, headHash: row.head_hash, lastTs: row.head_ts } : { count: 0, headHash: ZERO_HASH, lastTs: null };
}

export async function readEntry(db: Queryable, chain: string, seq: number, withPayload: boolean): Promise<StoredEntry | null> {
  const res = await db.query<EntryRow>(
    withPayload
      ? `SELECT ${ENTRY_COLUMNS}, ${PAYLOAD_COLUMNS} FROM entries e ${PAYLOAD_JOIN} WHERE e.chain = $1 AND e.seq = $2`
      : `SELECT ${ENTRY_COLUMNS} FROM entries e WHERE e.chain = $1 AND e.seq = $2`,
    [chain, seq],
  );
  return res.rows[0] ? rowToEntry(res.rows[0]) : null;
}

/** Up to `limit` entries with fromSeq <= seq < toSeq, ascending. */
export async function readRange(
  db: Queryable,
  chain: string,
  fromSeq: number,
  toSeq: number,
  limit: number,
  withPayload: boolean,
): Promise<StoredEntry[]> {
  const res = await db.query<EntryRow>(
    `SELECT ${ENTRY_COLUMNS}${withPayload ? `, ${PAYLOAD_COLUMNS}` : ""} FROM entries e ${withPayload ? PAYLOAD_JOIN : ""}
     WHERE e.chain = $1 AND e.seq >= $2 AND e.seq < $3 ORDER BY e.seq LIMIT $4`,
    [chain, fromSeq, toSeq, limit],
  );
  return res.rows.map(rowToEntry);
}

/** Filters of SPEC §6; every one that is set must match. */
export interface EntryFilter {
  kind?: string;
  subject?: string;
  subjectPrefix?: boolean;
  agent?: string;
  sourceType?: string;
  actor?: string;
  traceId?: string;
  /** RFC 3339, inclusive. */
  fromTime?: string;
  /** RFC 3339, exclusive. */
  toTime?: string;
  fromSeq?: number;
  toSeq?: number;
}

export interface QueryPage {
  chain: string;
  filter: EntryFilter;
  descending: boolean;
  /** Continue strictly after (ascending) or before (descending) this seq. */
  afterSeq?: number;
  limit: number;
  withPayload: boolean;
}

/** One page of a filtered query, plus whether more entries follow. */
export async function queryEntries(db: Queryable, page: QueryPage): Promise<{ entries: StoredEntry[]; more: boolean }> {
  const params: unknown[] = [page.chain];
  const where = ["e.chain = $1"];
  const add = (sql: (p: string) => string, value: unknown) => {
    params.push(value);
    where.push(sql(`$${params.length}`));
  };
  const f = page.filter;
  if (f.kind) add((p) => `e.kind = ${p}`, f.kind);
  if (f.subject) {
    if (f.subjectPrefix) {
      // A range on the C-collated index instead of LIKE, which a parameter cannot use.
      add((p) => `e.subject >= ${p}`, f.subject);
      add((p) => `e.subject < ${p}`, prefixUpperBound(f.subject));
    } else {
      add((p) => `e.subject = ${p}`, f.subject);
    }
  }
  if (f.agent) add((p) => `e.agent = ${p}`, f.agent);
  if (f.sourceType) add((p) => `e.source_type = ${p}`, f.sourceType);
  if (f.actor) add((p) => `e.actor = ${p}`, f.actor);
  if (f.traceId) add((p) => `e.trace_id = ${p}`, f.traceId);
  if (f.fromTime) add((p) => `e.ts >= ${p}::timestamptz`, f.fromTime);
  if (f.toTime) add((p) => `e.ts < ${p}::timestamptz`, f.toTime);
  if (f.fromSeq !== undefined) add((p) => `e.seq >= ${p}`, f.fromSeq);
  if (f.toSeq !== undefined) add((p) => `e.seq < ${p}`, f.toSeq);
  if (page.afterSeq !== undefined) add((p) => (page.descending ? `e.seq < ${p}` : `e.seq > ${p}`), page.afterSeq);
  params.push(page.limit + 1);
  const res = await db.query<EntryRow>(
    `SELECT ${ENTRY_COLUMNS}${page.withPayload ? `, ${PAYLOAD_COLUMNS}` : ""}
     FROM entries e ${page.withPayload ? PAYLOAD_JOIN : ""}
     WHERE ${where.join(" AND ")}
     ORDER BY e.seq ${page.descending ? "DESC" : "ASC"} LIMIT $${params.length}`,
    params,
  );
  const more = res.rows.length > page.limit;
  return { entries: res.rows.slice(0, page.limit).map(rowToEntry), more };
}

/**
 * The least string greater than every string that starts with `prefix`, in code point
 * order (which is the byte order of the C collation on UTF-8).
 */
export function prefixUpperBound(prefix: string): string {
  const points = [...prefix];
  while (points.length > 0) {
    const last = points.pop()!.codePointAt(0)!;
    if (last < 0x10ffff) {
      let next = last + 1;
      if (next >= 0xd800 && next <= 0xdfff) next = 0xe000; // skip surrogates
      return points.join("") + String.fromCodePoint(next);
    }
  }
  return "\u{10ffff}".repeat(prefix.length + 1);
}
