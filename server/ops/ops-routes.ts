// Plain-HTTP operations endpoints beside the RPCs: liveness, readiness, metrics.
import type http from "node:http";
import type { ConnectNodeAdapterOptions } from "@connectrpc/connect-node";
import type { Database } from "../storage/database.js";
import type { LedgerMetrics } from "./metrics.js";
import type { KeyRing } from "../checkpoints/key-ring.js";

/** Where the ledger publishes its checkpoint verifying keys, current and retired. */
export const WELL_KNOWN_KEYS = "/.well-known/audit-ledger/keys";

type Fallback = NonNullable<ConnectNodeAdapterOptions["fallback"]>;
type Req = Parameters<Fallback>[0];
type Res = Parameters<Fallback>[1];

export function opsRoutes(db: Database, metrics: LedgerMetrics, isShuttingDown: () => boolean, keys: KeyRing) {
  const send = (res: Res, status: number, type: string, body: string) => {
    (res as http.ServerResponse).writeHead(status, { "content-type": type, "cache-control": "no-store" });
    (res as http.ServerResponse).end(body);
  };
  return (req: Req, res: Res): void => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      send(res, 405, "application/json", JSON.stringify({ error: `${req.method} not allowed on ${path}` }));
      return;
    }
    switch (path) {
      case "/healthz":
        send(res, 200, "application/json", JSON.stringify({ status: "ok" }));
        return;
      case "/readyz":
        void db.ping().then((ok) => {
          const ready = ok && !isShuttingDown();
          send(res, ready ? 200 : 503, "application/json", JSON.stringify({ status: ready ? "ready" : "not ready", database: ok ? "reachable" : "unreachable", shuttingDown: isShuttingDown() }));
        });
        return;
      case WELL_KNOWN_KEYS:
        void keys.reloadIfChanged().then(() => {
          const body = {
            name: keys.name,
            keys: keys.published().map((k) => ({
              key_id: k.keyId,
              algorithm: "ed25519",
              verifier_key: k.verifierKey,
              public_key: Buffer.from(k.publicKey).toString("base64"),
              created_at: k.createdAt,
              retired_at: k.retiredAt || undefined,
            })),
          };
          send(res, 200, "application/json", JSON.stringify(body, null, 2) + "\n");
        });
        return;
      case "/metrics":
        void metrics.registry.metrics().then((text) => send(res, 200, metrics.registry.contentType, text));
        return;
      default:
        send(res, 404, "application/json", JSON.stringify({ error: `no route ${path}` }));
    }
  };
}
