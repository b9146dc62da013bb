// The agent's side of Ingest (docs/agent-protocol.md): sends the outbox's unacked
// records as signed batches within the credit the server grants, acks the outbox as
// the server's acks arrive (each after COMMIT), sends heartbeats, and reconnects with
// backoff, resuming from the first unacked record. Acks and rejections arrive in batch
// order, so the outbox is released strictly in order.
import { create } from "@bufbuild/protobuf";
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import {
  AgentRegistryService,
  IngestRequestSchema,
  type IngestHeartbeat,
  type IngestRequest,
} from "../../gen/auditledger/v1/agent_registry_service_pb.js";
import type { EventInput } from "../../gen/auditledger/v1/entry_pb.js";
import type { Outbox } from "../outbox/index.js";
import { decodeOutboxEvent, type OutboxEvent } from "./outbox-record.js";
import { signBatch } from "./batch-signer.js";

export interface IngestStreamOptions {
  transport: Transport;
  zid: string;
  chain: string;
  credential: string;
  sign(message: Uint8Array): Uint8Array;
  outbox: Outbox;
  /** Most events per batch (the credit may allow fewer). */
  maxBatchEvents: number;
  /** Most bytes of records read into one batch. */
  maxBatchBytes: number;
  /** Most record bytes sent and not yet acked (memory bound beside the event credit). */
  maxInFlightBytes: number;
  heartbeatIntervalMs: number;
  /** Heartbeat contents, read at each beat. */
  heartbeat(): Omit<IngestHeartbeat, "$typeName">;
  /** Called for each record the server committed (to count and for lag). */
  onCommitted?(events: OutboxEvent[]): void;
  /**
   * Called when the server refuses a batch for good (it will never accept those
   * events): the agent must record the loss as a `gap` before the records are released.
   */
  onRejected(events: OutboxEvent[], code: string, message: string): Promise<void>;
  log: { info(o: object, m: string): void; warn(o: object, m: string): void; error(o: object, m: string): void };
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

interface InFlight {
  batchNumber: bigint;
  lastRecordSeq: number;
  events: OutboxEvent[];
  bytes: number;
}

/** An async iterable the session writes requests into. */
class RequestQueue implements AsyncIterable<IngestRequest> {
  private readonly items: IngestRequest[] = [];
  private wake: (() => void) | null = null;
  private closed = false;

  push(r: IngestRequest): void {
    this.items.push(r);
    this.wake?.();
  }

  close(): void {
    this.closed = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<IngestRequest> {
    for (;;) {
      while (this.items.length > 0) yield this.items.shift()!;
      if (this.closed) return;
      await new Promise<void>((r) => (this.wake = r));
      this.wake = null;
    }
  }
}

export class IngestStream {
  private readonly client: Client<typeof AgentRegistryService>;
  private readonly stopping = new AbortController();
  private running: Promise<void> | null = null;
  /** Records up to here are sent one per batch (they were in a refused batch). */
  private isolateThrough = -1;

  constructor(private readonly o: IngestStreamOptions) {
    this.client = createClient(AgentRegistryService, o.transport);
  }

  start(): void {
    this.running ??= this.loop();
  }

  /** Ends the stream; records not yet acked stay in the outbox for next time. */
  async stop(): Promise<void> {
    this.stopping.abort();
    await this.running;
  }

  private async loop(): Promise<void> {
    const min = this.o.minBackoffMs ?? 200;
    const max = this.o.maxBackoffMs ?? 30_000;
    let backoff = min;
    while (!this.stopping.signal.aborted) {
      // Backoff resets after a session that made progress (an ack) or lasted: a stream
      // the server welcomes but then always ends (a batch it cannot read) must not make
      // the agent reconnect every 200 ms forever.
      const progressed = { value: false };
      const began = Date.now();
      try {
        await this.session(progressed);
      } catch (err) {
        if (this.stopping.signal.aborted) break;
        this.o.log.warn({ err: String((err as Error)?.message ?? err) }, "ingest stream ended; reconnecting");
      }
      if (progressed.value || Date.now() - began > 10_000) backoff = min;
      // Full jitter: replicas of a fleet must not reconnect in lockstep.
      await sleep(Math.random() * backoff, this.stopping.signal);
      backoff = Math.min(max, backoff * 2);
    }
  }

  private async session(progressed: { value: boolean }): Promise<void> {
    const o = this.o;
    const abort = new AbortController();
    const onStop = () => abort.abort();
    this.stopping.signal.addEventListener("abort", onStop);
    const requests = new RequestQueue();
    const inflight: InFlight[] = [];
    let credit = 0;
    // Record bytes sent and not yet acked: credit counts events, and a few thousand
    // large events must not all sit in memory at once.
    let inFlightBytes = 0;
    let senderError: unknown = null;
    const creditWake: { fn: (() => void) | null } = { fn: null };
    let cursor = o.outbox.firstUnacked;
    requests.push(create(IngestRequestSchema, { message: { case: "hello", value: { zid: o.zid, credential: o.credential, resumeFromBatch: BigInt(cursor) } } }));

    const beat = setInterval(() => {
      requests.push(create(IngestRequestSchema, { message: { case: "heartbeat", value: o.heartbeat() } }));
    }, o.heartbeatIntervalMs);
    beat.unref();

    const sender = async () => {
      while (!abort.signal.aborted) {
        if (credit <= 0 || inFlightBytes >= o.maxInFlightBytes) {
          // The abort listener goes when credit wakes the sender: one per wait would pile
          // up on the session's signal, a leak as long as the session (every batch, with
          // a small credit window).
          await new Promise<void>((r) => {
            const wake = () => {
              abort.signal.removeEventListener("abort", wake);
              r();
            };
            creditWake.fn = wake;
            abort.signal.addEventListener("abort", wake, { once: true });
          });
          creditWake.fn = null;
          continue;
        }
        if (cursor >= o.outbox.nextSeq) {
          // Only an abort is expected here; a failed outbox must end the session (and be
          // logged), not spin this loop on a promise that is already rejected.
          await o.outbox.waitForRecords(cursor, abort.signal).catch((err: unknown) => {
            if (!abort.signal.aborted) throw err;
          });
          continue;
        }
        // Inside a refused batch's records, one event per batch: only the bad ones are lost.
        const most = cursor <= this.isolateThrough ? 1 : Math.min(credit, o.maxBatchEvents);
        const records = await o.outbox.readFrom(cursor, most, o.maxBatchBytes);
        if (records.length === 0 || abort.signal.aborted) continue;
        const events = records.map((r) => decodeOutboxEvent(r.body));
        const inputs: EventInput[] = events.map((e) => e.input);
        const batchNumber = records[0]!.seq;
        const signature = signBatch(o.sign, o.zid, o.chain, batchNumber, inputs);
        const bytes = records.reduce((sum, r) => sum + r.body.length, 0);
        inflight.push({ batchNumber: BigInt(batchNumber), lastRecordSeq: records[records.length - 1]!.seq, events, bytes });
        credit -= records.length;
        inFlightBytes += bytes;
        cursor = records[records.length - 1]!.seq + 1;
        requests.push(create(IngestRequestSchema, { message: { case: "batch", value: { batchNumber: BigInt(batchNumber), events: inputs, signature } } }));
      }
    };

    let sending: Promise<void> | null = null;
    try {
      try {
        for await (const res of this.client.ingest(requests, { signal: abort.signal })) {
          const m = res.message;
          switch (m.case) {
            case "welcome":
              if (m.value.zid !== o.zid || m.value.chain !== o.chain) throw new Error(`server welcomed ${m.value.zid} on ${m.value.chain}, expected ${o.zid} on ${o.chain}`);
              sending ??= sender().catch((err: unknown) => {
                senderError = err;
                abort.abort();
              });
              break;
            case "credit":
              credit += m.value.events;
              creditWake.fn?.();
              break;
            case "ack":
            case "rejected": {
              const done = inflight.shift();
              if (!done || done.batchNumber !== m.value.batchNumber) {
                throw new Error(`server settled batch ${m.value.batchNumber}, expected ${done?.batchNumber ?? "none"}`);
              }
              if (m.case === "rejected" && !refusalIsAboutEvents(m.value.code)) {
                // A bad signature is about this agent, not its events: keep them and back off
                // (the operator must fix the agent), never turn every event into a gap.
                o.log.error({ batch: String(done.batchNumber), code: m.value.code, reason: m.value.message }, "server refused a batch for a reason that is not about its events; keeping them and retrying");
                throw new Error(`batch ${done.batchNumber} refused: ${m.value.code}: ${m.value.message}`);
              }
              if (m.case === "rejected" && done.events.length > 1) {
                progressed.value = true;
                // A refusal covers the whole batch, but usually one event caused it. Nothing
                // of the batch was committed: resend its events one per batch, so that only
                // the events the server refuses on their own become gaps. Later batches
                // already sent are deduplicated when resent.
                this.isolateThrough = Math.max(this.isolateThrough, done.lastRecordSeq);
                o.log.warn({ batch: String(done.batchNumber), code: m.value.code, reason: m.value.message }, "server refused a batch; resending its events one by one");
                throw new Error(`batch ${done.batchNumber} refused; resending its events one by one`);
              }
              if (m.case === "rejected") {
                o.log.error({ batch: String(done.batchNumber), code: m.value.code, reason: m.value.message }, "server refused a batch for good; recording a gap");
                await o.onRejected(done.events, m.value.code, m.value.message);
              } else {
                o.onCommitted?.(done.events);
              }
              await o.outbox.ack(done.lastRecordSeq);
              progressed.value = true;
              inFlightBytes -= done.bytes;
              creditWake.fn?.();
              break;
            }
          }
        }
      } catch (err) {
        // The sender aborts the session when it fails: report its error, not the abort.
        throw senderError ?? err;
      }
      if (senderError) throw senderError;
      if (!this.stopping.signal.aborted) throw new Error("server closed the stream");
    } finally {
      clearInterval(beat);
      abort.abort();
      requests.close();
      this.stopping.signal.removeEventListener("abort", onStop);
      await sending?.catch(() => undefined);
    }
  }
}

/**
 * Whether a refusal is about the batch's events (invalid fields, too large, a foreign
 * key), so that isolating and recording them as gaps is right. A bad signature means
 * the agent itself is wrong: every event would be refused, gaps included.
 */
function refusalIsAboutEvents(code: string): boolean {
  return code !== "Unauthenticated";
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
