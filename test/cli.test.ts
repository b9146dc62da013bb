// The command line (SPEC §8) against a real server process: every command runs as its
// own `node --import tsx clients/cli/main.ts ...` process, as an operator would run it.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, onTestFinished, test } from "vitest";
import { createLedgerClient } from "../clients/node/ledger-client.js";
import { CLI, cleanCliEnv, runCli } from "./support/cli-process.js";
import { createKey, databaseUrl, spawnServer, superuser, uniqueChain, type ServerProcess } from "./support/test-server.js";

/** Runs the CLI to completion, in a clean environment. */
const cli = (args: string[]) => runCli(args);

const lines = (text: string) => text.split("\n").filter((l) => l.trim() !== "");
const ndjson = (text: string) => lines(text).map((l) => JSON.parse(l) as Record<string, unknown>);

describe("audit-ledger CLI against a server process", () => {
  let server: ServerProcess;
  /** `--url URL --api-key KEY` */
  let as: (apiKey: string) => string[];

  beforeAll(async () => {
    server = await spawnServer();
    as = (apiKey) => ["--url", server.url, "--api-key", apiKey];
  });
  afterAll(async () => {
    if (server) expect(await server.stop()).toBe(0);
  });

  describe("keys create", () => {
    test("over RPC with an admin key: prints a token with the requested scopes, and the token works", async () => {
      const chain = uniqueChain("cli-keys");
      const admin = await createKey(chain, ["admin"]);
      const res = await cli([...as(admin), "keys", "create", "--for-chain", chain, "--scopes", "append,read", "--name", "ci"]);
      expect(res.stderr).toBe("");
      expect(res.code).toBe(0);
      const created = JSON.parse(res.stdout) as { key_id: string; chain: string; scopes: string[]; token: string };
      expect(created).toMatchObject({ chain, scopes: ["append", "read"] });
      expect(created.token).toMatch(new RegExp(`^alk_${created.key_id}\\.[A-Za-z0-9_-]{43}$`));

      const appended = await cli([...as(created.token), "append", "--kind", "cli.keys"]);
      expect(appended.code).toBe(0);
      expect(JSON.parse(appended.stdout)).toMatchObject({ chain, seq: 0, kind: "cli.keys", agent: created.key_id });

      // The new key has no admin scope: it cannot mint keys.
      const denied = await cli([...as(created.token), "keys", "create", "--for-chain", chain, "--scopes", "read"]);
      expect(denied.code).toBe(2);
      expect(denied.stdout).toBe("");
      expect(denied.stderr).toMatch(/lacks the "admin" scope/);
    });

    test("directly with --database-url (no server involved): the key is stored and works", async () => {
      const chain = uniqueChain("cli-direct");
      const res = await cli(["keys", "create", "--for-chain", chain, "--scopes", "read,append,admin", "--database-url", databaseUrl()]);
      expect(res.code).toBe(0);
      const created = JSON.parse(res.stdout) as { key_id: string; chain: string; scopes: string[]; token: string };
      expect(created).toMatchObject({ chain, scopes: ["read", "append", "admin"] });

      const db = await superuser();
      try {
        const row = await db.query("SELECT chain, scopes, revoked_at FROM api_keys WHERE key_id = $1", [created.key_id]);
        expect(row.rows).toEqual([{ chain, scopes: ["read", "append", "admin"], revoked_at: null }]);
      } finally {
        await db.end();
      }

      const stats = await cli([...as(created.token), "stats"]);
      expect(stats.code).toBe(0);
      expect(JSON.parse(stats.stdout)).toEqual({ chain, count: 0, last_seq: null, head_hash: "0".repeat(64), last_ts: null });
    });
  });

  describe("append", () => {
    test("prints the committed entry as JSON; a repeated idempotency key returns the original", async () => {
      const chain = uniqueChain("cli-append");
      const key = await createKey(chain, ["append"]);
      const res = await cli([
        ...as(key), "append",
        "--kind", "order.created", "--subject", "orders/1", "--actor", "alice",
        "--idempotency-key", "order-1", "--payload", '{"total":3}', "--payload-type", "application/json",
      ]);
      expect(res.stderr).toBe("");
      expect(res.code).toBe(0);
      const entry = JSON.parse(res.stdout) as Record<string, unknown>;
      expect(entry).toMatchObject({
        v: 1, chain, seq: 0, kind: "order.created", subject: "orders/1", actor: "alice", source_type: "api",
        idempotency_key: "order-1", payload_type: "application/json", payload_size: 11, prev_hash: "0".repeat(64),
      });
      expect(entry.hash).toMatch(/^[0-9a-f]{64}$/);
      expect(entry.payload_digest).toMatch(/^[0-9a-f]{64}$/);

      const again = await cli([...as(key), "append", "--kind", "order.created", "--idempotency-key", "order-1"]);
      expect(again.code).toBe(0);
      expect(JSON.parse(again.stdout)).toEqual(entry);
    });
  });

  describe("query, stats, verify on a seeded chain", () => {
    let key: string;
    let chain: string;
    let hashes: string[];

    beforeAll(async () => {
      chain = uniqueChain("cli-q");
      key = await createKey(chain, ["append", "read"]);
      const client = createLedgerClient({ baseUrl: server.url, apiKey: key });
      const seeded = await client.ledger.appendBatch({
        events: [
          { kind: "order.created", subject: "orders/1", actor: "alice", payload: new TextEncoder().encode('{"total":3}') },
          { kind: "order.created", subject: "orders/2" },
          { kind: "user.login", subject: "users/alice", actor: "alice" },
          { kind: "order.created", subject: "orders/3" },
          { kind: "order.shipped", subject: "orders/1" },
        ],
      });
      hashes = seeded.results.map((r) => r.hash);
    });

    test.each([
      ["no filter", [], [0, 1, 2, 3, 4]],
      ["--kind", ["--kind", "order.created"], [0, 1, 3]],
      ["--subject --prefix", ["--subject", "orders/", "--prefix"], [0, 1, 3, 4]],
      ["--subject (exact)", ["--subject", "orders/1"], [0, 4]],
      ["--actor", ["--actor", "alice"], [0, 2]],
      ["--from-seq / --to-seq", ["--from-seq", "1", "--to-seq", "3"], [1, 2]],
      ["--kind --desc", ["--kind", "order.created", "--desc"], [3, 1, 0]],
    ])("query filters: %s", async (_name, args, expected) => {
      const res = await cli([...as(key), "query", ...args]);
      expect(res.stderr).toBe("");
      expect(res.code).toBe(0);
      expect(ndjson(res.stdout).map((e) => e.seq)).toEqual(expected);
    });

    test("query pages with --limit and --cursor, and --all follows the cursors to the end", async () => {
      const first = await cli([...as(key), "query", "--limit", "2"]);
      expect(first.code).toBe(0);
      expect(ndjson(first.stdout).map((e) => e.seq)).toEqual([0, 1]);
      const cursor = /^more: --cursor (\S+)$/m.exec(first.stderr)?.[1];
      expect(cursor).toBeDefined();

      const second = await cli([...as(key), "query", "--limit", "2", "--cursor", cursor!]);
      expect(second.code).toBe(0);
      expect(ndjson(second.stdout).map((e) => e.seq)).toEqual([2, 3]);

      const all = await cli([...as(key), "query", "--limit", "2", "--all"]);
      expect(all.code).toBe(0);
      expect(all.stderr).toBe("");
      const entries = ndjson(all.stdout);
      expect(entries.map((e) => e.seq)).toEqual([0, 1, 2, 3, 4]);
      expect(entries.map((e) => e.hash)).toEqual(hashes);
      for (let i = 1; i < entries.length; i++) expect(entries[i]!.prev_hash).toBe(entries[i - 1]!.hash);
    });

    test("query --payload includes the payload", async () => {
      const res = await cli([...as(key), "query", "--to-seq", "1", "--payload"]);
      expect(res.code).toBe(0);
      const [entry] = ndjson(res.stdout);
      expect(entry).toMatchObject({ seq: 0, payload: '{"total":3}' });
      expect(entry!.payload_salt).toMatch(/^[0-9a-f]+$/);
    });

    test("stats prints count, last seq and head hash", async () => {
      const res = await cli([...as(key), "stats"]);
      expect(res.code).toBe(0);
      const stats = JSON.parse(res.stdout) as Record<string, unknown>;
      expect(stats).toMatchObject({ chain, count: 5, last_seq: 4, head_hash: hashes[4] });
      expect(new Date(stats.last_ts as string).toISOString()).toBe(stats.last_ts);
    });

    test("verify exits 0 and prints VALID; --json prints the verdict", async () => {
      const res = await cli([...as(key), "verify"]);
      expect(res.code).toBe(0);
      expect(res.stdout).toMatch(/^VALID: all 5 entries verify \(\d+ signed checkpoints? matched\)\n$/);

      const json = await cli([...as(key), "verify", "--json", "--from-seq", "1", "--to-seq", "4"]);
      expect(json.code).toBe(0);
      expect(JSON.parse(json.stdout)).toMatchObject({ valid: true, checked: 3, first_break_at: null, break_kind: null, reason: "all 3 entries verify", redacted: [] });
    });
  });

  describe("tail", () => {
    test("prints stored entries, then new ones as they are appended; ends when killed", async () => {
      const chain = uniqueChain("cli-tail");
      const key = await createKey(chain, ["append", "read"]);
      const client = createLedgerClient({ baseUrl: server.url, apiKey: key });
      await client.ledger.appendBatch({ events: [{ kind: "tail.before", subject: "a" }, { kind: "tail.before", subject: "b" }] });

      const child = spawn(process.execPath, [...CLI, ...as(key), "tail", "--from-seq", "0"], { env: cleanCliEnv(), stdio: ["ignore", "pipe", "pipe"] });
      onTestFinished(() => void (child.exitCode === null && child.signalCode === null && child.kill("SIGKILL")));
      let stderr = "";
      child.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
      const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.once("exit", (code, signal) => resolve(signal ?? code)));
      const out = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
      const nextLine = async () => {
        const line = await out.next();
        if (line.done) throw new Error(`tail ended early (exit ${await exited}): ${stderr}`);
        return JSON.parse(line.value) as { cursor: string; entry: Record<string, unknown> };
      };

      const first = await nextLine();
      const second = await nextLine();
      expect([first.entry.seq, second.entry.seq]).toEqual([0, 1]);
      expect([first.entry.subject, second.entry.subject]).toEqual(["a", "b"]);
      expect(first.cursor).not.toBe("");
      expect(second.cursor).not.toBe(first.cursor);

      // Live: each append shows up as the next line.
      for (const [i, subject] of ["c", "d"].entries()) {
        const appended = await client.ledger.append({ event: { kind: "tail.live", subject } });
        const line = await nextLine();
        expect(line.entry).toMatchObject({ seq: 2 + i, kind: "tail.live", subject, hash: appended.entry!.hash });
      }

      child.kill("SIGTERM");
      expect(await exited).toBe("SIGTERM");
      expect(stderr).toBe("");
    });
  });

  describe("bad input exits non-zero with a clear message", () => {
    let admin: string;
    beforeAll(async () => {
      admin = await createKey(uniqueChain("cli-bad"));
    });

    test("keys create with an unknown scope", async () => {
      const res = await cli([...as(admin), "keys", "create", "--for-chain", "somewhere", "--scopes", "read,superpowers"]);
      expect(res.code).toBe(2);
      expect(res.stdout).toBe("");
      expect(res.stderr).toBe('audit-ledger: --scopes: unknown scope "superpowers"; expected append, read, admin\n');
    });

    test("keys create with an invalid chain name", async () => {
      const res = await cli([...as(admin), "keys", "create", "--for-chain", "no spaces", "--scopes", "read"]);
      expect(res.code).toBe(2);
      expect(res.stderr).toMatch(/^audit-ledger: --for-chain: "no spaces" is not a chain name/);
    });

    test.each(["abc", "1.5", "-1"])("query --from-seq %s", async (value) => {
      const res = await cli([...as(admin), "query", `--from-seq=${value}`]);
      expect(res.code).not.toBe(0);
      expect(res.stdout).toBe("");
      expect(res.stderr).toContain(`--from-seq: "${value}" is not a non-negative integer`);
    });

    test("verify --to-seq below --from-seq is refused by the server as InvalidArgument", async () => {
      const res = await cli([...as(admin), "verify", "--from-seq", "5", "--to-seq", "2"]);
      expect(res.code).toBe(2);
      expect(res.stderr).toBe("audit-ledger: to_seq: must not be below from_seq [3]\n");
    });

    test("append with an invalid kind is refused and nothing is written", async () => {
      const res = await cli([...as(admin), "append", "--kind", "not a kind!"]);
      expect(res.code).toBe(2);
      expect(res.stderr).toMatch(/^audit-ledger: event\.kind: "not a kind!" may hold only letters, digits and \. _ : \/ - \[3\]\n$/);
      const stats = await cli([...as(admin), "stats"]);
      expect(JSON.parse(stats.stdout)).toMatchObject({ count: 0 });
    });

    test("append without --kind", async () => {
      const res = await cli([...as(admin), "append", "--subject", "x"]);
      expect(res.code).not.toBe(0);
      expect(res.stderr).toContain("required option '--kind <kind>' not specified");
    });

    test("a command without an API key is Unauthenticated", async () => {
      const res = await cli(["--url", server.url, "stats"]);
      expect(res.code).toBe(2);
      expect(res.stderr).toBe("audit-ledger: missing bearer API key (Authorization: Bearer alk_...) [16]\n");
    });

    test("a wrong API key is Unauthenticated", async () => {
      const res = await cli(["--url", server.url, "--api-key", `alk_${"0".repeat(16)}.${"A".repeat(43)}`, "stats"]);
      expect(res.code).toBe(2);
      expect(res.stderr).toBe("audit-ledger: API key unknown or revoked [16]\n");
    });

    test("an unknown command", async () => {
      const res = await cli(["frobnicate"]);
      expect(res.code).not.toBe(0);
      expect(res.stderr).toContain("unknown command 'frobnicate'");
    });
  });
});
