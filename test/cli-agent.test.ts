// `audit-ledger agent` and `audit-ledger agents ...` as an operator runs them: real CLI
// processes against a real server. The daemon is started from a config file with a
// generic_polling source reading a local JSON endpoint, its events are read back through
// Query, and SIGTERM stops it cleanly (exit 0).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import http from "node:http";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RunningServer } from "../server/ledger-server.js";
import type { LedgerClient } from "../clients/node/ledger-client.js";
import { CLI, cleanCliEnv, runCli } from "./support/cli-process.js";
import { createKey, startTestServer, uniqueChain } from "./support/test-server.js";
import { createLedgerClient } from "../clients/node/ledger-client.js";
import { eventually } from "./support/verifiable-log.js";

const ITEMS = 7;

/** A JSON endpoint serving ITEMS items. */
function itemsServer(): Promise<{ url: string; requests(): number; close(): Promise<void> }> {
  let requests = 0;
  const items = Array.from({ length: ITEMS }, (_, i) => ({ id: `order-${i}`, total: i * 10 }));
  const server = http.createServer((_req, res) => {
    requests++;
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ items }));
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      resolve({
        url: `http://127.0.0.1:${port}/orders`,
        requests: () => requests,
        close: () => new Promise<void>((r) => server.close(() => r())),
      });
    }),
  );
}

/** `audit-ledger agent --config FILE` as a long-running child process. */
function startAgentProcess(configFile: string, env: NodeJS.ProcessEnv = {}) {
  const child = spawn(process.execPath, [...CLI, "agent", "--config", configFile], {
    env: cleanCliEnv({ LOG_LEVEL: "info", ...env }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr!.on("data", (c: Buffer) => (out += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once("close", (code, signal) => resolve({ code, signal })));
  let done = false;
  void exited.then(() => (done = true));
  return {
    output: () => out,
    /** The ZID from the "agent running" log line. */
    async zid(): Promise<string> {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const m = /"zid":"(ZID-[0-9A-Z]{8})"[^\n]*"msg":"agent running"/.exec(out);
        if (m) return m[1]!;
        if (done) throw new Error(`the agent exited before it ran:\n${out}`);
        if (Date.now() > deadline) throw new Error(`the agent did not log "agent running" within 30 s:\n${out}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    async stop() {
      if (!done) child.kill("SIGTERM");
      return exited;
    },
    kill() {
      if (!done) child.kill("SIGKILL");
    },
  };
}

describe("audit-ledger agent / agents (CLI processes)", () => {
  let server: RunningServer;
  let chain: string;
  let admin: string;
  let client: LedgerClient;
  let dir: string;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "al-cli-agent-"));
    server = await startTestServer({ agentStateDir: join(dir, "server-agents") });
    chain = uniqueChain("cli-agent");
    admin = await createKey(chain, ["append", "read", "admin"]);
    client = createLedgerClient({ baseUrl: server.url, apiKey: admin });
    env = { AUDIT_LEDGER_URL: server.url, AUDIT_LEDGER_API_KEY: admin };
  });
  afterAll(async () => {
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const file = (name: string, text: string) => {
    const f = join(dir, name);
    writeFileSync(f, text);
    return f;
  };

  it("agent --check: a bad config exits non-zero naming the field; a good one exits 0", async () => {
    const bad = file(
      "bad.yaml",
      ["server: http://127.0.0.1:1", "state_dir: ./bad-state", "sources:", "  - name: a", "    type: generic_polling", "    url: http://127.0.0.1:1/x", "  - name: b", "    type: generic_polling", "    url: not-a-url", ""].join("\n"),
    );
    const r = await runCli(["agent", "--config", bad, "--check"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/sources\[1\]\.url/);
    expect(r.stderr).toContain(bad);
    expect(r.stdout).toBe("");

    const unknownType = file("unknown.yaml", "server: http://127.0.0.1:1\nstate_dir: s\nsources:\n  - name: a\n    type: teleport\n");
    const u = await runCli(["agent", "--config", unknownType, "--check"]);
    expect(u.code).not.toBe(0);
    expect(u.stderr).toMatch(/sources\[0\]\.type: unknown source type "teleport"/);

    const notYaml = file("broken.yaml", "server: [unclosed\n");
    const y = await runCli(["agent", "--config", notYaml, "--check"]);
    expect(y.code).not.toBe(0);
    expect(y.stderr).toMatch(/YAML/);

    const missing = await runCli(["agent", "--config", join(dir, "absent.yaml"), "--check"]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain("absent.yaml");

    const good = file("check-good.yaml", "server: http://127.0.0.1:1\nstate_dir: ./never-created\nsources:\n  - name: orders\n    type: generic_polling\n    url: http://127.0.0.1:1/orders\n");
    const g = await runCli(["agent", "--config", good, "--check"]);
    expect(g.code, g.stderr).toBe(0);
    expect(g.stdout).toMatch(/valid/);
    expect(g.stdout).toContain("orders (generic_polling)");
  });

  it("agents token needs an admin key and prints a one-time ale_ token", async () => {
    const noKey = await runCli(["agents", "token"], { env: { AUDIT_LEDGER_URL: server.url } });
    expect(noKey.code).not.toBe(0);
    expect(noKey.stderr).toMatch(/Unauthenticated|API key/i);
    const reader = await createKey(chain, ["read"]);
    const notAdmin = await runCli(["agents", "token"], { env: { AUDIT_LEDGER_URL: server.url, AUDIT_LEDGER_API_KEY: reader } });
    expect(notAdmin.code).not.toBe(0);
    expect(notAdmin.stderr).toMatch(/PermissionDenied|admin/);

    const r = await runCli(["agents", "token", "--ttl", "600"], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ale_\S+\.\S+\n$/);
    expect(r.stderr).toMatch(/expires/);
  });

  it("agent --config runs the daemon: enrols, its generic_polling items land in the ledger once, SIGTERM exits 0; then agents list / test-event / deregister", async () => {
    const items = await itemsServer();
    const tokenRun = await runCli(["agents", "token"], { env });
    expect(tokenRun.code, tokenRun.stderr).toBe(0);
    const token = tokenRun.stdout.trim();
    const config = file(
      "good.yaml",
      [
        `server: ${server.url}`,
        "state_dir: ./agent-state",
        `enrolment_token: ${token}`,
        "name: cli-poller",
        "ingest:",
        "  heartbeat_interval_ms: 200",
        "sources:",
        "  - name: orders",
        "    type: generic_polling",
        `    url: ${items.url}`,
        "    interval_ms: 100",
        "    id_field: id",
        "    kind_prefix: order",
        "",
      ].join("\n"),
    );
    const ofAgent = async (zid: string) => (await client.ledger.query({ chain, filter: { agent: zid }, limit: 1000 })).entries;

    let agent = startAgentProcess(config);
    let zid = "";
    try {
      zid = await agent.zid();
      await eventually(`${ITEMS} items from ${zid}`, async () => expect(await ofAgent(zid)).toHaveLength(ITEMS), 30_000);
      const entries = await ofAgent(zid);
      expect(new Set(entries.map((e) => e.sourceType))).toEqual(new Set(["generic_polling"]));
      expect(new Set(entries.map((e) => e.kind))).toEqual(new Set(["order.created"]));
      expect(new Set(entries.map((e) => e.idempotencyKey)).size).toBe(ITEMS);
      // Still polling: it keeps asking, and nothing is appended twice.
      const polls = items.requests();
      await eventually("more polls", async () => expect(items.requests()).toBeGreaterThan(polls + 2));
      expect(await ofAgent(zid)).toHaveLength(ITEMS);

      const exit = await agent.stop();
      expect(exit, agent.output()).toEqual({ code: 0, signal: null });
      expect(agent.output()).toMatch(/agent stopped/);

      // Restarted from the same state folder: the saved credential (the token is spent), same ZID, no duplicates.
      agent = startAgentProcess(config);
      expect(await agent.zid()).toBe(zid);
      const again = items.requests();
      await eventually("polls after restart", async () => expect(items.requests()).toBeGreaterThan(again + 2));
      expect(await ofAgent(zid)).toHaveLength(ITEMS);
      expect((await agent.stop()).code, agent.output()).toBe(0);
    } finally {
      agent.kill();
      await items.close();
    }

    const list = await runCli(["agents", "list"], { env });
    expect(list.code, list.stderr).toBe(0);
    const rows = list.stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    const row = rows.find((a) => a.zid === zid);
    expect(row, list.stdout).toBeDefined();
    expect(row).toMatchObject({ zid, name: "cli-poller", sourceTypes: ["generic_polling"] });
    expect(String(row!.eventsTotal)).toBe(String(ITEMS));

    const test = await runCli(["agents", "test-event", zid], { env });
    expect(test.code, test.stderr).toBe(0);
    const entry = JSON.parse(test.stdout) as Record<string, unknown>;
    expect(entry).toMatchObject({ agent: zid, kind: "agent.test_event", subject: `agents/${zid}`, chain });
    expect(entry.seq).toEqual(expect.any(Number));
    expect(entry.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(await ofAgent(zid)).toHaveLength(ITEMS + 1);

    const dereg = await runCli(["agents", "deregister", zid], { env });
    expect(dereg.code, dereg.stderr).toBe(0);
    const after = await runCli(["agents", "list"], { env });
    expect(after.stdout).not.toContain(zid);
    const again = await runCli(["agents", "deregister", zid], { env });
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/NotFound|no agent/);
    const testGone = await runCli(["agents", "test-event", zid], { env });
    expect(testGone.code).not.toBe(0);
    // Its entries stay.
    expect(await ofAgent(zid)).toHaveLength(ITEMS + 1);
  });

  it("SIGTERM stops the daemon with exit 0 even while its server is gone", async () => {
    const other = await startTestServer({ agentStateDir: join(dir, "other-server-agents") });
    const otherChain = uniqueChain("cli-agent-down");
    const otherKey = await createKey(otherChain, ["append", "read", "admin"]);
    const { token } = await createLedgerClient({ baseUrl: other.url, apiKey: otherKey }).agents.createEnrolmentToken({ chain: otherChain });
    const items = await itemsServer();
    const config = file(
      "down.yaml",
      `server: ${other.url}\nstate_dir: ./down-state\nenrolment_token: ${token}\nsources:\n  - name: a\n    type: generic_polling\n    url: ${items.url}\n    interval_ms: 100\n    id_field: id\n`,
    );
    const agent = startAgentProcess(config);
    try {
      await agent.zid();
    } finally {
      await other.close();
      await items.close();
    }
    // Let it notice and start reconnecting.
    await eventually("the agent notices the server is gone", async () => expect(agent.output()).toMatch(/reconnecting/), 15_000);
    const started = Date.now();
    const exit = await agent.stop();
    expect(exit, agent.output()).toEqual({ code: 0, signal: null });
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it("agent --config without an enrolment token (and none saved) exits non-zero saying so", async () => {
    const config = file("no-token.yaml", `server: ${server.url}\nstate_dir: ./no-token-state\nsources:\n  - name: a\n    type: generic_polling\n    url: http://127.0.0.1:1/x\n`);
    const r = await runCli(["agent", "--config", config]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/enrolment token/);
  });
});
