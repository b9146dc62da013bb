// Where the CPU goes during a measurement (Linux /proc): CPU time of the ledger server
// process, of the Postgres backends serving the benchmark database, of the bench
// process itself (load generator, baselines' client side), and of everything else on
// the machine (other processes, Postgres' WAL writer and checkpointer) plus what the
// hypervisor stole. On a shared 2-core machine this tells a slow figure that is the
// ledger's cost from one that is contention. Figures are CPU milliseconds.
import { readFileSync } from "node:fs";
import type pg from "pg";

const TICK_MS = 10; // USER_HZ is 100 on Linux

export interface CpuBreakdown {
  wallMs: number;
  serverMs: number;
  postgresMs: number;
  benchMs: number;
  /** Busy time of the whole machine not accounted above. */
  otherMs: number;
  /** Time the hypervisor ran someone else on our cores. */
  stealMs: number;
  idleMs: number;
  cores: number;
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

/** Starts and stops around exactly the timed part of a measurement. */
export interface Meter {
  start(): Promise<void>;
  stop(): Promise<CpuBreakdown | undefined>;
}

/**
 * Postgres processes doing the benchmark's work: backends on its database, and the
 * shared WAL writer, checkpointer and background writer (which also serve anything
 * else running on the cluster at the time).
 */
async function postgresProcesses(admin: pg.Client, database: string): Promise<Map<number, number>> {
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

/**
 * A meter for the ledger server process `serverPid` (undefined when the server runs in
 * the bench process, whose CPU then counts as the bench's), the Postgres processes of
 * `database`, the bench process and the machine. Backends that close during the
 * measurement are not counted; the server's pool keeps idle connections for 10 s,
 * longer than any gap inside a phase.
 */
export function cpuMeter(admin: pg.Client, database: string, serverPid: number | undefined): Meter {
  let startWall = 0;
  let startServer = 0;
  let startPostgres = new Map<number, number>();
  let startBench = process.cpuUsage();
  let startMachine: ReturnType<typeof machineTicks>;
  return {
    async start() {
      startPostgres = await postgresProcesses(admin, database);
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
      const postgres = await postgresProcesses(admin, database);
      if (!machine || !startMachine) return undefined;
      let postgresTicks = 0;
      for (const [pid, t] of postgres) postgresTicks += t - (startPostgres.get(pid) ?? 0);
      const benchMs = (bench.user + bench.system) / 1000;
      const busyMs = (machine.busy - startMachine.busy) * TICK_MS;
      const serverMs = serverTicks * TICK_MS;
      const postgresMs = postgresTicks * TICK_MS;
      return {
        wallMs,
        serverMs,
        postgresMs,
        benchMs,
        otherMs: Math.max(0, busyMs - serverMs - postgresMs - benchMs),
        stealMs: (machine.steal - startMachine.steal) * TICK_MS,
        idleMs: (machine.idle - startMachine.idle) * TICK_MS,
        cores: machine.cores,
      };
    },
  };
}

/** A meter that measures nothing (no /proc, or not wanted). */
export const noMeter: Meter = { start: async () => undefined, stop: async () => undefined };
