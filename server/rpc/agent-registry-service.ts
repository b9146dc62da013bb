// AgentRegistryService (SPEC §1, §4): enrolment, registration, the registry views,
// server-side agents, test events and the Ingest stream.
import { create, equals } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  AgentRegistryService,
  AgentSchema,
  CreateEnrolmentTokenResponseSchema,
  DeregisterAgentResponseSchema,
  GetAgentResponseSchema,
  ListAgentsResponseSchema,
  RegisterAgentResponseSchema,
  SendTestEventResponseSchema,
  SpawnAgentResponseSchema,
  WatchAgentsResponseSchema,
  type Agent,
} from "../../gen/auditledger/v1/agent_registry_service_pb.js";
import { EventInputSchema } from "../../gen/auditledger/v1/entry_pb.js";
import { SOURCE_TYPES, ZID_PATTERN, sodiumReady, zidOf } from "../../chain/index.js";
import { chainOf } from "../auth/auth-interceptor.js";
import type { Database } from "../storage/database.js";
import type { Sequencer } from "../ledger/sequencer.js";
import type { Limits } from "../ledger/limits.js";
import { invalid } from "../ledger/validate-event.js";
import {
  createEnrolmentToken,
  deregisterAgent,
  getAgent,
  listAgents,
  registerWithToken,
  type AgentRecord,
} from "../agents/agent-store.js";
import { agentStatus, type StatusThresholds } from "../agents/agent-status.js";
import type { AgentEvents } from "../agents/agent-events.js";
import { ingestSession } from "../agents/ingest-session.js";
import type { ServerSideAgents } from "../agents/server-side-agents.js";
import { toEntryMessage } from "./entry-message.js";
import type { Logger } from "../ops/logger.js";

export interface AgentRegistryDeps {
  db: Database;
  sequencer: Sequencer;
  limits: Limits;
  changes: AgentEvents;
  serverSide: ServerSideAgents;
  thresholds: StatusThresholds;
  /** Events one Ingest stream may have unacked. */
  ingestCreditEvents: number;
  /** How long a new Ingest stream may take to send hello. */
  ingestHelloTimeoutMs: number;
  log: Logger;
  /** How often WatchAgents looks for changes made elsewhere and status that aged. */
  watchIntervalMs: number;
  shutdownSignal: AbortSignal;
}

const MAX_TOKEN_TTL_SECONDS = 30 * 24 * 3600;
const NAME_MAX = 128;
const SECRET_KEY = /secret|token|password|passwd|authorization|api[_-]?key|credential/i;

/** The config as shown to clients: secrets and header values replaced. */
export function withoutSecrets(value: unknown, parentKey = ""): unknown {
  if (Array.isArray(value)) return value.map((v) => withoutSecrets(v, parentKey));
  if (value && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = SECRET_KEY.test(k) || parentKey === "headers" ? "[redacted]" : k === "url" && typeof v === "string" ? withoutQueryValues(v) : withoutSecrets(v, k);
    }
    return out;
  }
  return value;
}

/** A URL with its query values (often tokens) and any user:password replaced. */
function withoutQueryValues(text: string): string {
  try {
    const url = new URL(text);
    for (const key of [...url.searchParams.keys()]) url.searchParams.set(key, "[redacted]");
    if (url.username || url.password) url.username = url.password = "redacted";
    return url.toString();
  } catch {
    return "[redacted]";
  }
}

export function agentMessage(a: AgentRecord, t: StatusThresholds, now = Date.now()): Agent {
  return create(AgentSchema, {
    zid: a.zid,
    chain: a.chain,
    name: a.name,
    sourceTypes: a.sourceTypes,
    publicKey: a.publicKey,
    status: agentStatus(a, t, now),
    serverSide: a.serverSide,
    registeredAt: a.registeredAt.toISOString(),
    lastHeartbeatAt: a.lastHeartbeatAt?.toISOString() ?? "",
    lastEventAt: a.lastEventAt?.toISOString() ?? "",
    eventsTotal: BigInt(a.eventsTotal),
    outboxDepth: BigInt(a.outboxDepth),
    lags: a.lags.map((l) => ({ source: l.source, lagMs: BigInt(Math.max(0, Math.trunc(l.lag_ms))) })),
    memoryBytes: BigInt(a.memoryBytes),
    configJson: a.serverSide && a.config ? JSON.stringify(withoutSecrets(a.config)) : "",
    webhookPath: a.serverSide && a.sourceTypes.includes("http_webhook") ? `/hooks/${a.zid}/event` : "",
  });
}

function checkZid(zid: string): string {
  if (!ZID_PATTERN.test(zid)) throw invalid(`zid: "${zid.slice(0, 40)}" is not a ZID (ZID- and 8 Crockford base32 characters)`);
  return zid;
}

export function agentRegistryService(deps: AgentRegistryDeps): ServiceImpl<typeof AgentRegistryService> {
  const { db, changes, thresholds } = deps;

  const agentOfChain = async (chain: string, zid: string): Promise<AgentRecord> => {
    const a = await getAgent(db, checkZid(zid));
    if (!a || a.chain !== chain || a.deregisteredAt) throw new ConnectError(`no agent ${zid} on chain ${chain}`, Code.NotFound);
    return a;
  };

  return {
    async createEnrolmentToken(req, ctx) {
      const { chain } = chainOf(ctx, req.chain);
      const ttl = req.ttlSeconds === 0 ? 3600 : req.ttlSeconds;
      if (ttl > MAX_TOKEN_TTL_SECONDS) throw invalid(`ttl_seconds: at most ${MAX_TOKEN_TTL_SECONDS} (30 days)`);
      const { token, expiresAt } = await createEnrolmentToken(db, chain, ttl);
      return create(CreateEnrolmentTokenResponseSchema, { token, expiresAt: expiresAt.toISOString() });
    },

    async registerAgent(req) {
      if (req.publicKey.length !== 32) throw invalid(`public_key: an Ed25519 public key is 32 bytes, got ${req.publicKey.length}`);
      if (req.name.length > NAME_MAX || !req.name.isWellFormed()) throw invalid(`name: at most ${NAME_MAX} characters of valid UTF-8`);
      if (req.sourceTypes.length === 0) throw invalid("source_types: name at least one source type the agent runs");
      for (const t of req.sourceTypes) {
        if (!(SOURCE_TYPES as readonly string[]).includes(t) || t === "api") throw invalid(`source_types: "${t.slice(0, 40)}" is not an agent source type`);
      }
      await sodiumReady();
      const zid = zidOf(req.publicKey);
      const { chain, credential } = await db.transaction((tx) =>
        registerWithToken(tx, req.enrolmentToken, { zid, name: req.name, sourceTypes: [...new Set(req.sourceTypes)], publicKey: req.publicKey }),
      );
      changes.changed(chain);
      return create(RegisterAgentResponseSchema, { zid, credential, chain });
    },

    async spawnAgent(req, ctx) {
      const { chain } = chainOf(ctx, req.chain);
      if (req.name.length > NAME_MAX || !req.name.isWellFormed()) throw invalid(`name: at most ${NAME_MAX} characters of valid UTF-8`);
      const agent = await deps.serverSide.spawn(chain, req.sourceType, req.name, req.configJson);
      return create(SpawnAgentResponseSchema, { agent: agentMessage(agent, thresholds) });
    },

    async listAgents(req, ctx) {
      const { chain } = chainOf(ctx, req.chain);
      const now = Date.now();
      return create(ListAgentsResponseSchema, { agents: (await listAgents(db, chain)).map((a) => agentMessage(a, thresholds, now)) });
    },

    async getAgent(req, ctx) {
      const { chain } = chainOf(ctx, req.chain);
      return create(GetAgentResponseSchema, { agent: agentMessage(await agentOfChain(chain, req.zid), thresholds) });
    },

    async *watchAgents(req, ctx) {
      const { chain } = chainOf(ctx, req.chain);
      const sent = new Map<string, Agent>();
      let wake: (() => void) | null = null;
      let dirty = true;
      const unsubscribe = changes.subscribe(chain, () => {
        dirty = true;
        wake?.();
      });
      const timer = setInterval(() => {
        dirty = true;
        wake?.();
      }, deps.watchIntervalMs);
      const onAbort = () => wake?.();
      ctx.signal.addEventListener("abort", onAbort);
      deps.shutdownSignal.addEventListener("abort", onAbort);
      try {
        while (!ctx.signal.aborted && !deps.shutdownSignal.aborted) {
          if (!dirty) {
            await new Promise<void>((r) => (wake = r));
            wake = null;
            continue;
          }
          dirty = false;
          const now = Date.now();
          const current = await listAgents(db, chain);
          const seen = new Set<string>();
          for (const a of current) {
            seen.add(a.zid);
            const msg = agentMessage(a, thresholds, now);
            const before = sent.get(a.zid);
            if (!before || !equals(AgentSchema, before, msg)) {
              sent.set(a.zid, msg);
              yield create(WatchAgentsResponseSchema, { agent: msg });
            }
          }
          for (const [zid, msg] of sent) {
            if (seen.has(zid)) continue;
            sent.delete(zid);
            yield create(WatchAgentsResponseSchema, { agent: msg, removed: true });
          }
        }
      } finally {
        clearInterval(timer);
        unsubscribe();
        ctx.signal.removeEventListener("abort", onAbort);
        deps.shutdownSignal.removeEventListener("abort", onAbort);
      }
    },

    async sendTestEvent(req, ctx) {
      const { principal, chain } = chainOf(ctx, req.chain);
      const agent = await agentOfChain(chain, req.zid);
      const input = create(EventInputSchema, {
        sourceType: agent.sourceTypes[0]!,
        kind: "agent.test_event",
        subject: `agents/${agent.zid}`,
        actor: principal.keyId,
        payloadType: "application/json",
        payload: new TextEncoder().encode(JSON.stringify({ test: true, requested_by: principal.keyId })),
      });
      const [result] = await deps.serverSide.appendAs(agent, [input]);
      return create(SendTestEventResponseSchema, { entry: toEntryMessage(result!.entry, false) });
    },

    async deregisterAgent(req, ctx) {
      const { chain } = chainOf(ctx, req.chain);
      if (!(await deregisterAgent(db, chain, checkZid(req.zid)))) throw new ConnectError(`no agent ${req.zid} on chain ${chain}`, Code.NotFound);
      await deps.serverSide.stopAgent(req.zid);
      changes.changed(chain);
      return create(DeregisterAgentResponseSchema, {});
    },

    ingest(requests) {
      return ingestSession(requests, {
        db,
        sequencer: deps.sequencer,
        limits: deps.limits,
        creditEvents: deps.ingestCreditEvents,
        maxInFlightBytes: Math.max(deps.limits.maxRequestBytes, 64 << 20),
        helloTimeoutMs: deps.ingestHelloTimeoutMs,
        log: deps.log,
        changes,
        shutdownSignal: deps.shutdownSignal,
      });
    },
  };
}
