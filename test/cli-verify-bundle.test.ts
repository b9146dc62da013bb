// `audit-ledger verify-bundle` (SPEC §7) as an auditor runs it: its own process, a file,
// no server and no network. Exit 0 valid, 1 invalid, 2 for usage errors.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { formatVerifierKey, type BundleVerdict } from "../chain/index.js";
import { linesOf, makeBundleFixture, textOf } from "../chain/vectors/evidence-bundle-fixture.js";
import { runCli } from "./support/cli-process.js";

/** Runs the CLI to completion, with `stdin` piped in when given. Nothing to talk to:
 * the command must not need a server. */
const cli = (args: string[], stdin?: string) => runCli(args, { env: { AUDIT_LEDGER_URL: "http://127.0.0.1:9" }, stdin });

describe("audit-ledger verify-bundle", () => {
  let dir: string;
  let good: string;
  let edited: string;
  let truncated: string;
  let keyArgs: string[];
  let keyIds: string[];

  beforeAll(async () => {
    const f = await makeBundleFixture();
    dir = mkdtempSync(join(tmpdir(), "verify-bundle-"));
    good = join(dir, "good.ndjson");
    writeFileSync(good, f.text);
    const lines = linesOf(f.text);
    const n = lines.findIndex((l) => l.includes('"t":"entry"') && l.includes('"seq":7,'));
    lines[n] = lines[n]!.replace('"kind":"user.login"', '"kind":"user.logout"');
    edited = join(dir, "edited.ndjson");
    writeFileSync(edited, textOf(lines));
    truncated = join(dir, "truncated.ndjson");
    writeFileSync(truncated, f.text.slice(0, Math.floor(f.text.length / 2)));
    keyArgs = [f.keys.old, f.keys.current].flatMap((k) => ["--trusted-key", formatVerifierKey(k)]);
    keyIds = [f.keys.old, f.keys.current].map((k) => formatVerifierKey(k).split("+").slice(0, 2).join("+"));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("a valid bundle with pinned keys: exit 0 and a verdict naming what was checked", async () => {
    const res = await cli(["verify-bundle", good, ...keyArgs]);
    expect(res.stderr).toBe("");
    expect(res.code).toBe(0);
    const out = res.stdout;
    expect(out).toMatch(/^VALID evidence bundle of chain "bundle-test", entries seq 5 to 12\n/);
    expect(out).toMatch(/entries +8 entries: hashes and links recomputed/);
    expect(out).toMatch(/payloads +3 salted digests verified/);
    expect(out).toMatch(/redacted +seq 9 \(payload erased by a redaction entry: reported, not broken\)/);
    expect(out).toMatch(/checkpoints +3 signatures verified against the pinned keys; 3 Merkle roots matched/);
    expect(out).toContain(`size 7   signed by ${keyIds[0]}`);
    expect(out).toContain(`size 12  signed by ${keyIds[0]}`);
    expect(out).toContain(`size 20  signed by ${keyIds[1]}  (anchor)`);
    expect(out).toMatch(/consistency +2 proofs/);
    expect(out).not.toMatch(/warning/);
  });

  test("without pinned keys it still verifies, and warns that the keys are self-asserted", async () => {
    const res = await cli(["verify-bundle", good]);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/against the bundle's own keys \(self-asserted\)/);
    expect(res.stdout).toMatch(/\nwarning: no trusted key was pinned/);
  });

  test("--json prints the verdict object", async () => {
    const res = await cli(["verify-bundle", good, "--json", ...keyArgs]);
    expect(res.code).toBe(0);
    const v = JSON.parse(res.stdout) as BundleVerdict;
    expect(v).toMatchObject({ ok: true, chain: "bundle-test", from_seq: 5, to_seq: 13, entries: 8, redacted: [9], checkpoints_checked: 3, keys_trusted_from: "pinned", warnings: [] });
    expect(v.first_failure).toBeUndefined();
  });

  test("an edited entry: exit 1, FAILED at its line", async () => {
    const res = await cli(["verify-bundle", edited, ...keyArgs]);
    expect(res.code).toBe(1);
    expect(res.stderr).toBe("");
    expect(res.stdout).toMatch(/^FAILED at line 13 \(entry seq 7\): hash mismatch: .*the entry was edited\n/);
    expect(res.stdout).toMatch(/verified before the failure: 2 entries, 1 payload, 2 consistency proofs/);

    const json = await cli(["verify-bundle", edited, "--json", ...keyArgs]);
    expect(json.code).toBe(1);
    const v = JSON.parse(json.stdout) as BundleVerdict;
    expect(v.ok).toBe(false);
    expect(v.first_failure).toMatchObject({ line: 13, item: "entry seq 7", reason: expect.stringMatching(/hash mismatch/) });
  });

  test("a truncated file: exit 1, truncated", async () => {
    const res = await cli(["verify-bundle", truncated, ...keyArgs]);
    expect(res.code).toBe(1);
    expect(res.stdout).toMatch(/^FAILED at line \d+ \(file\): truncated: the last line \(\d+\) is cut off mid-record/);
  });

  test('"-" reads the bundle from stdin', async () => {
    const res = await cli(["verify-bundle", "-", ...keyArgs], readFileSync(good, "utf8"));
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/^VALID/);
  });

  test.each([
    ["a missing file", () => ["verify-bundle", join(dir, "absent.ndjson")], /audit-ledger: cannot read .*absent\.ndjson: ENOENT/],
    ["a directory", () => ["verify-bundle", dir], /cannot read .*: is a directory/],
    ["no file argument", () => ["verify-bundle"], /missing required argument 'file'/],
    ["an unknown option", () => ["verify-bundle", good, "--bogus"], /unknown option '--bogus'/],
    ["a malformed --trusted-key", () => ["verify-bundle", good, "--trusted-key", "ledger+zz+AAAA"], /--trusted-key "ledger\+zz\+AAAA": /],
  ])("usage error, %s: exit 2, nothing on stdout", async (_name, args, message) => {
    const res = await cli(args());
    expect(res.code).toBe(2);
    expect(res.stdout).toBe("");
    expect(res.stderr).toMatch(message);
  });

  test("the command loads no server or network code", () => {
    const imports = (file: string) => [...readFileSync(file, "utf8").matchAll(/^import .* from "([^"]+)";$/gm)].map((m) => m[1]!);
    expect(imports("clients/cli/verify-bundle.ts").sort()).toEqual(["../../chain/index.js", "node:fs", "node:fs/promises"]);
    for (const file of readdirSync("chain").filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"))) {
      for (const spec of imports(join("chain", file))) {
        expect(spec, `chain/${file}`).not.toMatch(/server|clients|connectrpc|^node:(net|http|https|http2|fs)/);
      }
    }
  });
});
