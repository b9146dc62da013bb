// The standalone agent (`audit-ledger agent --config FILE`): identity, enrolment, the
// durable outbox, the configured sources and the Ingest stream, wired so that a source
// is acknowledged upstream only once its events are in the outbox, and the outbox lets
// go of them only once the server has committed them.
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AgentRegistryService } from "../../gen/auditledger/v1/agent_registry_service_pb.js";
import { SALT_BYTES } from "../../chain/index.js";
import { loadOrCreateIdentity, type AgentIdentity } from "../identity/agent-identity.js";
import { replaceFile } from "../state/replace-file.js";
import { openOutbox, OutboxFullError, recordsBytes, type Outbox } from "../outbox/index.js";
import type { Source, SourceEvent, SourceSink } from "../sources/source.js";
import type { SourceContext } from "../sources/source-factory.js";
import { SOURCES } from "../sources/registry.js";
import { encodeOutboxEvent, type OutboxEvent } from "../ingest/outbox-record.js";
import { gapEvent, toEventInput } from "../ingest/event-input.js";
import { IngestStream } from "../ingest/ingest-stream.js";
import type { AgentConfig } from "./agent-config.js";

export const CREDENTIAL_FILE = "credential.json";

export interface Log {
  info(o: object, m: string): void;
  warn(o: object, m: string): void;
  error(o: object, m: string): void;
}

interface Credential {
  zid: string;
  chain: string;
  credential: string;
  server: string;
}

interface RunningSource {
  name: string;
  type: string;
  source: Source;
  /** Outbox records of this source not yet committed, oldest first: [append time, count]. */
  pending: [number, number][];
}

export interface RunningAgent {
  zid: string;
  chain: string;
  outbox: Outbox;
  stream: IngestStream;
  /** Events the server has committed since start. */
  committed(): number;
  /** Resolves (never rejects) with the reason when a source fails for good (SourceSink.fail). */
  failed: Promise<string>;
  stop(): Promise<void>;
}

export async function startAgent(config: AgentConfig, log: Log, transport?: Transport): Promise<RunningAgent> {
  mkdirSync(config.state_dir, { recursive: true, mode: 0o700 });
  const identity = await loadOrCreateIdentity(config.state_dir);
  const t = transport ?? createConnectTransport({ baseUrl: config.server, httpVersion: "2" });
  const cred = await enrolOnce(config, identity, t, log);

  const { outbox, report } = await openOutbox(join(config.state_dir, "outbox"), {
    maxBytes: config.outbox.max_bytes,
    segmentBytes: config.outbox.segment_bytes,
    fsync: config.outbox.fsync,
  });
  if (report.bytesDropped > 0) log.warn({ report }, "outbox: cut a torn tail left by a crash (those events were never acknowledged upstream)");

  const sources = new Map<string, RunningSource>();
  let committedTotal = 0;
  let lastEventAt = 0;

  const appendDurably = async (rs: RunningSource, events: SourceEvent[], useReserve: boolean): Promise<void> => {
    const origin = { zid: cred.zid, sourceName: rs.name, sourceType: rs.type };
    // One randomBytes call for every salt of the call: per-event calls cost 6 % of the agent's CPU.
    const salts = randomBytes(SALT_BYTES * events.length);
    const bodies = events.map((ev, i) => {
      const salt = ev.payload && ev.payload.length > 0 ? salts.subarray(i * SALT_BYTES, (i + 1) * SALT_BYTES) : undefined;
      return encodeOutboxEvent({ sourceName: rs.name, input: toEventInput(ev, origin, salt) });
    });
    // In groups of at most a quarter of the outbox: each group must fit in the room acks
    // can free. One append of everything a source hands over (generic_polling hands up
    // to 1000 events at a time) could exceed a small outbox, be refused as never
    // fitting, and the source would retry that poll forever.
    for (let start = 0; start < bodies.length; ) {
      let end = start + 1;
      let bytes = recordsBytes([bodies[start]!]);
      for (; end < bodies.length; end++) {
        const next = recordsBytes([bodies[end]!]);
        if (bytes + next > appendGroupBytes) break;
        bytes += next;
      }
      try {
        await appendGroup(rs, bodies.slice(start, end), useReserve);
        rs.pending.push([Date.now(), end - start]);
      } catch (err) {
        if (!(err instanceof RangeError) || end - start !== 1 || useReserve) throw err;
        // One event larger than the outbox can ever hold: record the loss, never drop it silently.
        const ev = events[start]!;
        log.error({ source: rs.name, position: ev.position, bytes: bodies[start]!.length, err: err.message }, "an event does not fit in the outbox; recording a gap entry instead");
        await appendDurably(rs, [gapEvent(`event of ${bodies[start]!.length} bytes does not fit in the outbox: ${err.message}`, ev.position, ev.position)], true);
      }
      start = end;
    }
    lastEventAt = Date.now();
  };

  const appendGroupBytes = Math.max(1, Math.floor(config.outbox.max_bytes / 4));
  const appendGroup = async (rs: RunningSource, bodies: Uint8Array[], useReserve: boolean): Promise<void> => {
    for (;;) {
      try {
        await outbox.append(bodies, { useReserve });
        return;
      } catch (err) {
        if (!(err instanceof OutboxFullError)) throw err;
        // Backpressure: the source stops pulling until acks free room. Nothing is dropped.
        log.warn({ source: rs.name, needed: err.bytesNeeded }, "outbox full: pausing the source until the server catches up");
        rs.source.pause();
        await outbox.waitForSpace(err.bytesNeeded);
        rs.source.resume();
      }
    }
  };

  /** Bookkeeping for records the server settled: committed, or refused (and gapped). */
  const settled = (events: OutboxEvent[], committed: boolean) => {
    if (committed) committedTotal += events.length;
    for (const e of events) {
      const rs = sources.get(e.sourceName);
      const head = rs?.pending[0];
      if (!head) continue;
      if (--head[1] <= 0) rs.pending.shift();
    }
  };

  const stream = new IngestStream({
    transport: t,
    zid: cred.zid,
    chain: cred.chain,
    credential: cred.credential,
    sign: identity.sign,
    outbox,
    maxBatchEvents: config.ingest.max_batch_events,
    maxBatchBytes: config.ingest.max_batch_bytes,
    maxInFlightBytes: Math.max(config.ingest.max_batch_bytes, 64 << 20),
    heartbeatIntervalMs: config.ingest.heartbeat_interval_ms,
    maxBackoffMs: config.ingest.max_backoff_ms,
    heartbeat: () => {
      const depth = outbox.depth();
      const now = Date.now();
      return {
        outboxDepth: BigInt(depth.records),
        lastEventAt: lastEventAt ? new Date(lastEventAt).toISOString() : "",
        lags: [...sources.values()].map((rs) => ({ $typeName: "auditledger.v1.SourceLag" as const, source: rs.name, lagMs: BigInt(rs.pending[0] ? now - rs.pending[0][0] : 0) })),
        memoryBytes: BigInt(process.memoryUsage.rss()),
        eventsTotal: BigInt(committedTotal),
      };
    },
    onCommitted: (events) => settled(events, true),
    onRejected: async (events, code, message) => {
      // The server will never take these: say so in the chain before letting them go.
      // Written over the outbox cap: the acks that free room wait on this very write.
      // The position derives from the refused event's key, so a crash before the ack
      // cannot record the gap twice.
      for (const e of events) {
        if (e.input.kind === "gap") {
          // A refused gap would only beget another: keep it, and make the operator look.
          throw new Error(`the server refused a gap entry (${code}: ${message}); keeping it and retrying`);
        }
      }
      for (const e of events) {
        const reason = `server refused 1 event(s): ${code}: ${message}`.slice(0, 2000);
        const position = `refused@${createHash("sha256").update(e.input.idempotencyKey).digest("hex").slice(0, 32)}`;
        const gap = { ...gapEvent(reason, e.input.sourcePosition, e.input.sourcePosition), position };
        const origin = { zid: cred.zid, sourceName: e.sourceName, sourceType: e.input.sourceType };
        await outbox.append([encodeOutboxEvent({ sourceName: e.sourceName, input: toEventInput(gap, origin, randomBytes(SALT_BYTES)) })], { overCap: true });
        sources.get(e.sourceName)?.pending.push([Date.now(), 1]);
      }
      settled(events, false);
    },
    log,
  });

  // Sources start after the outbox is open, resuming where their own state says.
  let failSource: (reason: string) => void = () => {};
  const failed = new Promise<string>((resolve) => (failSource = resolve));
  try {
    for (const s of config.sources) {
      const factory = await SOURCES.get(s.type)!.load();
      const stateDir = join(config.state_dir, "sources", s.name);
      mkdirSync(stateDir, { recursive: true, mode: 0o700 });
      const ctx: SourceContext = { name: s.name, stateDir, log: childLog(log, { source: s.name }) };
      const rs: RunningSource = { name: s.name, type: s.type, source: factory.create(s.config, ctx), pending: [] };
      sources.set(s.name, rs);
      const sink: SourceSink = {
        emit: async (events) => {
          if (events.length === 0) return;
          await appendDurably(rs, events, false);
          await rs.source.acknowledge(events[events.length - 1]!.position);
        },
        gap: async (reason, from, to) => {
          log.error({ source: rs.name, reason, from, to }, "source lost events; recording a gap entry");
          await appendDurably(rs, [gapEvent(reason, from, to)], true);
        },
        fail: (reason) => {
          log.error({ source: rs.name, reason }, "source failed and cannot go on; the agent stops");
          failSource(`source "${rs.name}" (${rs.type}) failed: ${reason}`);
        },
      };
      try {
        await rs.source.start(sink);
      } catch (err) {
        // Say which source could not start: an agent may run several of one type.
        throw new Error(`source "${s.name}" (${s.type}) could not start: ${(err as Error)?.message ?? String(err)}`, { cause: err });
      }
      log.info({ source: s.name, type: s.type }, "source started");
    }
  } catch (err) {
    await Promise.all([...sources.values()].map((rs) => rs.source.stop().catch(() => undefined)));
    await outbox.close();
    throw err;
  }
  stream.start();
  log.info({ zid: cred.zid, chain: cred.chain, server: config.server, sources: config.sources.length }, "agent running");

  let stopping: Promise<void> | null = null;
  return {
    zid: cred.zid,
    chain: cred.chain,
    outbox,
    stream,
    committed: () => committedTotal,
    failed,
    stop() {
      stopping ??= (async () => {
        for (const rs of sources.values()) await rs.source.stop().catch((err: unknown) => log.warn({ err: String(err), source: rs.name }, "source stop failed"));
        await stream.stop();
        await outbox.close();
        log.info({ zid: cred.zid }, "agent stopped");
      })();
      return stopping;
    },
  };
}

/** Reads the saved credential, or registers with the enrolment token and saves it. */
async function enrolOnce(config: AgentConfig, identity: AgentIdentity, transport: Transport, log: Log): Promise<Credential> {
  const file = join(config.state_dir, CREDENTIAL_FILE);
  try {
    const saved = JSON.parse(readFileSync(file, "utf8")) as Credential;
    if (saved.zid !== identity.zid) throw new Error(`${file} belongs to ${saved.zid}, but this agent's identity is ${identity.zid}`);
    return saved;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  const token = config.enrolment_token ?? process.env.AUDIT_LEDGER_ENROLMENT_TOKEN;
  if (!token) {
    throw new Error(`agent ${identity.zid} is not registered yet: give it an enrolment token (enrolment_token in the config, or AUDIT_LEDGER_ENROLMENT_TOKEN); an admin creates one with CreateEnrolmentToken`);
  }
  const client = createClient(AgentRegistryService, transport);
  const res = await client.registerAgent({
    enrolmentToken: token,
    publicKey: identity.publicKey,
    name: config.name ?? "",
    sourceTypes: [...new Set(config.sources.map((s) => s.type))],
  });
  const cred: Credential = { zid: res.zid, chain: res.chain, credential: res.credential, server: config.server };
  await replaceFile(config.state_dir, CREDENTIAL_FILE, JSON.stringify(cred, null, 2) + "\n");
  log.info({ zid: res.zid, chain: res.chain }, "registered with the ledger");
  return cred;
}

function childLog(log: Log, fields: object): Log {
  return {
    info: (o, m) => log.info({ ...fields, ...o }, m),
    warn: (o, m) => log.warn({ ...fields, ...o }, m),
    error: (o, m) => log.error({ ...fields, ...o }, m),
  };
}
