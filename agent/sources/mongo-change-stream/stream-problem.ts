// What a driver or server error means for the change stream: history lost (record a
// gap), a configuration problem (fail start() naming it), or a passing failure (retry).
// Server error codes: https://github.com/mongodb/mongo/blob/master/src/mongo/base/error_codes.yml

/** The server no longer has the oplog entries the stream must resume from. */
const CHANGE_STREAM_HISTORY_LOST = 286;
/** The stream cannot go on, e.g. "the resume token was not found" in the oplog. */
const CHANGE_STREAM_FATAL_ERROR = 280;
/** The oplog was truncated past the cursor's position while it was reading (older servers). */
const CAPPED_POSITION_LOST = 136;
/** The resume token cannot be used (malformed, or from another collection). */
const INVALID_RESUME_TOKEN = 260;
const UNAUTHORIZED = 13;
const AUTHENTICATION_FAILED = 18;
/** "The $changeStream stage is only supported on replica sets". */
const CHANGE_STREAM_NEEDS_REPLICA_SET = 40573;

const HISTORY_LOST_CODES = new Set([CHANGE_STREAM_HISTORY_LOST, CHANGE_STREAM_FATAL_ERROR, CAPPED_POSITION_LOST, INVALID_RESUME_TOKEN]);

/** The next event, with its full document / pre-image, is over the 16 MB BSON limit. */
const BSON_OBJECT_TOO_LARGE = 10334;
/** full_document / full_document_before_change "required" and the image is gone (expired, or never stored). */
const NO_MATCHING_DOCUMENT = 47;
/**
 * The next event exists but the server can never return it as configured: reading again
 * from the same resume point fails the same way forever, so retrying only hides the stall.
 */
const UNREADABLE_EVENT_CODES = new Set([BSON_OBJECT_TOO_LARGE, NO_MATCHING_DOCUMENT]);

interface ErrorFacts {
  name: string;
  message: string;
  code: number | undefined;
  codeName: string | undefined;
}

function factsOf(err: unknown): ErrorFacts {
  if (!(err instanceof Error)) return { name: "Error", message: String(err), code: undefined, codeName: undefined };
  const { code, codeName } = err as { code?: unknown; codeName?: unknown };
  return {
    name: err.name,
    message: err.message,
    code: typeof code === "number" ? code : undefined,
    codeName: typeof codeName === "string" ? codeName : undefined,
  };
}

/** "message (CodeName, code N)", or the message alone when the error has no server code. */
export function describeMongoError(err: unknown): string {
  const f = factsOf(err);
  if (f.code === undefined) return f.message;
  return `${f.message} (${f.codeName ?? "code"}${f.codeName ? ", code " : " "}${f.code})`;
}

/** Whether the stream's resume point is gone from the server's history: a gap, never a retry. */
export function isHistoryLost(err: unknown): boolean {
  const f = factsOf(err);
  return f.code !== undefined && HISTORY_LOST_CODES.has(f.code);
}

/**
 * Whether the event after the resume point can never be read with this configuration
 * (too large with its images, a required image gone): a gap and a failure, never a retry.
 */
export function isUnreadableEvent(err: unknown): boolean {
  const f = factsOf(err);
  return f.code !== undefined && UNREADABLE_EVENT_CODES.has(f.code);
}

export interface Where {
  /** The URL's host list, e.g. "db1:27017,db2:27017". */
  hosts: string;
  /** What is watched, e.g. "shop.orders". */
  scope: string;
  username: string | undefined;
  serverSelectionTimeoutMs: number;
}

/** What start() says when connecting (phase "connect") or opening the change stream ("watch") fails. */
export function startProblem(err: unknown, where: Where, phase: "connect" | "watch"): string {
  const f = factsOf(err);
  const user = where.username === undefined ? "the agent (no username)" : `user "${where.username}"`;
  if (f.name === "MongoParseError" || f.name === "MongoInvalidArgumentError") return `url: ${f.message}`;
  if (f.name === "MongoServerSelectionError") {
    return `cannot reach MongoDB at ${where.hosts} within server_selection_timeout_ms (${where.serverSelectionTimeoutMs} ms): ${f.message}`;
  }
  if (/^query(Srv|Txt) /.test(f.message)) return `cannot look up the mongodb+srv:// records of ${where.hosts}: ${f.message}`;
  if (f.code === AUTHENTICATION_FAILED) return `MongoDB at ${where.hosts} refused the credentials of ${user}: ${describeMongoError(err)}`;
  if (f.code === UNAUTHORIZED) {
    return `${user} may not watch ${where.scope} on ${where.hosts}: it needs the changeStream and find actions there (${describeMongoError(err)})`;
  }
  if (f.code === CHANGE_STREAM_NEEDS_REPLICA_SET || /only supported on replica sets/i.test(f.message)) {
    return `change streams need a replica set or a sharded cluster, and MongoDB at ${where.hosts} is a standalone server: ${describeMongoError(err)}`;
  }
  if (f.name === "MongoNetworkError" || f.name === "MongoNetworkTimeoutError") return `cannot talk to MongoDB at ${where.hosts}: ${f.message}`;
  if (phase === "connect") return `cannot connect to MongoDB at ${where.hosts}: ${describeMongoError(err)}`;
  return `cannot watch ${where.scope} on MongoDB at ${where.hosts}: ${describeMongoError(err)}`;
}
