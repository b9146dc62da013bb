// One row change (or one truncated table) as a SourceEvent. See docs/sources/postgres-logical.md, "Events" and
// "Positions": kind postgres.<op>, subject <schema>.<table>/<key values>, a JSON payload
// with the row values as Postgres prints them, and a position that a replay of the same
// transaction reproduces: pg1:<epoch>:<commit LSN>:<index of the change in the transaction>.
import { createHash } from "node:crypto";
import type { SourceEvent } from "../source.js";
import type { ColumnValue, RelationMessage } from "./pgoutput-decoder.js";
import { formatLsn } from "./lsn.js";
import { pgTimestampToIso } from "./replication-messages.js";

/** The ledger's longest subject (server/ledger/limits.ts). */
export const MAX_SUBJECT_CHARS = 1024;

export type ChangeOp = "insert" | "update" | "delete" | "truncate";

/** The transaction a change belongs to, from its Begin message. */
export interface TransactionContext {
  xid: number;
  /** The commit record's LSN (pgoutput's final_lsn), the same on every replay. */
  commitLsn: bigint;
  /** µs since 2000-01-01 UTC. */
  commitTime: bigint;
}

/** Column name → text value (null for SQL NULL). Unchanged TOASTed values are left out. */
export type RowValues = Record<string, string | null>;

export interface RowChange {
  op: ChangeOp;
  relation: RelationMessage;
  /** The change record's own LSN. */
  lsn: bigint;
  /** For update and delete: the old row (REPLICA IDENTITY FULL) or its key columns. */
  oldTuple?: ColumnValue[];
  oldKind?: "key" | "full";
  newTuple?: ColumnValue[];
  /** Truncate only. */
  truncate?: { cascade: boolean; restartIdentity: boolean };
}

const POSITION = /^pg1:([0-9a-f]{16}):([0-9A-F]{1,8}\/[0-9A-F]{1,8}):(\d+)$/;

export function positionOf(epoch: string, commitLsn: bigint, index: number): string {
  return `pg1:${epoch}:${formatLsn(commitLsn)}:${index}`;
}

/** The parts of a position, or undefined when it is not one of this source's. */
export function parsePosition(position: string): { epoch: string; commitLsn: string; index: number } | undefined {
  const m = POSITION.exec(position);
  return m ? { epoch: m[1]!, commitLsn: m[2]!, index: Number(m[3]) } : undefined;
}

function rowOf(relation: RelationMessage, tuple: ColumnValue[], onlyKeys = false): { values: RowValues; unchangedToast: string[] } {
  const values: RowValues = {};
  const unchangedToast: string[] = [];
  relation.columns.forEach((column, i) => {
    if (onlyKeys && !column.isKey) return;
    const v = tuple[i];
    if (v === undefined) return;
    if (v.kind === "text") values[column.name] = v.text;
    else if (v.kind === "null") values[column.name] = null;
    else unchangedToast.push(column.name);
  });
  return { values, unchangedToast };
}

/**
 * `<schema>.<table>` followed by `/<value>` for each key column, URI-encoded (so a `/` in
 * a value cannot be confused with the separator); beyond the ledger's limit, cut and
 * ended with a digest of the whole.
 */
export function subjectOf(schema: string, table: string, key: RowValues | null): string {
  const parts = [`${schema}.${table}`];
  if (key) for (const v of Object.values(key)) parts.push(v === null ? "null" : encodeURIComponent(v));
  const full = parts.join("/");
  if (full.length <= MAX_SUBJECT_CHARS) return full;
  const suffix = `#sha256=${createHash("sha256").update(full, "utf8").digest("hex")}`;
  return `${full.slice(0, MAX_SUBJECT_CHARS - suffix.length)}${suffix}`;
}

function pick(row: RowValues, columns: string[]): RowValues | null {
  if (columns.length === 0 || !columns.every((c) => c in row)) return null;
  const out: RowValues = {};
  for (const c of columns) out[c] = row[c]!;
  return out;
}

/**
 * The row's key: its primary key columns when the source knows them and the row has
 * them all, else the columns the replica identity marks (with REPLICA IDENTITY FULL,
 * every column); null when neither gives one.
 */
export function keyOf(relation: RelationMessage, row: RowValues, primaryKey: readonly string[] | undefined): RowValues | null {
  return pick(row, [...(primaryKey ?? [])]) ?? pick(row, relation.columns.filter((c) => c.isKey).map((c) => c.name));
}

export function toSourceEvent(change: RowChange, txn: TransactionContext, index: number, epoch: string, primaryKey?: readonly string[]): SourceEvent {
  const { relation } = change;
  const body: Record<string, unknown> = { schema: relation.schema, table: relation.table, op: change.op, key: null };
  const unchanged = new Set<string>();
  let newRow: RowValues | undefined;
  let oldRow: RowValues | undefined;
  if (change.newTuple) {
    const r = rowOf(relation, change.newTuple);
    newRow = r.values;
    r.unchangedToast.forEach((c) => unchanged.add(c));
  }
  if (change.oldTuple) {
    // 'K' carries the key columns only, the other columns come as nulls: leave them out.
    const r = rowOf(relation, change.oldTuple, change.oldKind === "key");
    oldRow = r.values;
  }
  // An update is about the row under its new key; a delete, under its old one.
  const row = change.op === "truncate" ? undefined : (newRow ?? oldRow);
  const key = row ? keyOf(relation, row, primaryKey) : null;
  body.key = key;
  if (oldRow) body.old = oldRow;
  if (change.oldKind) body.old_is = change.oldKind === "full" ? "row" : "key";
  if (newRow) body.new = newRow;
  if (unchanged.size > 0) body.unchanged_toast = [...unchanged];
  if (change.truncate) {
    body.cascade = change.truncate.cascade;
    body.restart_identity = change.truncate.restartIdentity;
  }
  const commitTime = pgTimestampToIso(txn.commitTime);
  Object.assign(body, { lsn: formatLsn(change.lsn), xid: txn.xid, commit_lsn: formatLsn(txn.commitLsn), commit_time: commitTime });
  return {
    kind: `postgres.${change.op}`,
    subject: subjectOf(relation.schema, relation.table, change.op === "truncate" ? null : key),
    occurredAt: commitTime,
    position: positionOf(epoch, txn.commitLsn, index),
    payloadType: "application/json",
    payload: new TextEncoder().encode(JSON.stringify(body)),
  };
}
