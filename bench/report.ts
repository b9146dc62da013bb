// The results table: each figure next to its SPEC §11 target, with PASS / MISS.
import type { ThroughputResult } from "./append-batch.js";
import type { UnaryResult } from "./unary-latency.js";
import type { TailResult } from "./tail-latency.js";
import type { VerifyResult } from "./verify-rate.js";
import type { TreeCostResult, TreeCostSide } from "./tree-cost.js";
import { perThousand, type GrowthResult } from "./growth.js";
import type { ProofKindResult, ProofsResult } from "./proofs.js";
import type { LoadResult } from "./load-chain.js";
import { int, ms, ratio } from "./stats.js";
import type { GroupCommits, PhaseUsage } from "./resource-meter.js";
import type { AgentIngestResult } from "./agent-ingest.js";
import type { AgentIdleResult } from "./agent-idle.js";
import type { SourceIngestResult } from "./source-ingest.js";

export interface BenchResults {
  appendBatch?: ThroughputResult;
  rawCopy?: ThroughputResult;
  diyChain?: ThroughputResult;
  unary?: UnaryResult;
  /** Unary latency at lower rates. */
  unarySweep?: UnaryResult[];
  tail?: TailResult;
  verify?: VerifyResult;
  treeCost?: TreeCostResult;
  /** Chains built by bench/load-chain.ts for growth and proofs. */
  loads?: LoadResult[];
  growth?: GrowthResult;
  proofs?: ProofsResult;
  /** Durable ingest through an agent process, with raw COPY of its rows and AppendBatch beside it. */
  agent?: AgentIngestResult;
  agentIdle?: AgentIdleResult;
  /** Per-source ingest through an agent, next to the source's raw consume rate. */
  sources?: SourceIngestResult;
}

export const TARGETS = {
  ledgerOverCopy: 0.7,
  ledgerOverDiy: 5,
  appendP99Ms: 10,
  tailP99Ms: 50,
  verifyPerSecond: 200_000,
  proofP99Ms: 5,
  /** "Flat": the larger chain appends at least this fraction of the smaller one's rate. */
  growthFlat: 0.9,
  agentOverCopy: 0.7,
  /** Agent at rest, MB (10^6 bytes) of RSS. */
  agentIdleRssMB: 60,
  /** Agent CPU at 60 events/min, % of one core. */
  agentCpuPercent: 5,
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
    rows.push([
      `Verify with Merkle recomputation (${int(v.entries)} entries, ${v.checkpoints} checkpoint roots checked, median of ${v.runs.length})`,
      `${int(v.verifyPerSecond)} entries/s`,
      `>= ${int(TARGETS.verifyPerSecond)} entries/s`,
      verdict(v.verifyPerSecond >= TARGETS.verifyPerSecond),
    ]);
    rows.push(["  bare SHA-256 of the same bytes (envelope, leaf, salt‖payload, tree nodes)", `${int(v.sha256PerSecond)} entries/s`, "", ""]);
    rows.push(["  Verify / bare SHA-256", ratio(v.verifyPerSecond / v.sha256PerSecond), "", ""]);
  }
  const tc = r.treeCost;
  if (tc) {
    rows.push(["append with Merkle tree maintenance (in-process Sequencer)", `${int(tc.withTree.rowsPerSecond)} events/s`, "", ""]);
    rows.push(["append without the tree (maintainTree: false)", `${int(tc.withoutTree.rowsPerSecond)} events/s`, "", ""]);
    rows.push(["  with tree / without", ratio(tc.withTree.rowsPerSecond / tc.withoutTree.rowsPerSecond), "", ""]);
  }
  const g = r.growth;
  if (g && g.points.length > 0) {
    for (const p of g.points) rows.push([`AppendBatch into a chain of ${int(p.size)} entries`, `${int(p.rowsPerSecond)} events/s`, "", ""]);
    const first = g.points[0]!;
    const last = g.points[g.points.length - 1]!;
    if (last !== first) {
      const x = last.rowsPerSecond / first.rowsPerSecond;
      rows.push([`  append rate at ${int(last.size)} / at ${int(first.size)}`, ratio(x), `flat (>= ${TARGETS.growthFlat} x)`, verdict(x >= TARGETS.growthFlat)]);
      const cost = (p: typeof first) => perThousand(p, (r) => (r.usage?.cpu ? r.usage.cpu.serverMs + r.usage.cpu.postgresMs : undefined));
      rows.push([`  CPU per event (server + Postgres) at ${int(last.size)} / at ${int(first.size)}`, ratio(cost(last) / cost(first)), "", ""]);
    }
  }
  const pr = r.proofs;
  if (pr) {
    const at = `at ${int(pr.treeSize)} entries`;
    const lat = (name: string, k: ProofKindResult) => {
      rows.push([`${name} ${at}, 1 in flight`, `p50 ${ms(k.sequential.p50)}, p99 ${ms(k.sequential.p99)}`, `p99 < ${TARGETS.proofP99Ms} ms`, verdict(k.sequential.p99 < TARGETS.proofP99Ms)]);
      rows.push([`${name} ${at}, ${pr.concurrency} in flight`, `p50 ${ms(k.concurrent.p50)}, p99 ${ms(k.concurrent.p99)}`, `p99 < ${TARGETS.proofP99Ms} ms`, verdict(k.concurrent.p99 < TARGETS.proofP99Ms)]);
    };
    lat("ProveInclusion", pr.inclusion);
    lat("ProveConsistency", pr.consistency);
    const size = (name: string, k: ProofKindResult) =>
      rows.push([
        `  ${name} proof size (hashes only)`,
        `max ${int(k.sizes.maxBytes)} B, mean ${int(k.sizes.meanBytes)} B${k.sizes.overBound ? `, ${k.sizes.overBound} over their bound` : ""}`,
        `<= 32 x ceil(log2 n) = ${int(k.sizes.boundBytes)} B`,
        verdict(k.sizes.overBound === 0),
      ]);
    size("inclusion", pr.inclusion);
    size("consistency", pr.consistency);
  }
  const ag = r.agent;
  if (ag) {
    const copy = ag.rawCopy.rowsPerSecond;
    for (const run of ag.runs) {
      rows.push([`agent path durable ingest (agent process, generic_polling, outbox fsync ${run.fsync}, committed)`, `${int(run.rowsPerSecond)} events/s`, "", ""]);
      const x = run.rowsPerSecond / copy;
      rows.push([`  agent (fsync ${run.fsync}) / raw COPY of its rows`, ratio(x), `>= ${TARGETS.agentOverCopy} x`, verdict(x >= TARGETS.agentOverCopy)]);
      rows.push([`  agent (fsync ${run.fsync}) / AppendBatch`, ratio(run.rowsPerSecond / ag.appendBatch.rowsPerSecond), "", ""]);
    }
    rows.push(["raw COPY of the agent's rows, same indexes", `${int(copy)} rows/s`, "", ""]);
    rows.push([`AppendBatch, ${int(ag.options.events)} events, ${ag.options.clients} clients (same phase)`, `${int(ag.appendBatch.rowsPerSecond)} events/s`, "", ""]);
  }
  const ai = r.agentIdle;
  if (ai) {
    const mb = ai.idle.rssBytes / 1e6;
    rows.push([`agent RSS at rest (one source, nothing new, ${ai.options.idleSeconds} s)`, `${mb.toFixed(1)} MB`, `< ${TARGETS.agentIdleRssMB} MB`, verdict(mb < TARGETS.agentIdleRssMB)]);
    rows.push([
      `agent CPU at ${int(ai.options.itemsPerSecond * 60)} events/min (${ai.options.trickleSeconds} s)`,
      `${ai.trickleCpuPercent.toFixed(2)} % of a core`,
      `< ${TARGETS.agentCpuPercent} %`,
      verdict(ai.trickleCpuPercent < TARGETS.agentCpuPercent),
    ]);
  }
  for (const src of r.sources?.sources ?? []) {
    rows.push([`${src.source} through an agent into the ledger (committed)`, `${int(src.ledger.eventsPerSecond)} events/s`, "", ""]);
    rows.push([`${src.source} raw consume, same backlog`, `${int(src.raw.eventsPerSecond)} events/s`, "", ""]);
    rows.push([`  ${src.source}: ledger / raw consume`, ratio(src.ratio), "", ""]);
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
  if (r.appendBatch) out[out.length - 1] += commitLine(r.appendBatch.usage) + walLine(r.appendBatch.usage, r.appendBatch.rows);
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
    out.push(
      `Verify rebuilt the Merkle tree and checked the signature and root of all ${v.checkpoints} signed checkpoints in the range (its verdict's checkpoints_checked). ` +
        `Bare SHA-256 without the tree's hashes (envelope + salt‖payload only): ${int(v.sha256ChainOnlyPerSecond)} entries/s.`,
    );
  }
  if (r.treeCost) {
    const tc = r.treeCost;
    const side = (name: string, s: TreeCostSide) => {
      const rows = s.runs.reduce((a, x) => a + x.rows, 0);
      const sum = (pick: (u: PhaseUsage | undefined) => number | undefined) => s.runs.reduce((a, x) => a + (pick(x.usage) ?? NaN), 0);
      const commits = s.runs.reduce((a, x) => a + x.commits, 0);
      const wal = sum((u) => u?.wal?.bytes);
      return (
        `${name}: ${s.runs.map((x) => int(x.rowsPerSecond)).join(", ")} events/s; per 1,000 events: sequencer (bench process) ${ms((1000 * sum((u) => u?.cpu?.benchMs)) / rows)}, ` +
        `Postgres ${ms((1000 * sum((u) => u?.cpu?.postgresMs)) / rows)}, WAL ${int((1000 * wal) / rows / 1024)} KiB; ${(rows / commits).toFixed(0)} events per commit`
      );
    };
    out.push(`tree cost, ${int(tc.eventsPerWindow)} events per window. ${side("With the tree", tc.withTree)}. ${side("Without", tc.withoutTree)}.`);
    out.push(`the tree-less chain's tree (${int(tc.rebuild.entries)} entries) was then built in one commit in ${tc.rebuild.seconds.toFixed(2)} s (${int(tc.rebuild.entries / tc.rebuild.seconds)} entries/s).`);
  }
  for (const l of r.loads ?? []) {
    out.push(
      l.seconds > 0
        ? `loaded chain ${l.chain}: ${int(l.size - l.fromSize)} entries in ${l.seconds.toFixed(1)} s (${int(l.entriesPerSecond)}/s) + VACUUM (ANALYZE) ${l.vacuumSeconds.toFixed(1)} s, ${l.checkpoints} signed checkpoints`
        : `chain ${l.chain}: ${int(l.size)} entries already loaded (reused)`,
    );
  }
  if (r.growth) {
    for (const p of r.growth.points) {
      out.push(
        `growth, chain of ${int(p.size)}: ${p.runs.map((x) => int(x.rowsPerSecond)).join(", ")} events/s (windows of ${int(r.growth.eventsPerWindow)}); per 1,000 events: ` +
          `server ${ms(perThousand(p, (x) => x.usage?.cpu?.serverMs))}, Postgres ${ms(perThousand(p, (x) => x.usage?.cpu?.postgresMs))}, ` +
          `WAL ${int(perThousand(p, (x) => x.usage?.wal?.bytes) / 1024)} KiB of which ${int(perThousand(p, (x) => x.usage?.wal?.fpi))} full-page images; ` +
          `steal ${Math.round((100 * p.runs.reduce((a, x) => a + (x.usage?.cpu?.stealMs ?? 0), 0)) / p.runs.reduce((a, x) => a + (x.usage?.cpu ? x.usage.cpu.wallMs * x.usage.cpu.cores : NaN), 0))} %, ` +
          `other processes ${Math.round((100 * p.runs.reduce((a, x) => a + (x.usage?.cpu?.otherMs ?? 0), 0)) / p.runs.reduce((a, x) => a + (x.usage?.cpu ? x.usage.cpu.wallMs * x.usage.cpu.cores : NaN), 0))} %.` +
          commitLine({
            commits: p.runs.reduce<GroupCommits>(
              (a, x) => ({ commits: a.commits + (x.usage?.commits?.commits ?? 0), events: a.events + (x.usage?.commits?.events ?? 0), seconds: a.seconds + (x.usage?.commits?.seconds ?? 0) }),
              { commits: 0, events: 0, seconds: 0 },
            ),
          }),
      );
    }
  }
  if (r.proofs) {
    const pr = r.proofs;
    const k = (name: string, x: ProofKindResult) =>
      `${name}: 1 in flight p90 ${ms(x.sequential.p90)}, max ${ms(x.sequential.max)}; ${pr.concurrency} in flight p90 ${ms(x.concurrent.p90)}, max ${ms(x.concurrent.max)}; ` +
      `${x.sizes.meanHashes.toFixed(1)} hashes on average (max ${x.sizes.maxHashes}), whole response ${int(x.sizes.meanMessageBytes)} B on average`;
    const count = pr.inclusion.sequential.count + pr.inclusion.concurrent.count + pr.consistency.sequential.count + pr.consistency.concurrent.count;
    out.push(`proofs on ${pr.chain} (checkpoint of ${int(pr.treeSize)}): ${k("inclusion", pr.inclusion)}. ${k("consistency", pr.consistency)}.`);
    out.push(`all ${int(pr.verified)} proofs verified on the client with the chain module. ${cpuLine(pr.usage, count, "proof")}`);
  }
  if (r.agent) {
    const ag = r.agent;
    const o = ag.options;
    for (const run of ag.runs) {
      const cpu = run.usage?.cpu;
      const per = (x: number | undefined) => ms((1000 * (x ?? NaN)) / run.events);
      out.push(
        `agent path, outbox fsync ${run.fsync} (chain ${run.chain}): ${int(run.events)} events in ${run.seconds.toFixed(2)} s from the first measured page served to the last commit ` +
          `(pages of ${int(o.pageSize)} new items, interval_ms ${o.intervalMs}, ${run.polls} polls; the source had read its last page after ${run.sourceSeconds.toFixed(2)} s; ` +
          `Ingest batches of at most ${int(o.agentBatchEvents ?? 1000)} events), ` +
          `after ${int(o.warmup)} warm-up events. CPU per 1,000 events: agent process ${per(run.agentCpuMs)}, server ${per(cpu?.serverMs)}, Postgres ${per(cpu?.postgresMs)}, ` +
          `bench process (endpoint, polling the head) ${per(cpu?.benchMs)}; agent peak RSS ${(run.agentPeakRssBytes / 1e6).toFixed(0)} MB.` +
          (cpu
            ? ` Share of the machine (${cpu.cores} cores): agent ${Math.round((100 * run.agentCpuMs) / (cpu.wallMs * cpu.cores))} %, server ${Math.round((100 * cpu.serverMs) / (cpu.wallMs * cpu.cores))} %, ` +
              `Postgres ${Math.round((100 * cpu.postgresMs) / (cpu.wallMs * cpu.cores))} %, other processes ${Math.round((100 * Math.max(0, cpu.otherMs - run.agentCpuMs)) / (cpu.wallMs * cpu.cores))} %, ` +
              `steal ${Math.round((100 * cpu.stealMs) / (cpu.wallMs * cpu.cores))} %, idle ${Math.round((100 * cpu.idleMs) / (cpu.wallMs * cpu.cores))} %.`
            : "") +
          commitLine(run.usage) +
          walLine(run.usage, run.events),
      );
    }
    out.push(`raw COPY of the agent's rows (${ag.runs[0]!.chain}, warm-up included): ${int(ag.rawCopy.rows)} rows in ${ag.rawCopy.seconds.toFixed(2)} s. ${cpuLine(ag.rawCopy.usage, ag.rawCopy.rows / 1000, "1,000 rows")}`);
    out.push(
      `AppendBatch beside it: ${int(ag.appendBatch.rows)} bench events in ${ag.appendBatch.seconds.toFixed(2)} s, batches of ${int(o.batchSize)}, ${o.clients} clients. ` +
        cpuLine(ag.appendBatch.usage, ag.appendBatch.rows / 1000, "1,000 events") +
        commitLine(ag.appendBatch.usage),
    );
  }
  if (r.agentIdle) {
    const ai = r.agentIdle;
    const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;
    out.push(
      `agent at rest (generic_polling, interval_ms ${ai.intervalMs}, endpoint answering 304): started and committed its first event in ${ai.startSeconds.toFixed(1)} s; ` +
        `over ${ai.options.idleSeconds} s RSS ${mb(ai.idleRssMinBytes)}-${mb(ai.idleRssMaxBytes)} (peak since start ${mb(ai.idle.hwmBytes)}), ` +
        `CPU ${ai.idleCpuPercent.toFixed(2)} % of a core, ${ai.idlePolls} polls; ${ai.idle.processes} process(es), RSS of all ${mb(ai.idle.treeRssBytes)}.`,
    );
    out.push(
      `agent at ${int(ai.options.itemsPerSecond * 60)} events/min: ${ai.trickleEvents} events committed, ${ai.tricklePolls} polls in ${ai.options.trickleSeconds} s, ` +
        `CPU ${ai.trickleCpuPercent.toFixed(2)} % of a core, RSS ${mb(ai.trickle.rssBytes)} at the end.`,
    );
  }
  for (const src of r.sources?.sources ?? []) {
    out.push(
      `${src.source}: backlog of ${int(src.events)} events of ${int(r.sources!.options.padBytes)} filler bytes. Raw: ${src.raw.how}, ${src.raw.seconds.toFixed(2)} s. ` +
        `Through the agent (outbox fsync per-batch, committed): ${src.ledger.seconds.toFixed(2)} s from the first committed entry to the last; agent CPU ${src.ledger.agentCpuMsPer1000.toFixed(0)} ms per 1,000 events, peak RSS ${src.ledger.agentPeakRssMB.toFixed(0)} MB.`,
    );
  }
  return out;
}

/** WAL written per 1,000 units (cluster-wide, from pg_stat_wal). */
export function walLine(usage: PhaseUsage | undefined, units: number): string {
  const w = usage?.wal;
  if (!w) return "";
  return ` WAL per 1,000: ${int((1000 * w.bytes) / units / 1024)} KiB, ${int((1000 * w.fpi) / units)} full-page images.`;
}
