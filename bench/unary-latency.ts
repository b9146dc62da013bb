// Unary Append latency at a fixed request rate: one event per request on one HTTP/2
// connection, open loop, so the server's group commit batches whatever is concurrent.
import type { LedgerClient } from "../clients/node/ledger-client.js";
import { benchEvent } from "./events.js";
import { openLoop } from "./open-loop.js";
import { summarize, type LatencySummary } from "./stats.js";
import { noMeter, type Meter, type PhaseUsage } from "./resource-meter.js";

export interface UnaryResult extends LatencySummary {
  rate: number;
  achievedRate: number;
  completedRate: number;
  seconds: number;
  errors: number;
  worstSendLagMs: number;
  usage?: PhaseUsage;
}

export async function unaryLatency(client: LedgerClient, rate: number, seconds: number, warmupSeconds: number, meter: Meter = noMeter): Promise<UnaryResult> {
  const send = (prefix: string) => (i: number) => client.ledger.append({ event: benchEvent(i, prefix) });
  // Warm-up (not recorded): JIT, connection and pool reach steady state.
  await openLoop(rate, warmupSeconds, send(`unary-${rate}-warmup`));
  await meter.start();
  // Keys unique per rate, so no request is answered from the idempotency path.
  const run = await openLoop(rate, seconds, send(`unary-${rate}`));
  const usage = await meter.stop();
  if (run.errors > 0) throw new Error(`unary Append: ${run.errors} requests failed; first: ${String(run.firstError)}`);
  return { ...summarize(run.latencies), rate, achievedRate: run.achievedRate, completedRate: run.completedRate, seconds, errors: run.errors, worstSendLagMs: run.worstSendLagMs, usage };
}
