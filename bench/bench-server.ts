// Starts the ledger server for the benchmark, in its own process (default: the server
// gets its own event loop, as in production, so the load generator does not delay it)
// or in the bench process.
import { fork } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { configFromEnv } from "../server/config.js";
import { startLedgerServer } from "../server/ledger-server.js";
import { createLogger } from "../server/ops/logger.js";
import { BENCH_KEYS } from "./bench-keys.js";

export interface BenchServer {
  url: string;
  /** Process id of the server; undefined when it runs in the bench process. */
  pid: number | undefined;
  /** Starts a CPU profile of the server process (child mode only). */
  profileStart(): Promise<void>;
  /** Stops it and writes DIR/<name>.cpuprofile (open in Chrome DevTools or speedscope). */
  profileStop(name: string): Promise<void>;
  close(): Promise<void>;
}

export async function startBenchServer(mode: "child" | "inprocess", databaseUrl: string, cpuProfDir?: string): Promise<BenchServer> {
  if (mode === "inprocess") {
    const server = await startLedgerServer(
      { ...configFromEnv({}), port: 0, databaseUrl, bootstrapAdminKey: false, shutdownGraceMs: 2000, keysDir: BENCH_KEYS.dir, ledgerName: BENCH_KEYS.name },
      createLogger("silent"),
    );
    return { url: server.url, pid: undefined, profileStart: async () => undefined, profileStop: async () => undefined, close: () => server.close() };
  }
  const child = fork(fileURLToPath(new URL("./server-process.ts", import.meta.url)), [], {
    execArgv: ["--import", "tsx"],
    env: { ...process.env, BENCH_DATABASE_URL: databaseUrl },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const onMessage = (m: { url?: string }) => {
      if (m.url) {
        child.off("message", onMessage);
        resolve(m.url);
      }
    };
    child.on("message", onMessage);
    void exited.then((code) => reject(new Error(`the server process exited with ${code} before listening`)));
  });
  let nextId = 0;
  const ask = (msg: object) =>
    new Promise<void>((resolve) => {
      const id = nextId++;
      const onMessage = (m: { done?: number }) => {
        if (m.done === id) {
          child.off("message", onMessage);
          resolve();
        }
      };
      child.on("message", onMessage);
      child.send({ ...msg, id });
    });
  return {
    url,
    pid: child.pid,
    profileStart: () => (cpuProfDir ? ask({ profile: "start" }) : Promise.resolve()),
    profileStop: (name) => (cpuProfDir ? ask({ profile: "stop", file: join(cpuProfDir, `${name}.cpuprofile`) }) : Promise.resolve()),
    async close() {
      child.kill("SIGTERM");
      await exited;
    },
  };
}
