// What a measurement cost and where it went (Linux /proc, plus the server's metrics):
// CPU time of the ledger server process, of the Postgres processes doing the work, of
// the bench process itself (load generator, the baselines' client side), and of
// everything else on the machine (other processes) plus what the hypervisor stole;
// and how the server's group commit behaved. On a shared 2-core machine this tells a
// figure that is the ledger's own cost from one that is contention.
import { readFileSync } from "node:fs";
import type pg from "pg";

const TICK_MS = 10; // USER_HZ is 100 on Linux

export interface CpuBreakdown {
  wallMs: number;
  serverMs: number;
  postgresMs: number;
  benchMs: number;
  /** Busy time of the machine not accounted above: other processes. */
  otherMs: number;
  /** Time the hypervisor ran something else on our cores. */
  stealMs: number;
  idleMs: number;
  cores: number;
}

/** Group commits of the ledger during the measurement (from its /metrics). */
export interface GroupCommits {
  commits: number;
  events: number;
  /** Total seconds inside commit transactions (lock to COMMIT). */
  seconds: number;
}

/**
 * WAL the cluster wrote during the measurement (pg_stat_wal, so it includes anything
 * else running on the cluster): records, full-page images and bytes.
 */
export interface WalUsage {
  records: number;
  fpi: number;
  bytes: number;
}

export interface PhaseUsage {
  cpu?: CpuBreakdown;
  commits?: GroupCommits;
  wal?: WalUsage;
}

/** Starts and stops around exactly the timed part of a measurement. */
export interface Meter {
  start(): Promise<void>;
  stop(): Promise<PhaseUsage>;
}

/** The ledger server as the meter sees it (bench-server.ts). */
export interface MeteredServer {
  url: string;
  /** Undefined when the server runs in the bench process (its CPU counts as the bench's). */
  pid: number | undefined;
  profileStart(): Promise<void>;
  profileStop(name: string): Promise<void>;
}

function processTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]); // utime + stime (fields 14 and 15)
  } catch {
    return undefined;
  }
}

function machineTicks(): { busy: number; idle: number; steal: number; cores: number } | undefined {
  try {
    const lines = readFileSync("/proc/stat", "utf8").split("\n");
    const [, user, nice, system, idle, iowait, irq, softirq, steal] = lines[0]!.trim().split(/\s+/).map(Number);
    const cores = lines.filter((l) => /^cpu\d/.test(l)).length;
    return { busy: user! + nice! + system! + irq! + softirq!, idle: idle! + iowait!, steal: steal!, cores };
  } catch {
    return undefined;
  }
}

/**
 * Postgres processes doing the benchmark's work: backends on its database, and the
 * shared WAL writer, checkpointer and background writer (which also serve anything
 * else running on the cluster at the time).
 */
async function postgresTicks(admin: pg.Client, database: string): Promise<Map<number, number>> {
  const res = await admin.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity
     WHERE datname = $1 OR backend_type IN ('walwriter', 'checkpointer', 'background writer')`,
    [database],
  );
  const out = new Map<number, number>();
  for (const { pid } of res.rows) {
    const t = processTicks(pid);
    if (t !== undefined) out.set(pid, t);
  }
  return out;
}

async function groupCommits(url: string): Promise<GroupCommits | undefined> {
  try {
    const text = await (await fetch(`${url}/metrics`)).text();
    const value = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, "m").exec(text)?.[1] ?? NaN);
    const commits = value("audit_ledger_commit_batch_events_count");
    if (Number.isNaN(commits)) return undefined;
    return { commits, events: value("audit_ledger_commit_batch_events_sum"), seconds: value("audit_ledger_commit_seconds_sum") };
  } catch {
    return undefined;
  }
}

async function walStats(admin: pg.Client): Promise<WalUsage | undefined> {
  try {
    const res = await admin.query<{ wal_records: string; wal_fpi: string; wal_bytes: string }>("SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal");
    const r = res.rows[0]!;
    return { records: Number(r.wal_records), fpi: Number(r.wal_fpi), bytes: Number(r.wal_bytes) };
  } catch {
    return undefined;
  }
}

/**
 * A meter for one measured window, named `phase` (the server's CPU profile of the
 * window, when profiling is on, is written under that name). Backends that close during
 * the window are not counted; the server's pool keeps idle connections for 10 s, longer
 * than any gap inside a phase.
 */
export function resourceMeter(admin: pg.Client, database: string, server: MeteredServer, phase: string): Meter {
  const serverPid = server.pid;
  let startWall = 0;
  let startServer = 0;
  let startPostgres = new Map<number, number>();
  let startBench = process.cpuUsage();
  let startMachine: ReturnType<typeof machineTicks>;
  let startCommits: GroupCommits | undefined;
  let startWal: WalUsage | undefined;
  return {
    async start() {
      startCommits = await groupCommits(server.url);
      startWal = await walStats(admin);
      startPostgres = await postgresTicks(admin, database);
      await server.profileStart();
      startServer = serverPid ? (processTicks(serverPid) ?? 0) : 0;
      startMachine = machineTicks();
      startBench = process.cpuUsage();
      startWall = performance.now();
    },
    async stop() {
      const wallMs = performance.now() - startWall;
      const bench = process.cpuUsage(startBench);
      const machine = machineTicks();
      const serverTicks = serverPid ? (processTicks(serverPid) ?? 0) - startServer : 0;
      await server.profileStop(phase);
      const postgres = await postgresTicks(admin, database);
      const endCommits = await groupCommits(server.url);
      const endWal = await walStats(admin);
      const wal =
        startWal && endWal ? { records: endWal.records - startWal.records, fpi: endWal.fpi - startWal.fpi, bytes: endWal.bytes - startWal.bytes } : undefined;
      const commits =
        startCommits && endCommits
          ? { commits: endCommits.commits - startCommits.commits, events: endCommits.events - startCommits.events, seconds: endCommits.seconds - startCommits.seconds }
          : undefined;
      if (!machine || !startMachine) return { commits, wal };
      let pgTicks = 0;
      for (const [pid, t] of postgres) pgTicks += t - (startPostgres.get(pid) ?? 0);
      const benchMs = (bench.user + bench.system) / 1000;
      const busyMs = (machine.busy - startMachine.busy) * TICK_MS;
      const serverMs = serverTicks * TICK_MS;
      const postgresMs = pgTicks * TICK_MS;
      const cpu: CpuBreakdown = {
        wallMs,
        serverMs,
        postgresMs,
        benchMs,
        otherMs: Math.max(0, busyMs - serverMs - postgresMs - benchMs),
        stealMs: (machine.steal - startMachine.steal) * TICK_MS,
        idleMs: (machine.idle - startMachine.idle) * TICK_MS,
        cores: machine.cores,
      };
      return { cpu, commits, wal };
    },
  };
}

/** A meter that measures nothing. */
export const noMeter: Meter = { start: async () => undefined, stop: async () => ({}) };
