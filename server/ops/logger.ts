// Structured JSON logs (one object per line) through pino.
import { pino, type Logger } from "pino";

export type { Logger };

export function createLogger(level = process.env.LOG_LEVEL ?? "info"): Logger {
  return pino({ level, base: { service: "audit-ledger" }, timestamp: pino.stdTimeFunctions.isoTime });
}
