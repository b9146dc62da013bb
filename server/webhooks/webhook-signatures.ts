// Webhook signature checks for the webhook bridge (SPEC §5). Pure functions over the raw request,
// so the HTTP layer decides what a failure costs (401, nothing appended) and tests can pin the
// clock. Every failure is a value, never an exception: a malformed header from the internet is
// ordinary input, not a bug. Reasons name the header at fault and never echo the secret or the
// MAC we expected, which would let a caller forge the next request.
import { createHmac, timingSafeEqual } from "node:crypto";

export const WEBHOOK_SCHEMES = ["generic", "github", "stripe", "slack", "shopify", "standard"] as const;
export type WebhookScheme = (typeof WEBHOOK_SCHEMES)[number];

export interface WebhookRequest {
  /** Header names lower-case, as node gives them; a repeated header may arrive as an array. */
  headers: Record<string, string | string[] | undefined>;
  /** The raw body bytes: signatures cover bytes, and re-serialised JSON would not match. */
  body: Uint8Array;
}

export interface SignatureCheckOptions {
  scheme: WebhookScheme;
  secret: string;
  /** How far a signed timestamp may be from `now`, either way (default 300, Stripe's and Slack's 5 minutes). */
  toleranceSeconds?: number;
  /** The clock to judge timestamps by; tests pin it. */
  now?: Date;
}

export type SignatureCheck = { ok: true } | { ok: false; reason: string };

export const DEFAULT_TOLERANCE_SECONDS = 300;

const SHA256_BYTES = 32;
const HEX_SHA256 = /^[0-9a-fA-F]{64}$/;
/** Standard (not URL-safe) base64 of 32 bytes: 43 characters and one pad. */
const BASE64_SHA256 = /^[A-Za-z0-9+/]{43}=$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** Unix seconds; 12 digits reach far past any real clock and keep the number exact. */
const UNIX_SECONDS = /^\d{1,12}$/;
const STANDARD_SECRET_PREFIX = "whsec_";

const OK: SignatureCheck = { ok: true };

function fail(reason: string): SignatureCheck {
  return { ok: false, reason };
}

/** Checks the request's signature under `opts.scheme`. Never throws. */
export function checkWebhookSignature(req: WebhookRequest, opts: SignatureCheckOptions): SignatureCheck {
  try {
    if (typeof opts.secret !== "string" || opts.secret === "") return fail("no webhook secret is configured");
    const tolerance = opts.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
    if (!Number.isFinite(tolerance) || tolerance < 0) return fail("toleranceSeconds must be a non-negative number");
    const nowMs = (opts.now ?? new Date()).getTime();
    if (!Number.isFinite(nowMs)) return fail("the clock given as `now` is not a valid date");
    const clock: Clock = { nowSeconds: Math.floor(nowMs / 1000), tolerance };
    switch (opts.scheme) {
      case "generic":
        return checkPrefixedHex(req, "X-Signature", "sha256=", opts.secret);
      case "github":
        return checkPrefixedHex(req, "X-Hub-Signature-256", "sha256=", opts.secret);
      case "stripe":
        return checkStripe(req, opts.secret, clock);
      case "slack":
        return checkSlack(req, opts.secret, clock);
      case "shopify":
        return checkShopify(req, opts.secret);
      case "standard":
        return checkStandard(req, opts.secret, clock);
      default:
        return fail(`unknown webhook scheme ${JSON.stringify(String(opts.scheme satisfies never))}`);
    }
  } catch {
    // Belt and braces: the checks above are written not to throw, but a caller's odd header
    // object must still end in a 401, not a 500.
    return fail("the webhook signature could not be checked");
  }
}

/**
 * The provider's delivery id, to be used as the idempotency key, if the request carries one.
 * Call it only after the signature passed. Ids taken from the body (Stripe, Slack) and Standard
 * Webhooks' `webhook-id` are covered by the signature; the GitHub, Shopify and generic id headers
 * are not, so they dedupe honest retries but cannot stop a deliberate replay.
 */
export function deliveryIdOf(req: WebhookRequest, scheme: WebhookScheme): string | undefined {
  switch (scheme) {
    case "generic":
      return optionalHeader(req, "x-delivery-id") ?? optionalHeader(req, "idempotency-key");
    case "github":
      return optionalHeader(req, "x-github-delivery");
    case "stripe":
      // Stripe's event id (evt_...) is the same on every retry of the event.
      return jsonStringField(req.body, "id");
    case "slack":
      // Events API callbacks carry event_id; slash commands and interactions (form-encoded) carry none.
      return jsonStringField(req.body, "event_id");
    case "shopify":
      return optionalHeader(req, "x-shopify-webhook-id") ?? optionalHeader(req, "x-shopify-event-id");
    case "standard":
      return optionalHeader(req, "webhook-id");
    default:
      return undefined;
  }
}

// ---------------------------------------------------------------- schemes

interface Clock {
  nowSeconds: number;
  tolerance: number;
}

/** generic and GitHub: `<prefix><hex HMAC-SHA256(secret, body)>`. */
function checkPrefixedHex(req: WebhookRequest, header: string, prefix: string, secret: string): SignatureCheck {
  const got = singleHeader(req, header);
  if ("reason" in got) return fail(got.reason);
  if (!got.value.startsWith(prefix)) return fail(`${header} must start with "${prefix}"`);
  const mac = decodeHexSha256(got.value.slice(prefix.length));
  if (!mac) return fail(`${header} must be "${prefix}" followed by 64 hex digits`);
  if (!sameBytes(mac, hmacSha256(secret, req.body))) return fail(mismatch(header));
  return OK;
}

/** Stripe: `t=<unix>,v1=<hex>[,v1=<hex>...]` over `${t}.${body}`; several v1 appear while a secret rolls. */
function checkStripe(req: WebhookRequest, secret: string, clock: Clock): SignatureCheck {
  const header = "Stripe-Signature";
  const got = singleHeader(req, header);
  if ("reason" in got) return fail(got.reason);
  const parsed = parseStripeSignature(got.value);
  if ("reason" in parsed) return fail(parsed.reason);
  const t = parseUnixSeconds(parsed.t);
  if (t === undefined) return fail(`${header} t= must be a Unix time in seconds`);
  // v0 (Stripe's legacy test-mode scheme) and unknown elements are ignored, as Stripe advises.
  const candidates = parsed.v1.map(decodeHexSha256);
  if (!candidates.some((c) => c)) return fail(`${header} has no well-formed v1= signature (64 hex digits)`);
  const expected = hmacSha256(secret, `${parsed.t}.`, req.body);
  if (!anySame(candidates, expected)) return fail(mismatch(header, "v1= signature"));
  return checkFreshness(t, `${header} t=`, clock);
}

/** Slack: `X-Slack-Signature: v0=<hex>` over `v0:${X-Slack-Request-Timestamp}:${body}`. */
function checkSlack(req: WebhookRequest, secret: string, clock: Clock): SignatureCheck {
  const header = "X-Slack-Signature";
  const tsHeader = "X-Slack-Request-Timestamp";
  const got = singleHeader(req, header);
  if ("reason" in got) return fail(got.reason);
  const ts = singleHeader(req, tsHeader);
  if ("reason" in ts) return fail(ts.reason);
  const t = parseUnixSeconds(ts.value);
  if (t === undefined) return fail(`${tsHeader} must be a Unix time in seconds`);
  if (!got.value.startsWith("v0=")) return fail(`${header} must start with "v0="`);
  const mac = decodeHexSha256(got.value.slice(3));
  if (!mac) return fail(`${header} must be "v0=" followed by 64 hex digits`);
  if (!sameBytes(mac, hmacSha256(secret, `v0:${ts.value}:`, req.body))) return fail(mismatch(header));
  return checkFreshness(t, tsHeader, clock);
}

/** Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256(secret, body)>`. */
function checkShopify(req: WebhookRequest, secret: string): SignatureCheck {
  const header = "X-Shopify-Hmac-Sha256";
  const got = singleHeader(req, header);
  if ("reason" in got) return fail(got.reason);
  const mac = decodeBase64Sha256(got.value);
  if (!mac) return fail(`${header} must be the base64 of 32 bytes (44 characters)`);
  if (!sameBytes(mac, hmacSha256(secret, req.body))) return fail(mismatch(header));
  return OK;
}

/**
 * Standard Webhooks: `webhook-signature` is a space-separated list of `v1,<base64>` over
 * `${webhook-id}.${webhook-timestamp}.${body}`; any v1 matching passes (several appear while a
 * secret rolls), other versions (e.g. the asymmetric v1a) are ignored.
 */
function checkStandard(req: WebhookRequest, secret: string, clock: Clock): SignatureCheck {
  const key = standardWebhooksKey(secret);
  if (!key) return fail(`the configured secret starts with "${STANDARD_SECRET_PREFIX}" but is not valid base64 after it`);
  const sigHeader = "webhook-signature";
  const id = singleHeader(req, "webhook-id");
  if ("reason" in id) return fail(id.reason);
  const ts = singleHeader(req, "webhook-timestamp");
  if ("reason" in ts) return fail(ts.reason);
  const t = parseUnixSeconds(ts.value);
  if (t === undefined) return fail("webhook-timestamp must be a Unix time in seconds");
  const got = singleHeader(req, sigHeader);
  if ("reason" in got) return fail(got.reason);
  const candidates: (Buffer | undefined)[] = [];
  for (const entry of got.value.split(" ")) {
    if (entry === "") continue;
    const comma = entry.indexOf(",");
    if (comma < 0) continue;
    if (entry.slice(0, comma) === "v1") candidates.push(decodeBase64Sha256(entry.slice(comma + 1)));
  }
  if (candidates.length === 0) return fail(`${sigHeader} has no v1 signature`);
  if (!candidates.some((c) => c)) return fail(`${sigHeader} has no well-formed v1 signature (base64 of 32 bytes)`);
  const expected = hmacSha256(key, `${id.value}.${ts.value}.`, req.body);
  if (!anySame(candidates, expected)) return fail(mismatch(sigHeader, "v1 signature"));
  return checkFreshness(t, "webhook-timestamp", clock);
}

/**
 * The HMAC key for a Standard Webhooks secret: `whsec_<base64>` decodes to its key bytes, as the
 * spec defines. A secret without the prefix is used as its own UTF-8 bytes, so an operator can
 * configure a plain shared string. (The reference libraries instead base64-decode an unprefixed
 * secret too; prefix it with `whsec_` to get that behaviour.) Undefined when the base64 is bad.
 */
export function standardWebhooksKey(secret: string): Buffer | undefined {
  if (!secret.startsWith(STANDARD_SECRET_PREFIX)) return Buffer.from(secret, "utf8");
  const encoded = secret.slice(STANDARD_SECRET_PREFIX.length);
  if (encoded === "" || !BASE64.test(encoded)) return undefined;
  return Buffer.from(encoded, "base64");
}

// ---------------------------------------------------------------- pieces

/**
 * Refuses timestamps too old (stale or replayed) and too far ahead (a signature minted for later
 * replay), SPEC §9. Checked after the MAC, so "stale" is only ever said of authentic requests.
 */
function checkFreshness(t: number, what: string, clock: Clock): SignatureCheck {
  const age = clock.nowSeconds - t;
  if (age > clock.tolerance) {
    return fail(`${what} is ${age} s old, beyond the ${clock.tolerance} s tolerance: stale or replayed`);
  }
  if (-age > clock.tolerance) {
    return fail(`${what} is ${-age} s in the future, beyond the ${clock.tolerance} s tolerance`);
  }
  return OK;
}

/** `anyOf` names the list when several signatures were offered and none matched. */
function mismatch(header: string, anyOf?: string): string {
  const what = anyOf ? `no ${anyOf} matches` : "the signature does not match";
  return `${header}: ${what} the body (wrong secret, or the body was altered)`;
}

/** HMAC-SHA256 over the parts in order; bytes stay bytes, so a non-UTF-8 body is signed as sent. */
function hmacSha256(key: string | Uint8Array, ...parts: (string | Uint8Array)[]): Buffer {
  const mac = createHmac("sha256", key);
  for (const part of parts) mac.update(part);
  return mac.digest();
}

/** Constant-time equality; a length mismatch is simply unequal (timingSafeEqual would throw). */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Whether any candidate equals `expected`; every candidate is compared, so timing says nothing of which. */
function anySame(candidates: readonly (Uint8Array | undefined)[], expected: Uint8Array): boolean {
  let found = false;
  for (const c of candidates) if (c && sameBytes(c, expected)) found = true;
  return found;
}

function decodeHexSha256(text: string): Buffer | undefined {
  return HEX_SHA256.test(text) ? Buffer.from(text, "hex") : undefined;
}

/** Buffer's own base64 decoder skips junk silently, so the shape is checked first. */
function decodeBase64Sha256(text: string): Buffer | undefined {
  if (!BASE64_SHA256.test(text)) return undefined;
  const bytes = Buffer.from(text, "base64");
  return bytes.length === SHA256_BYTES ? bytes : undefined;
}

function parseUnixSeconds(text: string): number | undefined {
  return UNIX_SECONDS.test(text) ? Number(text) : undefined;
}

/** Splits Stripe-Signature into its one t= and its v1= values; a second t= is refused as ambiguous. */
function parseStripeSignature(value: string): { t: string; v1: string[] } | { reason: string } {
  let t: string | undefined;
  const v1: string[] = [];
  for (const raw of value.split(",")) {
    const part = raw.trim();
    if (part === "") continue;
    const eq = part.indexOf("=");
    if (eq <= 0) return { reason: `Stripe-Signature element "${part.slice(0, 16)}" is not key=value` };
    const key = part.slice(0, eq).trim();
    const val = part.slice(eq + 1).trim();
    if (key === "t") {
      if (t !== undefined) return { reason: "Stripe-Signature has more than one t=" };
      t = val;
    } else if (key === "v1") {
      v1.push(val);
    }
  }
  if (t === undefined) return { reason: "Stripe-Signature has no t= timestamp" };
  if (v1.length === 0) return { reason: "Stripe-Signature has no v1= signature" };
  return { t, v1 };
}

/** All values of a header, whatever the case of its name, with node's arrays flattened. */
function headerValues(req: WebhookRequest, name: string): string[] {
  const wanted = name.toLowerCase();
  const values: string[] = [];
  for (const [key, value] of Object.entries(req.headers ?? {})) {
    if (key.toLowerCase() !== wanted || value === undefined) continue;
    if (Array.isArray(value)) values.push(...value.filter((v): v is string => typeof v === "string"));
    else if (typeof value === "string") values.push(value);
  }
  return values;
}

/**
 * The one value of a required header. Two copies are refused: which one the sender signed is
 * unknowable, and a proxy that appended one is exactly what a signature should catch.
 */
function singleHeader(req: WebhookRequest, name: string): { value: string } | { reason: string } {
  const values = headerValues(req, name);
  if (values.length === 0) return { reason: `missing ${name} header` };
  if (values.length > 1) return { reason: `${name} header appears ${values.length} times; expected once` };
  const value = values[0]!.trim();
  if (value === "") return { reason: `${name} header is empty` };
  return { value };
}

/** An optional id header's value; absent, empty or ambiguous (repeated) gives undefined. */
function optionalHeader(req: WebhookRequest, name: string): string | undefined {
  const values = headerValues(req, name);
  if (values.length !== 1) return undefined;
  const value = values[0]!.trim();
  return value === "" ? undefined : value;
}

/** A top-level string field of a JSON object body, or undefined if the body is not one. */
function jsonStringField(body: Uint8Array, field: string): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
  } catch {
    return undefined;
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return undefined;
  const value = (parsed as Record<string, unknown>)[field];
  return typeof value === "string" && value !== "" ? value : undefined;
}
