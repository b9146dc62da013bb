// KeyService: admin management of API keys for the admin's own chain.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  ApiKeySchema,
  CreateApiKeyResponseSchema,
  KeyService,
  ListApiKeysResponseSchema,
  RevokeApiKeyResponseSchema,
} from "../../gen/auditledger/v1/key_service_pb.js";
import { chainOf } from "../auth/auth-interceptor.js";
import { createApiKey, isScope, listApiKeys, revokeApiKey, type ApiKeyRecord, type Scope } from "../auth/api-keys.js";
import type { Database } from "../storage/database.js";
import { invalid } from "../ledger/validate-event.js";

const toMessage = (k: ApiKeyRecord) =>
  create(ApiKeySchema, {
    keyId: k.keyId,
    chain: k.chain,
    scopes: k.scopes,
    name: k.name,
    createdAt: k.createdAt.toISOString(),
    revokedAt: k.revokedAt ? k.revokedAt.toISOString() : "",
  });

export function keyService(db: Database): Partial<ServiceImpl<typeof KeyService>> {
  return {
    async createApiKey(req, ctx) {
      const { chain } = chainOf(ctx, req.chain);
      if (req.scopes.length === 0) throw invalid("scopes: at least one of append, read, admin");
      const bad = req.scopes.find((s) => !isScope(s));
      if (bad !== undefined) throw invalid(`scopes: unknown scope "${bad.slice(0, 40)}"; expected append, read or admin`);
      if (req.name.length > 200 || !req.name.isWellFormed()) throw invalid("name: at most 200 characters of valid UTF-8");
      const { record, token } = await createApiKey(db, chain, [...new Set(req.scopes)] as Scope[], req.name);
      return create(CreateApiKeyResponseSchema, { key: toMessage(record), token });
    },
    async listApiKeys(req, ctx) {
      const { chain } = chainOf(ctx, req.chain);
      return create(ListApiKeysResponseSchema, { keys: (await listApiKeys(db, chain)).map(toMessage) });
    },
    async revokeApiKey(req, ctx) {
      const { chain } = chainOf(ctx, req.chain);
      if (!(await revokeApiKey(db, chain, req.keyId))) {
        throw new ConnectError(`no active API key "${req.keyId.slice(0, 40)}" on chain "${chain}"`, Code.NotFound);
      }
      return create(RevokeApiKeyResponseSchema, {});
    },
  };
}
