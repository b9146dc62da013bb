// Durable ingest through AppendBatch: several clients, each on its own HTTP/2
// connection (Connect protocol, binary protobuf), send batches back to back; an event
// counts once its batch is acknowledged, which the server does only after COMMIT.
import type { LedgerClient } from "../clients/node/ledger-client.js";
import type { EventInput } from "../gen/auditledger/v1/entry_pb.js";
import { benchBatch } from "./events.js";
import { secondsSince } from "./stats.js";
import { noMeter, type Meter, type PhaseUsage } from "./resource-meter.js";

export interface ThroughputResult {
  rows: number;
  seconds: number;
  rowsPerSecond: number;
  usage?: PhaseUsage;
}

/**
 * Appends `events` events in batches of `batchSize` from `clients.length` concurrent
 * clients. Requests are built before the clock starts (request building is the
 * producer's cost, not the ledger's); encoding them is inside the measurement.
 * `firstEvent` numbers the events (bench/events.ts) from there on.
 */
export async function appendBatches(
  clients: LedgerClient[],
  events: number,
  batchSize: number,
  keyPrefix: string,
  meter: Meter = noMeter,
  firstEvent = 0,
): Promise<ThroughputResult> {
  const batches: EventInput[][] = [];
  for (let first = 0; first < events; first += batchSize) batches.push(benchBatch(firstEvent + first, Math.min(batchSize, events - first), keyPrefix));
  let next = 0;
  let acked = 0;
  await meter.start();
  const started = performance.now();
  await Promise.all(
    clients.map(async (client) => {
      for (let i = next++; i < batches.length; i = next++) {
        const res = await client.ledger.appendBatch({ events: batches[i]! });
        acked += res.results.length;
      }
    }),
  );
  const seconds = secondsSince(started);
  const usage = await meter.stop();
  if (acked !== events) throw new Error(`AppendBatch acknowledged ${acked} of ${events} events`);
  return { rows: events, seconds, rowsPerSecond: events / seconds, usage };
}
