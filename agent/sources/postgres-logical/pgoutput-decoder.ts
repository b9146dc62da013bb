// Decodes pgoutput messages, protocol version 1 (Postgres docs, "Logical Replication
// Message Formats"). One XLogData payload is one message. Column values arrive in text
// form ('t'), as null ('n'), or as "unchanged TOASTed value, not sent" ('u'); binary
// ('b') only comes when asked for with the `binary` option, which the source never sets.

export interface RelationColumn {
  name: string;
  typeOid: number;
  typeModifier: number;
  /** Part of the replica identity (with REPLICA IDENTITY FULL: every column). */
  isKey: boolean;
}

/** pg_class.relreplident: d(efault, the primary key), n(othing), f(ull), i(ndex). */
export type ReplicaIdentity = "d" | "n" | "f" | "i";

export interface RelationMessage {
  tag: "relation";
  relationId: number;
  schema: string;
  table: string;
  replicaIdentity: ReplicaIdentity;
  columns: RelationColumn[];
}

/** One column value: text, SQL NULL, or an unchanged TOASTed value the server left out. */
export type ColumnValue = { kind: "text"; text: string } | { kind: "null" } | { kind: "unchanged-toast" };

export interface BeginMessage {
  tag: "begin";
  /** The LSN of the transaction's commit record. */
  finalLsn: bigint;
  /** Microseconds since 2000-01-01 UTC. */
  commitTime: bigint;
  xid: number;
}

export interface CommitMessage {
  tag: "commit";
  commitLsn: bigint;
  /** Just past the commit record: confirming it as flushed means "this transaction is done". */
  endLsn: bigint;
  commitTime: bigint;
}

export interface OriginMessage {
  tag: "origin";
  originLsn: bigint;
  name: string;
}

export interface TypeMessage {
  tag: "type";
  typeOid: number;
  schema: string;
  name: string;
}

export interface InsertMessage {
  tag: "insert";
  relationId: number;
  newTuple: ColumnValue[];
}

export interface UpdateMessage {
  tag: "update";
  relationId: number;
  /** 'K': only the replica identity columns (the key changed); 'O': the whole old row (REPLICA IDENTITY FULL). */
  oldKind?: "key" | "full";
  oldTuple?: ColumnValue[];
  newTuple: ColumnValue[];
}

export interface DeleteMessage {
  tag: "delete";
  relationId: number;
  oldKind: "key" | "full";
  oldTuple: ColumnValue[];
}

export interface TruncateMessage {
  tag: "truncate";
  cascade: boolean;
  restartIdentity: boolean;
  relationIds: number[];
}

/** A logical decoding message (pg_logical_emit_message); only sent with the `messages` option. */
export interface LogicalMessage {
  tag: "message";
  transactional: boolean;
  lsn: bigint;
  prefix: string;
  content: Buffer;
}

export type PgOutputMessage =
  | BeginMessage
  | CommitMessage
  | OriginMessage
  | RelationMessage
  | TypeMessage
  | InsertMessage
  | UpdateMessage
  | DeleteMessage
  | TruncateMessage
  | LogicalMessage;

const TRUNCATE_CASCADE = 1;
const TRUNCATE_RESTART_IDENTITY = 2;

/** A cursor over one message that fails with the message's name when it runs short. */
class Reader {
  private at = 0;
  constructor(
    private readonly buf: Buffer,
    private readonly what: string,
  ) {}

  private need(n: number): void {
    if (this.at + n > this.buf.length) throw new Error(`pgoutput ${this.what} message is truncated (${this.buf.length} bytes, needed ${this.at + n})`);
  }
  u8(): number {
    this.need(1);
    return this.buf[this.at++]!;
  }
  char(): string {
    return String.fromCharCode(this.u8());
  }
  i16(): number {
    this.need(2);
    const v = this.buf.readInt16BE(this.at);
    this.at += 2;
    return v;
  }
  i32(): number {
    this.need(4);
    const v = this.buf.readInt32BE(this.at);
    this.at += 4;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.at);
    this.at += 4;
    return v;
  }
  u64(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64BE(this.at);
    this.at += 8;
    return v;
  }
  i64(): bigint {
    this.need(8);
    const v = this.buf.readBigInt64BE(this.at);
    this.at += 8;
    return v;
  }
  bytes(n: number): Buffer {
    this.need(n);
    const v = this.buf.subarray(this.at, this.at + n);
    this.at += n;
    return v;
  }
  /** A NUL-terminated UTF-8 string. */
  cstring(): string {
    const end = this.buf.indexOf(0, this.at);
    if (end < 0) throw new Error(`pgoutput ${this.what} message has an unterminated string`);
    const v = this.buf.toString("utf8", this.at, end);
    this.at = end + 1;
    return v;
  }
}

function tupleData(r: Reader): ColumnValue[] {
  const n = r.i16();
  const values: ColumnValue[] = [];
  for (let i = 0; i < n; i++) {
    const kind = r.char();
    if (kind === "n") values.push({ kind: "null" });
    else if (kind === "u") values.push({ kind: "unchanged-toast" });
    else if (kind === "t") values.push({ kind: "text", text: r.bytes(r.i32()).toString("utf8") });
    else throw new Error(`pgoutput tuple column ${i} has format '${kind}'; only text ('t'), null ('n') and unchanged TOAST ('u') are expected`);
  }
  return values;
}

function oldTupleKind(tag: string, message: string): "key" | "full" {
  if (tag === "K") return "key";
  if (tag === "O") return "full";
  throw new Error(`pgoutput ${message} message has old-tuple marker '${tag}', expected 'K' or 'O'`);
}

/** Decodes one pgoutput message; throws naming the message type when it is malformed or unknown. */
export function decodePgOutput(data: Buffer): PgOutputMessage {
  if (data.length === 0) throw new Error("empty pgoutput message");
  const tag = String.fromCharCode(data[0]!);
  switch (tag) {
    case "B": {
      const r = new Reader(data.subarray(1), "Begin");
      return { tag: "begin", finalLsn: r.u64(), commitTime: r.i64(), xid: r.u32() };
    }
    case "C": {
      const r = new Reader(data.subarray(1), "Commit");
      r.u8(); // flags, unused
      return { tag: "commit", commitLsn: r.u64(), endLsn: r.u64(), commitTime: r.i64() };
    }
    case "O": {
      const r = new Reader(data.subarray(1), "Origin");
      return { tag: "origin", originLsn: r.u64(), name: r.cstring() };
    }
    case "R": {
      const r = new Reader(data.subarray(1), "Relation");
      const relationId = r.u32();
      const schema = r.cstring();
      const table = r.cstring();
      const identity = r.char();
      if (!"dnfi".includes(identity)) throw new Error(`pgoutput Relation message for ${schema}.${table} has unknown replica identity '${identity}'`);
      const n = r.i16();
      const columns: RelationColumn[] = [];
      for (let i = 0; i < n; i++) {
        const flags = r.u8();
        const name = r.cstring();
        columns.push({ name, typeOid: r.u32(), typeModifier: r.i32(), isKey: (flags & 1) === 1 });
      }
      return { tag: "relation", relationId, schema, table, replicaIdentity: identity as ReplicaIdentity, columns };
    }
    case "Y": {
      const r = new Reader(data.subarray(1), "Type");
      return { tag: "type", typeOid: r.u32(), schema: r.cstring(), name: r.cstring() };
    }
    case "I": {
      const r = new Reader(data.subarray(1), "Insert");
      const relationId = r.u32();
      const marker = r.char();
      if (marker !== "N") throw new Error(`pgoutput Insert message has tuple marker '${marker}', expected 'N'`);
      return { tag: "insert", relationId, newTuple: tupleData(r) };
    }
    case "U": {
      const r = new Reader(data.subarray(1), "Update");
      const relationId = r.u32();
      let marker = r.char();
      const message: UpdateMessage = { tag: "update", relationId, newTuple: [] };
      if (marker === "K" || marker === "O") {
        message.oldKind = oldTupleKind(marker, "Update");
        message.oldTuple = tupleData(r);
        marker = r.char();
      }
      if (marker !== "N") throw new Error(`pgoutput Update message has tuple marker '${marker}', expected 'N'`);
      message.newTuple = tupleData(r);
      return message;
    }
    case "D": {
      const r = new Reader(data.subarray(1), "Delete");
      const relationId = r.u32();
      const oldKind = oldTupleKind(r.char(), "Delete");
      return { tag: "delete", relationId, oldKind, oldTuple: tupleData(r) };
    }
    case "T": {
      const r = new Reader(data.subarray(1), "Truncate");
      const n = r.u32();
      const options = r.u8();
      const relationIds: number[] = [];
      for (let i = 0; i < n; i++) relationIds.push(r.u32());
      return { tag: "truncate", cascade: (options & TRUNCATE_CASCADE) !== 0, restartIdentity: (options & TRUNCATE_RESTART_IDENTITY) !== 0, relationIds };
    }
    case "M": {
      const r = new Reader(data.subarray(1), "Message");
      const flags = r.u8();
      const lsn = r.u64();
      const prefix = r.cstring();
      return { tag: "message", transactional: (flags & 1) === 1, lsn, prefix, content: r.bytes(r.u32()) };
    }
    default:
      throw new Error(`unknown pgoutput message type '${tag}' (0x${data[0]!.toString(16)}); the source speaks protocol version 1`);
  }
}
