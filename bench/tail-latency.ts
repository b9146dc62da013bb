// Live tail: a StreamEvents subscriber listens while events are appended at a steady
// rate; each event's latency runs from its append (scheduled send) to the moment the
// subscriber holds it. Also reported: from the append's acknowledgement (COMMIT done)
// to receipt, which isolates the tail path (NOTIFY, page read, push).
import type { LedgerClient } from "../clients/node/ledger-client.js";
import { benchEvent } from "./events.js";
import { openLoop } from "./open-loop.js";
import { sleep, summarize, type LatencySummary } from "./stats.js";
import { noMeter, type Meter, type PhaseUsage } from "./resource-meter.js";

export interface TailResult {
  rate: number;
  seconds: number;
  sendToReceive: LatencySummary;
  ackToReceive: LatencySummary;
  /** Events the subscriber had before the appender had its acknowledgement. */
  receivedBeforeAck: number;
  missing: number;
  usage?: PhaseUsage;
}

export async function tailLatency(appender: LedgerClient, subscriber: LedgerClient, rate: number, seconds: number, meter: Meter = noMeter): Promise<TailResult> {
  const total = Math.round(rate * seconds);
  const received = new Map<number, number>();
  const abort = new AbortController();
  let primed = false;
  let onAll: () => void = () => undefined;
  const allReceived = new Promise<void>((r) => (onAll = r));

  const consumer = (async () => {
    try {
      for await (const res of subscriber.ledger.streamEvents({}, { signal: abort.signal })) {
        const now = performance.now();
        const key = res.entry?.idempotencyKey ?? "";
        if (key.startsWith("tail-primer-")) primed = true;
        else if (key.startsWith("tail-")) {
          received.set(Number(key.slice(5)), now);
          if (received.size === total) onAll();
        }
      }
    } catch (err) {
      if (!abort.signal.aborted) throw err;
    }
  })();

  // The subscription starts at the head as of its arrival: append primers until one
  // shows up, so the measured events all follow an established subscription.
  for (let i = 0; !primed; i++) {
    if (i > 100) throw new Error("the live-tail subscriber received nothing for 10 s");
    await appender.ledger.append({ event: benchEvent(i, "tail-primer") });
    await sleep(100);
  }

  const due: number[] = new Array(total);
  const acked: number[] = new Array(total);
  await meter.start();
  const run = await openLoop(rate, seconds, async (i, at) => {
    due[i] = at;
    await appender.ledger.append({ event: benchEvent(i, "tail") });
    acked[i] = performance.now();
  });
  if (run.errors > 0) throw new Error(`tail appends: ${run.errors} failed; first: ${String(run.firstError)}`);
  await Promise.race([allReceived, sleep(10_000)]);
  const usage = await meter.stop();
  abort.abort();
  await consumer;

  const sendToReceive: number[] = [];
  const ackToReceive: number[] = [];
  let receivedBeforeAck = 0;
  for (const [i, at] of received) {
    sendToReceive.push(at - due[i]!);
    if (at < acked[i]!) receivedBeforeAck++;
    ackToReceive.push(Math.max(0, at - acked[i]!));
  }
  return {
    rate,
    seconds,
    sendToReceive: summarize(sendToReceive),
    ackToReceive: summarize(ackToReceive),
    receivedBeforeAck,
    missing: total - received.size,
    usage,
  };
}
