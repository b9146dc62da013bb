// The replication protocol's own messages (replication-messages.ts): keepalives and
// XLogData in, standby status updates out, and Postgres timestamps.
import { expect, it } from "vitest";
import { parseServerMessage, pgTimestampToIso, standbyStatusUpdate } from "./replication-messages.js";

it("reads keepalives and XLogData, writes standby status updates, converts Postgres timestamps", () => {
  const k = Buffer.alloc(18);
  k.write("k", 0, "latin1");
  k.writeBigUInt64BE(0x1234n, 1);
  k[17] = 1;
  expect(parseServerMessage(k)).toEqual({ type: "keepalive", walEnd: 0x1234n, replyRequested: true });
  expect(() => parseServerMessage(Buffer.from("w12", "latin1"))).toThrow(/shorter than its 25-byte header/);
  expect(() => parseServerMessage(Buffer.from("x", "latin1"))).toThrow(/unexpected replication message type 'x'/);
  const r = standbyStatusUpdate(0xabcn, false, Date.UTC(2000, 0, 1, 0, 0, 1));
  expect(r.length).toBe(34);
  expect(String.fromCharCode(r[0]!)).toBe("r");
  expect([r.readBigUInt64BE(1), r.readBigUInt64BE(9), r.readBigUInt64BE(17)]).toEqual([0xabcn, 0xabcn, 0xabcn]);
  expect(r.readBigInt64BE(25)).toBe(1_000_000n);
  expect(pgTimestampToIso(1_000_001n)).toBe("2000-01-01T00:00:01.000001Z");
});
