// The ledger server as its own process for the benchmark (bench/bench-server.ts forks
// it): the same startLedgerServer the CLI runs, with logging off. Reports its URL to
// the parent over IPC and stops gracefully on SIGTERM, so --cpu-prof profiles get written.
import { configFromEnv } from "../server/config.js";
import { startLedgerServer } from "../server/ledger-server.js";
import { createLogger } from "../server/ops/logger.js";

const server = await startLedgerServer(
  { ...configFromEnv({}), port: 0, databaseUrl: process.env.BENCH_DATABASE_URL ?? "", bootstrapAdminKey: false, shutdownGraceMs: 2000 },
  createLogger("silent"),
);
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
