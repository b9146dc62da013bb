// audit-ledger: the command line. Every command but `serve` (and `keys create` with
// direct database access) talks to a server through the generated client.
import { readFileSync } from "node:fs";
import { Command, Option } from "commander";
import { ConnectError } from "@connectrpc/connect";
import type { Entry } from "../../gen/auditledger/v1/entry_pb.js";
import { Order, type EntryFilterSchema } from "../../gen/auditledger/v1/ledger_service_pb.js";
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
    const server = await startLedgerServer(configFromEnv(env));
    if (server.bootstrapToken) {
      process.stdout.write(
        `\nFirst start: an admin API key for chain "${configFromEnv(env).defaultChain}" (shown once, keep it safe):\n\n` +
          `  export AUDIT_LEDGER_API_KEY=${server.bootstrapToken}\n\n`,
      );
    }
    const stop = () => void server.close().then(() => process.exit(0));
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });

const keys = program.command("keys").description("manage API keys");
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
          console.log(JSON.stringify({ valid: v.valid, checked: Number(v.checked), first_break_at: v.firstBreakAt === undefined ? null : Number(v.firstBreakAt), reason: v.reason }));
        } else {
          console.log(v.valid ? `VALID: ${v.reason}` : `BROKEN at seq ${v.firstBreakAt}: ${v.reason} (checked ${v.checked})`);
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

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof ConnectError) {
    console.error(`audit-ledger: ${err.rawMessage} [${err.code}]`);
  } else {
    console.error(`audit-ledger: ${(err as Error).message}`);
  }
  process.exit(2);
});
