// The typed Node client: every service of the API over the protocol of your choice.
import type { ConnectionOptions } from "node:tls";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { LedgerService } from "../../gen/auditledger/v1/ledger_service_pb.js";
import { AgentRegistryService } from "../../gen/auditledger/v1/agent_registry_service_pb.js";
import { KeyService } from "../../gen/auditledger/v1/key_service_pb.js";

export interface LedgerClientOptions {
  /** e.g. http://127.0.0.1:8080 */
  baseUrl: string;
  /** Bearer API key ("alk_..."). */
  apiKey?: string;
  /** Wire protocol; default "connect". */
  protocol?: "connect" | "grpc" | "grpc-web";
  /** Default "2" for grpc, "1.1" otherwise. */
  httpVersion?: "1.1" | "2";
  /** Connect protocol only: JSON instead of binary protobuf. */
  useJson?: boolean;
  /** TLS options for https:// URLs, passed to Node's http2.connect / https.request (e.g. `ca` for a private CA). */
  nodeOptions?: Pick<ConnectionOptions, "ca" | "cert" | "key" | "rejectUnauthorized" | "servername">;
}

export interface LedgerClient {
  ledger: Client<typeof LedgerService>;
  agents: Client<typeof AgentRegistryService>;
  keys: Client<typeof KeyService>;
}

export function createLedgerClient(options: LedgerClientOptions): LedgerClient {
  const interceptors: Interceptor[] = [];
  if (options.apiKey) {
    const header = `Bearer ${options.apiKey}`;
    interceptors.push((next) => (req) => {
      req.header.set("authorization", header);
      return next(req);
    });
  }
  const protocol = options.protocol ?? "connect";
  const common = { baseUrl: options.baseUrl, interceptors, useBinaryFormat: !options.useJson, nodeOptions: options.nodeOptions };
  const transport =
    protocol === "grpc"
      ? createGrpcTransport({ ...common, useBinaryFormat: true })
      : protocol === "grpc-web"
        ? createGrpcWebTransport({ ...common, httpVersion: options.httpVersion ?? "1.1" })
        : createConnectTransport({ ...common, httpVersion: options.httpVersion ?? "1.1" });
  return {
    ledger: createClient(LedgerService, transport),
    agents: createClient(AgentRegistryService, transport),
    keys: createClient(KeyService, transport),
  };
}
