// kill -9 while appending: a child process appends with per-batch fsync and prints each
// append as it resolves; after SIGKILL mid-run the parent reopens the outbox and finds
// every record the child reported, in order, with no gaps. Three kills in a row on the
// same folder, so recovery from a recovered outbox is covered too. (SIGKILL cannot take
// the page cache with it, so this proves the process-crash guarantee; the power-loss one
// rests on the fsync calls the per-batch policy makes.)
import { afterAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { crashBody } from "./crash-child.js";
import { openOutbox, type OutboxRecord } from "./index.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CHILD = fileURLToPath(new URL("./crash-child.ts", import.meta.url));

const dir = mkdtempSync(join(tmpdir(), "outbox-crash-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface ChildRun {
  appended: { first: number; last: number; tag: string }[];
  acked: number[];
  signal: NodeJS.Signals | null;
}

/** Starts the child, lets it report `appends` appends, kills it with SIGKILL, returns what it printed. */
function runAndKill(appends: number): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", CHILD, dir], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    const run: ChildRun = { appended: [], acked: [], signal: null };
    let out = "";
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      const lines = out.split("\n");
      out = lines.pop()!; // a line cut by the kill is not a report
      for (const line of lines) {
        const [kind, a, b, tag] = line.split(" ");
        if (kind === "appended") run.appended.push({ first: Number(a), last: Number(b), tag: tag! });
        if (kind === "acked") run.acked.push(Number(a));
      }
      if (run.appended.length >= appends && run.signal === null && child.exitCode === null) child.kill("SIGKILL");
    });
    child.on("error", reject);
    child.on("close", (code, signal) => {
      run.signal = signal;
      if (signal !== "SIGKILL") reject(new Error(`child exited with ${code}, not by SIGKILL: ${err}`));
      else resolve(run);
    });
  });
}

async function readAll(outbox: Awaited<ReturnType<typeof openOutbox>>["outbox"]): Promise<OutboxRecord[]> {
  const all: OutboxRecord[] = [];
  for (let from = 0; ; ) {
    const got = await outbox.readFrom(from, 1000, 1 << 20);
    if (got.length === 0) return all;
    all.push(...got);
    from = got[got.length - 1]!.seq + 1;
  }
}

describe("kill -9 mid-append", () => {
  it("keeps every record the child reported appended, in order, without gaps", async () => {
    let previousEnd = 0;
    for (let round = 0; round < 3; round++) {
      const run = await runAndKill(300 + round * 100);
      expect(run.appended.length).toBeGreaterThanOrEqual(300);

      const { outbox, report } = await openOutbox(dir);
      try {
        const maxReported = Math.max(...run.appended.map((a) => a.last));
        const maxAcked = Math.max(-1, ...run.acked);
        expect(outbox.firstUnacked).toBeGreaterThan(maxAcked);
        expect(outbox.nextSeq).toBeGreaterThan(maxReported);
        expect(report.nextSeq).toBe(outbox.nextSeq);

        const records = await readAll(outbox);
        // In order and without gaps, from the first unacked record to the end.
        expect(records[0]!.seq).toBe(outbox.firstUnacked);
        records.forEach((r, i) => expect(r.seq).toBe(outbox.firstUnacked + i));
        expect(records.length).toBe(outbox.nextSeq - outbox.firstUnacked);
        // Every reported, unacked record holds exactly what was appended under its seq.
        const bySeq = new Map(records.map((r) => [r.seq, r.body]));
        let checked = 0;
        for (const a of run.appended) {
          for (let seq = Math.max(a.first, outbox.firstUnacked); seq <= a.last; seq++) {
            expect(Buffer.from(bySeq.get(seq)!).equals(Buffer.from(crashBody(a.tag, seq - a.first)))).toBe(true);
            checked++;
          }
        }
        expect(checked).toBeGreaterThan(1000);
        // This run's records follow the previous run's.
        expect(Math.min(...run.appended.map((a) => a.first))).toBeGreaterThanOrEqual(previousEnd);
        previousEnd = outbox.nextSeq;
      } finally {
        await outbox.close();
      }
    }
  });
});
