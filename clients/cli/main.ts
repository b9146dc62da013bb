// audit-ledger: the command line. Every command but `serve` (and `keys create` with
// direct database access) talks to a server through the generated client.
import { readFileSync } from "node:fs";
import { Command, Option } from "commander";
import { ConnectError } from "@connectrpc/connect";
import type { Entry } from "../../gen/auditledger/v1/entry_pb.js";
import { BreakKind, Order, type EntryFilterSchema } from "../../gen/auditledger/v1/ledger_service_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { createLedgerClient } from "../node/ledger-client.js";
import { entryToRow, rowJson } from "../node/entry-row.js";
import { isScope, type Scope } from "../../server/auth/api-keys.js";
import { validateChainName } from "../../server/ledger/validate-event.js";

const program = new Command("audit-ledger")
  .description("One tamper-evident audit ledger for every system a company runs.")
  .option("--url <url>", "ledger server URL", process.env.AUDIT_LEDGER_URL ?? "http://127.0.0.1:8080")
  .option("--api-key <key>", "bearer API key (or AUDIT_LEDGER_API_KEY)", process.env.AUDIT_LEDGER_API_KEY)
  .option("--chain <chain>", "chain to act on (default: the API key's chain)", "")
  .showHelpAfterError();

function client() {
  const o = program.opts<{ url: string; apiKey?: string }>();
  return createLedgerClient({ baseUrl: o.url, apiKey: o.apiKey });
}
const chain = () => program.opts<{ chain: string }>().chain;
const entryJson = (e: Entry | undefined) => (e ? JSON.stringify(rowJson(entryToRow(e))) : "null");
const num = (name: string) => (v: string) => {
  if (!/^\d+$/.test(v)) throw new Error(`${name}: "${v}" is not a non-negative integer`);
  return BigInt(v);
};

program
  .command("serve")
  .description("run the ledger server (embedded PGlite unless DATABASE_URL is set)")
  .option("--port <port>", "port for every protocol (PORT)")
  .option("--host <host>", "address to bind (HOST)")
  .option("--database-url <url>", "Postgres connection string (DATABASE_URL)")
  .option("--data-dir <dir>", "embedded database folder (DATA_DIR)")
  .action(async (o: { port?: string; host?: string; databaseUrl?: string; dataDir?: string }) => {
    const env = { ...process.env };
    if (o.port) env.PORT = o.port;
    if (o.host) env.HOST = o.host;
    if (o.databaseUrl) env.DATABASE_URL = o.databaseUrl;
    if (o.dataDir) env.DATA_DIR = o.dataDir;
    // Loaded only here: the client commands start fast without the server and its databases.
    const { configFromEnv } = await import("../../server/config.js");
    const { startLedgerServer } = await import("../../server/ledger-server.js");
    // Signals are handled from before the start: a SIGTERM that arrives while the
    // server is starting (or right after it logs "listening") still stops it cleanly.
    let stopRequested = false;
    let running: Awaited<ReturnType<typeof startLedgerServer>> | undefined;
    const stop = () => {
      if (running) void running.close().then(() => process.exit(0));
      else stopRequested = true;
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    const server = await startLedgerServer(configFromEnv(env));
    running = server;
    if (stopRequested) {
      await server.close();
      process.exit(0);
    }
    if (server.bootstrapToken) {
      process.stdout.write(
        `\nFirst start: an admin API key for chain "${configFromEnv(env).defaultChain}" (shown once, keep it safe):\n\n` +
          `  export AUDIT_LEDGER_API_KEY=${server.bootstrapToken}\n\n`,
      );
    }
  });

const keys = program.command("keys").description("manage API keys (create) and checkpoint signing keys (generate, signing)");
keys
  .command("create")
  .description("create an API key; prints the token once")
  .requiredOption("--for-chain <chain>", "chain the key is bound to")
  .requiredOption("--scopes <list>", "comma-separated: append,read,admin")
  .option("--name <name>", "a label", "")
  .option("--database-url <url>", "create directly in this Postgres (no server needed)")
  .option("--data-dir <dir>", "create directly in this embedded database (server stopped)")
  .action(async (o: { forChain: string; scopes: string; name: string; databaseUrl?: string; dataDir?: string }) => {
    const scopes = o.scopes.split(",").map((s) => s.trim());
    const bad = scopes.find((s) => !isScope(s));
    if (bad !== undefined) throw new Error(`--scopes: unknown scope "${bad}"; expected append, read, admin`);
    validateChainName(o.forChain, "--for-chain");
    if (o.databaseUrl || o.dataDir) {
      const { openDatabase } = await import("../../server/storage/open-database.js");
      const { migrate } = await import("../../server/storage/migrate.js");
      const { createApiKey } = await import("../../server/auth/api-keys.js");
      const db = await openDatabase({ databaseUrl: o.databaseUrl, dataDir: o.dataDir ?? ".data/ledger" });
      try {
        await migrate(db);
        const { record, token } = await createApiKey(db, o.forChain, scopes as Scope[], o.name);
        console.log(JSON.stringify({ key_id: record.keyId, chain: record.chain, scopes: record.scopes, token }));
      } finally {
        await db.close();
      }
      return;
    }
    const res = await client().keys.createApiKey({ chain: o.forChain, scopes, name: o.name });
    console.log(JSON.stringify({ key_id: res.key?.keyId, chain: res.key?.chain, scopes: res.key?.scopes, token: res.token }));
  });

keys
  .command("generate")
  .description("add a checkpoint signing key (rotation): new checkpoints use it, older keys stay trusted for older ones")
  .option("--keys-dir <dir>", "signing key folder (KEYS_DIR)", process.env.KEYS_DIR ?? ".data/keys")
  .option("--name <name>", "key name = checkpoint origin prefix (LEDGER_NAME)", process.env.LEDGER_NAME ?? "audit-ledger.local")
  .action(async (o: { keysDir: string; name: string }) => {
    const { generateKeyFile } = await import("../../server/checkpoints/key-ring.js");
    const { formatVerifierKey, keyIdHex } = await import("../../chain/index.js");
    const k = await generateKeyFile(o.keysDir, o.name);
    console.log(JSON.stringify({ key_id: keyIdHex(k.signer.keyId), verifier_key: formatVerifierKey(k.signer), created_at: k.createdAt, file: k.file }));
  });

keys
  .command("signing")
  .description("list the checkpoint signing keys in the key folder (public parts only)")
  .option("--keys-dir <dir>", "signing key folder (KEYS_DIR)", process.env.KEYS_DIR ?? ".data/keys")
  .option("--name <name>", "the active key's name (LEDGER_NAME)", process.env.LEDGER_NAME ?? "audit-ledger.local")
  .action(async (o: { keysDir: string; name: string }) => {
    const { readKeyFiles } = await import("../../server/checkpoints/key-ring.js");
    const { formatVerifierKey, keyIdHex } = await import("../../chain/index.js");
    const all = await readKeyFiles(o.keysDir);
    all.forEach((k, i) => {
      const successor = all.slice(i + 1).find((n) => n.signer.name === k.signer.name);
      console.log(JSON.stringify({ key_id: keyIdHex(k.signer.keyId), verifier_key: formatVerifierKey(k.signer), created_at: k.createdAt, retired_at: successor?.createdAt ?? null }));
    });
  });

program
  .command("append")
  .description("append one event; prints the entry")
  .requiredOption("--kind <kind>", "event kind")
  .option("--subject <subject>")
  .option("--actor <actor>")
  .option("--occurred-at <time>", "RFC 3339")
  .option("--idempotency-key <key>")
  .option("--trace-id <id>")
  .option("--span-id <id>")
  .option("--cause <seq-or-hash>")
  .option("--payload <json>", "JSON payload")
  .option("--payload-file <file>", "payload from a file")
  .option("--payload-type <type>", "media type of the payload")
  .action(async (o: Record<string, string | undefined>) => {
    const payload = o.payloadFile ? readFileSync(o.payloadFile) : o.payload !== undefined ? Buffer.from(o.payload) : new Uint8Array(0);
    const res = await client().ledger.append({
      chain: chain(),
      event: {
        kind: o.kind,
        subject: o.subject ?? "",
        actor: o.actor ?? "",
        occurredAt: o.occurredAt ?? "",
        idempotencyKey: o.idempotencyKey ?? "",
        traceId: o.traceId ?? "",
        spanId: o.spanId ?? "",
        cause: o.cause ?? "",
        payloadType: o.payloadType ?? "",
        payload,
      },
    });
    console.log(entryJson(res.entry));
  });

function filterOptions(cmd: Command): Command {
  return cmd
    .option("--kind <kind>")
    .option("--subject <subject>", "exact subject, or a prefix with --prefix")
    .option("--prefix", "treat --subject as a prefix")
    .option("--agent <agent>")
    .option("--source-type <type>")
    .option("--actor <actor>")
    .option("--trace-id <id>")
    .option("--from <time>", "RFC 3339, inclusive")
    .option("--to <time>", "RFC 3339, exclusive")
    .addOption(new Option("--from-seq <n>").argParser(num("--from-seq")))
    .addOption(new Option("--to-seq <n>").argParser(num("--to-seq")));
}

type FilterOpts = { kind?: string; subject?: string; prefix?: boolean; agent?: string; sourceType?: string; actor?: string; traceId?: string; from?: string; to?: string; fromSeq?: bigint; toSeq?: bigint };
const toFilter = (o: FilterOpts): MessageInitShape<typeof EntryFilterSchema> => ({
  kind: o.kind ?? "",
  subject: o.subject ?? "",
  subjectPrefix: Boolean(o.prefix),
  agent: o.agent ?? "",
  sourceType: o.sourceType ?? "",
  actor: o.actor ?? "",
  traceId: o.traceId ?? "",
  fromTime: o.from ?? "",
  toTime: o.to ?? "",
  fromSeq: o.fromSeq,
  toSeq: o.toSeq,
});

filterOptions(program.command("query").description("print matching entries as NDJSON"))
  .option("--limit <n>", "entries per page", "100")
  .option("--desc", "newest first")
  .option("--all", "follow cursors to the end")
  .option("--cursor <cursor>", "continue a previous query")
  .option("--payload", "include payloads")
  .action(async (o: FilterOpts & { limit: string; desc?: boolean; all?: boolean; cursor?: string; payload?: boolean }) => {
    const c = client();
    let cursor = o.cursor ?? "";
    do {
      const res = await c.ledger.query({
        chain: chain(),
        filter: toFilter(o),
        limit: Number(o.limit),
        order: o.desc ? Order.DESCENDING : Order.ASCENDING,
        cursor,
        includePayload: Boolean(o.payload),
      });
      for (const e of res.entries) console.log(entryJson(e));
      cursor = res.nextCursor;
      if (cursor && !o.all) console.error(`more: --cursor ${cursor}`);
    } while (cursor && o.all);
  });

filterOptions(program.command("tail").description("follow new entries live (NDJSON)"))
  .option("--cursor <cursor>", "resume after a cursor printed before")
  .option("--payload", "include payloads")
  .action(async (o: FilterOpts & { cursor?: string; payload?: boolean }) => {
    const { fromSeq, ...rest } = o;
    for await (const msg of client().ledger.streamEvents({
      chain: chain(),
      fromSeq,
      cursor: o.cursor ?? "",
      filter: toFilter({ ...rest, fromSeq: undefined }),
      includePayload: Boolean(o.payload),
    })) {
      console.log(JSON.stringify({ cursor: msg.cursor, entry: msg.entry ? rowJson(entryToRow(msg.entry)) : null }));
    }
  });

program
  .command("verify")
  .description("verify the chain; exits 1 when it is broken")
  .addOption(new Option("--from-seq <n>").argParser(num("--from-seq")))
  .addOption(new Option("--to-seq <n>").argParser(num("--to-seq")))
  .option("--json", "print the verdict as JSON")
  .action(async (o: { fromSeq?: bigint; toSeq?: bigint; json?: boolean }) => {
    for await (const msg of client().ledger.verify({ chain: chain(), fromSeq: o.fromSeq, toSeq: o.toSeq })) {
      if (msg.result.case === "progress") {
        console.error(`checked ${msg.result.value.checked} of ${msg.result.value.total}`);
      } else if (msg.result.case === "verdict") {
        const v = msg.result.value;
        if (o.json) {
          console.log(
            JSON.stringify({
              valid: v.valid,
              checked: Number(v.checked),
              first_break_at: v.firstBreakAt === undefined ? null : Number(v.firstBreakAt),
              break_kind: v.valid ? null : BreakKind[v.breakKind].toLowerCase(),
              reason: v.reason,
              redacted: v.redacted.map(Number),
              checkpoints_checked: Number(v.checkpointsChecked),
            }),
          );
        } else {
          console.log(
            v.valid
              ? `VALID: ${v.reason} (${v.checkpointsChecked} signed checkpoint${v.checkpointsChecked === 1n ? "" : "s"} matched)`
              : `BROKEN at seq ${v.firstBreakAt}: ${v.reason} (checked ${v.checked})`,
          );
        }
        process.exitCode = v.valid ? 0 : 1;
      }
    }
  });

program
  .command("stats")
  .description("entry count, last seq and head hash")
  .action(async () => {
    const s = await client().ledger.getStats({ chain: chain() });
    console.log(JSON.stringify({ chain: s.chain, count: Number(s.count), last_seq: s.lastSeq === undefined ? null : Number(s.lastSeq), head_hash: s.headHash, last_ts: s.lastTs || null }));
  });

program
  .command("checkpoint")
  .description("print the latest signed checkpoint (or the one of --size); --fresh cuts one over the head first")
  .addOption(new Option("--size <n>").argParser(num("--size")))
  .option("--fresh", "cut a checkpoint over the current head first")
  .option("--note", "print only the signed note (C2SP tlog-checkpoint)")
  .action(async (o: { size?: bigint; fresh?: boolean; note?: boolean }) => {
    const { checkpoint: cp } = await client().ledger.getCheckpoint({ chain: chain(), treeSize: o.size ?? 0n, fresh: Boolean(o.fresh) });
    if (!cp) throw new Error("the server returned no checkpoint");
    if (o.note) process.stdout.write(cp.signedNote);
    else console.log(JSON.stringify({ chain: cp.chain, origin: cp.origin, tree_size: Number(cp.treeSize), root: Buffer.from(cp.rootHash).toString("base64"), key_id: cp.keyId, cut_at: cp.cutAt, note: cp.signedNote }));
  });

program
  .command("prove")
  .description("fetch and check a proof locally: inclusion of --seq, or consistency from --from-size; exits 1 if it fails")
  .addOption(new Option("--seq <n>", "entry to prove included").argParser(num("--seq")))
  .addOption(new Option("--from-size <n>", "earlier tree size to prove consistent with the latest checkpoint").argParser(num("--from-size")))
  .option("--from-root <base64>", "root you hold for --from-size (else the server's checkpoint of that size, which proves less)")
  .addOption(new Option("--tree-size <n>", "checkpoint size to prove against (default: the latest)").argParser(num("--tree-size")))
  .option("--trusted-key <vkey>", "ledger public key (name+hex8+base64); default: the server's published keys", (v: string, prev: string[] | undefined) => [...(prev ?? []), v])
  .action(async (o: { seq?: bigint; fromSize?: bigint; fromRoot?: string; treeSize?: bigint; trustedKey?: string[] }) => {
    const { runProve } = await import("./prove.js");
    if ((o.seq === undefined) === (o.fromSize === undefined)) throw new Error("give exactly one of --seq or --from-size");
    process.exitCode = await runProve(client().ledger, chain(), o);
  });

program
  .command("export")
  .description("write an evidence bundle for a window of the chain (docs/evidence-bundle.md)")
  .option("--from <seq-or-time>", "first seq, or RFC 3339 time (inclusive); default the start")
  .option("--to <seq-or-time>", "end seq (exclusive), or RFC 3339 time (exclusive); default the head")
  .requiredOption("--out <file>", 'bundle file to write ("-" for stdout)')
  .action(async (o: { from?: string; to?: string; out: string }) => {
    const { runExport } = await import("./export.js");
    await runExport(client().ledger, chain(), o);
  });

program
  .command("redact")
  .description("erase one entry's payload and salt (admin); appends a redaction entry saying who and why")
  .addOption(new Option("--seq <n>", "entry whose payload is erased").argParser(num("--seq")).makeOptionMandatory())
  .requiredOption("--reason <text>", "why (recorded in the chain)")
  .action(async (o: { seq: bigint; reason: string }) => {
    const res = await client().ledger.redactPayload({ chain: chain(), seq: o.seq, reason: o.reason });
    console.log(entryJson(res.redaction));
  });

program
  .command("verify-bundle")
  .description("check an evidence bundle offline (no server, no network); exits 0 when valid, 1 when not")
  .argument("<file>", 'bundle file written by Export ("-" for stdin)')
  .option("--trusted-key <vkey>", "ledger public key to trust (name+hex8+base64, repeatable); without one the bundle's own keys are used", (v: string, prev: string[] | undefined) => [...(prev ?? []), v])
  .option("--json", "print the verdict as JSON")
  // Usage errors exit 2 like every other error, so 1 always means "the bundle is not valid".
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
  .action(async (file: string, o: { trustedKey?: string[]; json?: boolean }) => {
    // Loaded only here, and only the chain module: verify-bundle needs no server code.
    const { runVerifyBundle } = await import("./verify-bundle.js");
    process.exitCode = await runVerifyBundle(file, { trustedKey: o.trustedKey ?? [], json: o.json });
  });

program
  .command("agent")
  .description("run an agent daemon: its sources, durable outbox and Ingest stream (SPEC §4)")
  .requiredOption("--config <file>", "agent configuration, YAML or JSON (docs/agents.md)")
  .option("--check", "validate the configuration and exit")
  .action(async (o: { config: string; check?: boolean }) => {
    const { loadAgentConfig } = await import("../../agent/daemon/agent-config.js");
    const config = loadAgentConfig(o.config);
    if (o.check) {
      process.stdout.write(`${o.config}: valid (${config.sources.length} source(s): ${config.sources.map((s) => `${s.name} (${s.type})`).join(", ")})\n`);
      return;
    }
    const { startAgent } = await import("../../agent/daemon/agent-daemon.js");
    const { createLogger } = await import("../../server/ops/logger.js");
    const logger = createLogger(process.env.LOG_LEVEL ?? "info");
    let stopRequested = false;
    let running: Awaited<ReturnType<typeof startAgent>> | undefined;
    const stop = () => {
      // A stop that fails (e.g. the outbox cannot be closed) is reported, never an unhandled rejection.
      if (running)
        void running.stop().then(
          () => process.exit(0),
          (err: unknown) => {
            console.error(`audit-ledger: agent did not stop cleanly: ${(err as Error)?.message ?? String(err)}`);
            process.exit(1);
          },
        );
      else stopRequested = true;
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    running = await startAgent(config, logger);
    if (stopRequested) {
      await running.stop();
      process.exit(0);
    }
    // A source that cannot go on stops the agent with an error, for a supervisor to see.
    const agent = running;
    void agent.failed.then(async (reason) => {
      // What the outbox holds (the source's gap entry, events before it) is sent first,
      // for up to 10 s, so the ledger records the failure too.
      const until = Date.now() + 10_000;
      while (agent.outbox.depth().records > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      await agent.stop().catch(() => undefined);
      console.error(`audit-ledger: agent stopped: ${reason}`);
      process.exit(1);
    });
  });

const agents = program.command("agents").description("the agent registry: enrolment tokens, list, spawn, test events, deregister");
agents
  .command("token")
  .description("create a one-time enrolment token for a new agent (admin)")
  .option("--ttl <seconds>", "validity", "3600")
  .action(async (o: { ttl: string }) => {
    const res = await client().agents.createEnrolmentToken({ chain: chain(), ttlSeconds: Number(num("--ttl")(o.ttl)) });
    process.stdout.write(`${res.token}\n`);
    process.stderr.write(`expires ${res.expiresAt}\n`);
  });
agents
  .command("list")
  .description("registered agents with status and counters (NDJSON)")
  .action(async () => {
    const { toJson } = await import("@bufbuild/protobuf");
    const { AgentSchema } = await import("../../gen/auditledger/v1/agent_registry_service_pb.js");
    const res = await client().agents.listAgents({ chain: chain() });
    for (const a of res.agents) process.stdout.write(JSON.stringify(toJson(AgentSchema, a)) + "\n");
  });
agents
  .command("spawn")
  .description("start a server-side agent (http_webhook, generic_polling) (admin)")
  .requiredOption("--type <type>", "http_webhook or generic_polling")
  .option("--name <name>", "display name", "")
  .option("--config-json <json>", "the source's configuration", "{}")
  .action(async (o: { type: string; name: string; configJson: string }) => {
    const { toJson } = await import("@bufbuild/protobuf");
    const { AgentSchema } = await import("../../gen/auditledger/v1/agent_registry_service_pb.js");
    const res = await client().agents.spawnAgent({ chain: chain(), sourceType: o.type, name: o.name, configJson: o.configJson });
    process.stdout.write(JSON.stringify(toJson(AgentSchema, res.agent!)) + "\n");
  });
agents
  .command("test-event <zid>")
  .description("append one small event through an agent")
  .action(async (zid: string) => {
    const res = await client().agents.sendTestEvent({ chain: chain(), zid });
    process.stdout.write(entryJson(res.entry) + "\n");
  });
agents
  .command("deregister <zid>")
  .description("remove an agent: its credential stops working, its entries stay (admin)")
  .action(async (zid: string) => {
    await client().agents.deregisterAgent({ chain: chain(), zid });
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof ConnectError) {
    console.error(`audit-ledger: ${err.rawMessage} [${err.code}]`);
  } else {
    console.error(`audit-ledger: ${(err as Error).message}`);
  }
  process.exit(2);
});
