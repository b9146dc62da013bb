// One conditional GET of the polled endpoint with Node's global fetch: sends the
// validators of the last accepted response (If-None-Match / If-Modified-Since), bounds
// the time (timeout_ms, body included) and the size (max_response_bytes, checked while
// reading, so a huge body is refused without being held), and parses the JSON.
import type { PollProblem } from "./poll-problem.js";

export interface ConditionalGetRequest {
  url: string;
  /** The URL as it may appear in logs and messages (no query string). */
  displayUrl: string;
  headers?: Record<string, string>;
  etag?: string;
  lastModified?: string;
  timeoutMs: number;
  maxBytes: number;
  /** Aborted by stop(): the request ends at once with `stopped`. */
  signal: AbortSignal;
}

export type ConditionalGetResult =
  | { outcome: "not_modified" }
  | { outcome: "ok"; body: unknown; etag?: string; lastModified?: string }
  | { outcome: "failed"; problem: PollProblem }
  | { outcome: "stopped" };

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

export async function conditionalGet(req: ConditionalGetRequest): Promise<ConditionalGetResult> {
  if (req.signal.aborted) return { outcome: "stopped" };
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, req.timeoutMs);
  const onStop = () => controller.abort();
  req.signal.addEventListener("abort", onStop, { once: true });
  const where = `GET ${req.displayUrl}`;
  try {
    const headers = new Headers(req.headers);
    if (!headers.has("accept")) headers.set("accept", "application/json");
    if (req.etag !== undefined) headers.set("if-none-match", req.etag);
    if (req.lastModified !== undefined) headers.set("if-modified-since", req.lastModified);
    const res = await fetch(req.url, { method: "GET", headers, signal: controller.signal, redirect: "follow" });
    if (res.status === 304) {
      await res.body?.cancel();
      return { outcome: "not_modified" };
    }
    if (res.status < 200 || res.status >= 300 || res.status === 204) {
      await res.body?.cancel();
      return { outcome: "failed", problem: statusProblem(res, where) };
    }
    const declared = Number(res.headers.get("content-length") ?? NaN);
    if (Number.isFinite(declared) && declared > req.maxBytes) {
      await res.body?.cancel();
      return { outcome: "failed", problem: tooLarge(where, `${declared} bytes declared`, req.maxBytes) };
    }
    const bytes = await readLimited(res, req.maxBytes);
    if (bytes === undefined) return { outcome: "failed", problem: tooLarge(where, "body", req.maxBytes) };
    let body: unknown;
    try {
      body = JSON.parse(strictUtf8.decode(bytes));
    } catch (err) {
      const why = err instanceof SyntaxError ? err.message : "not valid UTF-8";
      return {
        outcome: "failed",
        problem: { kind: "not_json", httpStatus: res.status, message: `${where} answered ${res.status} with a body that is not JSON (${why}; content-type ${res.headers.get("content-type") ?? "none"})` },
      };
    }
    const result: ConditionalGetResult = { outcome: "ok", body };
    const etag = res.headers.get("etag");
    if (etag !== null && etag !== "") result.etag = etag;
    const lastModified = res.headers.get("last-modified");
    if (lastModified !== null && lastModified !== "") result.lastModified = lastModified;
    return result;
  } catch (err) {
    if (req.signal.aborted) return { outcome: "stopped" };
    if (timedOut) return { outcome: "failed", problem: { kind: "timeout", message: `${where} gave no complete answer within ${req.timeoutMs} ms` } };
    return { outcome: "failed", problem: { kind: "unreachable", message: `${where} failed: ${networkReason(err)}` } };
  } finally {
    clearTimeout(timer);
    req.signal.removeEventListener("abort", onStop);
  }
}

/** The body, or undefined as soon as it grows past `maxBytes` (the rest is not read). */
async function readLimited(res: Response, maxBytes: number): Promise<Uint8Array | undefined> {
  if (res.body === null) return new Uint8Array(0);
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel().catch(() => undefined);
      return undefined;
    }
    chunks.push(value);
  }
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

function statusProblem(res: Response, where: string): PollProblem {
  const status = res.status;
  const answered = `${where} answered ${status}${res.statusText ? ` ${res.statusText}` : ""}`;
  if (status >= 500) return { kind: "server_error", httpStatus: status, message: answered, ...retryAfter(res) };
  if (status === 429 || status === 408) return { kind: "throttled", httpStatus: status, message: answered, ...retryAfter(res) };
  if (status === 401 || status === 403) {
    return { kind: "refused", httpStatus: status, message: `${answered}: check the credentials in headers (e.g. Authorization)` };
  }
  if (status === 404 || status === 410) return { kind: "refused", httpStatus: status, message: `${answered}: check url` };
  if (status >= 400) return { kind: "refused", httpStatus: status, message: `${answered}: check url and headers` };
  return { kind: "unexpected_status", httpStatus: status, message: `${answered}; expected 200 with a JSON body, or 304` };
}

function retryAfter(res: Response): { retryAfterMs?: number } {
  const value = res.headers.get("retry-after");
  if (value === null) return {};
  if (/^\d+$/.test(value.trim())) return { retryAfterMs: Number(value.trim()) * 1000 };
  const at = Date.parse(value);
  return Number.isNaN(at) ? {} : { retryAfterMs: Math.max(0, at - Date.now()) };
}

function tooLarge(where: string, what: string, maxBytes: number): PollProblem {
  return { kind: "too_large", httpStatus: 200, message: `${where}: response ${what} exceeds max_response_bytes (${maxBytes})` };
}

/** undici reports "fetch failed" with the real reason (ECONNREFUSED, ENOTFOUND...) in `cause`. */
function networkReason(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const parts = [cause?.code, cause?.message ?? (err as Error).message].filter((p): p is string => typeof p === "string" && p !== "");
  return parts.length > 0 ? [...new Set(parts)].join(": ") : String(err);
}
