// The results table: each figure next to its SPEC §11 target, with PASS / MISS.
import type { ThroughputResult } from "./append-batch.js";
import type { UnaryResult } from "./unary-latency.js";
import type { TailResult } from "./tail-latency.js";
import type { VerifyResult } from "./verify-rate.js";
import { int, ms, ratio } from "./stats.js";
import type { PhaseUsage } from "./resource-meter.js";

export interface BenchResults {
  appendBatch?: ThroughputResult;
  rawCopy?: ThroughputResult;
  diyChain?: ThroughputResult;
  unary?: UnaryResult;
  /** Unary latency at lower rates. */
  unarySweep?: UnaryResult[];
  tail?: TailResult;
  verify?: VerifyResult;
}

export const TARGETS = {
  ledgerOverCopy: 0.7,
  ledgerOverDiy: 5,
  appendP99Ms: 10,
  tailP99Ms: 50,
  verifyPerSecond: 200_000,
};

type Row = [measurement: string, figure: string, target: string, status: string];

const verdict = (ok: boolean) => (ok ? "PASS" : "MISS");

export function resultRows(r: BenchResults): Row[] {
  const rows: Row[] = [];
  const ab = r.appendBatch;
  if (ab) rows.push(["AppendBatch durable ingest (acked after COMMIT)", `${int(ab.rowsPerSecond)} events/s`, "", ""]);
  if (r.rawCopy) {
    rows.push(["raw COPY, same rows, same indexes (physical limit)", `${int(r.rawCopy.rowsPerSecond)} rows/s`, "", ""]);
    if (ab) {
      const x = ab.rowsPerSecond / r.rawCopy.rowsPerSecond;
      rows.push(["  ledger / raw COPY", ratio(x), `>= ${TARGETS.ledgerOverCopy} x`, verdict(x >= TARGETS.ledgerOverCopy)]);
    }
  }
  if (r.diyChain) {
    rows.push(["DIY chain (plpgsql trigger, head lock, INSERTs of 1,000)", `${int(r.diyChain.rowsPerSecond)} rows/s`, "", ""]);
    if (ab) {
      const x = ab.rowsPerSecond / r.diyChain.rowsPerSecond;
      rows.push(["  ledger / DIY chain", ratio(x), `>= ${TARGETS.ledgerOverDiy} x`, verdict(x >= TARGETS.ledgerOverDiy)]);
    }
  }
  const u = r.unary;
  if (u) {
    rows.push([
      `unary Append at ${int(u.rate)} req/s (open loop, ${u.seconds} s)`,
      `p50 ${ms(u.p50)}, p99 ${ms(u.p99)}, max ${ms(u.max)}`,
      `p99 < ${TARGETS.appendP99Ms} ms`,
      verdict(u.p99 < TARGETS.appendP99Ms),
    ]);
  }
  const t = r.tail;
  if (t) {
    rows.push([
      `live tail, append -> subscriber (${int(t.rate)} events/s)`,
      `p50 ${ms(t.sendToReceive.p50)}, p99 ${ms(t.sendToReceive.p99)}, max ${ms(t.sendToReceive.max)}`,
      `p99 < ${TARGETS.tailP99Ms} ms`,
      verdict(t.sendToReceive.p99 < TARGETS.tailP99Ms && t.missing === 0),
    ]);
    rows.push(["  of which COMMIT ack -> subscriber", `p50 ${ms(t.ackToReceive.p50)}, p99 ${ms(t.ackToReceive.p99)}`, "", ""]);
  }
  const v = r.verify;
  if (v) {
    rows.push([`Verify (${int(v.entries)} entries, median of ${v.runs.length})`, `${int(v.verifyPerSecond)} entries/s`, `>= ${int(TARGETS.verifyPerSecond)} entries/s`, verdict(v.verifyPerSecond >= TARGETS.verifyPerSecond)]);
    rows.push(["  bare SHA-256 of the same bytes (envelope + salt‖payload)", `${int(v.sha256PerSecond)} entries/s`, "", ""]);
    rows.push(["  Verify / bare SHA-256", ratio(v.verifyPerSecond / v.sha256PerSecond), "", ""]);
  }
  return rows;
}

export function markdownTable(rows: Row[]): string {
  const header: Row = ["measurement", "result", "target (SPEC §11)", ""];
  const all = [header, ...rows];
  const widths = header.map((_, c) => Math.max(...all.map((r) => r[c]!.length)));
  const line = (r: Row) => "| " + r.map((cell, c) => cell.padEnd(widths[c]!)).join(" | ") + " |";
  return [line(header), "|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|", ...rows.map(line)].join("\n");
}

/**
 * What each process spent in CPU per unit of work, and how the machine's capacity was
 * shared during the measurement (including processes outside it, and steal).
 */
export function cpuLine(usage: PhaseUsage | undefined, units: number, unit: string): string {
  const cpu = usage?.cpu;
  if (!cpu) return "";
  const per = (x: number) => ms(x / units);
  const capacity = cpu.wallMs * cpu.cores;
  const pct = (x: number) => `${Math.round((100 * x) / capacity)} %`;
  return (
    `CPU per ${unit}: server ${per(cpu.serverMs)}, Postgres ${per(cpu.postgresMs)}, bench process ${per(cpu.benchMs)}; ` +
    `share of the machine (${cpu.cores} cores): server ${pct(cpu.serverMs)}, Postgres ${pct(cpu.postgresMs)}, bench ${pct(cpu.benchMs)}, ` +
    `other processes ${pct(cpu.otherMs)}, stolen by the hypervisor ${pct(cpu.stealMs)}, idle ${pct(cpu.idleMs)}.`
  );
}

/** How the server's group commit behaved: commits, events per commit, time per commit. */
export function commitLine(usage: PhaseUsage | undefined): string {
  const c = usage?.commits;
  if (!c || c.commits === 0) return "";
  return ` Group commit: ${int(c.commits)} commits, ${(c.events / c.commits).toFixed(1)} events and ${ms((1000 * c.seconds) / c.commits)} each (lock to COMMIT).`;
}

/** Secondary figures that explain the headline ones. */
export function details(r: BenchResults): string[] {
  const out: string[] = [];
  const tp = (name: string, t: ThroughputResult | undefined) =>
    t && out.push(`${name}: ${int(t.rows)} rows in ${t.seconds.toFixed(2)} s. ${cpuLine(t.usage, t.rows / 1000, "1,000 rows")}`);
  tp("AppendBatch", r.appendBatch);
  if (r.appendBatch) out[out.length - 1] += commitLine(r.appendBatch.usage);
  tp("raw COPY", r.rawCopy);
  tp("DIY chain", r.diyChain);
  if (r.unary) {
    const u = r.unary;
    out.push(`unary Append: ${int(u.count)} requests, sent at ${int(u.achievedRate)}/s, completed at ${int(u.completedRate)}/s, p90 ${ms(u.p90)}, mean ${ms(u.mean)}, worst client send lag ${ms(u.worstSendLagMs)}. ${cpuLine(u.usage, u.count, "request")}${commitLine(u.usage)}`);
  }
  if (r.unarySweep?.length) {
    const rates = r.unarySweep.map((u) => `${int(u.rate)}/s: p50 ${ms(u.p50)}, p99 ${ms(u.p99)} (server CPU ${ms((u.usage?.cpu?.serverMs ?? NaN) / u.count)} per request)`);
    out.push(`unary Append at lower rates: ${rates.join("; ")}`);
  }
  if (r.tail) {
    const t = r.tail;
    out.push(
      `live tail: ${int(t.sendToReceive.count)} events received, ${t.missing} missing, p90 ${ms(t.sendToReceive.p90)}; ` +
        `${t.receivedBeforeAck} reached the subscriber before their own append was acknowledged. ${cpuLine(t.usage, t.sendToReceive.count, "event")}${commitLine(t.usage)}`,
    );
  }
  if (r.verify) {
    const v = r.verify;
    out.push(`Verify runs: ${v.runs.map((x) => int(x)).join(", ")} entries/s. ${cpuLine(v.usage, (v.entries * v.runs.length) / 1000, "1,000 entries")}`);
    out.push(
      `same entries without I/O: ChainWalker ${int(v.walkerPerSecond)} entries/s; bare SHA-256 of envelopes only ${int(v.sha256EnvelopeOnlyPerSecond)} entries/s ` +
        `(${Math.round(v.envelopeBytes)} B envelope + ${Math.round(v.payloadBytes)} B salt‖payload per entry)`,
    );
    out.push(`reading the rows as Verify does (pages of 5,000 with payloads, into the bench process): ${int(v.readPerSecond)} entries/s`);
  }
  return out;
}
