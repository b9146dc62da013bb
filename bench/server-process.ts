// The ledger server as its own process for the benchmark (bench/bench-server.ts forks
// it): the same startLedgerServer the CLI runs, with logging off. Reports its URL to
// the parent over IPC and stops gracefully on SIGTERM. On request it records a V8 CPU
// profile of exactly one measurement window (--cpu-prof).
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { configFromEnv } from "../server/config.js";
import { startLedgerServer } from "../server/ledger-server.js";
import { createLogger } from "../server/ops/logger.js";
import { BENCH_KEYS } from "./bench-keys.js";

const server = await startLedgerServer(
  { ...configFromEnv({}), port: 0, databaseUrl: process.env.BENCH_DATABASE_URL ?? "", bootstrapAdminKey: false, shutdownGraceMs: 2000,
    keysDir: BENCH_KEYS.dir, ledgerName: BENCH_KEYS.name },
  createLogger("silent"),
);

let profiler: Session | null = null;
process.on("message", (msg: { profile?: "start" | "stop"; file?: string; id: number }) => {
  void (async () => {
    if (msg.profile === "start") {
      profiler = new Session();
      profiler.connect();
      await profiler.post("Profiler.enable");
      await profiler.post("Profiler.setSamplingInterval", { interval: 500 });
      await profiler.post("Profiler.start");
    } else if (msg.profile === "stop" && profiler) {
      const { profile } = await profiler.post("Profiler.stop");
      if (msg.file) writeFileSync(msg.file, JSON.stringify(profile));
      profiler.disconnect();
      profiler = null;
    }
    process.send?.({ done: msg.id });
  })();
});
process.send?.({ url: server.url });

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  server.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.on("SIGTERM", stop);
process.on("disconnect", stop);
