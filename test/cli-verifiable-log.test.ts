// The verifiable-log commands of the CLI against a real server process: checkpoint,
// prove, redact, export (then verify-bundle offline), and signing-key rotation.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import pg from "pg";
import { runCli } from "./support/cli-process.js";
import { spawnServer, uniqueChain, type ServerProcess } from "./support/test-server.js";
import { clientOn, isolatedDatabase } from "./support/verifiable-log.js";

const cli = (args: string[]) => runCli(args);

const json = (text: string) => JSON.parse(text.trim().split("\n").at(-1)!) as Record<string, unknown>;

describe("verifiable-log CLI commands", () => {
  let server: ServerProcess;
  let dir: string;
  let keysDir: string;
  let as: string[];
  let dropDb: () => Promise<void>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "cli-vlog-"));
    keysDir = join(dir, "keys");
    // Its own database and key folder: this file rotates keys.
    const db = await isolatedDatabase();
    dropDb = db.drop;
    server = await spawnServer({ DATABASE_URL: db.url, KEYS_DIR: keysDir, CHECKPOINT_INTERVAL_MS: "0" });
    const chain = uniqueChain("cli-vlog");
    const { token } = await clientOn(db.url, server.url, chain);
    as = ["--url", server.url, "--api-key", token, "--chain", chain];
    for (let i = 0; i < 12; i++) {
      const r = await cli([...as, "append", "--kind", "doc.saved", "--subject", `docs/${i}`, "--payload", JSON.stringify({ i, secret: `s3cr3t-${i}` })]);
      expect(r.code, r.stderr).toBe(0);
    }
  });
  afterAll(async () => {
    if (server) expect(await server.stop()).toBe(0);
    await dropDb?.();
    rmSync(dir, { recursive: true, force: true });
  });

  test("checkpoint --fresh prints a signed checkpoint over the head; --note prints the C2SP note", async () => {
    const r = await cli([...as, "checkpoint", "--fresh"]);
    expect(r.code, r.stderr).toBe(0);
    const cp = json(r.stdout);
    expect(cp.tree_size).toBe(12);
    expect(String(cp.origin)).toMatch(/^audit-ledger\.local\/cli-vlog-/);
    const note = await cli([...as, "checkpoint", "--note"]);
    expect(note.stdout).toBe(cp.note);
    expect(note.stdout).toMatch(/^audit-ledger\.local\/cli-vlog-\S+\n12\n[A-Za-z0-9+/]{43}=\n\n— audit-ledger\.local \S+\n$/);
  });

  test("prove --seq checks the inclusion proof locally against a pinned key; prove --from-size checks consistency", async () => {
    const keys = await cli(["keys", "signing", "--keys-dir", keysDir]);
    const vkey = String(json(keys.stdout).verifier_key);
    const inc = await cli([...as, "prove", "--seq", "7", "--trusted-key", vkey]);
    expect(inc.code, inc.stderr).toBe(0);
    expect(json(inc.stdout)).toMatchObject({ proven: true, seq: 7, tree_size: 12 });
    await cli([...as, "append", "--kind", "doc.saved"]);
    expect((await cli([...as, "checkpoint", "--fresh"])).code).toBe(0);
    const cons = await cli([...as, "prove", "--from-size", "12", "--trusted-key", vkey]);
    expect(cons.code, cons.stderr).toBe(0);
    expect(json(cons.stdout)).toMatchObject({ proven: true, from_size: 12, to_size: 13 });
    // A root the client holds that the log does not extend: exit 1, and says why.
    const bad = await cli([...as, "prove", "--from-size", "12", "--from-root", Buffer.alloc(32, 7).toString("base64"), "--trusted-key", vkey]);
    expect(bad.code).toBe(1);
    expect(json(bad.stdout)).toMatchObject({ proven: false });
    // A key that did not sign the checkpoint: refused, exit 2 with the reason.
    const other = await cli(["keys", "generate", "--keys-dir", join(dir, "elsewhere")]);
    const wrong = await cli([...as, "prove", "--seq", "3", "--trusted-key", String(json(other.stdout).verifier_key)]);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/not signed by a trusted key/);
  });

  test("redact erases a payload; export writes a bundle that verify-bundle accepts offline and that holds no trace of the secret", async () => {
    const red = await cli([...as, "redact", "--seq", "4", "--reason", "GDPR erasure request #17"]);
    expect(red.code, red.stderr).toBe(0);
    expect(json(red.stdout)).toMatchObject({ kind: "redaction", cause: "4" });
    const file = join(dir, "bundle.ndjson");
    const exp = await cli([...as, "export", "--from", "2", "--to", "10", "--out", file]);
    expect(exp.code, exp.stderr).toBe(0);
    const text = readFileSync(file, "utf8");
    expect(text).not.toContain("s3cr3t-4");
    expect(text).not.toContain(Buffer.from("s3cr3t-4").toString("base64").slice(0, 8));
    const keys = await cli(["keys", "signing", "--keys-dir", keysDir]);
    const vkey = String(json(keys.stdout.split("\n")[0]!).verifier_key);
    const ok = await cli(["verify-bundle", file, "--trusted-key", vkey, "--json"]);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(json(ok.stdout)).toMatchObject({ ok: true, from_seq: 2, to_seq: 10, entries: 8, redacted: [4] });
    // One edited byte in an entry: the verifier names the line and exits 1.
    const lines = text.split("\n");
    const at = lines.findIndex((l) => l.includes('"seq":6,') && l.startsWith('{"t":"entry"'));
    lines[at] = lines[at]!.replace('"kind":"doc.saved"', '"kind":"doc.deleted"');
    writeFileSync(join(dir, "edited.ndjson"), lines.join("\n"));
    const bad = await cli(["verify-bundle", join(dir, "edited.ndjson"), "--trusted-key", vkey]);
    expect(bad.code).toBe(1);
    expect(bad.stdout + bad.stderr).toMatch(new RegExp(`line ${at + 1}\\b`));
  });

  test("keys generate rotates: the next checkpoint is signed by the new key, keys signing lists the old one as retired", async () => {
    const before = json((await cli([...as, "checkpoint"])).stdout);
    const gen = await cli(["keys", "generate", "--keys-dir", keysDir]);
    expect(gen.code, gen.stderr).toBe(0);
    const fresh = json(gen.stdout);
    await cli([...as, "append", "--kind", "doc.saved"]);
    const after = json((await cli([...as, "checkpoint", "--fresh"])).stdout);
    expect(after.key_id).toBe(fresh.key_id);
    expect(after.key_id).not.toBe(before.key_id);
    const listed = (await cli(["keys", "signing", "--keys-dir", keysDir])).stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(listed.map((k) => k.key_id)).toEqual([before.key_id, fresh.key_id]);
    expect(listed[0]!.retired_at).toBe(fresh.created_at);
    expect(listed[1]!.retired_at).toBeNull();
    const v = await cli([...as, "verify", "--json"]);
    expect(v.code, v.stdout).toBe(0);
    expect(json(v.stdout)).toMatchObject({ valid: true, redacted: [4] });
  });
});

describe("LEDGER_NAME is fixed once checkpoints exist", () => {
  test("a server started with another name refuses to start and names the origin the checkpoints carry", async () => {
    const db = await isolatedDatabase();
    const keysDir = mkdtempSync(join(tmpdir(), "cli-vlog-name-"));
    try {
      const first = await spawnServer({ DATABASE_URL: db.url, KEYS_DIR: keysDir, CHECKPOINT_INTERVAL_MS: "0" });
      const chain = uniqueChain("name");
      const { client } = await clientOn(db.url, first.url, chain);
      await client.ledger.append({ event: { kind: "x" } });
      await client.ledger.getCheckpoint({ fresh: true });
      expect(await first.stop()).toBe(0);
      const err = await spawnServer({ DATABASE_URL: db.url, KEYS_DIR: keysDir, LEDGER_NAME: "ledger.renamed.example" }).then(
        () => null,
        (e: unknown) => e as Error,
      );
      expect(err?.message).toMatch(/LEDGER_NAME is "ledger\.renamed\.example" but this database's checkpoints were signed with origin "audit-ledger\.local\/name-/);
      // A damaged checkpoint row is for Verify and the checkpointer to report: the server
      // still starts under its own name.
      const su = new pg.Client({ connectionString: db.url });
      await su.connect();
      try {
        await su.query("INSERT INTO checkpoints (chain, tree_size, root, key_id, note) VALUES ($1, 1000000, '\\x00', 'junk', 'junk')", [chain]);
      } finally {
        await su.end();
      }
      const again = await spawnServer({ DATABASE_URL: db.url, KEYS_DIR: keysDir, CHECKPOINT_INTERVAL_MS: "0" });
      expect(await again.stop()).toBe(0);
    } finally {
      await db.drop();
      rmSync(keysDir, { recursive: true, force: true });
    }
  });
});
