// Connections to Redis. The source opens up to three, each named in CLIENT LIST as
// "<client_name>:<role>": `cmd` (checks, CONFIG, XACK, XAUTOCLAIM, CLIENT UNBLOCK),
// `stream` (XREADGROUP, which blocks its connection) and `sub` (PSUBSCRIBE, which takes
// its connection over). RESP2, so servers from Redis 5 on work alike.
//
// The first connection attempt is not retried: start() fails at once naming the host and
// the problem (refused, timed out, wrong credentials, bad database). Once a connection
// has worked, losing it is retried for ever with capped exponential backoff.
import { createClient } from "redis";
import type { SourceContext } from "../source-factory.js";
import type { RedisKeyspaceConfig } from "./config.js";
import { backoffMs } from "./feed-host.js";

export interface RedisTarget {
  url: string;
  db: number;
  username: string | undefined;
  password: string | undefined;
  /** host:port/db, for messages: never the credentials. */
  display: string;
}

export function redisTarget(config: RedisKeyspaceConfig): RedisTarget {
  const url = new URL(config.url);
  const pathDb = url.pathname.length > 1 ? Number(url.pathname.slice(1)) : undefined;
  const db = config.db ?? pathDb ?? 0;
  const username = config.username ?? (url.username !== "" ? decodeURIComponent(url.username) : undefined);
  const password = config.password ?? (url.password !== "" ? decodeURIComponent(url.password) : undefined);
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = url.port === "" ? 6379 : Number(url.port);
  const bare = new URL(config.url);
  bare.username = "";
  bare.password = "";
  bare.pathname = "";
  return { url: bare.toString(), db, username, password, display: `${url.protocol === "rediss:" ? "rediss://" : ""}${host}:${port}/${db}` };
}

function makeClient(target: RedisTarget, name: string, connectTimeoutMs: number, reconnect: (retries: number, cause: Error) => number | Error, pingIntervalMs?: number) {
  return createClient({
    pingInterval: pingIntervalMs,
    url: target.url,
    username: target.username,
    password: target.password,
    database: target.db,
    name,
    RESP: 2,
    socket: { connectTimeout: connectTimeoutMs, reconnectStrategy: reconnect },
  });
}

export type RedisConnection = ReturnType<typeof makeClient>;

/** Thrown when start() cannot use Redis; the message names the server and the problem. */
export class RedisSourceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RedisSourceError";
  }
}

export function errorText(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** A sentence for a failed connection attempt: what the user should look at. */
export function describeConnectProblem(target: RedisTarget, cause: unknown): string {
  // Already described (the reconnect strategy's verdict, rethrown by connect()).
  if (cause instanceof RedisSourceError) return cause.message;
  const text = errorText(cause);
  if (/WRONGPASS|NOAUTH|invalid password|AUTH .*without any password|invalid username-password/i.test(text)) {
    return `Redis at ${target.display} refused the credentials (check username and password): ${text}`;
  }
  if (/NOPERM/i.test(text)) return `the Redis user lacks a permission the source needs at ${target.display}: ${text}`;
  if (/DB index is out of range|invalid DB index/i.test(text)) return `database ${target.db} does not exist on Redis at ${target.display}: ${text}`;
  if (/ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|timeout|ECONNRESET|closed/i.test(text)) {
    return `cannot connect to Redis at ${target.display} (check url, host and port): ${text}`;
  }
  return `Redis at ${target.display}: ${text}`;
}

export interface ConnectionEvents {
  /** The connection was lost (called once per loss, not per failed retry). */
  onLost?(cause: string): void;
  /** Connected again after a loss (subscriptions already renewed). */
  onRestored?(): void;
}

/**
 * Opens one named connection. Rejects, naming the problem, when the first attempt fails;
 * afterwards reconnects with backoff and reports losses and restorations.
 */
export async function openConnection(
  target: RedisTarget,
  opts: { clientName: string; role: string; connectTimeoutMs: number; maxReconnectDelayMs: number; ctx: SourceContext; pingIntervalMs?: number; events?: ConnectionEvents },
): Promise<RedisConnection> {
  let everReady = false;
  let lost = false;
  let closing = false;
  const name = `${opts.clientName}:${opts.role}`;
  const reconnect = (retries: number, cause: Error): number | Error => {
    if (!everReady) return new RedisSourceError(describeConnectProblem(target, cause));
    return backoffMs(retries + 1, opts.maxReconnectDelayMs);
  };
  const client = makeClient(target, name, opts.connectTimeoutMs, reconnect, opts.pingIntervalMs);
  client.on("error", (err: unknown) => {
    if (!everReady || closing) return; // the first failure is start()'s rejection
    if (!lost) {
      lost = true;
      opts.ctx.log.warn({ source: opts.ctx.name, connection: opts.role, redis: target.display, err: errorText(err) }, "redis_keyspace: connection lost; reconnecting");
      opts.events?.onLost?.(errorText(err));
    }
  });
  client.on("ready", () => {
    if (!everReady) {
      everReady = true;
      return;
    }
    if (lost) {
      lost = false;
      opts.ctx.log.info({ source: opts.ctx.name, connection: opts.role, redis: target.display }, "redis_keyspace: reconnected");
      opts.events?.onRestored?.();
    }
  });
  try {
    await client.connect();
  } catch (err) {
    closing = true;
    client.destroy();
    if (err instanceof Error && err.name === "ReconnectStrategyError") throw new RedisSourceError(err.message);
    throw new RedisSourceError(describeConnectProblem(target, err));
  }
  return client;
}

/** Closes a connection at once (pending commands are rejected), ignoring one already closed. */
export function closeConnection(client: RedisConnection | undefined): void {
  if (client === undefined) return;
  client.removeAllListeners();
  client.on("error", () => undefined); // late socket errors of a closed connection
  try {
    client.destroy();
  } catch {
    // already closed
  }
}

/** A RESP2 reply as given by sendCommand: strings or Buffers, numbers, null, arrays. */
export type Reply = string | Buffer | number | null | Reply[];

/** sendCommand with its reply typed as RESP2 gives it. */
export async function send(client: RedisConnection, args: string[], options?: Parameters<RedisConnection["sendCommand"]>[1]): Promise<Reply> {
  return (await client.sendCommand(args, options)) as unknown as Reply;
}

export function asText(reply: Reply | undefined): string {
  if (typeof reply === "string") return reply;
  if (Buffer.isBuffer(reply)) return reply.toString("utf8");
  if (typeof reply === "number") return String(reply);
  return "";
}

/** A flat [name, value, name, value...] reply (XINFO, CONFIG GET) as a map. */
export function pairs(reply: Reply | undefined): Map<string, Reply> {
  const map = new Map<string, Reply>();
  if (!Array.isArray(reply)) return map;
  for (let i = 0; i + 1 < reply.length; i += 2) map.set(asText(reply[i]), reply[i + 1]!);
  return map;
}
