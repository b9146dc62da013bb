// The composition root: storage, sequencer, live tail, services and the one-port
// listener, started in order and stopped in reverse.
import { readFileSync, statSync } from "node:fs";
import type http from "node:http";
import { setMaxListeners } from "node:events";
import { formatVerifierKey, parseCheckpoint, parseNote } from "../chain/index.js";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { LedgerService, file_auditledger_v1_ledger_service } from "../gen/auditledger/v1/ledger_service_pb.js";
import { AgentRegistryService, file_auditledger_v1_agent_registry_service } from "../gen/auditledger/v1/agent_registry_service_pb.js";
import { KeyService, file_auditledger_v1_key_service } from "../gen/auditledger/v1/key_service_pb.js";
import type { ServerConfig } from "./config.js";
import type { Database } from "./storage/database.js";
import { openDatabase } from "./storage/open-database.js";
import { migrate } from "./storage/migrate.js";
import { Sequencer } from "./ledger/sequencer.js";
import { CommitNotifier } from "./tail/commit-notifier.js";
import { ApiKeyAuthenticator, countApiKeys, createApiKey } from "./auth/api-keys.js";
import { authInterceptor } from "./auth/auth-interceptor.js";
import { ledgerService } from "./rpc/ledger-service.js";
import { keyService } from "./rpc/key-service.js";
import { registerReflection } from "./reflection/grpc-reflection.js";
import { listenOnePort, type OnePortListener } from "./http/one-port-listener.js";
import { opsRoutes } from "./ops/ops-routes.js";
import { LedgerMetrics } from "./ops/metrics.js";
import { createLogger, type Logger } from "./ops/logger.js";
import { installUtf8Policy } from "./rpc/utf8-policy.js";
import { KeyRing } from "./checkpoints/key-ring.js";
import { Checkpointer } from "./checkpoints/checkpointer.js";
import { agentRegistryService } from "./rpc/agent-registry-service.js";
import { AgentEvents } from "./agents/agent-events.js";
import { ServerSideAgents } from "./agents/server-side-agents.js";
import { webhookBridge, type BridgeRequest, type BridgeResponse } from "./webhooks/webhook-bridge.js";

export interface RunningServer {
  port: number;
  /** Base URL, e.g. http://127.0.0.1:8080. */
  url: string;
  db: Database;
  metrics: LedgerMetrics;
  checkpointer: Checkpointer;
  /** Set when this start created the first admin key (shown once). */
  bootstrapToken?: string;
  /** Graceful stop: refuse new work, finish in-flight commits, close. */
  close(): Promise<void>;
}

export async function startLedgerServer(config: ServerConfig, logger: Logger = createLogger(config.logLevel)): Promise<RunningServer> {
  installUtf8Policy();
  const onDbError = (err: Error) => logger.warn({ err }, "database connection error");
  const db = await openMigrated(config, onDbError);
  logger.info({ storage: db.kind, dataDir: db.kind === "pglite" ? config.dataDir : undefined }, "storage ready");

  let bootstrapToken: string | undefined;
  if (config.bootstrapAdminKey && (await countApiKeys(db)) === 0) {
    const { record, token } = await createApiKey(db, config.defaultChain, ["append", "read", "admin"], "bootstrap admin");
    bootstrapToken = token;
    logger.info({ keyId: record.keyId, chain: record.chain }, "created the first admin API key");
  }

  const metrics = new LedgerMetrics();
  let keys: KeyRing;
  try {
    // Before the key ring: a renamed ledger must not even get a key of its new name.
    await checkOriginUnchanged(db, config.ledgerName);
    keys = await KeyRing.open(config.keysDir, config.ledgerName);
  } catch (err) {
    await db.close();
    throw err;
  }
  logger.info({ keysDir: config.keysDir, signingKey: formatVerifierKey(keys.active()) }, "checkpoint signing key ready");
  if ((statSync(config.keysDir).mode & 0o077) !== 0) {
    logger.warn({ keysDir: config.keysDir }, "the signing key folder is readable by other users: chmod 700 it");
  }
  const checkpointer = new Checkpointer(db, keys, { intervalMs: config.checkpointIntervalMs, logger, metrics });
  const notifier = new CommitNotifier();
  await notifier.start(db);
  const sequencer = new Sequencer(db, {
    onCommit: (s) => {
      metrics.commitBatchSize.observe(s.events);
      metrics.commitSeconds.observe(s.seconds);
    },
  });
  const shutdown = new AbortController();
  // Every open stream listens for shutdown: many are expected, none is a leak.
  setMaxListeners(0, shutdown.signal);
  const agentChanges = new AgentEvents();
  const serverSide = new ServerSideAgents({ db, sequencer, limits: config.limits, changes: agentChanges, stateDir: config.agentStateDir, minPollIntervalMs: config.agentPollMinIntervalMs, leaseSweepMs: config.agentLeaseSweepMs, logger });

  const rpcErrors: Interceptor = (next) => async (req) => {
    try {
      return await next(req);
    } catch (err) {
      const ce = ConnectError.from(err);
      metrics.rpcErrors.inc({ method: req.method.name, code: Code[ce.code] });
      if (ce.code === Code.Internal || ce.code === Code.Unknown) logger.error({ err, method: req.method.name }, "rpc failed");
      throw ce;
    }
  };

  const handler = connectNodeAdapter({
    routes(router) {
      router.service(LedgerService, ledgerService({ db, sequencer, notifier, limits: config.limits, metrics, shutdownSignal: shutdown.signal, checkpointer }));
      router.service(
        AgentRegistryService,
        agentRegistryService({
          db,
          sequencer,
          limits: config.limits,
          changes: agentChanges,
          serverSide,
          thresholds: { staleAfterMs: config.agentStaleAfterMs, deadAfterMs: config.agentDeadAfterMs },
          ingestCreditEvents: config.ingestCreditEvents,
          ingestHelloTimeoutMs: config.ingestHelloTimeoutMs,
          log: logger,
          watchIntervalMs: 1000,
          shutdownSignal: shutdown.signal,
        }),
      );
      router.service(KeyService, keyService(db));
      registerReflection(router, [file_auditledger_v1_ledger_service, file_auditledger_v1_agent_registry_service, file_auditledger_v1_key_service]);
    },
    interceptors: [rpcErrors, authInterceptor(new ApiKeyAuthenticator(db))],
    readMaxBytes: config.limits.maxRequestBytes,
    fallback: withWebhooks(logger, webhookBridge(db, serverSide, config.limits), opsRoutes(db, metrics, () => shutdown.signal.aborted, keys)),
  });

  let listener: OnePortListener;
  try {
    listener = await listenOnePort(handler, {
      host: config.host,
      port: config.port,
      tls: config.tlsCertFile ? { cert: readFileSync(config.tlsCertFile), key: readFileSync(config.tlsKeyFile) } : undefined,
    });
  } catch (err) {
    await notifier.stop();
    await db.close();
    throw err;
  }
  checkpointer.start();
  await serverSide.start();
  const scheme = config.tlsCertFile ? "https" : "http";
  const url = `${scheme}://${config.host.includes(":") ? `[${config.host}]` : config.host}:${listener.port}`;
  logger.info({ url, tls: Boolean(config.tlsCertFile) }, "listening (Connect, gRPC, gRPC-Web; HTTP/1.1 and HTTP/2)");

  let closing: Promise<void> | null = null;
  return {
    port: listener.port,
    url,
    db,
    metrics,
    checkpointer,
    bootstrapToken,
    close() {
      closing ??= (async () => {
        logger.info("shutting down: finishing in-flight commits");
        shutdown.abort();
        const closed = listener.close(config.shutdownGraceMs);
        await serverSide.close();
        await sequencer.drain();
        await checkpointer.stop();
        await closed;
        await notifier.stop();
        await db.close();
        logger.info("stopped");
      })();
      return closing;
    },
  };
}

/**
 * LEDGER_NAME is part of every checkpoint's origin and key: changing it would make
 * every earlier checkpoint look forged. Refuse to start instead.
 */
async function checkOriginUnchanged(db: Database, ledgerName: string): Promise<void> {
  // The newest checkpoint that parses: a damaged row is for Verify and the checkpointer
  // to report, and must not keep the server from starting.
  const res = await db.query<{ chain: string; note: string }>("SELECT chain, note FROM checkpoints ORDER BY cut_at DESC LIMIT 50");
  const found = res.rows
    .map((row) => {
      try {
        return { chain: row.chain, origin: parseCheckpoint(parseNote(row.note).text).origin };
      } catch {
        return null;
      }
    })
    .find((r) => r !== null);
  if (!found) return;
  const { origin, chain } = found;
  if (origin !== `${ledgerName}/${chain}`) {
    throw new Error(
      `LEDGER_NAME is "${ledgerName}" but this database's checkpoints were signed with origin "${origin}": ` +
        `set LEDGER_NAME back to the name they were signed under (it cannot change once checkpoints exist)`,
    );
  }
}

/** Applies migrations as the login role, then opens the server's least-privilege pool. */
async function openMigrated(config: ServerConfig, onError: (err: Error) => void): Promise<Database> {
  const storage = { databaseUrl: config.databaseUrl, dataDir: config.dataDir, poolSize: config.dbPoolSize, onError };
  if (!config.databaseUrl) {
    const db = await openDatabase(storage);
    await migrate(db);
    return db;
  }
  const owner = await openDatabase({ ...storage, poolSize: 1 });
  try {
    await migrate(owner);
  } finally {
    await owner.close();
  }
  return openDatabase({ ...storage, role: config.dbRole });
}

/** Sends /hooks/ to the webhook bridge and everything else to `rest`. */
function withWebhooks(
  logger: Logger,
  hooks: (req: BridgeRequest, res: BridgeResponse) => Promise<void>,
  rest: (req: BridgeRequest, res: BridgeResponse) => void,
): (req: BridgeRequest, res: BridgeResponse) => void {
  return (req, res) => {
    if ((req.url ?? "").startsWith("/hooks/")) {
      hooks(req, res).catch((err: unknown) => {
        const r = res as http.ServerResponse;
        if (!r.headersSent) r.writeHead(500, { "content-type": "application/json" });
        logger.error({ err, url: req.url }, "webhook bridge failed");
        r.end(JSON.stringify({ error: "internal error" }) + "\n");
      });
      return;
    }
    rest(req, res);
  };
}
