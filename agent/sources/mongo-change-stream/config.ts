// The mongo_change_stream source's configuration (everything but `name` and `type`).
// Unknown keys are refused, and every error names the field it is about. Loaded up front
// by the registry, so it checks the URL's shape itself instead of loading the driver.
import { z } from "zod";

/** mongodb://host[:port][,host...][/defaultauthdb][?options] or mongodb+srv://host[/...][?...]. */
const MONGO_URL = /^(mongodb(?:\+srv)?):\/\/([^/?#]*)(\/[^?#]*)?(\?[^#]*)?$/;

/** The host list of a MongoDB URL as written ("h1:27017,h2:27017"), or the problem with it. */
export function hostsOfUrl(text: string): { hosts: string } | { problem: string } {
  const m = MONGO_URL.exec(text);
  if (!m) return { problem: `"${text.slice(0, 80)}" is not a MongoDB URL; expected mongodb://host:27017 or mongodb+srv://cluster.example.net` };
  const authority = m[2]!;
  if (authority.includes("@")) return { problem: "must not contain user:password; use username and password (or password_env)" };
  const hosts = authority.split(",");
  if (authority === "" || hosts.some((h) => h === "")) return { problem: "names no host" };
  if (m[1] === "mongodb+srv" && hosts.length > 1) return { problem: "mongodb+srv:// takes exactly one host name" };
  return { hosts: authority };
}

const mongoUrl = z.string().superRefine((text, ctx) => {
  const parsed = hostsOfUrl(text);
  if ("problem" in parsed) ctx.addIssue({ code: "custom", message: parsed.problem });
});

// MongoDB's own naming rules, so a typo fails here rather than as a server error later.
const databaseName = z
  .string()
  .min(1, "must not be empty")
  .max(63, "at most 63 characters")
  .regex(/^[^/\\. "$*<>:|?\u0000]+$/, 'may not contain / \\ . " $ * < > : | ? space or NUL');

const collectionName = z
  .string()
  .min(1, "must not be empty")
  .max(255, "at most 255 characters")
  .refine((s) => !s.includes("$") && !s.includes("\u0000"), "may not contain $ or NUL")
  .refine((s) => !s.startsWith("system."), 'system collections ("system.…") cannot be watched');

export const mongoChangeStreamConfigSchema = z
  .strictObject({
    /**
     * The deployment: mongodb://host:27017[,host2...]/?replicaSet=rs0 or
     * mongodb+srv://cluster.example.net. Driver options (tls, authSource, replicaSet,
     * readPreference...) go in the query string; credentials do not.
     */
    url: mongoUrl,
    /** The database to watch; without it, the whole deployment. */
    database: databaseName.optional(),
    /** The collection to watch (needs `database`); without it, the whole database. */
    collection: collectionName.optional(),
    username: z.string().min(1, "must not be empty").optional(),
    password: z.string().optional(),
    /** The name of an environment variable holding the password (read at start). */
    password_env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be an environment variable name").optional(),
    /** The database the user is defined in (MongoDB's authSource); default: the driver's (admin). */
    auth_source: databaseName.optional(),
    /**
     * What an update event carries besides its change: "off" (the change only),
     * "updateLookup" (the document as it is when the event is read, not as the update
     * left it), "whenAvailable" / "required" (the post-image; MongoDB 6.0+, needs
     * changeStreamPreAndPostImages on the collection).
     */
    full_document: z.enum(["off", "updateLookup", "whenAvailable", "required"]).default("off"),
    /** The document before an update, replace or delete (MongoDB 6.0+, pre-images enabled). */
    full_document_before_change: z.enum(["off", "whenAvailable", "required"]).default("off"),
    /**
     * When MongoDB no longer has the history the source must resume from (the oplog
     * rolled past it while the agent was away): either way a `gap` entry is recorded and
     * an error logged; "fail" then stops the source (start() fails until this is changed),
     * "restart_from_now" goes on from the current point.
     */
    on_history_lost: z.enum(["fail", "restart_from_now"]).default("fail"),
    /** Most events read per round trip and handed to the agent at once. */
    batch_size: z.number().int().min(1).max(10_000).default(100),
    /** How long the server holds a read open waiting for new events, in ms. */
    max_await_time_ms: z.number().int().min(10).max(60_000).default(1_000),
    /** How long start() (and each reconnection) looks for a reachable server, in ms. */
    server_selection_timeout_ms: z.number().int().min(100).max(600_000).default(10_000),
    /**
     * Extended JSON mode of the payload: "relaxed" (plain JSON numbers and strings where
     * they fit) or "canonical" (every BSON type kept, e.g. {"$numberInt": "1"}).
     */
    payload_ejson: z.enum(["relaxed", "canonical"]).default("relaxed"),
  })
  .superRefine((c, ctx) => {
    if (c.collection !== undefined && c.database === undefined) {
      ctx.addIssue({ code: "custom", path: ["collection"], message: "needs `database` (the database the collection is in)" });
    }
    if (c.password !== undefined && c.password_env !== undefined) {
      ctx.addIssue({ code: "custom", path: ["password_env"], message: "give password or password_env, not both" });
    }
    if ((c.password !== undefined || c.password_env !== undefined) && c.username === undefined) {
      ctx.addIssue({ code: "custom", path: ["username"], message: "a password needs a username" });
    }
    if (c.auth_source !== undefined && c.username === undefined) {
      ctx.addIssue({ code: "custom", path: ["auth_source"], message: "is where `username` is defined; set username too" });
    }
  });

export type MongoChangeStreamConfigInput = z.input<typeof mongoChangeStreamConfigSchema>;
export type MongoChangeStreamConfig = z.output<typeof mongoChangeStreamConfigSchema>;

/** What a config watches, as written in the state file and in messages: "db.coll", "db" or "the deployment". */
export function scopeOf(config: Pick<MongoChangeStreamConfig, "database" | "collection">): string {
  if (config.database === undefined) return "the deployment";
  return config.collection === undefined ? config.database : `${config.database}.${config.collection}`;
}
