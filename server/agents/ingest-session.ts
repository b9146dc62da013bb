// One agent's Ingest stream (SPEC §4, docs/agent-protocol.md): hello, then batches and
// heartbeats up; welcome, credit, acks and rejections down.
//
// Flow control is by credit: the server grants a window of events and grants each
// batch's events again only once that batch is committed, so a slow database slows the
// agent instead of filling this process's memory. Batches are sequenced in the order
// they arrive and acked in that order, each only after its COMMIT.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  IngestResponseSchema,
  type IngestBatch,
  type IngestRequest,
  type IngestResponse,
} from "../../gen/auditledger/v1/agent_registry_service_pb.js";
import { batchId, eventCommitment, fromHex, verifyBatchSignature, type CommittedEvent } from "../../chain/index.js";
import { payloadDigest } from "../../chain/index.js";
import type { Database } from "../storage/database.js";
import type { Sequencer } from "../ledger/sequencer.js";
import type { Limits } from "../ledger/limits.js";
import { prepareEvent, type PreparedEvent } from "../ledger/validate-event.js";
import { authenticateAgent, countAgentEvents, insertAgentBatch, isDeregistered, recordHeartbeat, type AgentRecord } from "./agent-store.js";
import type { AgentEvents } from "./agent-events.js";

export interface IngestDeps {
  db: Database;
  sequencer: Sequencer;
  limits: Limits;
  /** Events one stream may have in flight (sent, not yet acked). */
  creditEvents: number;
  /** Payload bytes one stream may have in flight before the server stops reading it. */
  maxInFlightBytes: number;
  /** How long a new stream may take to send hello. */
  helloTimeoutMs: number;
  log: { warn(obj: object, msg: string): void };
  changes: AgentEvents;
  shutdownSignal: AbortSignal;
}

/** A small async queue: the reader pushes responses, the generator yields them. */
class Outgoing {
  private readonly items: IngestResponse[] = [];
  private wake: (() => void) | null = null;
  private ended = false;
  private error: unknown = null;

  /** Called when the welcome goes out (the stream is authenticated). */
  onFirstWelcome: (() => void) | null = null;

  push(r: IngestResponse): void {
    if (r.message.case === "welcome") this.onFirstWelcome?.();
    this.items.push(r);
    this.wake?.();
  }

  end(err?: unknown): void {
    this.ended = true;
    if (err !== undefined) this.error = err;
    this.wake?.();
  }

  async *drain(): AsyncGenerator<IngestResponse> {
    for (;;) {
      while (this.items.length > 0) yield this.items.shift()!;
      if (this.ended) {
        if (this.error !== null) throw this.error;
        return;
      }
      await new Promise<void>((r) => (this.wake = r));
      this.wake = null;
    }
  }
}

export async function* ingestSession(requests: AsyncIterable<IngestRequest>, deps: IngestDeps): AsyncGenerator<IngestResponse> {
  const out = new Outgoing();
  // A stream must say who it is promptly: one that never sends hello holds a
  // connection for nothing.
  let authenticated = false;
  out.onFirstWelcome = () => (authenticated = true);
  const helloTimer = setTimeout(() => {
    if (!authenticated) out.end(new ConnectError(`no hello within ${deps.helloTimeoutMs} ms`, Code.DeadlineExceeded));
  }, deps.helloTimeoutMs);
  helloTimer.unref();
  // At shutdown, end the stream at once: the agent reconnects (to another replica, or
  // to this one restarted) and resends what was not acked.
  const onShutdown = () => out.end(new ConnectError("server is shutting down; reconnect", Code.Unavailable));
  if (deps.shutdownSignal.aborted) onShutdown();
  deps.shutdownSignal.addEventListener("abort", onShutdown, { once: true });

  // Not awaited on the way out: after a failed commit the reader may still be parked
  // on the request stream, which the transport closes once this generator returns.
  void readRequests(requests, deps, out)
    .then(
      () => out.end(),
      (err: unknown) => out.end(streamError(err, deps.log)),
    )
    .finally(() => {
      clearTimeout(helloTimer);
      deps.shutdownSignal.removeEventListener("abort", onShutdown);
    });
  yield* out.drain();
}

async function readRequests(requests: AsyncIterable<IngestRequest>, deps: IngestDeps, out: Outgoing): Promise<void> {
  const { db, limits } = deps;
  let agent: AgentRecord | null = null;
  let outstanding = 0;
  let inFlightBytes = 0;
  let lastBatchNumber = -1;
  // Commits finish in submission order (one sequencer queue per chain); acks are sent
  // in that order by chaining them.
  let tail: Promise<void> = Promise.resolve();
  let failure: unknown = null;

  let checkedAt = Date.now();
  for await (const req of requests) {
    if (failure) throw failure;
    // A deregistered agent's open streams end within a second, on every replica.
    if (agent && Date.now() - checkedAt > 1000) {
      checkedAt = Date.now();
      if (await isDeregistered(db, agent.zid)) throw new ConnectError(`agent ${agent.zid} was deregistered`, Code.Unauthenticated);
    }
    if (deps.shutdownSignal.aborted) throw new ConnectError("server is shutting down; reconnect to another replica or later", Code.Unavailable);
    const m = req.message;
    if (!agent) {
      if (m.case !== "hello") throw new ConnectError("the first message on Ingest must be hello", Code.InvalidArgument);
      agent = await authenticateAgent(db, m.value.zid, m.value.credential);
      await recordHeartbeat(db, agent.zid, { outboxDepth: agent.outboxDepth, lags: agent.lags, memoryBytes: agent.memoryBytes });
      deps.changes.changed(agent.chain);
      out.push(create(IngestResponseSchema, { message: { case: "welcome", value: { zid: agent.zid, chain: agent.chain } } }));
      out.push(create(IngestResponseSchema, { message: { case: "credit", value: { events: deps.creditEvents } } }));
      continue;
    }
    const me = agent;
    switch (m.case) {
      case "hello":
        throw new ConnectError("hello may be sent only once per stream", Code.InvalidArgument);
      case "heartbeat": {
        const hb = m.value;
        await recordHeartbeat(db, me.zid, {
          outboxDepth: clampCount(hb.outboxDepth),
          lags: hb.lags.map((l) => ({ source: l.source.slice(0, 128), lag_ms: clampCount(l.lagMs) })).slice(0, 64),
          memoryBytes: clampCount(hb.memoryBytes),
        });
        deps.changes.changed(me.chain);
        break;
      }
      case "batch": {
        const batch = m.value;
        const n = batch.events.length;
        if (n === 0) throw new ConnectError(`batch ${batch.batchNumber}: empty`, Code.InvalidArgument);
        if (outstanding + n > deps.creditEvents) {
          throw new ConnectError(
            `batch ${batch.batchNumber}: ${n} events exceed the credit granted (${deps.creditEvents - outstanding} left); wait for acks`,
            Code.ResourceExhausted,
          );
        }
        const number = Number(batch.batchNumber);
        if (!Number.isSafeInteger(number) || number <= lastBatchNumber) {
          throw new ConnectError(`batch ${batch.batchNumber}: batch numbers must increase on a stream (last ${lastBatchNumber})`, Code.InvalidArgument);
        }
        lastBatchNumber = number;
        outstanding += n;
        const checked = checkBatch(batch, me, limits);
        if (!checked.ok) {
          // In line with the acks: the agent settles its batches strictly in order.
          tail = tail.then(() => {
            out.push(create(IngestResponseSchema, { message: { case: "rejected", value: { batchNumber: batch.batchNumber, code: checked.code, message: checked.message } } }));
            outstanding -= n;
            out.push(create(IngestResponseSchema, { message: { case: "credit", value: { events: n } } }));
          });
          break;
        }
        const committed = commitBatch(deps, me, number, batch.signature, checked.events, checked.commitments);
        const bytes = checked.events.reduce((sum, e) => sum + (e.payload?.length ?? 0), 0);
        inFlightBytes += bytes;
        tail = tail.then(async () => {
          inFlightBytes -= bytes;
          try {
            const { firstSeq, lastSeq } = await committed;
            out.push(create(IngestResponseSchema, { message: { case: "ack", value: { batchNumber: batch.batchNumber, firstSeq: BigInt(firstSeq), lastSeq: BigInt(lastSeq) } } }));
            outstanding -= n;
            out.push(create(IngestResponseSchema, { message: { case: "credit", value: { events: n } } }));
            deps.changes.changed(me.chain);
          } catch (err) {
            // A commit that failed (database down) ends the stream; the agent resends
            // from its first unacked batch when it reconnects.
            failure ??= err;
          }
        });
        // Surface a failure promptly even while the agent sends nothing new.
        committed.catch((err: unknown) => {
          failure ??= err;
          out.end(streamError(err, deps.log));
        });
        // Credit counts events; large payloads are bounded here too: past the byte
        // budget, stop reading the stream until the commits catch up, and HTTP/2 flow
        // control holds the agent back.
        if (inFlightBytes > deps.maxInFlightBytes) await tail;
        break;
      }
      default:
        throw new ConnectError("Ingest: unknown message", Code.InvalidArgument);
    }
  }
  await tail;
  if (failure) throw failure;
}

/**
 * What the agent is told when its stream fails. Our own refusals pass as they are;
 * failures underneath (the database went away, a bug) become a plain Unavailable or
 * Internal, without the database's text or address, and are logged here instead.
 */
function streamError(err: unknown, log: IngestDeps["log"]): ConnectError {
  const ce = err instanceof ConnectError ? err : null;
  const ours = ce !== null && ce.cause === undefined && ce.code !== Code.Unknown && ce.code !== Code.Internal;
  if (ours) return ce;
  log.warn({ err }, "ingest stream failed");
  if (ce?.code === Code.Unavailable || !ce) return new ConnectError("the ledger's database is unavailable; reconnect and resend", Code.Unavailable);
  return new ConnectError("internal error; reconnect and resend", Code.Internal);
}

/** Heartbeat figures as stored: non-negative and within Postgres bigint (and JS safe) range. */
function clampCount(v: bigint): number {
  return Number(v > BigInt(Number.MAX_SAFE_INTEGER) ? BigInt(Number.MAX_SAFE_INTEGER) : v);
}

type Checked =
  | { ok: true; events: PreparedEvent[]; commitments: Uint8Array }
  | { ok: false; code: string; message: string };

/**
 * Validates every event of a batch and its signature. Nothing of a batch is written
 * unless all of it passes; a refusal names the batch and, where it is one, the event.
 */
function checkBatch(batch: IngestBatch, agent: AgentRecord, limits: Limits): Checked {
  const events: PreparedEvent[] = [];
  const commitments = new Uint8Array(32 * batch.events.length);
  const hex: string[] = [];
  try {
    for (const [i, input] of batch.events.entries()) {
      const where = `batch ${batch.batchNumber} events[${i}]`;
      const ev = prepareEvent(input, agent.zid, limits, where, { agentSalt: true });
      if (ev.source_type === "api") throw new ConnectError(`${where}.source_type: "api" is for direct appends; an agent names its source's type`, Code.InvalidArgument);
      if (!ev.idempotency_key?.startsWith(`${agent.zid}/`)) {
        throw new ConnectError(`${where}.idempotency_key: must start with "${agent.zid}/" (an agent appends only as itself)`, Code.PermissionDenied);
      }
      const fields: CommittedEvent = { ...ev, payload_size: ev.payload ? ev.payload.length : 0 } as CommittedEvent;
      if (ev.payload && ev.salt) fields.payload_digest = ev.saltedDigest = payloadDigest(ev.salt, ev.payload);
      const c = eventCommitment(fields);
      hex.push(c);
      commitments.set(fromHex(c), 32 * i);
      events.push(ev);
    }
  } catch (err) {
    // Only validation refusals settle a batch for good; anything else is our fault and
    // ends the stream, so the agent resends instead of recording a loss.
    if (!(err instanceof ConnectError)) throw err;
    return { ok: false, code: Code[err.code], message: err.rawMessage };
  }
  const statement = { agent: agent.zid, chain: agent.chain, batchNumber: Number(batch.batchNumber), events: hex };
  if (!verifyBatchSignature(statement, batch.signature, agent.publicKey)) {
    return {
      ok: false,
      code: Code[Code.Unauthenticated],
      message: `batch ${batch.batchNumber}: signature does not verify against agent ${agent.zid}'s key (fields must be sent exactly as the entry will hold them; docs/agent-protocol.md)`,
    };
  }
  const id = batchId(statement.batchNumber, batch.signature);
  for (const ev of events) ev.batch = id;
  return { ok: true, events, commitments };
}

async function commitBatch(
  deps: IngestDeps,
  agent: AgentRecord,
  batchNumber: number,
  signature: Uint8Array,
  events: PreparedEvent[],
  commitments: Uint8Array,
): Promise<{ firstSeq: number; lastSeq: number }> {
  const results = await deps.sequencer.append(agent.chain, events, async (tx, written) => {
    await insertAgentBatch(tx, {
      chain: agent.chain,
      agent: agent.zid,
      batch: events[0]!.batch!,
      batchNumber,
      signature,
      events: commitments,
      firstSeq: written[0]!.seq,
      lastSeq: written[written.length - 1]!.seq,
    });
    await countAgentEvents(tx, agent.zid, written.length);
  }, { shareCommit: true });
  let firstSeq = Infinity;
  let lastSeq = -1;
  for (const r of results) {
    firstSeq = Math.min(firstSeq, r.entry.seq);
    lastSeq = Math.max(lastSeq, r.entry.seq);
  }
  return { firstSeq, lastSeq };
}
