// Writes chain/vectors/evidence-bundle.ndjson (a valid evidence bundle) and
// evidence-bundle.json (its trusted keys, the expected verdict, and tampered variants
// with the first line a verifier must reject). Run only when the bundle format or the
// fixture deliberately changes:
//   npx tsx chain/vectors/generate-bundle-vectors.ts
// Everything is deterministic, so rerunning reproduces the files byte for byte;
// chain/evidence-bundle.test.ts holds the builder and the verifier to them.
import { writeFileSync } from "node:fs";
import {
  buildBundleText,
  entryHash,
  formatVerifierKey,
  fromBase64,
  parseVerifierKey,
  rootOfLeaves,
  signCheckpoint,
  signerKeyFromSeed,
  toBase64,
  verifyBundle,
  type BundleVerdict,
} from "../index.js";
import { applyEdits, FIXTURE_ORIGIN, KEY_NAME, linesOf, makeBundleFixture, textOf, vectorSeed, type BundleEdit, type TamperedCase } from "./evidence-bundle-fixture.js";

async function main(): Promise<void> {
  const f = await makeBundleFixture();
  const lines = linesOf(f.text);
  const rogue = signerKeyFromSeed(KEY_NAME, vectorSeed("bundle-rogue"));
  const trusted = [f.keys.old, f.keys.current].map(formatVerifierKey);

  const lineOf = (match: (r: Record<string, unknown>) => boolean) => lines.findIndex((l) => match(JSON.parse(l) as Record<string, unknown>)) + 1;
  const entryLine = (seq: number) => lineOf((r) => r.t === "entry" && r.seq === seq);
  const payloadLine = (seq: number) => lineOf((r) => r.t === "payload" && r.seq === seq);
  const cpLine = (size: number) => lineOf((r) => r.t === "checkpoint" && String(r.note).split("\n")[1] === String(size));
  const typeLine = (t: string) => lineOf((r) => r.t === t);
  const rec = (n: number) => JSON.parse(lines[n - 1]!) as Record<string, unknown>;
  const edit = (n: number, change: (r: Record<string, unknown>) => void): BundleEdit => {
    const r = rec(n);
    change(r);
    return { op: "replace", line: n, text: JSON.stringify(r) };
  };
  const flipByte = (b64: string, at: number) => {
    const raw = fromBase64(b64);
    raw[at]! ^= 0x01;
    return toBase64(raw);
  };

  const rogueNote = signCheckpoint({ origin: FIXTURE_ORIGIN, size: 12, root: rootOfLeaves(f.leaves.slice(0, 12)), extensions: [] }, rogue);
  const rogueKeyLine = JSON.stringify({ t: "key", vkey: formatVerifierKey(rogue), created_at: "2026-01-01T00:00:00.000Z" });
  // The attacker's full rewrite: their key listed, checkpoint 12 re-signed, end record recomputed.
  const rewritten = linesOf(await buildBundleText({
    ...f.input,
    keys: [...f.input.keys, { key: rogue, createdAt: "2026-01-01T00:00:00.000Z" }],
    checkpoints: f.input.checkpoints.map((n, i) => (i === 1 ? rogueNote : n)),
  }));
  // The same as edits: the key inserted as line 4, then checkpoint 12 and the end record replaced.
  const listedEdits: BundleEdit[] = [
    { op: "insert", before: 4, text: rewritten[3]! },
    { op: "replace", line: cpLine(12) + 1, text: rewritten[cpLine(12)]! },
    { op: "replace", line: lines.length + 1, text: rewritten[lines.length]! },
  ];
  if (applyEdits(f.text, listedEdits) !== textOf(rewritten)) throw new Error("the rogue-key edits do not reproduce the rewritten bundle");
  const cut = (n: number, extra: number) => new TextEncoder().encode(textOf(lines.slice(0, n - 1))).length + extra;

  const cases: Omit<TamperedCase, "expect">[] = [
    { name: "valid-pinned", description: "the valid bundle, checked against the pinned keys", trusted_keys: "pinned", edits: [] },
    { name: "valid-bundle-keys", description: "the valid bundle, checked against its own key records (valid, with a warning)", trusted_keys: "bundle", edits: [] },
    { name: "entry-edited", description: "entry seq 7: kind changed", trusted_keys: "pinned", edits: [edit(entryLine(7), (r) => (r.kind = "user.logout"))] },
    {
      name: "entry-edited-rehashed",
      description: "entry seq 7: actor added and its hash recomputed; seq 8's prev_hash no longer matches",
      trusted_keys: "pinned",
      edits: [edit(entryLine(7), (r) => {
        r.actor = "mallory";
        const { t: _t, hash: _h, ...env } = r;
        r.hash = entryHash(env as never);
      })],
    },
    { name: "payload-edited", description: "payload of seq 6: one bit flipped", trusted_keys: "pinned", edits: [edit(payloadLine(6), (r) => (r.payload = flipByte(r.payload as string, 0)))] },
    { name: "payload-missing", description: "payload record of seq 6 deleted, no redacted record in its place", trusted_keys: "pinned", edits: [{ op: "delete", line: payloadLine(6) }] },
    { name: "entry-dropped", description: "entry seq 10 deleted", trusted_keys: "pinned", edits: [{ op: "delete", line: entryLine(10) }] },
    {
      name: "entries-swapped",
      description: "entries seq 7 and 8 swapped",
      trusted_keys: "pinned",
      edits: [
        { op: "replace", line: entryLine(7), text: lines[entryLine(8) - 1]! },
        { op: "replace", line: entryLine(8), text: lines[entryLine(7) - 1]! },
      ],
    },
    {
      name: "checkpoint-signature-flipped",
      description: "checkpoint 12: one bit of the signature flipped",
      trusted_keys: "bundle",
      edits: [edit(cpLine(12), (r) => {
        const note = r.note as string;
        const split = note.lastIndexOf("\n\n");
        const [dash, name, sig] = note.slice(split + 2, -1).split(" ") as [string, string, string];
        r.note = `${note.slice(0, split + 2)}${dash} ${name} ${flipByte(sig, fromBase64(sig).length - 1)}\n`;
      })],
    },
    {
      name: "checkpoint-root-edited",
      description: "checkpoint 12: root line replaced (signature kept)",
      trusted_keys: "pinned",
      edits: [edit(cpLine(12), (r) => {
        const parts = (r.note as string).split("\n");
        parts[2] = toBase64(rootOfLeaves(f.leaves.slice(0, 11)));
        r.note = parts.join("\n");
      })],
    },
    { name: "checkpoint-unknown-key", description: "checkpoint 12 re-signed by a key the bundle does not list", trusted_keys: "bundle", edits: [edit(cpLine(12), (r) => (r.note = rogueNote))] },
    {
      name: "checkpoint-rogue-key-listed-bundle-keys",
      description: "checkpoint 12 re-signed by an added key, listed in the bundle, end record recomputed: valid against the bundle's own keys (which is why keys must be pinned)",
      trusted_keys: "bundle",
      edits: listedEdits,
    },
    {
      name: "checkpoint-rogue-key-listed-pinned",
      description: "the same, against the pinned keys: refused",
      trusted_keys: "pinned",
      edits: listedEdits,
    },
    { name: "consistency-dropped", description: "consistency record 7->12 deleted", trusted_keys: "pinned", edits: [{ op: "delete", line: typeLine("consistency") }] },
    {
      name: "consistency-edited",
      description: "consistency 12->20: one bit of the first proof hash flipped",
      trusted_keys: "pinned",
      edits: [edit(typeLine("consistency") + 1, (r) => ((r.proof as string[])[0] = flipByte((r.proof as string[])[0]!, 5)))],
    },
    { name: "frontier-edited", description: "frontier: one bit of the second hash flipped", trusted_keys: "pinned", edits: [edit(typeLine("frontier"), (r) => ((r.hashes as string[])[1] = flipByte((r.hashes as string[])[1]!, 0)))] },
    { name: "completion-edited", description: "completion: one bit of the last hash flipped", trusted_keys: "pinned", edits: [edit(typeLine("completion"), (r) => ((r.hashes as string[])[2] = flipByte((r.hashes as string[])[2]!, 31)))] },
    { name: "redacted-wrong-entry", description: "redacted record of seq 9 names seq 10, not a redaction entry", trusted_keys: "pinned", edits: [edit(lineOf((r) => r.t === "redacted"), (r) => (r.by_seq = 10))] },
    { name: "truncated-mid-line", description: "file cut 40 bytes into the line of entry seq 9", trusted_keys: "pinned", edits: [{ op: "truncate", bytes: cut(entryLine(9), 40) }] },
    { name: "truncated-at-line", description: "file cut after the line of entry seq 9", trusted_keys: "pinned", edits: [{ op: "truncate", bytes: cut(entryLine(9) + 1, 0) }] },
    { name: "end-missing", description: "end record deleted", trusted_keys: "pinned", edits: [{ op: "delete", line: lines.length }] },
    { name: "not-json", description: "a line that is not JSON inserted before entry seq 8", trusted_keys: "pinned", edits: [{ op: "insert", before: entryLine(8), text: "this is not json" }] },
    { name: "end-checksum", description: "created_at of the first key record changed: only the end record's SHA-256 covers it", trusted_keys: "pinned", edits: [edit(2, (r) => (r.created_at = "2024-01-01T00:00:00.000Z"))] },
    { name: "key-inserted", description: "a key record inserted by hand (end record left as it was)", trusted_keys: "bundle", edits: [{ op: "insert", before: 4, text: rogueKeyLine }] },
  ];

  const pinnedKeys = trusted.map(parseVerifierKey);
  const out: TamperedCase[] = [];
  for (const c of cases) {
    const v: BundleVerdict = await verifyBundle(linesOf(applyEdits(f.text, c.edits)), c.trusted_keys === "pinned" ? { trustedKeys: pinnedKeys } : {});
    out.push({ ...c, expect: v.ok ? { ok: true } : { ok: false, line: v.first_failure!.line, item: v.first_failure!.item } });
  }
  const valid = await verifyBundle(lines, { trustedKeys: pinnedKeys });

  writeFileSync(new URL("./evidence-bundle.ndjson", import.meta.url), f.text);
  const doc = {
    description:
      "An evidence bundle (docs/evidence-bundle.md) in evidence-bundle.ndjson: chain bundle-test, 20 entries, window [5, 13), " +
      "checkpoints 7 and 12 signed by the retired key and the anchor 20 by the current key (both named ledger.test, seeds " +
      "SHA-256(\"audit-ledger test vector key: bundle-2025\" / \"bundle-2026\")), seq 9's payload erased by the redaction entry seq 11. " +
      "A verifier given trusted_keys must accept it with the verdict below. Each case applies its edits in order to the lines " +
      "of the valid file (1-based line numbers, each edit on the result of the one before; truncate keeps the first N bytes) and " +
      "must be rejected at the given line, or accepted when ok is true. trusted_keys \"pinned\" means verify against trusted_keys, " +
      "\"bundle\" against the bundle's own key records. item names what this implementation reports; other verifiers should at " +
      "least agree on ok and line.",
    trusted_keys: trusted,
    verdict: {
      ok: valid.ok,
      chain: valid.chain,
      origin: valid.origin,
      from_seq: valid.from_seq,
      to_seq: valid.to_seq,
      entries: valid.entries,
      payloads_checked: valid.payloads_checked,
      redacted: valid.redacted,
      checkpoints: valid.checkpoints.map((c) => ({ size: c.size, root: c.root, key: c.key })),
      consistency_checked: valid.consistency_checked,
    },
    cases: out,
  };
  writeFileSync(new URL("./evidence-bundle.json", import.meta.url), JSON.stringify(doc, null, 2) + "\n");
  console.log(`wrote evidence-bundle.ndjson (${lines.length} lines) and evidence-bundle.json (${out.length} cases)`);
}

await main();
