// The streaming replication protocol's own messages inside CopyBoth (Postgres docs,
// "Streaming Replication Protocol"): the server sends XLogData ('w', carrying one
// pgoutput message) and primary keepalives ('k'); the client sends standby status
// updates ('r') saying how far it has written, flushed and applied.

/** Microseconds between the Unix epoch and Postgres's epoch, 2000-01-01 UTC. */
const PG_EPOCH_OFFSET_US = 946_684_800_000_000n;

export interface XLogData {
  type: "xlogdata";
  /** The WAL position of the change this message decodes. */
  dataStart: bigint;
  /** The server's current end of WAL. */
  walEnd: bigint;
  /** The pgoutput message. */
  data: Buffer;
}

export interface PrimaryKeepalive {
  type: "keepalive";
  /** How far the server has read the WAL (logical: decoded and sent up to here). */
  walEnd: bigint;
  /** The server wants a status update now, or it will time the connection out. */
  replyRequested: boolean;
}

export type ServerReplicationMessage = XLogData | PrimaryKeepalive;

/** Postgres timestamps (µs since 2000-01-01) to ISO 8601 UTC with microseconds. */
export function pgTimestampToIso(us: bigint): string {
  const unixUs = us + PG_EPOCH_OFFSET_US;
  const ms = unixUs / 1000n;
  const micros = Number(((unixUs % 1000n) + 1000n) % 1000n);
  const iso = new Date(Number(ms)).toISOString(); // …sss Z
  return `${iso.slice(0, -1)}${micros.toString().padStart(3, "0")}Z`;
}

export function nowAsPgTimestamp(now = Date.now()): bigint {
  return BigInt(now) * 1000n - PG_EPOCH_OFFSET_US;
}

/** Parses one CopyData frame from the server; throws naming what is wrong. */
export function parseServerMessage(frame: Buffer): ServerReplicationMessage {
  if (frame.length === 0) throw new Error("empty CopyData frame from the server");
  const tag = String.fromCharCode(frame[0]!);
  if (tag === "w") {
    if (frame.length < 25) throw new Error(`XLogData frame of ${frame.length} bytes is shorter than its 25-byte header`);
    return { type: "xlogdata", dataStart: frame.readBigUInt64BE(1), walEnd: frame.readBigUInt64BE(9), data: frame.subarray(25) };
  }
  if (tag === "k") {
    if (frame.length < 18) throw new Error(`primary keepalive frame of ${frame.length} bytes, expected 18`);
    return { type: "keepalive", walEnd: frame.readBigUInt64BE(1), replyRequested: frame[17] === 1 };
  }
  throw new Error(`unexpected replication message type '${tag}' (0x${frame[0]!.toString(16)}) from the server`);
}

/**
 * A standby status update. `flushed` is what the slot may confirm (and so what the
 * server may forget); written and applied are reported as the same position, because
 * the source has no separate notion of them.
 */
export function standbyStatusUpdate(flushed: bigint, replyRequested = false, now = Date.now()): Buffer {
  const b = Buffer.alloc(34);
  b.write("r", 0, "latin1");
  b.writeBigUInt64BE(flushed, 1); // written
  b.writeBigUInt64BE(flushed, 9); // flushed
  b.writeBigUInt64BE(flushed, 17); // applied
  b.writeBigInt64BE(nowAsPgTimestamp(now), 25);
  b[33] = replyRequested ? 1 : 0;
  return b;
}
