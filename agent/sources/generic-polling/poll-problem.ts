// What can go wrong with one poll, sorted by what it means: a configuration mistake
// (start() refuses it; later it is logged as such) or a passing upstream trouble (only
// backed off). Every kind backs off once the source runs.

export type PollProblemKind =
  /** No connection: DNS failure, refused, reset, TLS error. */
  | "unreachable"
  /** No complete answer within timeout_ms. */
  | "timeout"
  /** HTTP 5xx. */
  | "server_error"
  /** HTTP 429 or 408: upstream asks us to slow down. */
  | "throttled"
  /** Any other 4xx (401, 403, 404...): wrong url, headers or credentials. */
  | "refused"
  /** A status the source does not handle (e.g. a 3xx that was not followed, 204). */
  | "unexpected_status"
  /** The body exceeds max_response_bytes. */
  | "too_large"
  /** The body is not JSON (or not UTF-8). */
  | "not_json"
  /** The JSON holds no item array where items_path (or the default) points. */
  | "no_items";

export interface PollProblem {
  kind: PollProblemKind;
  /** Human sentence naming the URL and what happened. */
  message: string;
  httpStatus?: number;
  /** From Retry-After, when upstream sent one. */
  retryAfterMs?: number;
}

/** Problems that mean the configuration is wrong rather than upstream being briefly unwell. */
const CONFIG_PROBLEMS = new Set<PollProblemKind>(["refused", "unexpected_status", "too_large", "not_json", "no_items"]);
/** Problems that fail start(): configuration problems, and an endpoint that cannot be reached at all. */
const START_PROBLEMS = new Set<PollProblemKind>([...CONFIG_PROBLEMS, "unreachable", "timeout"]);

export function isConfigProblem(problem: PollProblem): boolean {
  return CONFIG_PROBLEMS.has(problem.kind);
}

export function failsStart(problem: PollProblem): boolean {
  return START_PROBLEMS.has(problem.kind);
}

export class PollProblemError extends Error {
  constructor(readonly problem: PollProblem) {
    super(problem.message);
    this.name = "PollProblemError";
  }
}
