// Starts the ledger server for the benchmark, in its own process (default: the server
// gets its own event loop, as in production, so the load generator does not delay it)
// or in the bench process.
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { configFromEnv } from "../server/config.js";
import { startLedgerServer } from "../server/ledger-server.js";
import { createLogger } from "../server/ops/logger.js";

export interface BenchServer {
  url: string;
  /** Process id of the server (the bench's own when in-process). */
  pid: number;
  close(): Promise<void>;
}

export async function startBenchServer(mode: "child" | "inprocess", databaseUrl: string, cpuProfDir?: string): Promise<BenchServer> {
  if (mode === "inprocess") {
    const server = await startLedgerServer(
      { ...configFromEnv({}), port: 0, databaseUrl, bootstrapAdminKey: false, shutdownGraceMs: 2000 },
      createLogger("silent"),
    );
    return { url: server.url, pid: process.pid, close: () => server.close() };
  }
  const execArgv = ["--import", "tsx"];
  if (cpuProfDir) execArgv.push("--cpu-prof", `--cpu-prof-dir=${cpuProfDir}`);
  const child = fork(fileURLToPath(new URL("./server-process.ts", import.meta.url)), [], {
    execArgv,
    env: { ...process.env, BENCH_DATABASE_URL: databaseUrl },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    child.once("message", (m) => resolve((m as { url: string }).url));
    void exited.then((code) => reject(new Error(`the server process exited with ${code} before listening`)));
  });
  return {
    url,
    pid: child.pid!,
    async close() {
      child.kill("SIGTERM");
      await exited;
    },
  };
}
