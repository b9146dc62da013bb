// One port, every protocol (SPEC §1, §3): Connect (JSON and binary), gRPC and gRPC-Web
// over HTTP/1.1 and HTTP/2 cleartext, TLS with ALPN, non-Node clients (curl, buf curl)
// and gRPC reflection v1 / v1alpha. Real server, real sockets.
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import tls from "node:tls";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { create, type DescMessage, type DescMethod, type DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { LedgerService } from "../gen/auditledger/v1/ledger_service_pb.js";
import { AgentRegistryService } from "../gen/auditledger/v1/agent_registry_service_pb.js";
import type { RunningServer } from "../server/ledger-server.js";
import { createLedgerClient } from "../clients/node/ledger-client.js";
import { createKey, startTestServer, uniqueChain } from "./support/test-server.js";

const run = promisify(execFile);
const BUF = path.resolve("node_modules/.bin/buf");
const H2_PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/**
 * A transparent TCP relay in front of the server that records the first bytes each
 * client connection sends: the HTTP/2 preface or an HTTP/1.1 request line tells which
 * HTTP version the client really spoke on the wire.
 */
interface Tap {
  url: string;
  /** First bytes (latin1) of every connection, in accept order. */
  openings: string[];
  close(): Promise<void>;
}

async function startTap(targetPort: number): Promise<Tap> {
  const openings: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, "127.0.0.1");
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.once("close", () => sockets.delete(s));
    }
    let first = Buffer.alloc(0);
    const record = (chunk: Buffer) => {
      first = Buffer.concat([first, chunk]);
      if (first.length >= H2_PREFACE.length || first.includes("\r\n")) {
        client.off("data", record);
        openings.push(first.subarray(0, 200).toString("latin1"));
      }
    };
    client.on("data", record);
    client.pipe(upstream);
    upstream.pipe(client);
    const destroy = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", destroy).on("close", destroy);
    upstream.on("error", destroy).on("close", destroy);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    openings,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const isHttp2 = (opening: string) => opening.startsWith(H2_PREFACE);
const isHttp1Post = (opening: string, method: string) => opening.startsWith(`POST /auditledger.v1.LedgerService/${method} HTTP/1.1\r\n`);

/** Records the content types each call sent and received. */
function contentTypes() {
  const seen: { request: string | null; response: string | null; method: string }[] = [];
  const interceptor: Interceptor = (next) => async (req) => {
    const res = await next(req);
    seen.push({ method: req.method.name, request: req.header.get("content-type"), response: res.header.get("content-type") });
    return res;
  };
  return { seen, interceptor };
}

const bearer = (apiKey: string): Interceptor => (next) => (req) => {
  req.header.set("authorization", `Bearer ${apiKey}`);
  return next(req);
};

/** Append one event with a payload, then read it back: both answers must agree. */
async function appendAndGet(ledger: Client<typeof LedgerService>, kind: string) {
  const payload = new TextEncoder().encode(JSON.stringify({ via: kind, n: 42 }));
  const appended = await ledger.append({
    event: { kind, subject: `protocols/${kind}`, actor: "tester", idempotencyKey: `idem-${kind}`, payloadType: "application/json", payload },
  });
  expect(appended.deduplicated).toBe(false);
  const entry = appended.entry!;
  expect(entry.kind).toBe(kind);
  expect(entry.subject).toBe(`protocols/${kind}`);
  expect(entry.payloadSize).toBe(BigInt(payload.length));
  expect(entry.hash).toMatch(/^[0-9a-f]{64}$/);

  const got = await ledger.getEvent({ seq: entry.seq, includePayload: true });
  expect(got.entry?.hash).toBe(entry.hash);
  expect(got.entry?.seq).toBe(entry.seq);
  expect(got.entry?.kind).toBe(kind);
  expect(got.entry?.actor).toBe("tester");
  expect(got.entry?.idempotencyKey).toBe(`idem-${kind}`);
  expect(Buffer.from(got.entry!.payload).equals(Buffer.from(payload))).toBe(true);
  return entry;
}

/** Calls `method` with an empty request (streaming ones fully drained) and returns the error code. */
async function codeOf(client: Client<DescService>, method: DescMethod): Promise<Code> {
  const call = (client as unknown as Record<string, (input: unknown) => unknown>)[method.localName]!;
  const oneRequest = async function* (input: DescMessage) {
    yield create(input);
  };
  try {
    switch (method.methodKind) {
      case "unary":
        await call(create(method.input));
        break;
      case "client_streaming":
        await call(oneRequest(method.input));
        break;
      case "server_streaming":
        for await (const _ of call(create(method.input)) as AsyncIterable<unknown>) void _;
        break;
      case "bidi_streaming":
        for await (const _ of call(oneRequest(method.input)) as AsyncIterable<unknown>) void _;
        break;
    }
  } catch (err) {
    return ConnectError.from(err).code;
  }
  throw new Error(`${method.parent.typeName}/${method.name} succeeded; expected an error`);
}

describe("one port for every protocol", () => {
  let server: RunningServer;

  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(async () => {
    await server?.close();
  });

  /** A fresh chain and key, a tap in front of the server and transport factories. */
  async function setup() {
    const apiKey = await createKey(uniqueChain("proto"));
    const tap = await startTap(server.port);
    const types = contentTypes();
    const interceptors = [bearer(apiKey), types.interceptor];
    return { apiKey, tap, types, interceptors };
  }

  test("(a) Connect JSON over HTTP/1.1: Append + GetEvent round-trip", async () => {
    const { tap, types, interceptors } = await setup();
    try {
      const transport = createConnectTransport({ baseUrl: tap.url, httpVersion: "1.1", useBinaryFormat: false, interceptors });
      await appendAndGet(createClient(LedgerService, transport), "connect.json.h1");
      expect(types.seen.map((s) => [s.method, s.request, s.response])).toEqual([
        ["Append", "application/json", "application/json"],
        ["GetEvent", "application/json", "application/json"],
      ]);
      expect(tap.openings.length).toBeGreaterThan(0);
      expect(isHttp1Post(tap.openings[0]!, "Append")).toBe(true);
      expect(tap.openings.some(isHttp2)).toBe(false);
    } finally {
      await tap.close();
    }
  });

  test("(b) Connect binary over HTTP/2 cleartext: Append + GetEvent round-trip", async () => {
    const { tap, types, interceptors } = await setup();
    try {
      const transport = createConnectTransport({ baseUrl: tap.url, httpVersion: "2", useBinaryFormat: true, interceptors });
      await appendAndGet(createClient(LedgerService, transport), "connect.binary.h2c");
      expect(types.seen.map((s) => [s.method, s.request, s.response])).toEqual([
        ["Append", "application/proto", "application/proto"],
        ["GetEvent", "application/proto", "application/proto"],
      ]);
      expect(tap.openings).toHaveLength(1); // one h2c connection carries both calls
      expect(isHttp2(tap.openings[0]!)).toBe(true);
    } finally {
      await tap.close();
    }
  });

  test("(c) gRPC over HTTP/2 cleartext: Append + GetEvent round-trip", async () => {
    const { tap, types, interceptors } = await setup();
    try {
      const transport = createGrpcTransport({ baseUrl: tap.url, interceptors });
      await appendAndGet(createClient(LedgerService, transport), "grpc.h2c");
      expect(types.seen.map((s) => [s.method, s.request, s.response])).toEqual([
        ["Append", "application/grpc+proto", "application/grpc+proto"],
        ["GetEvent", "application/grpc+proto", "application/grpc+proto"],
      ]);
      expect(tap.openings).toHaveLength(1);
      expect(isHttp2(tap.openings[0]!)).toBe(true);
    } finally {
      await tap.close();
    }
  });

  test.each([
    ["1.1", "grpc-web.h1"],
    ["2", "grpc-web.h2c"],
  ] as const)("(d) gRPC-Web over HTTP/%s: Append + GetEvent round-trip", async (httpVersion, kind) => {
    const { tap, types, interceptors } = await setup();
    try {
      const transport = createGrpcWebTransport({ baseUrl: tap.url, httpVersion, interceptors });
      await appendAndGet(createClient(LedgerService, transport), kind);
      expect(types.seen.map((s) => [s.method, s.request, s.response])).toEqual([
        ["Append", "application/grpc-web+proto", "application/grpc-web+proto"],
        ["GetEvent", "application/grpc-web+proto", "application/grpc-web+proto"],
      ]);
      expect(tap.openings.length).toBeGreaterThan(0);
      if (httpVersion === "2") {
        expect(tap.openings.every(isHttp2)).toBe(true);
      } else {
        expect(isHttp1Post(tap.openings[0]!, "Append")).toBe(true);
        expect(tap.openings.some(isHttp2)).toBe(false);
      }
    } finally {
      await tap.close();
    }
  });

  describe.each([
    ["gRPC over HTTP/2", (baseUrl: string, interceptors: Interceptor[]): Transport => createGrpcTransport({ baseUrl, interceptors }), true],
    ["Connect over HTTP/1.1", (baseUrl: string, interceptors: Interceptor[]): Transport => createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors }), false],
  ] as const)("(e) server streaming, %s", (_name, makeTransport, h2) => {
    test("StreamEvents delivers stored entries, then a live one as it commits", async () => {
      const { tap, interceptors } = await setup();
      try {
        const ledger = createClient(LedgerService, makeTransport(tap.url, interceptors));
        const stored = [];
        for (const kind of ["stream.one", "stream.two"]) stored.push((await ledger.append({ event: { kind } })).entry!);

        const received: { seq: bigint; kind: string; hash: string }[] = [];
        const stream = ledger.streamEvents({ fromSeq: 0n });
        for await (const msg of stream) {
          received.push({ seq: msg.entry!.seq, kind: msg.entry!.kind, hash: msg.entry!.hash });
          expect(msg.cursor).not.toBe("");
          // Both stored entries arrived: the stream is live, so this append reaches it.
          if (received.length === 2) await ledger.append({ event: { kind: "stream.live" } });
          if (received.length === 3) break;
        }
        expect(received.map((r) => [r.seq, r.kind])).toEqual([
          [0n, "stream.one"],
          [1n, "stream.two"],
          [2n, "stream.live"],
        ]);
        expect(received.slice(0, 2).map((r) => r.hash)).toEqual(stored.map((e) => e.hash));
        expect(tap.openings.length).toBeGreaterThan(0);
        expect(tap.openings.every(isHttp2)).toBe(h2);
      } finally {
        await tap.close();
      }
    });

    test("Verify streams its verdict", async () => {
      const { tap, interceptors } = await setup();
      try {
        const ledger = createClient(LedgerService, makeTransport(tap.url, interceptors));
        await ledger.appendBatch({ events: [{ kind: "v.one" }, { kind: "v.two" }, { kind: "v.three" }] });
        const messages = [];
        for await (const msg of ledger.verify({})) messages.push(msg);
        const last = messages[messages.length - 1]!;
        expect(last.result.case).toBe("verdict");
        if (last.result.case !== "verdict") throw new Error("unreachable");
        expect(last.result.value.valid).toBe(true);
        expect(last.result.value.checked).toBe(3n);
        expect(tap.openings.length).toBeGreaterThan(0);
        expect(tap.openings.every(isHttp2)).toBe(h2);
      } finally {
        await tap.close();
      }
    });
  });

  describe("(f) TLS on the same listener", () => {
    let dir: string;
    let cert: Buffer;
    let tlsServer: RunningServer;
    let apiKey: string;

    beforeAll(async () => {
      dir = mkdtempSync(path.join(tmpdir(), "ledger-tls-"));
      const certFile = path.join(dir, "cert.pem");
      const keyFile = path.join(dir, "key.pem");
      await run("openssl", [
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "-keyout", keyFile, "-out", certFile,
      ]);
      cert = readFileSync(certFile);
      tlsServer = await startTestServer({ tlsCertFile: certFile, tlsKeyFile: keyFile });
      apiKey = await createKey(uniqueChain("tls"));
    });
    afterAll(async () => {
      await tlsServer?.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    test("the server URL is https", () => {
      expect(tlsServer.url).toBe(`https://127.0.0.1:${tlsServer.port}`);
    });

    test("ALPN selects h2 for HTTP/2 clients and http/1.1 for HTTP/1.1 clients", async () => {
      const negotiate = (ALPNProtocols: string[]) =>
        new Promise<string | false>((resolve, reject) => {
          const socket = tls.connect({ host: "127.0.0.1", port: tlsServer.port, ca: cert, ALPNProtocols }, () => {
            resolve(socket.alpnProtocol ?? false);
            socket.end();
          });
          socket.on("error", reject);
        });
      expect(await negotiate(["h2", "http/1.1"])).toBe("h2");
      expect(await negotiate(["http/1.1"])).toBe("http/1.1");
    });

    test("gRPC over HTTP/2 over TLS: Append + GetEvent round-trip", async () => {
      const client = createLedgerClient({ baseUrl: tlsServer.url, apiKey, protocol: "grpc", nodeOptions: { ca: cert } });
      await appendAndGet(client.ledger, "tls.grpc.h2");
    });

    test("Connect over HTTP/1.1 over TLS: Append + GetEvent round-trip", async () => {
      const client = createLedgerClient({ baseUrl: tlsServer.url, apiKey, protocol: "connect", httpVersion: "1.1", useJson: true, nodeOptions: { ca: cert } });
      await appendAndGet(client.ledger, "tls.connect.h1");
    });

    test("a client that does not trust the certificate is refused", async () => {
      const client = createLedgerClient({ baseUrl: tlsServer.url, apiKey, protocol: "grpc" });
      const err = await client.ledger.getStats({}).then(
        () => null,
        (e: unknown) => ConnectError.from(e),
      );
      expect(err).toBeInstanceOf(ConnectError);
      expect(err?.message).toMatch(/self[- ]signed certificate/i);
    });
  });

  describe("(g) curl speaks to the same port", () => {
    const curlAppend = async (apiKey: string, httpFlag: string, kind: string) => {
      const { stdout } = await run("curl", [
        "-sS", httpFlag, "-X", "POST",
        "-H", "content-type: application/json",
        "-H", `authorization: Bearer ${apiKey}`,
        "--data", JSON.stringify({ event: { kind, subject: "curl/1" } }),
        "-w", "\n%{http_code} %{http_version}",
        `${server.url}/auditledger.v1.LedgerService/Append`,
      ]);
      const lines = stdout.trimEnd().split("\n");
      const [status, version] = lines.pop()!.split(" ");
      return { status: Number(status), version, body: JSON.parse(lines.join("\n")) as { entry: Record<string, unknown> } };
    };

    test("HTTP/2 prior knowledge (h2c) Connect JSON POST", async () => {
      const apiKey = await createKey(uniqueChain("curl"));
      const res = await curlAppend(apiKey, "--http2-prior-knowledge", "curl.h2c");
      expect(res.version).toBe("2");
      expect(res.status).toBe(200);
      expect(res.body.entry).toMatchObject({ kind: "curl.h2c", subject: "curl/1", sourceType: "api", v: 1 });
      expect(res.body.entry.hash).toMatch(/^[0-9a-f]{64}$/);
    });

    test("HTTP/1.1 Connect JSON POST", async () => {
      const apiKey = await createKey(uniqueChain("curl"));
      const first = await curlAppend(apiKey, "--http1.1", "curl.h1");
      const second = await curlAppend(apiKey, "--http1.1", "curl.h1");
      expect([first.version, second.version]).toEqual(["1.1", "1.1"]);
      expect([first.status, second.status]).toEqual([200, 200]);
      expect(first.body.entry).toMatchObject({ kind: "curl.h1", subject: "curl/1" });
      // seq 0 is the default value, left out of proto3 JSON; the next one links to it.
      expect(first.body.entry.seq).toBeUndefined();
      expect(second.body.entry).toMatchObject({ seq: "1", prevHash: first.body.entry.hash });
    });

    test("an error comes back as a Connect JSON error with the right HTTP status", async () => {
      const { stdout } = await run("curl", [
        "-sS", "--http2-prior-knowledge", "-X", "POST", "-H", "content-type: application/json",
        "--data", JSON.stringify({ event: { kind: "x" } }),
        "-w", "\n%{http_code}",
        `${server.url}/auditledger.v1.LedgerService/Append`,
      ]);
      const lines = stdout.trimEnd().split("\n");
      expect(lines.pop()).toBe("401");
      expect(JSON.parse(lines.join("\n"))).toMatchObject({ code: "unauthenticated" });
    });
  });

  describe("(h) gRPC reflection with buf curl, no .proto files", () => {
    let cwd: string;
    beforeAll(() => {
      cwd = mkdtempSync(path.join(tmpdir(), "ledger-bufcurl-")); // outside the repo: no buf.yaml, no protos
    });
    afterAll(() => rmSync(cwd, { recursive: true, force: true }));

    const bufCurl = (args: string[]) => run(BUF, ["curl", ...args], { cwd, env: { ...process.env, BUF_CACHE_DIR: path.join(cwd, ".cache") } });

    test.each(["grpc-v1", "grpc-v1alpha"])("--list-services through %s lists every service", async (reflectProtocol) => {
      const { stdout } = await bufCurl(["--list-services", "--http2-prior-knowledge", "--reflect-protocol", reflectProtocol, server.url]);
      const services = stdout.trim().split("\n").sort();
      expect(services).toEqual(
        [
          "auditledger.v1.AgentRegistryService",
          "auditledger.v1.KeyService",
          "auditledger.v1.LedgerService",
          "grpc.reflection.v1.ServerReflection",
          "grpc.reflection.v1alpha.ServerReflection",
        ].sort(),
      );
    });

    test("--list-services with the default reflection protocol", async () => {
      const { stdout } = await bufCurl(["--list-services", "--http2-prior-knowledge", server.url]);
      expect(stdout).toContain("auditledger.v1.LedgerService\n");
      expect(stdout).toContain("auditledger.v1.AgentRegistryService\n");
      expect(stdout).toContain("auditledger.v1.KeyService\n");
    });

    test.each([
      ["grpc-v1", "connect"],
      ["grpc-v1alpha", "connect"],
      ["grpc-v1", "grpc"],
      ["grpc-v1alpha", "grpc"],
    ])("unary Append through reflection %s, call protocol %s", async (reflectProtocol, protocol) => {
      const apiKey = await createKey(uniqueChain("buf"));
      const kind = `buf.${protocol}.${reflectProtocol}`;
      const { stdout } = await bufCurl([
        "--http2-prior-knowledge",
        "--reflect-protocol", reflectProtocol,
        "--protocol", protocol,
        "-H", `Authorization: Bearer ${apiKey}`,
        "-d", JSON.stringify({ event: { kind } }),
        `${server.url}/auditledger.v1.LedgerService/Append`,
      ]);
      const body = JSON.parse(stdout) as { entry: Record<string, unknown> };
      expect(body.entry).toMatchObject({ kind, sourceType: "api", v: 1 });
      expect(body.entry.hash).toMatch(/^[0-9a-f]{64}$/);
    });

    test("describes a method's schema (the descriptors resolve)", async () => {
      const { stdout } = await bufCurl(["--list-methods", "--http2-prior-knowledge", server.url]);
      for (const m of ["Append", "AppendBatch", "GetEvent", "Query", "Verify", "StreamEvents", "GetStats"]) {
        expect(stdout).toContain(`auditledger.v1.LedgerService/${m}\n`);
      }
      expect(stdout).toContain("auditledger.v1.AgentRegistryService/Ingest\n");
    });
  });

  describe("(i) RPCs of later milestones answer Unimplemented; the agent registry is served", () => {
    const LATER_LEDGER_METHODS = ["Trace"];
    let transport: Transport;

    beforeAll(async () => {
      const apiKey = await createKey(uniqueChain("unimpl"), ["append", "read", "admin"]);
      transport = createConnectTransport({ baseUrl: server.url, httpVersion: "2", interceptors: [bearer(apiKey)] });
    });

    test.each(LATER_LEDGER_METHODS)("LedgerService/%s", async (name) => {
      const method = LedgerService.methods.find((m) => m.name === name);
      expect(method).toBeDefined();
      expect(await codeOf(createClient(LedgerService, transport) as unknown as Client<DescService>, method!)).toBe(Code.Unimplemented);
    });

    test("the services cover every method the contract names", () => {
      expect(AgentRegistryService.methods.map((m) => m.name)).toContain("Ingest");
      expect(AgentRegistryService.methods.find((m) => m.name === "Ingest")?.methodKind).toBe("bidi_streaming");
    });

    // Implemented since the agents milestone: an empty request gets a real answer (a
    // result or a validation error), never Unimplemented. WatchAgents never ends by
    // itself; test/agents.test.ts covers it.
    test.each(AgentRegistryService.methods.filter((m) => m.name !== "WatchAgents").map((m) => [m.name, m] as const))(
      "AgentRegistryService/%s is implemented",
      async (_name, method) => {
        expect(await codeOf(createClient(AgentRegistryService, transport) as unknown as Client<DescService>, method).catch(() => "OK")).not.toBe(Code.Unimplemented);
      },
    );

    test("the Ingest stream works over gRPC too (bidi over HTTP/2): a stream without hello is refused", async () => {
      const apiKey = await createKey(uniqueChain("unimpl"));
      const grpc = createClient(AgentRegistryService, createGrpcTransport({ baseUrl: server.url, interceptors: [bearer(apiKey)] }));
      const method = AgentRegistryService.methods.find((m) => m.name === "Ingest")!;
      expect(await codeOf(grpc as unknown as Client<DescService>, method)).toBe(Code.InvalidArgument);
    });
  });
});
