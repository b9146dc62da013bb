// LedgerService: append, read, tail and verify. RPCs of later milestones are left out
// of the implementation, so Connect answers them with Unimplemented.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  BreakKind,
  LedgerService,
  Order,
  type EntryFilter as EntryFilterMessage,
  AppendResponseSchema,
  AppendBatchResponseSchema,
  GetEventResponseSchema,
  QueryResponseSchema,
  VerifyResponseSchema,
  StreamEventsResponseSchema,
  GetStatsResponseSchema,
  ExportResponseSchema,
} from "../../gen/auditledger/v1/ledger_service_pb.js";
import type { BreakKind as ChainBreakKind } from "../../chain/index.js";
import { chainOf } from "../auth/auth-interceptor.js";
import type { Database } from "../storage/database.js";
import type { Sequencer } from "../ledger/sequencer.js";
import type { Limits } from "../ledger/limits.js";
import { invalid, normaliseTime, prepareEvent, seqNumber } from "../ledger/validate-event.js";
import { queryEntries, readEntry, readHead, type EntryFilter } from "../ledger/ledger-reader.js";
import { decodeCursor, encodeCursor, queryFingerprint } from "../ledger/query-cursor.js";
import { verifyRange } from "../verify/verify-range.js";
import { streamEntries } from "../tail/stream-entries.js";
import type { CommitNotifier } from "../tail/commit-notifier.js";
import type { LedgerMetrics } from "../ops/metrics.js";
import { toEntryMessage } from "./entry-message.js";
import type { Checkpointer } from "../checkpoints/checkpointer.js";
import { exportBundle } from "../export/export-bundle.js";
import { resolveCheckpoint, verifiableLogService } from "./verifiable-log-service.js";

export interface LedgerServiceDeps {
  db: Database;
  sequencer: Sequencer;
  notifier: CommitNotifier;
  limits: Limits;
  metrics: LedgerMetrics;
  /** Aborted at shutdown: ends live tails so the server can stop. */
  shutdownSignal: AbortSignal;
  checkpointer: Checkpointer;
}

const BREAK_KINDS: Record<ChainBreakKind, BreakKind> = {
  hash_mismatch: BreakKind.HASH_MISMATCH,
  link_mismatch: BreakKind.LINK_MISMATCH,
  payload_mismatch: BreakKind.PAYLOAD_MISMATCH,
  missing_entry: BreakKind.MISSING_ENTRY,
  unexpected_entry: BreakKind.UNEXPECTED_ENTRY,
  moved_entry: BreakKind.MOVED_ENTRY,
  truncated: BreakKind.TRUNCATED,
  root_mismatch: BreakKind.ROOT_MISMATCH,
  bad_signature: BreakKind.BAD_SIGNATURE,
};

const MAX_QUERY_LIMIT = 1000;

export function ledgerService(deps: LedgerServiceDeps): Partial<ServiceImpl<typeof LedgerService>> {
  const { db, sequencer, notifier, limits, metrics, shutdownSignal, checkpointer } = deps;

  const record = (results: { deduplicated: boolean }[]) => {
    for (const r of results) (r.deduplicated ? metrics.deduplicated : metrics.appendedEntries).inc();
  };

  return {
    ...verifiableLogService({ db, sequencer, checkpointer, limits }),

    async append(req, ctx) {
      const { principal, chain } = chainOf(ctx, req.chain);
      if (!req.event) throw invalid("event: required");
      const event = prepareEvent(req.event, principal.keyId, limits);
      const [result] = await sequencer.append(chain, [event]);
      record([result!]);
      return create(AppendResponseSchema, { entry: toEntryMessage(result!.entry, false), deduplicated: result!.deduplicated });
    },

    async appendBatch(req, ctx) {
      const { principal, chain } = chainOf(ctx, req.chain);
      if (req.events.length === 0) throw invalid("events: at least one event is required");
      if (req.events.length > limits.maxBatchEvents) {
        throw new ConnectError(`events: ${req.events.length} events, at most ${limits.maxBatchEvents} per batch`, Code.ResourceExhausted);
      }
      const events = req.events.map((e, i) => prepareEvent(e, principal.keyId, limits, `events[${i}]`));
      const results = await sequencer.append(chain, events);
      record(results);
      return create(AppendBatchResponseSchema, {
        results: results.map((r) => ({ seq: BigInt(r.entry.seq), hash: r.entry.hash, deduplicated: r.deduplicated })),
      });
    },

    async getEvent(req, ctx) {
      const { chain } = chainOf(ctx, req.chain);
      const entry = await readEntry(db, chain, seqNumber(req.seq, "seq"), req.includePayload);
      if (!entry) throw new ConnectError(`chain "${chain}" has no entry at seq ${req.seq}`, Code.NotFound);
      return create(GetEventResponseSchema, { entry: toEntryMessage(entry, req.includePayload) });
    },

    async query(req, ctx) {
      const { chain } = chainOf(ctx, req.chain);
      const filter = toFilter(req.filter);
      if (req.asOfTreeSize !== undefined) {
        // Answer from the state a signed checkpoint commits to: entries below its size.
        const asOf = seqNumber(req.asOfTreeSize, "as_of_tree_size");
        if (asOf === 0) throw invalid("as_of_tree_size: must be the size of a checkpoint (> 0)");
        await resolveCheckpoint(db, checkpointer, chain, asOf);
        filter.toSeq = Math.min(filter.toSeq ?? asOf, asOf);
      }
      const descending = req.order === Order.DESCENDING;
      const limit = req.limit === 0 ? 100 : req.limit;
      if (limit > MAX_QUERY_LIMIT) throw invalid(`limit: at most ${MAX_QUERY_LIMIT}`);
      const fingerprint = queryFingerprint(chain, filter, descending);
      const afterSeq = req.cursor ? decodeCursor(req.cursor, fingerprint) : undefined;
      const { entries, more } = await queryEntries(db, { chain, filter, descending, afterSeq, limit, withPayload: req.includePayload });
      const last = entries[entries.length - 1];
      return create(QueryResponseSchema, {
        entries: entries.map((e) => toEntryMessage(e, req.includePayload)),
        nextCursor: more && last ? encodeCursor(last.seq, fingerprint) : "",
      });
    },

    async *verify(req, ctx) {
      const { chain } = chainOf(ctx, req.chain);
      const from = req.fromSeq === undefined ? undefined : seqNumber(req.fromSeq, "from_seq");
      const to = req.toSeq === undefined ? undefined : seqNumber(req.toSeq, "to_seq");
      if (from !== undefined && to !== undefined && to < from) throw invalid("to_seq: must not be below from_seq");
      await checkpointer.keys.reloadIfChanged();
      const walk = verifyRange(db, chain, from, to, { keys: checkpointer.keys.verifiers(), origin: checkpointer.origin(chain) });
      for (;;) {
        const step = await walk.next();
        if (step.done) {
          const v = step.value;
          yield create(VerifyResponseSchema, {
            result: {
              case: "verdict",
              value: {
                valid: v.valid,
                checked: BigInt(v.checked),
                firstBreakAt: v.firstBreak ? BigInt(v.firstBreak.seq) : undefined,
                reason: v.firstBreak ? v.firstBreak.reason : `all ${v.checked} entries verify`,
                breakKind: v.firstBreak ? BREAK_KINDS[v.firstBreak.kind] : BreakKind.UNSPECIFIED,
                redacted: v.redacted.map(BigInt),
                checkpointsChecked: BigInt(v.checkpointsChecked),
              },
            },
          });
          return;
        }
        yield create(VerifyResponseSchema, {
          result: { case: "progress", value: { checked: BigInt(step.value.checked), total: BigInt(step.value.total) } },
        });
      }
    },

    async *streamEvents(req, ctx) {
      const { chain } = chainOf(ctx, req.chain);
      const filter = toFilter(req.filter);
      const fingerprint = queryFingerprint(chain, {}, false);
      let from = req.fromSeq === undefined ? undefined : seqNumber(req.fromSeq, "from_seq");
      if (req.cursor) {
        if (from !== undefined) throw invalid("give from_seq or cursor, not both");
        from = decodeCursor(req.cursor, fingerprint) + 1;
      }
      if (from === undefined) from = (await readHead(db, chain)).count; // only new entries
      metrics.subscribers.inc();
      try {
        const signal = AbortSignal.any([ctx.signal, shutdownSignal]);
        for await (const entry of streamEntries(db, notifier, chain, from, filter, req.includePayload, signal, (n) => metrics.tailBufferedEntries.inc(n))) {
          yield create(StreamEventsResponseSchema, {
            entry: toEntryMessage(entry, req.includePayload),
            cursor: encodeCursor(entry.seq, fingerprint),
          });
        }
      } finally {
        metrics.subscribers.dec();
      }
    },

    async *export(req, ctx) {
      const { chain } = chainOf(ctx, req.chain);
      const chunks = exportBundle(db, checkpointer, chain, {
        fromSeq: req.fromSeq === undefined ? undefined : seqNumber(req.fromSeq, "from_seq"),
        toSeq: req.toSeq === undefined ? undefined : seqNumber(req.toSeq, "to_seq"),
        fromTime: req.fromTime ? normaliseTime(req.fromTime, "from_time") : undefined,
        toTime: req.toTime ? normaliseTime(req.toTime, "to_time") : undefined,
      });
      for await (const chunk of chunks) {
        if (ctx.signal.aborted) return;
        yield create(ExportResponseSchema, { chunk });
      }
    },

    async getStats(req, ctx) {
      const { chain } = chainOf(ctx, req.chain);
      const head = await readHead(db, chain);
      return create(GetStatsResponseSchema, {
        chain,
        count: BigInt(head.count),
        lastSeq: head.count > 0 ? BigInt(head.count - 1) : undefined,
        headHash: head.headHash,
        lastTs: head.lastTs ? head.lastTs.toISOString() : "",
      });
    },
  };
}


function toFilter(f: EntryFilterMessage | undefined): EntryFilter {
  const out: EntryFilter = {};
  if (!f) return out;
  if (f.kind) out.kind = f.kind;
  if (f.subject) out.subject = f.subject;
  if (f.subjectPrefix) {
    if (!f.subject) throw invalid("filter.subject_prefix: needs filter.subject");
    out.subjectPrefix = true;
  }
  if (f.agent) out.agent = f.agent;
  if (f.sourceType) out.sourceType = f.sourceType;
  if (f.actor) out.actor = f.actor;
  if (f.traceId) out.traceId = f.traceId;
  if (f.fromTime) out.fromTime = normaliseTime(f.fromTime, "filter.from_time");
  if (f.toTime) out.toTime = normaliseTime(f.toTime, "filter.to_time");
  if (f.fromSeq !== undefined) out.fromSeq = seqNumber(f.fromSeq, "filter.from_seq");
  if (f.toSeq !== undefined) out.toSeq = seqNumber(f.toSeq, "filter.to_seq");
  for (const [k, v] of Object.entries(out)) {
    if (typeof v === "string" && (!v.isWellFormed() || v.length > 1024)) throw invalid(`filter.${k}: not valid UTF-8 or longer than 1024 characters`);
  }
  return out;
}

