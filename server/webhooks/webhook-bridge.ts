// The webhook bridge (SPEC §5): POST /hooks/{agent_id}/event appends the request as
// one event of that http_webhook agent. A thin HTTP/JSON layer: it checks the
// provider's signature and hands one EventInput to the same append path as the RPCs.
import type http from "node:http";
import { createHash } from "node:crypto";
import type { ConnectNodeAdapterOptions } from "@connectrpc/connect-node";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { EventInputSchema } from "../../gen/auditledger/v1/entry_pb.js";
import { ZID_PATTERN } from "../../chain/index.js";
import type { Database } from "../storage/database.js";
import { FIELD_MAX_LENGTH, type Limits } from "../ledger/limits.js";
import { getAgent, type AgentRecord } from "../agents/agent-store.js";
import type { ServerSideAgents } from "../agents/server-side-agents.js";
import { checkWebhookSignature, deliveryIdOf, type WebhookRequest } from "./webhook-signatures.js";
import { webhookConfigSchema, type WebhookConfig } from "./webhook-config.js";

type Fallback = NonNullable<ConnectNodeAdapterOptions["fallback"]>;
/** An HTTP/1.1 or HTTP/2 request, as the one-port listener hands it over. */
export type BridgeRequest = Parameters<Fallback>[0];
export type BridgeResponse = Parameters<Fallback>[1];

export const WEBHOOK_PATH = /^\/hooks\/([^/]+)\/event$/;

const KIND_PART = /[^A-Za-z0-9._:/-]/g;

/** Handles a request under /hooks/; answers JSON with the right status in every case. */
export function webhookBridge(db: Database, agents: ServerSideAgents, limits: Limits) {
  const reply = (res: BridgeResponse, status: number, body: object, headers: Record<string, string> = {}) => {
    (res as http.ServerResponse).writeHead(status, { "content-type": "application/json", "cache-control": "no-store", ...headers });
    (res as http.ServerResponse).end(JSON.stringify(body) + "\n");
  };

  return async (req: BridgeRequest, res: BridgeResponse): Promise<void> => {
    const path = (req.url ?? "/").split("?")[0]!;
    const m = WEBHOOK_PATH.exec(path);
    if (!m) return reply(res, 404, { error: `no route ${path}; webhooks post to /hooks/{agent_id}/event` });
    if (req.method !== "POST") {
      req.resume();
      return reply(res, 405, { error: `${req.method} not allowed; POST the event` }, { allow: "POST" });
    }
    const zid = m[1]!;
    const agent = ZID_PATTERN.test(zid) ? await getAgent(db, zid) : null;
    if (!agent || agent.deregisteredAt || !agent.serverSide || !agent.sourceTypes.includes("http_webhook")) {
      req.resume();
      return reply(res, 404, { error: `no webhook agent ${zid.slice(0, 40)}` });
    }
    const parsedConfig = webhookConfigSchema.safeParse(agent.config ?? {});
    if (!parsedConfig.success) {
      // Stored before a check was added: the sender is not at fault, and the reason never holds the secret.
      req.resume();
      return reply(res, 500, { error: `webhook agent ${agent.zid} is misconfigured (${parsedConfig.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}); spawn a new one` });
    }
    const config: WebhookConfig = parsedConfig.data;
    const maxBytes = Math.min(config.max_body_bytes ?? limits.maxPayloadBytes, limits.maxPayloadBytes);

    const declared = Number(req.headers["content-length"] ?? NaN);
    if (declared > maxBytes) {
      req.resume();
      return reply(res, 413, { error: `body of ${declared} bytes is over this hook's limit of ${maxBytes}` });
    }
    const body = await readBody(req, maxBytes);
    if (body === null) return reply(res, 413, { error: `body is over this hook's limit of ${maxBytes} bytes` });

    const request: WebhookRequest = { headers: req.headers as WebhookRequest["headers"], body };
    if (config.secret !== undefined) {
      const check = checkWebhookSignature(request, { scheme: config.scheme, secret: config.secret, toleranceSeconds: config.tolerance_seconds });
      if (!check.ok) return reply(res, 401, { error: `signature rejected: ${check.reason}` });
    }

    const delivery = deliveryKeys(agent.zid, deliveryIdOf(request, config.scheme));
    const contentType = (req.headers["content-type"] ?? "").split(";")[0]!.trim() || "application/octet-stream";
    const input = create(EventInputSchema, {
      sourceType: "http_webhook",
      kind: kindOf(request, config, body),
      subject: config.subject ?? `hooks/${agent.zid}`,
      idempotencyKey: delivery?.idempotencyKey ?? "",
      sourcePosition: delivery?.sourcePosition ?? "",
      payloadType: body.length > 0 ? contentType : "",
      payload: body,
    });
    try {
      const [result] = await agents.appendAs(agent as AgentRecord, [input]);
      const e = result!.entry;
      // Slack confirms an Events API URL by posting a url_verification request that must be
      // answered with its challenge; it is recorded like any other (signed) delivery.
      const challenge = config.scheme === "slack" && jsonField(body, ["type"]) === "url_verification" ? jsonField(body, ["challenge"]) : undefined;
      return reply(res, 200, { seq: e.seq, hash: e.hash, deduplicated: result!.deduplicated, ...(challenge !== undefined ? { challenge } : {}) });
    } catch (err) {
      const ce = ConnectError.from(err);
      const status = ce.code === Code.InvalidArgument ? 400 : ce.code === Code.ResourceExhausted ? 413 : ce.code === Code.Unavailable ? 503 : 500;
      // Senders are unauthenticated: they learn what was wrong with their request, never
      // details of the ledger's own failures (database text, addresses).
      const message = status === 400 || status === 413 ? ce.rawMessage : status === 503 ? "the ledger is unavailable; retry later" : "internal error";
      return reply(res, status, { error: message });
    }
  };
}

/**
 * The idempotency key and source position for a provider's delivery id. The id is the
 * provider's (or, for unsigned headers, the sender's) choice of text, so one too long for
 * the entry's fields, or not well-formed Unicode, is replaced by its SHA-256: a retried
 * delivery still maps to the same key, and a valid delivery is never refused over its id.
 */
function deliveryKeys(zid: string, deliveryId: string | undefined): { idempotencyKey: string; sourcePosition: string } | undefined {
  if (deliveryId === undefined) return undefined;
  const prefix = `${zid}/webhook/`;
  const fits = deliveryId.isWellFormed() && prefix.length + deliveryId.length <= FIELD_MAX_LENGTH.idempotency_key;
  const id = fits ? deliveryId : `sha256:${createHash("sha256").update(deliveryId, "utf8").digest("hex")}`;
  return { idempotencyKey: prefix + id, sourcePosition: id };
}

/** The body, or null once it passes `maxBytes` (the rest is discarded unread). */
function readBody(req: BridgeRequest, maxBytes: number): Promise<Uint8Array | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on("data", (c: Buffer) => {
      if (over) return;
      size += c.length;
      if (size > maxBytes) {
        over = true;
        chunks.length = 0;
        resolve(null);
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => {
      if (!over) resolve(new Uint8Array(Buffer.concat(chunks)));
    });
    req.on("error", reject);
  });
}

/** The provider's own event name where it sends one ("github.push"), else the configured kind. */
function kindOf(req: WebhookRequest, config: WebhookConfig, body: Uint8Array): string {
  const header = (name: string) => {
    const v = req.headers[name];
    return Array.isArray(v) ? v[0] : v;
  };
  let name: string | undefined;
  let prefix = "";
  switch (config.scheme) {
    case "github":
      prefix = "github.";
      name = header("x-github-event");
      break;
    case "shopify":
      prefix = "shopify.";
      name = header("x-shopify-topic");
      break;
    case "stripe":
    case "slack":
    case "standard":
      prefix = `${config.scheme}.`;
      name = jsonField(body, config.scheme === "slack" ? ["event", "type"] : ["type"]) ?? jsonField(body, ["type"]);
      break;
  }
  const cleaned = name?.replace(KIND_PART, "_").slice(0, 100);
  return cleaned ? prefix + cleaned : config.kind;
}

function jsonField(body: Uint8Array, path: string[]): string | undefined {
  try {
    let v: unknown = JSON.parse(new TextDecoder().decode(body));
    for (const p of path) v = v && typeof v === "object" ? (v as Record<string, unknown>)[p] : undefined;
    return typeof v === "string" ? v : undefined;
  } catch {
    return undefined;
  }
}
