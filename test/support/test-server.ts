// Starting ledger servers for tests: in-process (fast) or as real child processes
// (for crash, restart and multi-replica tests). Both use the run's fresh database.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { inject } from "vitest";
import pg from "pg";
import { configFromEnv, type ServerConfig } from "../../server/config.js";
import { startLedgerServer, type RunningServer } from "../../server/ledger-server.js";
import { createApiKey, type Scope } from "../../server/auth/api-keys.js";
import { createLogger } from "../../server/ops/logger.js";
import { createLedgerClient, type LedgerClientOptions } from "../../clients/node/ledger-client.js";

export const databaseUrl = () => inject("databaseUrl");
export const keysDir = () => inject("keysDir");

/** A chain name no other test uses. */
export function uniqueChain(prefix = "t"): string {
  return `${prefix}-${randomBytes(5).toString("hex")}`;
}

export async function startTestServer(overrides: Partial<ServerConfig> = {}): Promise<RunningServer> {
  const config: ServerConfig = {
    ...configFromEnv({}),
    port: 0,
    databaseUrl: databaseUrl(),
    keysDir: keysDir(),
    bootstrapAdminKey: false,
    shutdownGraceMs: 2000,
    ...overrides,
  };
  return startLedgerServer(config, createLogger(process.env.TEST_LOG_LEVEL ?? "silent"));
}

/** Creates an API key directly in the database (as an operator would with the CLI). */
export async function createKey(chain: string, scopes: Scope[] = ["append", "read", "admin"]): Promise<string> {
  const client = new pg.Client({ connectionString: databaseUrl() });
  await client.connect();
  try {
    return (await createApiKey(client as never, chain, scopes)).token;
  } finally {
    await client.end();
  }
}

/** A client for `chain` with a fresh key of the given scopes. */
export async function clientFor(server: { url: string }, chain: string, scopes: Scope[] = ["append", "read", "admin"], options: Partial<LedgerClientOptions> = {}) {
  const apiKey = await createKey(chain, scopes);
  return createLedgerClient({ baseUrl: server.url, apiKey, ...options });
}

/** A superuser connection: the attacker (or DBA) who bypasses the server. */
export async function superuser(): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: databaseUrl() });
  await client.connect();
  return client;
}

export interface ServerProcess {
  url: string;
  port: number;
  child: ChildProcess;
  /** Everything the process printed. */
  output(): string;
  /** SIGTERM and wait for exit. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait for exit. */
  kill(): Promise<void>;
}

/** Runs `audit-ledger serve` as a child process and resolves once it listens. */
export async function spawnServer(env: Record<string, string> = {}): Promise<ServerProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", "clients/cli/main.ts", "serve", "--port", "0"], {
    env: { ...process.env, DATABASE_URL: databaseUrl(), KEYS_DIR: keysDir(), BOOTSTRAP_ADMIN_KEY: "false", LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  // "close" comes after the output streams are drained, so output() is complete.
  const exited = new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      const m = /"url":"(http[^"]+)".*"msg":"listening/.exec(out);
      if (m) resolve(m[1]!);
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", (c: Buffer) => (out += c.toString()));
    void exited.then((code) => reject(new Error(`server exited with ${code} before listening:\n${out}`)));
  });
  return {
    url,
    port: Number(new URL(url).port),
    child,
    output: () => out,
    async stop() {
      child.kill("SIGTERM");
      return exited;
    },
    async kill() {
      child.kill("SIGKILL");
      await exited;
    },
  };
}
