// gRPC server reflection, v1 and v1alpha, so grpcurl and `buf curl` discover and call
// the API with no .proto files. Answers from the descriptors embedded in gen/.
import { create, createRegistry, toBinary, type DescFile } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import * as v1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";

/** gRPC status NOT_FOUND, as the reflection protocol reports it in ErrorResponse. */
const GRPC_NOT_FOUND = 5;
const GRPC_UNIMPLEMENTED = 12;

type Request = v1.ServerReflectionRequest;
type ResponseInit = Parameters<typeof create<typeof v1.ServerReflectionResponseSchema>>[1];

/** Registers both reflection services on `router`, describing `files` (and their imports). */
export function registerReflection(router: ConnectRouter, files: DescFile[]): void {
  const allFiles = new Map<string, DescFile>();
  for (const f of [...files, v1.file_grpc_reflection_v1_reflection, v1alpha.file_grpc_reflection_v1alpha_reflection]) {
    for (const g of withImports(f)) allFiles.set(g.proto.name, g);
  }
  const registry = createRegistry(...allFiles.values());
  const services = [...allFiles.values()].flatMap((f) => f.services.map((s) => s.typeName)).sort();

  const answer = (req: Request): ResponseInit => {
    const base = { validHost: req.host, originalRequest: req };
    const found = (file: DescFile | undefined, what: string): ResponseInit =>
      file
        ? { ...base, messageResponse: { case: "fileDescriptorResponse", value: { fileDescriptorProto: withImports(file).map((f) => toBinary(FileDescriptorProtoSchema, f.proto)) } } }
        : { ...base, messageResponse: { case: "errorResponse", value: { errorCode: GRPC_NOT_FOUND, errorMessage: `${what} not found` } } };
    const m = req.messageRequest;
    switch (m.case) {
      case "listServices":
        return { ...base, messageResponse: { case: "listServicesResponse", value: { service: services.map((name) => ({ name })) } } };
      case "fileByFilename":
        return found(allFiles.get(m.value), `file ${m.value}`);
      case "fileContainingSymbol":
        return found(fileOfSymbol(m.value), `symbol ${m.value}`);
      case "fileContainingExtension":
        return found(undefined, `extension ${m.value.extensionNumber} of ${m.value.containingType}`);
      case "allExtensionNumbersOfType": {
        const type = registry.getMessage(m.value);
        return type
          ? { ...base, messageResponse: { case: "allExtensionNumbersResponse", value: { baseTypeName: m.value, extensionNumber: [] } } }
          : found(undefined, `type ${m.value}`);
      }
      default:
        return { ...base, messageResponse: { case: "errorResponse", value: { errorCode: GRPC_UNIMPLEMENTED, errorMessage: "unknown request" } } };
    }
  };

  // A symbol may name a method or a field: walk up to the enclosing declaration.
  function fileOfSymbol(symbol: string): DescFile | undefined {
    for (let name = symbol; name.length > 0; name = name.slice(0, Math.max(name.lastIndexOf("."), 0))) {
      const desc = registry.get(name);
      if (desc) return desc.file;
    }
    return undefined;
  }

  router.service(v1.ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) yield create(v1.ServerReflectionResponseSchema, answer(req));
    },
  });
  router.service(v1alpha.ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        // Same wire shape: answer through v1 types and re-tag the messages.
        const v1Req = create(v1.ServerReflectionRequestSchema, req as unknown as Parameters<typeof create<typeof v1.ServerReflectionRequestSchema>>[1]);
        const init = answer(v1Req) as unknown as Parameters<typeof create<typeof v1alpha.ServerReflectionResponseSchema>>[1];
        yield create(v1alpha.ServerReflectionResponseSchema, { ...init, originalRequest: req });
      }
    },
  });
}

/** A file and everything it imports, transitively, each once. */
function withImports(file: DescFile): DescFile[] {
  const out = new Map<string, DescFile>();
  const visit = (f: DescFile) => {
    if (out.has(f.proto.name)) return;
    out.set(f.proto.name, f);
    f.dependencies.forEach(visit);
  };
  visit(file);
  return [...out.values()];
}
