// Every RPC is authenticated (SPEC §9): a bearer API key, checked for the scope the
// method needs. Handlers find the principal in the context values.
import { Code, ConnectError, createContextKey, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import type { ApiKeyAuthenticator, Principal, Scope } from "./api-keys.js";
import { validateChainName } from "../ledger/validate-event.js";

export const PRINCIPAL = createContextKey<Principal | null>(null, { description: "authenticated API key" });

/** Scope each method needs; methods not listed need none (they authenticate otherwise, or are public). */
const METHOD_SCOPES: Record<string, Scope> = {
  "auditledger.v1.LedgerService/Append": "append",
  "auditledger.v1.LedgerService/AppendBatch": "append",
  "auditledger.v1.LedgerService/GetEvent": "read",
  "auditledger.v1.LedgerService/Query": "read",
  "auditledger.v1.LedgerService/Verify": "read",
  "auditledger.v1.LedgerService/Trace": "read",
  "auditledger.v1.LedgerService/StreamEvents": "read",
  "auditledger.v1.LedgerService/GetStats": "read",
  "auditledger.v1.LedgerService/GetCheckpoint": "read",
  "auditledger.v1.LedgerService/ProveInclusion": "read",
  "auditledger.v1.LedgerService/ProveConsistency": "read",
  "auditledger.v1.LedgerService/Export": "read",
  "auditledger.v1.LedgerService/RedactPayload": "admin",
  "auditledger.v1.LedgerService/GetPublicKeys": "read",
  "auditledger.v1.AgentRegistryService/CreateEnrolmentToken": "admin",
  "auditledger.v1.AgentRegistryService/SpawnAgent": "admin",
  "auditledger.v1.AgentRegistryService/ListAgents": "read",
  "auditledger.v1.AgentRegistryService/GetAgent": "read",
  "auditledger.v1.AgentRegistryService/WatchAgents": "read",
  "auditledger.v1.AgentRegistryService/SendTestEvent": "append",
  "auditledger.v1.AgentRegistryService/DeregisterAgent": "admin",
  "auditledger.v1.KeyService/CreateApiKey": "admin",
  "auditledger.v1.KeyService/ListApiKeys": "admin",
  "auditledger.v1.KeyService/RevokeApiKey": "admin",
};

export function scopeFor(service: string, method: string): Scope | undefined {
  return METHOD_SCOPES[`${service}/${method}`];
}

export function authInterceptor(keys: ApiKeyAuthenticator): Interceptor {
  return (next) => async (req) => {
    const scope = scopeFor(req.service.typeName, req.method.name);
    if (!scope) return next(req);
    const header = req.header.get("authorization") ?? "";
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match) throw new ConnectError("missing bearer API key (Authorization: Bearer alk_...)", Code.Unauthenticated);
    const principal = await keys.authenticate(match[1]!);
    if (!principal) throw new ConnectError("API key unknown or revoked", Code.Unauthenticated);
    if (!principal.scopes.has(scope)) {
      throw new ConnectError(`API key ${principal.keyId} lacks the "${scope}" scope that ${req.method.name} needs`, Code.PermissionDenied);
    }
    req.contextValues.set(PRINCIPAL, principal);
    return next(req);
  };
}

/**
 * The chain a request may act on: its own `chain` field, or the key's chain when empty.
 * A key sees only its own chain.
 */
export function chainOf(ctx: HandlerContext, requested: string): { principal: Principal; chain: string } {
  const principal = ctx.values.get(PRINCIPAL);
  if (!principal) throw new ConnectError("not authenticated", Code.Unauthenticated);
  if (requested === "") return { principal, chain: principal.chain };
  validateChainName(requested);
  if (requested !== principal.chain) {
    throw new ConnectError(`API key ${principal.keyId} is bound to another chain and cannot access chain "${requested}"`, Code.PermissionDenied);
  }
  return { principal, chain: requested };
}
