// The redis_keyspace source's configuration (everything but `name` and `type`).
// Unknown keys are refused, and every error names the field it is about. A source runs
// keyspace notifications, Streams consumer groups, or both; at least one must be given.
import { z } from "zod";
import { NOTIFY_FLAG_CHARS } from "./notify-flags.js";

/** What the ledger accepts as a kind (server/ledger/validate-event.ts). */
const KIND = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,100}$/;
const KIND_MESSAGE = "may hold only letters, digits and . _ : / - (at most 101, starting with a letter or digit)";

const redisUrl = z.string().superRefine((text, ctx) => {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    ctx.addIssue({ code: "custom", message: "is not a URL (expected redis://host:port or rediss://host:port)" });
    return;
  }
  if (url.protocol !== "redis:" && url.protocol !== "rediss:") {
    ctx.addIssue({ code: "custom", message: `must be a redis:// or rediss:// URL, not ${url.protocol}//` });
  }
  if (url.search !== "" || url.hash !== "") ctx.addIssue({ code: "custom", message: "must not hold a query or fragment" });
  if (url.pathname !== "" && url.pathname !== "/" && !/^\/(0|[1-9][0-9]?)$/.test(url.pathname)) {
    ctx.addIssue({ code: "custom", message: `path "${url.pathname}" is not a database number` });
  }
});

const notifyFlags = z
  .string()
  .min(1, "must not be empty")
  .refine((text) => [...text].every((c) => NOTIFY_FLAG_CHARS.includes(c)), {
    message: `may hold only the notify-keyspace-events flags ${NOTIFY_FLAG_CHARS}`,
  });

/** A Redis event name as it appears in notifications (set, del, expired, hset, xadd...). */
const eventName = z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, "is not an event name (such as set, del, expired)");

export const notificationsConfigSchema = z
  .strictObject({
    /**
     * `keyspace`: subscribe to `__keyspace@<db>__:<key pattern>` (keys filtered by the
     * server, events by the source); `keyevent`: to `__keyevent@<db>__:<event>` (events
     * filtered by the server, keys by the source).
     */
    channel: z.enum(["keyspace", "keyevent"]).default("keyspace"),
    /** Redis glob patterns (`*`, `?`, `[a-z]`, `\` escapes) for the keys reported. */
    key_patterns: z.array(z.string().min(1, "must not be empty")).min(1, "list at least one pattern (\"*\" for every key)").default(["*"]),
    /** Only these events (e.g. set, del, expired); default: every event the server sends. */
    events: z.array(eventName).min(1, "list at least one event, or leave events out").optional(),
    /**
     * Flags the source adds to the server's `notify-keyspace-events` at start and after
     * each reconnect (e.g. "KEA"). Off by default: the source then changes nothing on the
     * server, and start() fails if notifications are not enabled there.
     */
    configure: notifyFlags.optional(),
    /**
     * Notifications held while the agent is slow or paused (they cannot be paused
     * upstream). Beyond this they are dropped and a `gap` entry says how many.
     */
    max_buffered: z.number().int().min(1).max(10_000_000).default(10_000),
    /** Kinds are `<kind_prefix>.<event>`, e.g. redis.set. */
    kind_prefix: z.string().regex(KIND, KIND_MESSAGE).default("redis"),
  })
  .superRefine((c, ctx) => {
    if (c.configure === undefined) return;
    const needed = c.channel === "keyspace" ? "K" : "E";
    if (!c.configure.includes(needed)) {
      ctx.addIssue({ code: "custom", path: ["configure"], message: `must include "${needed}" for channel ${c.channel}` });
    }
    if (![...c.configure].some((f) => f !== "K" && f !== "E")) {
      ctx.addIssue({ code: "custom", path: ["configure"], message: 'must include at least one event class (e.g. "A" for all)' });
    }
  });

export const streamsConfigSchema = z
  .strictObject({
    /** Stream keys read through the consumer group. */
    keys: z.array(z.string().min(1, "must not be empty")).min(1, "list at least one stream key"),
    /** The consumer group (shared by every agent reading these streams together). */
    group: z.string().min(1, "must not be empty").default("audit-ledger"),
    /**
     * This consumer's name in the group; must stay the same across restarts so the
     * entries it was given but did not acknowledge (its PEL) are found again.
     * Default: "<hostname>:<source name>".
     */
    consumer: z.string().min(1, "must not be empty").optional(),
    /** Create the group (XGROUP CREATE ... MKSTREAM) when it or the stream is missing. */
    create_group: z.boolean().default(false),
    /** Where a group created by the source starts: "0" (every entry in the stream) or "$" (new ones only). */
    group_start_id: z
      .string()
      .regex(/^(\$|0|[0-9]+(-[0-9]+)?)$/, 'must be "0", "$" or a stream id')
      .default("0"),
    /** Entries per XREADGROUP (and per emit). */
    batch_size: z.number().int().min(1).max(10_000).default(100),
    /** How long one XREADGROUP waits for new entries, in ms. */
    block_ms: z.number().int().min(10).max(60_000).default(2_000),
    /**
     * Claim (XAUTOCLAIM, Redis ≥ 6.2) entries other consumers of the group have held
     * unacknowledged for this long, in ms: a dead consumer's entries are not stuck
     * forever. Off by default.
     */
    claim_idle_ms: z.number().int().min(1_000).optional(),
    /** Kind of every stream entry. */
    kind: z.string().regex(KIND, KIND_MESSAGE).default("redis.stream_entry"),
    /** Entries whose JSON payload is larger get a digest instead of their fields. */
    max_payload_bytes: z.number().int().min(1024).max(1024 * 1024).default(1024 * 1024 - 4096),
  })
  .superRefine((c, ctx) => {
    const seen = new Set<string>();
    c.keys.forEach((key, i) => {
      if (seen.has(key)) ctx.addIssue({ code: "custom", path: ["keys", i], message: `"${key}" is listed twice` });
      seen.add(key);
    });
  });

export const redisKeyspaceConfigSchema = z
  .strictObject({
    /** redis://[user:password@]host:port[/db] or rediss:// for TLS. */
    url: redisUrl.default("redis://127.0.0.1:6379"),
    /** Database number (notifications name it in their channel); default: the URL's, else 0. */
    db: z.number().int().min(0).max(99).optional(),
    /** ACL user (Redis ≥ 6); overrides the URL's. */
    username: z.string().min(1, "must not be empty").optional(),
    /** Password; overrides the URL's. */
    password: z.string().min(1, "must not be empty").optional(),
    /** Prefix of the source's connection names (CLIENT LIST); default "audit-ledger:<source name>". */
    client_name: z
      .string()
      .regex(/^[\x21-\x7e]{1,100}$/, "may hold only printable characters without spaces (at most 100)")
      .optional(),
    /** Limit on establishing one connection, in ms. */
    connect_timeout_ms: z.number().int().min(100).max(120_000).default(5_000),
    /** Longest wait between reconnection attempts once running, in ms. */
    max_reconnect_delay_ms: z.number().int().min(100).max(600_000).default(10_000),
    notifications: notificationsConfigSchema.optional(),
    streams: streamsConfigSchema.optional(),
  })
  .superRefine((c, ctx) => {
    if (c.notifications === undefined && c.streams === undefined) {
      ctx.addIssue({ code: "custom", path: ["notifications"], message: "configure notifications, streams, or both" });
    }
    const path = safeUrl(c.url)?.pathname ?? "";
    if (c.db !== undefined && path.length > 1 && Number(path.slice(1)) !== c.db) {
      ctx.addIssue({ code: "custom", path: ["db"], message: `is ${c.db} but the url names database ${path.slice(1)}` });
    }
  });

function safeUrl(text: string): URL | undefined {
  try {
    return new URL(text);
  } catch {
    return undefined;
  }
}

export type RedisKeyspaceConfigInput = z.input<typeof redisKeyspaceConfigSchema>;
export type RedisKeyspaceConfig = z.output<typeof redisKeyspaceConfigSchema>;
export type NotificationsConfig = z.output<typeof notificationsConfigSchema>;
export type StreamsConfig = z.output<typeof streamsConfigSchema>;
