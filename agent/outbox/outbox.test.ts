// The outbox against real files in a temp folder: round trips over many segments,
// restarts, acked segments going away, torn tails cut at every byte, damage in sealed
// segments refused, the atomic ack checkpoint, the size cap and fsync policies.
import { afterEach, describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32c } from "./crc32c.js";
import { openOutbox, OutboxClosedError, OutboxCorruptError, OutboxFullError, recordsBytes, type Outbox, type OutboxOptions, type OutboxRecord } from "./index.js";
import { encodeAckCheckpoint, encodeRecord, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, segmentFileName } from "./record-format.js";

const dirs: string[] = [];
const open: Outbox[] = [];
afterEach(async () => {
  for (const o of open.splice(0)) await o.close().catch(() => undefined);
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "outbox-test-"));
  dirs.push(d);
  return d;
}

async function openAt(dir: string, options: OutboxOptions = {}) {
  const opened = await openOutbox(dir, { fsync: "none", ...options });
  open.push(opened.outbox);
  return opened;
}

/** Deterministic body of `bytes` bytes naming its record, so any mix-up shows. */
function body(n: number, bytes = 40): Uint8Array {
  const out = new Uint8Array(bytes).fill(0x2e);
  out.set(new TextEncoder().encode(`record ${n};`).subarray(0, bytes));
  return out;
}

function bodies(from: number, count: number, bytes = 40): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => body(from + i, bytes));
}

async function readAll(o: Outbox, from = 0): Promise<OutboxRecord[]> {
  const out: OutboxRecord[] = [];
  for (;;) {
    const got = await o.readFrom(from, 64, 4096);
    if (got.length === 0) return out;
    out.push(...got);
    from = got[got.length - 1]!.seq + 1;
  }
}

function expectRecords(records: OutboxRecord[], first: number, count: number, bytes = 40): void {
  expect(records.map((r) => r.seq)).toEqual(Array.from({ length: count }, (_, i) => first + i));
  for (const r of records) expect(Buffer.from(r.body).equals(Buffer.from(body(r.seq, bytes)))).toBe(true);
}

const segmentsIn = (dir: string) => readdirSync(dir).filter((n) => n.endsWith(".seg")).sort();

describe("crc32c", () => {
  it("matches the published check values", () => {
    const enc = new TextEncoder();
    expect(crc32c(enc.encode("123456789"))).toBe(0xe3069283);
    // RFC 3720 B.4
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    const inc = Uint8Array.from({ length: 32 }, (_, i) => i);
    expect(crc32c(inc)).toBe(0x46dd794e);
    expect(crc32c(inc, crc32c(inc, 0, 0, 13), 13)).toBe(0x46dd794e);
  });
});

describe("append, read, ack", () => {
  it("round-trips records across many segments and deletes them once acked", async () => {
    const dir = tempDir();
    const { outbox, report } = await openAt(dir, { segmentBytes: 1024 });
    expect(report).toMatchObject({ recordsRecovered: 0, nextSeq: 0, firstUnacked: 0, bytesDropped: 0 });
    expect(segmentsIn(dir)).toEqual([segmentFileName(0)]);

    for (let i = 0; i < 500; i += 10) {
      expect(await outbox.append(bodies(i, 10))).toEqual({ firstSeq: i, lastSeq: i + 9 });
    }
    const recordBytes = RECORD_HEADER_BYTES + 40;
    const perSegment = Math.floor((1024 - SEGMENT_HEADER_BYTES) / recordBytes);
    expect(segmentsIn(dir).length).toBe(Math.ceil(500 / perSegment));
    expect(outbox.depth()).toMatchObject({ records: 500, bytes: 500 * recordBytes });
    // Segment files are named by their first record, and none outgrows segmentBytes.
    for (const name of segmentsIn(dir)) {
      expect(Number(name.slice(0, 20)) % perSegment).toBe(0);
      expect(statSync(join(dir, name)).size).toBeLessThanOrEqual(1024);
    }

    expectRecords(await readAll(outbox), 0, 500);
    // Reads from the middle of a segment, honouring maxRecords and maxBytes.
    expectRecords(await outbox.readFrom(123, 7, 1 << 20), 123, 7);
    expectRecords(await outbox.readFrom(123, 100, 40 * 3), 123, 3);
    expectRecords(await outbox.readFrom(499, 100, 1), 499, 1); // one record even over maxBytes
    expect(await outbox.readFrom(500, 10, 1000)).toEqual([]);

    await outbox.ack(99);
    expect(outbox.firstUnacked).toBe(100);
    expect(outbox.depth()).toMatchObject({ records: 400, bytes: 400 * recordBytes });
    // Every remaining segment still holds an unacked record; those wholly below 100 are gone.
    const firstKept = Math.floor(100 / perSegment) * perSegment;
    expect(segmentsIn(dir)[0]).toBe(segmentFileName(firstKept));
    // Reading below the acked position starts at the first unacked record.
    expectRecords(await outbox.readFrom(0, 5, 1 << 20), 100, 5);

    await outbox.ack(499);
    expect(outbox.depth()).toMatchObject({ records: 0, bytes: 0, segments: 1 });
    expect(segmentsIn(dir)).toEqual([segmentFileName(Math.floor(499 / perSegment) * perSegment)]);
    expect(await readAll(outbox)).toEqual([]);
    // Acks at or below the position are no-ops; acks beyond what was appended are refused.
    await outbox.ack(10);
    await expect(outbox.ack(500)).rejects.toThrow(RangeError);
  });

  it("hands out consecutive seqs to concurrent appends, in call order, sharing write rounds", async () => {
    const { outbox } = await openAt(tempDir(), { fsync: "per-batch", segmentBytes: 2048 });
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => outbox.append(bodies(i * 3, 3))));
    expect(results.map((r) => r.firstSeq)).toEqual(Array.from({ length: 50 }, (_, i) => i * 3));
    expectRecords(await readAll(outbox), 0, 150);
    const c = outbox.counters();
    expect(c.appendedRecords).toBe(150);
    expect(c.writeRounds).toBeLessThan(50);
  });

  it("reads records larger than its buffer, and finds any seq in a large segment", async () => {
    const { outbox } = await openAt(tempDir(), { segmentBytes: 4 * 1024 * 1024 });
    const big = (n: number) => body(n, 200 * 1024 + n);
    await outbox.append([big(0), big(1)]);
    for (let i = 2; i < 20_002; i += 1000) await outbox.append(bodies(i, 1000));
    const [r0, r1] = await outbox.readFrom(0, 2, 1);
    expect(r0!.body.length).toBe(200 * 1024);
    expect(Buffer.from(r0!.body).equals(Buffer.from(big(0)))).toBe(true);
    expect(r1).toBeUndefined(); // maxBytes stops after the first
    expect(Buffer.from((await outbox.readFrom(1, 1, 1))[0]!.body).equals(Buffer.from(big(1)))).toBe(true);
    expectRecords(await outbox.readFrom(2, 3000, 1 << 20), 2, 3000); // many buffer refills in one read
    for (const seq of [2, 3, 577, 5_000, 12_345, 19_999, 20_001]) expectRecords(await outbox.readFrom(seq, 3, 1 << 20), seq, Math.min(3, 20_002 - seq));
    await outbox.ack(12_344);
    expect(outbox.depth()).toMatchObject({ records: 20_002 - 12_345, bytes: (20_002 - 12_345) * (RECORD_HEADER_BYTES + 40) });
  });

  it("serves a reader and acks while appends roll segments underneath", async () => {
    const dir = tempDir();
    const { outbox } = await openAt(dir, { segmentBytes: 600, fsync: "per-batch" });
    const total = 2000;
    const writer = (async () => {
      for (let i = 0; i < total; i += 25) await outbox.append(bodies(i, 25));
    })();
    const seen: number[] = [];
    let next = 0;
    while (next < total) {
      const got = await outbox.readFrom(next, 40, 1500);
      if (got.length === 0) {
        await outbox.waitForRecords(next);
        continue;
      }
      expectRecords(got, next, got.length);
      seen.push(...got.map((r) => r.seq));
      next = got[got.length - 1]!.seq + 1;
      void outbox.ack(next - 1); // as the server's acks arrive, not awaited by the sender
    }
    await writer;
    await outbox.ack(total - 1);
    expect(seen).toEqual(Array.from({ length: total }, (_, i) => i));
    expect(segmentsIn(dir).length).toBe(1);
  });

  it("wakes a reader waiting for records", async () => {
    const { outbox } = await openAt(tempDir());
    const waiting = outbox.waitForRecords(0);
    let woke = false;
    void waiting.then(() => (woke = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(woke).toBe(false);
    await outbox.append([body(0)]);
    await waiting;
    const aborted = new AbortController();
    const never = outbox.waitForRecords(5, aborted.signal);
    aborted.abort(new Error("stop"));
    await expect(never).rejects.toThrow("stop");
  });

  it("refuses empty batches, oversized bodies and use after close", async () => {
    const { outbox } = await openAt(tempDir(), { maxRecordBytes: 100 });
    await expect(outbox.append([])).rejects.toThrow(RangeError);
    await expect(outbox.append([new Uint8Array(101)])).rejects.toThrow(/maxRecordBytes/);
    await outbox.close();
    await expect(outbox.append([body(0)])).rejects.toThrow(OutboxClosedError);
  });
});

describe("restart", () => {
  it("resumes reading at the first unacked record and appending after the last", async () => {
    const dir = tempDir();
    const first = await openAt(dir, { segmentBytes: 1024, fsync: "per-batch" });
    for (let i = 0; i < 100; i += 20) await first.outbox.append(bodies(i, 20));
    await first.outbox.ack(41);
    await first.outbox.close();

    const { outbox, report } = await openAt(dir, { segmentBytes: 1024, fsync: "per-batch" });
    expect(report).toMatchObject({ firstUnacked: 42, nextSeq: 100, unackedRecords: 58, bytesDropped: 0, deletedSegments: [] });
    expect(outbox.depth()).toMatchObject({ records: 58, bytes: 58 * (RECORD_HEADER_BYTES + 40) });
    expectRecords(await readAll(outbox), 42, 58);
    expect(await outbox.append(bodies(100, 5))).toEqual({ firstSeq: 100, lastSeq: 104 });
    expectRecords(await readAll(outbox, 90), 90, 15);
  });

  it("deletes acked segments a crash left behind, and refuses a gap between segments", async () => {
    const dir = tempDir();
    const first = await openAt(dir, { segmentBytes: 512 });
    for (let i = 0; i < 60; i += 10) await first.outbox.append(bodies(i, 10));
    const names = segmentsIn(dir);
    const saved = readFileSync(join(dir, names[0]!));
    await first.outbox.ack(20);
    await first.outbox.close();
    // As if the crash came between the checkpoint write and the delete.
    writeFileSync(join(dir, names[0]!), saved);
    const again = await openAt(dir, { segmentBytes: 512 });
    expect(again.report.deletedSegments).toEqual([names[0]]);
    expectRecords(await readAll(again.outbox), 21, 39);
    await again.outbox.close();

    // A middle segment missing is lost records: refused, naming where.
    const kept = segmentsIn(dir);
    rmSync(join(dir, kept[1]!));
    const err = await openOutbox(dir, { fsync: "none" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutboxCorruptError);
    expect((err as OutboxCorruptError).file).toBe(join(dir, kept[2]!));
  });

  it("refuses an ack checkpoint that skips records no segment holds", async () => {
    const dir = tempDir();
    const first = await openAt(dir, { segmentBytes: 512 });
    for (let i = 0; i < 40; i += 10) await first.outbox.append(bodies(i, 10));
    await first.outbox.ack(2);
    await first.outbox.close();
    rmSync(join(dir, segmentsIn(dir)[0]!)); // records 3..7 gone, never acked
    await expect(openOutbox(dir, { fsync: "none" })).rejects.toThrow(/records 3\.\.7 are missing/);
    rmSync(join(dir, "ack"));
    await expect(openOutbox(dir, { fsync: "none" })).rejects.toThrow(/records 0\.\.7 are missing: there is no ack checkpoint/);
  });

  it("continues past an ack checkpoint ahead of the records (lost unsynced tail)", async () => {
    const dir = tempDir();
    const first = await openAt(dir);
    await first.outbox.append(bodies(0, 10));
    await first.outbox.close();
    writeFileSync(join(dir, "ack"), encodeAckCheckpoint(15));
    const { outbox, report } = await openAt(dir);
    expect(report).toMatchObject({ ackedPastEnd: true, firstUnacked: 15, nextSeq: 15 });
    expect(segmentsIn(dir)).toEqual([segmentFileName(15)]);
    expect(await outbox.append([body(15)])).toEqual({ firstSeq: 15, lastSeq: 15 });
  });
});

describe("torn tail", () => {
  /** An outbox of 3 segments, closed; returns the last segment's path and its last record's offset. */
  async function threeSegments(dir: string) {
    const { outbox } = await openAt(dir, { segmentBytes: 512 });
    for (let i = 0; i < 20; i += 4) await outbox.append(bodies(i, 4));
    await outbox.close();
    const names = segmentsIn(dir);
    expect(names.length).toBe(3);
    const path = join(dir, names[2]!);
    const bytes = readFileSync(path);
    return { path, bytes, lastStart: bytes.length - (RECORD_HEADER_BYTES + 40) };
  }

  it("cuts a record truncated at any byte, keeps the records before it, and appends after", async () => {
    const dir = tempDir();
    const { path, bytes, lastStart } = await threeSegments(dir);
    for (let cut = lastStart; cut < bytes.length; cut++) {
      writeFileSync(path, bytes.subarray(0, cut));
      const { outbox, report } = await openAt(dir, { segmentBytes: 512 });
      expect(report.bytesDropped).toBe(cut - lastStart);
      expect(report.tornTail === undefined).toBe(cut === lastStart);
      if (report.tornTail) expect(report.tornTail).toMatchObject({ file: path, offset: lastStart });
      expect(report).toMatchObject({ recordsRecovered: 19, nextSeq: 19 });
      expect(statSync(path).size).toBe(lastStart);
      expectRecords(await readAll(outbox), 0, 19);
      expect(await outbox.append([body(19)])).toEqual({ firstSeq: 19, lastSeq: 19 });
      expectRecords(await readAll(outbox), 0, 20);
      await outbox.close();
    }
  });

  it("drops a last record with any byte flipped as torn", async () => {
    const dir = tempDir();
    const { path, bytes, lastStart } = await threeSegments(dir);
    for (let at = lastStart; at < bytes.length; at++) {
      const damaged = Buffer.from(bytes);
      damaged[at]! ^= 0x40;
      writeFileSync(path, damaged);
      const { outbox, report } = await openAt(dir, { segmentBytes: 512 });
      expect(report.tornTail).toMatchObject({ file: path, offset: lastStart });
      expect(report.bytesDropped).toBe(bytes.length - lastStart);
      expectRecords(await readAll(outbox), 0, 19);
      expect(await outbox.append([body(19)])).toEqual({ firstSeq: 19, lastSeq: 19 });
      await outbox.close();
    }
  });

  it("treats the whole last segment as tail: a bad record there ends it, and the cut is reported", async () => {
    // After a power loss the unsynced end of the file can come back with pages in any
    // order, so a bad record followed by good ones is still a torn write there.
    const dir = tempDir();
    const { path, bytes } = await threeSegments(dir);
    const base = Number(segmentsIn(dir)[2]!.slice(0, 20));
    const damaged = Buffer.from(bytes);
    const firstRecord = SEGMENT_HEADER_BYTES;
    damaged[firstRecord + RECORD_HEADER_BYTES + 1]! ^= 0xff;
    writeFileSync(path, damaged);
    const { outbox, report } = await openAt(dir, { segmentBytes: 512 });
    expect(report).toMatchObject({ nextSeq: base, bytesDropped: bytes.length - firstRecord, tornTail: { file: path, offset: firstRecord } });
    expectRecords(await readAll(outbox), 0, base);
  });

  it("starts a segment again whose header was torn", async () => {
    const dir = tempDir();
    const { path } = await threeSegments(dir);
    writeFileSync(path, Buffer.alloc(7));
    const { outbox, report } = await openAt(dir, { segmentBytes: 512 });
    expect(report).toMatchObject({ bytesDropped: 7, tornTail: { file: path, offset: 0 } });
    const base = Number(segmentsIn(dir)[2]!.slice(0, 20));
    expect(outbox.nextSeq).toBe(base);
    expectRecords(await readAll(outbox), 0, base);
    expect(await outbox.append([body(base)])).toEqual({ firstSeq: base, lastSeq: base });
  });

  it("refuses a flipped byte in a sealed segment, naming file and offset", async () => {
    const dir = tempDir();
    await threeSegments(dir);
    const middle = join(dir, segmentsIn(dir)[1]!);
    const bytes = readFileSync(middle);
    const recordAt = SEGMENT_HEADER_BYTES + 2 * (RECORD_HEADER_BYTES + 40); // its third record
    bytes[recordAt + RECORD_HEADER_BYTES + 5]! ^= 0x01;
    writeFileSync(middle, bytes);
    const err = await openOutbox(dir, { fsync: "none" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutboxCorruptError);
    expect(err).toMatchObject({ file: middle, offset: recordAt, reason: expect.stringContaining("checksum mismatch") });
    expect(String((err as Error).message)).toContain(`${middle} at byte ${recordAt}`);
    expect(readFileSync(middle).equals(bytes)).toBe(true); // nothing cut
  });

  it("refuses an intact record with the wrong seq even at the tail", async () => {
    const dir = tempDir();
    const { path } = await threeSegments(dir);
    // Append a well-formed record claiming seq 99 where 20 belongs.
    const rec = Buffer.alloc(RECORD_HEADER_BYTES + 40);
    encodeRecord(rec, 0, 99, body(99));
    writeFileSync(path, Buffer.concat([readFileSync(path), rec]));
    await expect(openOutbox(dir, { fsync: "none" })).rejects.toThrow(/seq 99, 20 expected/);
  });
});

describe("ack checkpoint", () => {
  it("is replaced atomically: a leftover temp file from a crash is ignored", async () => {
    const dir = tempDir();
    const first = await openAt(dir, { fsync: "per-batch" });
    await first.outbox.append(bodies(0, 10));
    await first.outbox.ack(3);
    expect(existsSync(join(dir, "ack.tmp"))).toBe(false);
    expect(readFileSync(join(dir, "ack")).equals(Buffer.from(encodeAckCheckpoint(4)))).toBe(true);
    await first.outbox.close();
    // A crash while writing the next checkpoint: the temp file half written, never renamed.
    writeFileSync(join(dir, "ack.tmp"), encodeAckCheckpoint(9).subarray(0, 11));
    const { outbox, report } = await openAt(dir);
    expect(report).toMatchObject({ removedAckTemp: true, firstUnacked: 4 });
    expect(existsSync(join(dir, "ack.tmp"))).toBe(false);
    expectRecords(await readAll(outbox), 4, 6);
  });

  it("refuses a damaged checkpoint", async () => {
    const dir = tempDir();
    const first = await openAt(dir);
    await first.outbox.append(bodies(0, 10));
    await first.outbox.ack(3);
    await first.outbox.close();
    const ack = readFileSync(join(dir, "ack"));
    ack[9]! ^= 1;
    writeFileSync(join(dir, "ack"), ack);
    await expect(openOutbox(dir, { fsync: "none" })).rejects.toThrow(/ack checkpoint checksum mismatch/);
  });

  it("coalesces concurrent acks", async () => {
    const { outbox } = await openAt(tempDir());
    await outbox.append(bodies(0, 100));
    await Promise.all(Array.from({ length: 100 }, (_, i) => outbox.ack(i)));
    expect(outbox.firstUnacked).toBe(100);
  });
});

describe("size cap", () => {
  const rec = RECORD_HEADER_BYTES + 40;

  it("refuses an append that would pass the cap without writing, and frees space on ack", async () => {
    const dir = tempDir();
    // Segments of 10 records; the cap fits 3 full segments.
    const options = { segmentBytes: SEGMENT_HEADER_BYTES + 10 * rec, maxBytes: 3 * (SEGMENT_HEADER_BYTES + 10 * rec), reserveBytes: 0 };
    const { outbox } = await openAt(dir, options);
    await outbox.append(bodies(0, 30));
    const before = { depth: outbox.depth(), files: segmentsIn(dir), size: statSync(join(dir, segmentsIn(dir).at(-1)!)).size };

    const err = await outbox.append(bodies(30, 5)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutboxFullError);
    const full = err as OutboxFullError;
    expect(full.bytesNeeded).toBe(SEGMENT_HEADER_BYTES + 5 * rec);
    expect(full.bytesFree).toBe(0);
    expect(outbox.nextSeq).toBe(30);
    expect({ depth: outbox.depth(), files: segmentsIn(dir), size: statSync(join(dir, segmentsIn(dir).at(-1)!)).size }).toEqual(before);

    let freed = false;
    const space = outbox.waitForSpace(full.bytesNeeded).then(() => (freed = true));
    await outbox.ack(4); // half a segment: nothing can be deleted yet
    await new Promise((r) => setTimeout(r, 20));
    expect(freed).toBe(false);
    await outbox.ack(9); // the first segment is all acked and goes
    await space;
    expect(segmentsIn(dir).length).toBe(2);
    expect(await outbox.append(bodies(30, 5))).toEqual({ firstSeq: 30, lastSeq: 34 });
    expectRecords(await readAll(outbox), 10, 25);
  });

  it("gets space back from the live segment once everything is acked", async () => {
    // A cap below one segment: only rolling the live segment frees anything.
    const { outbox } = await openAt(tempDir(), { segmentBytes: 64 * 1024, maxBytes: SEGMENT_HEADER_BYTES + 10 * rec, reserveBytes: 0 });
    await outbox.append(bodies(0, 10));
    await expect(outbox.append([body(10)])).rejects.toThrow(OutboxFullError);
    const space = outbox.waitForSpace(rec);
    await outbox.ack(9);
    await space;
    expect(outbox.depth()).toMatchObject({ records: 0, diskBytes: SEGMENT_HEADER_BYTES, segments: 1 });
    expect(await outbox.append(bodies(10, 10))).toEqual({ firstSeq: 10, lastSeq: 19 });
    // Already all acked when the append comes: the append itself reclaims.
    await outbox.ack(19);
    expect(await outbox.append(bodies(20, 10))).toEqual({ firstSeq: 20, lastSeq: 29 });
  });

  it("keeps the reserve for appends that ask for it (gap entries)", async () => {
    const { outbox } = await openAt(tempDir(), { segmentBytes: 64 * 1024, maxBytes: SEGMENT_HEADER_BYTES + 12 * rec, reserveBytes: 2 * rec });
    await outbox.append(bodies(0, 10));
    await expect(outbox.append([body(10)])).rejects.toThrow(OutboxFullError);
    expect(await outbox.append([body(10)], { useReserve: true })).toEqual({ firstSeq: 10, lastSeq: 10 });
    await expect(outbox.append(bodies(11, 2), { useReserve: true })).rejects.toThrow(OutboxFullError);
    await expect(outbox.append(bodies(0, 20))).rejects.toThrow(/can never fit/);
    await expect(outbox.waitForSpace(13 * rec)).rejects.toThrow(/can never fit/);
    expect(recordsBytes(bodies(0, 3))).toBe(3 * rec);
  });

  it("rejects space waiters on close", async () => {
    const { outbox } = await openAt(tempDir(), { segmentBytes: 64 * 1024, maxBytes: SEGMENT_HEADER_BYTES + 10 * rec, reserveBytes: 0 });
    await outbox.append(bodies(0, 10));
    const space = expect(outbox.waitForSpace(rec)).rejects.toThrow(OutboxClosedError);
    await outbox.close();
    await space;
  });
});

describe("fsync policies", () => {
  it("per-batch fsyncs before each append resolves", async () => {
    const dir = tempDir();
    const { outbox } = await openAt(dir, { fsync: "per-batch", segmentBytes: 1024 });
    for (let i = 0; i < 10; i++) {
      const before = outbox.counters().fsyncs;
      await outbox.append(bodies(i * 10, 10));
      expect(outbox.counters().fsyncs).toBeGreaterThan(before);
    }
    await outbox.close();
    const { outbox: again } = await openAt(dir, { fsync: "per-batch", segmentBytes: 1024 });
    expectRecords(await readAll(again), 0, 100);
  });

  it("interval fsyncs on a timer, not per append", async () => {
    const { outbox } = await openAt(tempDir(), { fsync: "interval", fsyncIntervalMs: 200 });
    for (let i = 0; i < 10; i++) await outbox.append([body(i)]);
    expect(outbox.counters().fsyncs).toBe(0);
    await new Promise((r) => setTimeout(r, 300));
    expect(outbox.counters().fsyncs).toBe(1);
    await outbox.append([body(10)]);
    await outbox.sync();
    expect(outbox.counters().fsyncs).toBe(2);
  });

  it("none never fsyncs", async () => {
    const { outbox } = await openAt(tempDir(), { fsync: "none", segmentBytes: 512 });
    for (let i = 0; i < 20; i++) await outbox.append(bodies(i * 5, 5));
    await outbox.ack(50);
    await outbox.close();
    expect(outbox.counters().fsyncs).toBe(0);
  });
});
