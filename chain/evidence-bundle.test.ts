// Evidence bundles (SPEC §7): a real bundle built with buildBundle from entries, a
// Merkle tree and signed checkpoints made by the chain module verifies; every kind of
// corruption is reported at the first bad line, with a reason a person can act on.
import { readFileSync } from "node:fs";
import sodium from "libsodium-wrappers";
import { beforeAll, describe, expect, it } from "vitest";
import {
  batchId,
  batchMessage,
  buildBundle,
  buildBundleText,
  BundleBuildError,
  consistencyProofRanges,
  coverage,
  entryHash,
  entryLeafHash,
  eventCommitment,
  formatVerifierKey,
  fromBase64,
  generateSignerKey,
  parseVerifierKey,
  planBundle,
  rangeNodes,
  rootOfLeaves,
  signCheckpoint,
  splitBundleLines,
  toBase64,
  verifyBundle,
  zidOf,
  ZERO_HASH,
  type BundleBatchInput,
  type BundleEntryInput,
  type BundleVerdict,
  type SignerKey,
  type VerifierKey,
  type VerifyBundleOptions,
} from "./index.js";
import {
  applyEdits,
  FIXTURE_CHAIN,
  FIXTURE_ORIGIN,
  fixtureKeys,
  KEY_NAME,
  lineWhere,
  linesOf,
  makeBundleFixture,
  makeEntries,
  rangeHash,
  textOf,
  vectorSeed,
  type BundleFixture,
  type TamperedCase,
} from "./vectors/evidence-bundle-fixture.js";

type Rec = Record<string, unknown>;

let f: BundleFixture;
let lines: string[];
let pinned: VerifierKey[];
let rogue: SignerKey;

beforeAll(async () => {
  f = await makeBundleFixture();
  lines = linesOf(f.text);
  pinned = [f.keys.old, f.keys.current].map((k) => parseVerifierKey(formatVerifierKey(k)));
  rogue = generateSignerKey(KEY_NAME);
});

const verify = (ls: Iterable<string | Uint8Array> | AsyncIterable<string | Uint8Array>, o: VerifyBundleOptions = {}) => verifyBundle(ls, o);

/** Line numbers of the fixture (see makeBundleFixture): header, 2 keys, checkpoints 7/12/20, ... */
const at = {
  entry: (seq: number) => lineWhere(lines, (r) => r.t === "entry" && r.seq === seq),
  payload: (seq: number) => lineWhere(lines, (r) => r.t === "payload" && r.seq === seq),
  checkpoint: (size: number) => lineWhere(lines, (r) => r.t === "checkpoint" && String(r.note).split("\n")[1] === String(size)),
  type: (t: string) => lineWhere(lines, (r) => r.t === t),
};

/** A copy of the lines with line n (1-based) rewritten through `edit`. */
function edited(ls: string[], n: number, edit: (r: Rec) => void): string[] {
  const out = [...ls];
  const rec = JSON.parse(out[n - 1]!) as Rec;
  edit(rec);
  out[n - 1] = JSON.stringify(rec);
  return out;
}

function without(ls: string[], ...ns: number[]): string[] {
  return ls.filter((_, i) => !ns.includes(i + 1));
}

function inserted(ls: string[], after: number, ...add: string[]): string[] {
  return [...ls.slice(0, after), ...add, ...ls.slice(after)];
}

function expectFailure(v: BundleVerdict, line: number, item: string | RegExp, reason: RegExp): void {
  expect(v.ok, JSON.stringify(v.first_failure)).toBe(false);
  expect(v.first_failure?.line, JSON.stringify(v.first_failure)).toBe(line);
  if (typeof item === "string") expect(v.first_failure?.item).toBe(item);
  else expect(v.first_failure?.item).toMatch(item);
  expect(v.first_failure?.reason).toMatch(reason);
}

/** A checkpoint note with one bit of its (first) signature flipped. */
function flipSignatureBit(note: string): string {
  const split = note.lastIndexOf("\n\n");
  const sigLine = note.slice(split + 2, -1);
  const [dash, name, b64] = sigLine.split(" ") as [string, string, string];
  const raw = fromBase64(b64);
  raw[raw.length - 1]! ^= 0x01;
  return `${note.slice(0, split + 2)}${dash} ${name} ${toBase64(raw)}\n`;
}

/** The body line `index` (0 origin, 1 size, 2 root) of a note replaced. */
function withBodyLine(note: string, index: number, value: string): string {
  const parts = note.split("\n");
  parts[index] = value;
  return parts.join("\n");
}

describe("a valid bundle", () => {
  it("verifies against the bundle's own keys, with a warning that they are self-asserted", async () => {
    const v = await verify(lines);
    expect(v.first_failure).toBeUndefined();
    expect(v).toMatchObject({
      ok: true,
      format: "audit-ledger-evidence/1",
      chain: "bundle-test",
      origin: FIXTURE_ORIGIN,
      from_seq: 5,
      to_seq: 13,
      entries: 8,
      payloads_checked: 3, // seqs 6 and 12, and the redaction entry 11
      redacted: [9],
      checkpoints_checked: 3,
      consistency_checked: 2,
      batches: 0,
      keys_trusted_from: "bundle",
    });
    expect(v.checkpoints.map((c) => [c.size, c.anchor])).toEqual([[7, false], [12, false], [20, true]]);
    expect(v.checkpoints.map((c) => c.key)).toEqual([pinned[0], pinned[0], pinned[1]].map((k) => `${k!.name}+${k!.keyId.toString(16).padStart(8, "0")}`));
    expect(v.keys).toHaveLength(2);
    expect(v.warnings).toEqual([expect.stringMatching(/self-asserted/)]);
  });

  it("verifies against pinned keys (current and retired), with no warning", async () => {
    const v = await verify(lines, { trustedKeys: pinned });
    expect(v).toMatchObject({ ok: true, keys_trusted_from: "pinned", checkpoints_checked: 3, warnings: [] });
  });

  it("reads the same from a byte stream cut at arbitrary points, and from lines that keep their newline", async () => {
    const bytes = new TextEncoder().encode(f.text);
    async function* chunks(size: number) {
      for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
    }
    const whole = await verify(lines, { trustedKeys: pinned });
    for (const size of [1, 7, 64, 100_000]) {
      expect(await verify(splitBundleLines(chunks(size)), { trustedKeys: pinned })).toEqual(whole);
    }
    expect(await verify(lines.map((l) => l + "\n"), { trustedKeys: pinned })).toEqual(whole);
  });

  it("starting at seq 0, ending exactly at a checkpoint (the anchor needs no completion hashes)", async () => {
    const g = await makeBundleFixture({ fromSeq: 0, toSeq: 12, checkpointSizes: [4, 7, 12], redact: { seq: 3, by: 10 } });
    const gl = linesOf(g.text);
    expect(JSON.parse(gl[gl.length - 2]!)).toMatchObject({ t: "completion", from_size: 12, to_size: 12, hashes: [] });
    expect(JSON.parse(gl.find((l) => l.includes('"t":"frontier"'))!)).toMatchObject({ size: 0, hashes: [] });
    const v = await verify(gl, { trustedKeys: pinned });
    expect(v).toMatchObject({ ok: true, entries: 12, redacted: [3], checkpoints_checked: 3 });
  });

  it("an empty window still proves the frontier against the anchor", async () => {
    const g = await makeBundleFixture({ fromSeq: 13, toSeq: 13, checkpointSizes: [20] });
    const v = await verify(linesOf(g.text), { trustedKeys: pinned });
    expect(v).toMatchObject({ ok: true, entries: 0, checkpoints_checked: 1 });
    const h = await makeBundleFixture({ fromSeq: 12, toSeq: 12, checkpointSizes: [12] });
    expect(await verify(linesOf(h.text), { trustedKeys: pinned })).toMatchObject({ ok: true, entries: 0, checkpoints_checked: 1 });
  });

  it("a payload erased by a redaction entry outside the window is reported redacted, with a warning", async () => {
    const g = await makeBundleFixture({ redact: { seq: 6, by: 15 } });
    const v = await verify(linesOf(g.text), { trustedKeys: pinned });
    expect(v).toMatchObject({ ok: true, redacted: [6] });
    expect(v.warnings).toEqual([expect.stringMatching(/seq 6 was erased by entry seq 15, which lies outside the bundle/)]);
  });
});

describe("a tampered bundle names the first bad line", () => {
  it("edited entry field: hash mismatch at that entry", async () => {
    const n = at.entry(7);
    const v = await verify(edited(lines, n, (r) => (r.actor = "mallory")), { trustedKeys: pinned });
    expectFailure(v, n, "entry seq 7", /hash mismatch.*the entry was edited/);
    expect(v.entries).toBe(2);
  });

  it("edited entry with its hash recomputed: the next entry's link breaks", async () => {
    const n = at.entry(7);
    const v = await verify(edited(lines, n, (r) => {
      r.actor = "mallory";
      const { t: _t, hash: _h, ...env } = r;
      r.hash = entryHash(env as never);
    }), { trustedKeys: pinned });
    expectFailure(v, at.entry(8), "entry seq 8", /prev_hash is not the hash of seq 7/);
  });

  it("entries rewritten from seq 7 on with every hash and link recomputed: the Merkle root at the next checkpoint differs", async () => {
    const rewritten: BundleEntryInput[] = [];
    let prev = "";
    for (const e of f.entries.slice(5, 13)) {
      const copy: BundleEntryInput = { ...e };
      if (copy.seq === 7) copy.actor = "mallory";
      if (copy.seq > 7) copy.prev_hash = prev;
      copy.hash = entryHash(copy);
      prev = copy.hash;
      rewritten.push(copy);
    }
    const v = await verify(linesOf(await buildBundleText({ ...f.input, entries: rewritten })), { trustedKeys: pinned });
    expectFailure(v, at.entry(11), "root at size 12", /Merkle root of entries \[0, 12\).*differs from the root that checkpoint 12/);
    expect(v.checkpoints_checked).toBe(1);
  });

  it("anchor checkpoint dropped (the last one no longer covers the window): named at that checkpoint, no crash", async () => {
    const consistency = lineWhere(lines, (r) => r.t === "consistency" && r.to_size === 20);
    const v = await verify(without(lines, at.checkpoint(20), consistency), { trustedKeys: pinned });
    expectFailure(v, at.checkpoint(12), "checkpoint 12", /does not cover the window, which ends at seq 12: the anchor checkpoint is missing/);
  });

  it("edited payload: digest mismatch at the payload", async () => {
    const n = at.payload(6);
    const v = await verify(edited(lines, n, (r) => {
      const p = fromBase64(r.payload as string);
      p[0]! ^= 0x20;
      r.payload = toBase64(p);
    }), { trustedKeys: pinned });
    expectFailure(v, n, "payload seq 6", /payload digest mismatch.*the payload was edited/);
  });

  it("payload of another length", async () => {
    const n = at.payload(12);
    const v = await verify(edited(lines, n, (r) => (r.payload = toBase64(new TextEncoder().encode("{}")))), { trustedKeys: pinned });
    expectFailure(v, n, "payload seq 12", /payload is 2 bytes, entry seq 12 declares \d+/);
  });

  it("a payload dropped with no redacted record: failure at its entry", async () => {
    const v = await verify(without(lines, at.payload(6)), { trustedKeys: pinned });
    expectFailure(v, at.entry(6), "payload seq 6", /declares a \d+-byte payload, but neither a payload nor a redacted record follows it/);
  });

  it("dropped entry: 'entry seq X missing' where it should be", async () => {
    const n = at.entry(10);
    const v = await verify(without(lines, n), { trustedKeys: pinned });
    expectFailure(v, n, "entry seq 10", /entry seq 10 missing: line \d+ holds seq 11/);
  });

  it("the last entry dropped: missing at the next record", async () => {
    const v = await verify(without(lines, at.entry(12), at.payload(12)), { trustedKeys: pinned });
    expectFailure(v, at.entry(12), "entry seq 12", /entry seq 12 missing: the entries end at seq 11/);
  });

  it("two entries swapped: 'out of order'", async () => {
    const [n7, n8] = [at.entry(7), at.entry(8)];
    const swapped = [...lines];
    [swapped[n7 - 1], swapped[n8 - 1]] = [swapped[n8 - 1]!, swapped[n7 - 1]!];
    const v = await verify(swapped, { trustedKeys: pinned });
    expectFailure(v, n7, "entry seq 8", /entries out of order: line \d+ holds seq 8 where seq 7 belongs \(seq 7 comes later, at line \d+\)/);
  });

  it("an entry repeated", async () => {
    const v = await verify(inserted(lines, at.entry(8), lines[at.entry(7) - 1]!), { trustedKeys: pinned });
    expectFailure(v, at.entry(8) + 1, "entry seq 7", /out of order: seq 7 appears again after seq 8/);
  });

  it("an entry of another chain (hash recomputed)", async () => {
    const n = at.entry(5);
    const v = await verify(edited(lines, n, (r) => {
      r.chain = "other";
      const { t: _t, hash: _h, ...env } = r;
      r.hash = entryHash(env as never);
    }), { trustedKeys: pinned });
    expectFailure(v, n, "entry seq 5", /belongs to chain "other", not the bundle's "bundle-test"/);
  });

  it("forged checkpoint signature (one bit flipped)", async () => {
    const n = at.checkpoint(12);
    const v = await verify(edited(lines, n, (r) => (r.note = flipSignatureBit(r.note as string))));
    expectFailure(v, n, "checkpoint size 12", /signature by ledger\.test\+[0-9a-f]{8} does not verify/);
    expect(v.checkpoints).toHaveLength(1);
  });

  it("edited checkpoint root: the signature no longer verifies", async () => {
    const n = at.checkpoint(12);
    const fakeRoot = toBase64(rootOfLeaves(f.leaves.slice(0, 11)));
    const v = await verify(edited(lines, n, (r) => (r.note = withBodyLine(r.note as string, 2, fakeRoot))), { trustedKeys: pinned });
    expectFailure(v, n, "checkpoint size 12", /does not verify/);
  });

  describe("checkpoint signed by a wrong key", () => {
    let resigned: string[];
    beforeAll(() => {
      const note = signCheckpoint({ origin: FIXTURE_ORIGIN, size: 12, root: rootOfLeaves(f.leaves.slice(0, 12)), extensions: [] }, rogue);
      resigned = edited(lines, at.checkpoint(12), (r) => (r.note = note));
    });

    it("a key the bundle does not list is refused (bundle-key mode)", async () => {
      const v = await verify(resigned);
      expectFailure(v, at.checkpoint(12), "checkpoint size 12", /not signed by a trusted key.*against the bundle's key records/);
    });

    it("a key that is not pinned is refused (pinned-key mode)", async () => {
      const v = await verify(resigned, { trustedKeys: pinned });
      expectFailure(v, at.checkpoint(12), "checkpoint size 12", /not signed by a trusted key.*against the pinned keys/);
    });

    it("listed in the bundle, it passes in bundle-key mode (with the warning) but not against pinned keys", async () => {
      // The attacker re-signs with a key of their own, lists it, and rewrites the end record.
      const notes = f.input.checkpoints.map((n, i) => (i === 1 ? JSON.parse(resigned[at.checkpoint(12) - 1]!).note as string : n));
      const text = await buildBundleText({ ...f.input, checkpoints: notes, keys: [...f.input.keys, { key: rogue, createdAt: "2026-01-01T00:00:00Z" }] });
      const selfAsserted = await verify(linesOf(text));
      expect(selfAsserted).toMatchObject({ ok: true, checkpoints_checked: 3, keys_trusted_from: "bundle" });
      expect(selfAsserted.warnings).toEqual([expect.stringMatching(/self-asserted/)]);
      const v = await verify(linesOf(text), { trustedKeys: pinned });
      expectFailure(v, at.checkpoint(12) + 1, "checkpoint size 12", /not signed by a trusted key/);
    });

    it("a key record added by hand is caught by the end record's count", async () => {
      const withRogue = inserted(resigned, 3, JSON.stringify({ t: "key", vkey: formatVerifierKey(rogue), created_at: "2026-01-01T00:00:00Z" }));
      expectFailure(await verify(withRogue), withRogue.length, "end", /the end record counts 22 records, the file has 23/);
    });

    it("a retired key that is not pinned is refused", async () => {
      const v = await verify(lines, { trustedKeys: [pinned[1]!] });
      expectFailure(v, at.checkpoint(7), "checkpoint size 7", /not signed by a trusted key/);
    });
  });

  it("a forged root re-signed by a key the attacker added: the consistency proof fails", async () => {
    const forged = signCheckpoint({ origin: FIXTURE_ORIGIN, size: 12, root: rootOfLeaves(f.leaves.slice(1, 13)), extensions: [] }, rogue);
    let ls = edited(lines, at.checkpoint(12), (r) => (r.note = forged));
    ls = inserted(ls, 3, JSON.stringify({ t: "key", vkey: formatVerifierKey(rogue), created_at: "2026-01-01T00:00:00Z" }));
    const v = await verify(ls);
    expectFailure(v, at.type("consistency") + 1, "consistency 7->12", /consistency proof fails/);
  });

  it("a checkpoint of another origin", async () => {
    const other = signCheckpoint({ origin: `${KEY_NAME}/other`, size: 12, root: rootOfLeaves(f.leaves.slice(0, 12)), extensions: [] }, f.keys.old);
    const v = await verify(edited(lines, at.checkpoint(12), (r) => (r.note = other)), { trustedKeys: pinned });
    expectFailure(v, at.checkpoint(12), "checkpoint size 12", /origin "ledger\.test\/other" is not "ledger\.test\/bundle-test"/);
  });

  it("the expected origin is enforced when given", async () => {
    const v = await verify(lines, { trustedKeys: pinned, origin: `${KEY_NAME}/payments` });
    expectFailure(v, 1, "header", /origin "ledger\.test\/bundle-test" is not the expected "ledger\.test\/payments"/);
  });

  it("checkpoints out of order", async () => {
    const [a, b] = [at.checkpoint(7), at.checkpoint(12)];
    const ls = [...lines];
    [ls[a - 1], ls[b - 1]] = [ls[b - 1]!, ls[a - 1]!];
    expectFailure(await verify(ls, { trustedKeys: pinned }), b, "checkpoint size 7", /sizes must strictly increase: 12 then 7/);
  });

  it("dropped consistency record: the proof is missing", async () => {
    const first = at.type("consistency");
    expectFailure(await verify(without(lines, first), { trustedKeys: pinned }), first, "consistency 7->12", /expected the consistency proof 7->12 here, found 12->20: the proof 7->12 is missing/);
    expectFailure(await verify(without(lines, first + 1), { trustedKeys: pinned }), first + 1, "consistency 12->20", /consistency proof 12->20 missing/);
  });

  it("bad consistency proof (one hash edited)", async () => {
    const n = at.type("consistency") + 1;
    const v = await verify(edited(lines, n, (r) => {
      const proof = r.proof as string[];
      const h = fromBase64(proof[0]!);
      h[5]! ^= 0xff;
      proof[0] = toBase64(h);
    }), { trustedKeys: pinned });
    expectFailure(v, n, "consistency 12->20", /consistency proof fails: consistency proof does not lead to the root of the tree of 12/);
  });

  it("edited frontier hash: the root at the first checkpoint in the window differs", async () => {
    const v = await verify(edited(lines, at.type("frontier"), (r) => {
      const hashes = r.hashes as string[];
      hashes[1] = toBase64(new Uint8Array(32));
    }), { trustedKeys: pinned });
    expectFailure(v, at.entry(6), "root at size 7", /the frontier or an entry before it was altered/);
    expect(v.entries).toBe(2);
    expect(v.checkpoints_checked).toBe(0);
  });

  it("frontier with a hash too few", async () => {
    const n = at.type("frontier");
    const v = await verify(edited(lines, n, (r) => (r.hashes as string[]).pop()), { trustedKeys: pinned });
    expectFailure(v, n, "frontier", /a tree of 5 leaves has 2 frontier hashes, the record has 1/);
  });

  it("edited completion: the anchor's root differs", async () => {
    const n = at.type("completion");
    const v = await verify(edited(lines, n, (r) => {
      const hashes = r.hashes as string[];
      hashes[hashes.length - 1] = toBase64(new Uint8Array(32).fill(7));
    }), { trustedKeys: pinned });
    expectFailure(v, n, "completion", /anchor checkpoint 20.*the completion \(or the frontier\) was altered/);
    expect(v.checkpoints_checked).toBe(2);
  });

  it("a redacted record naming an entry that is not a redaction", async () => {
    const n = lineWhere(lines, (r) => r.t === "redacted");
    const v = await verify(edited(lines, n, (r) => (r.by_seq = 10)), { trustedKeys: pinned });
    expectFailure(v, n, "redacted seq 9", /entry seq 10 .* erased the payload of seq 9, but that entry's kind is "deploy", not "redaction"/);
  });

  it("a redacted record whose reason differs from the redaction entry's", async () => {
    const n = lineWhere(lines, (r) => r.t === "redacted");
    const v = await verify(edited(lines, n, (r) => (r.reason = "routine cleanup")), { trustedKeys: pinned });
    expectFailure(v, n, "redacted seq 9", /reason or actor differ/);
  });

  it("a payload replaced by a redacted record that no redaction entry backs", async () => {
    const n = at.payload(6);
    const v = await verify(edited(lines, n, (r) => {
      for (const k of Object.keys(r)) delete r[k];
      Object.assign(r, { t: "redacted", seq: 6, by_seq: 11, reason: "GDPR erasure request #7", actor: "dpo" });
    }), { trustedKeys: pinned });
    expectFailure(v, n, "redacted seq 6", /that entry's payload .* says it erased seq 9/);
  });

  it("truncated mid-line", async () => {
    const n = at.entry(9);
    const cut = textOf(lines.slice(0, n - 1)) + lines[n - 1]!.slice(0, 40);
    const v = await verify(splitBundleLines([cut]), { trustedKeys: pinned });
    expectFailure(v, n, "file", /truncated: the last line \(\d+\) is cut off mid-record/);
  });

  it("truncated at a line boundary", async () => {
    const n = at.entry(9);
    const v = await verify(lines.slice(0, n), { trustedKeys: pinned });
    expectFailure(v, n + 1, "end", /truncated: the file ends after line \d+ \(after entry seq 9 of \[5, 13\)\) without an end record/);
    expect(v.entries).toBe(5);
  });

  it("missing end record", async () => {
    const v = await verify(lines.slice(0, -1), { trustedKeys: pinned });
    expectFailure(v, lines.length, "end", /truncated: .* without an end record/);
  });

  it("an empty file", async () => {
    expectFailure(await verify([]), 1, "file", /truncated: the file is empty/);
  });

  it("a non-JSON line", async () => {
    const n = at.entry(8);
    const v = await verify(inserted(lines, n - 1, "this is not json"), { trustedKeys: pinned });
    expectFailure(v, n, "line", /not valid JSON/);
    expect(v.first_failure?.reason).not.toMatch(/truncated/);
  });

  it("a line over the size limit", async () => {
    const n = at.checkpoint(7); // the first line longer than 200 bytes
    expect(lines.slice(0, n - 1).every((l) => l.length <= 200)).toBe(true);
    const v = await verify(lines, { trustedKeys: pinned, maxLineBytes: 200 });
    expectFailure(v, n, "line", /longer than the limit of 200 bytes/);
    // The splitter keeps memory bounded and the verifier still refuses the line.
    const w = await verify(splitBundleLines([f.text], 200), { trustedKeys: pinned, maxLineBytes: 200 });
    expect(w.first_failure).toEqual(v.first_failure);
  });

  it("invalid UTF-8", async () => {
    const bytes = new TextEncoder().encode(lines[0]!);
    const bad = Uint8Array.from([...bytes.subarray(0, -2), 0xff, ...bytes.subarray(-2)]);
    expectFailure(await verify([bad]), 1, "line", /not valid UTF-8/);
  });

  it("a field edited that no other check covers: the end record's SHA-256", async () => {
    const v = await verify(edited(lines, 2, (r) => (r.created_at = "2024-01-01T00:00:00.000Z")), { trustedKeys: pinned });
    expectFailure(v, lines.length, "end", /SHA-256 of the file before the end record is .*: the file was altered/);
  });

  it("data after the end record", async () => {
    expectFailure(await verify([...lines, lines[0]!], { trustedKeys: pinned }), lines.length + 1, "line", /data after the end record/);
  });

  it("an unknown format, a missing header, a record out of place, an unknown record type, an unknown field", async () => {
    expectFailure(await verify(edited(lines, 1, (r) => (r.format = "audit-ledger-evidence/2"))), 1, "header", /unsupported format "audit-ledger-evidence\/2"/);
    expectFailure(await verify(lines.slice(1)), 1, "header", /the first record must be the bundle header, found a key record/);
    const n = at.checkpoint(20);
    expectFailure(await verify(inserted(lines, n, lines[1]!)), n + 1, "key", /key record out of place: key records come before checkpoint records/);
    expectFailure(await verify(inserted(lines, 1, '{"t":"comment"}')), 2, "line", /unknown record type "comment"/);
    expectFailure(await verify(edited(lines, at.entry(5), (r) => (r.note = "x"))), at.entry(5), "entry seq 5", /unknown field "note"/);
  });
});

describe("agent batch signatures (SPEC §7)", () => {
  // The fixture chain with two agents' entries: agent A's batch 3 signed seqs 3..7 and a
  // further event that was deduplicated (so its entry carries an earlier batch), and the
  // window [5, 13) cuts the batch; agent B's batch 8 signed seqs 8..10, and seq 9's
  // payload was later erased. Rebuilt from scratch (hashes, tree, checkpoints) each time,
  // as a ledger that lies would.
  interface Agent {
    zid: string;
    publicKey: Uint8Array;
    sign(m: Uint8Array): Uint8Array;
  }
  const agentOf = (label: string): Agent => {
    const kp = sodium.crypto_sign_seed_keypair(vectorSeed(label));
    return { zid: zidOf(kp.publicKey), publicKey: kp.publicKey, sign: (m) => sodium.crypto_sign_detached(m, kp.privateKey) };
  };
  let agentA: Agent;
  let agentB: Agent;
  let agentC: Agent;
  beforeAll(() => {
    agentA = agentOf("agent-a");
    agentB = agentOf("agent-b");
    agentC = agentOf("agent-c");
  });

  interface Plan {
    agent: Agent;
    batchNumber: number;
    seqs: number[];
    /** Signed events that are not entries of the chain under this batch. */
    extra?: string[];
  }
  const plans = (): Plan[] => [
    { agent: agentA, batchNumber: 3, seqs: [3, 4, 5, 6, 7], extra: [eventCommitment({ agent: agentA.zid, source_type: "generic_polling", kind: "item.created", idempotency_key: `${agentA.zid}/items/0` })] },
    { agent: agentB, batchNumber: 8, seqs: [8, 9, 10] },
  ];

  /**
   * The chain with the planned agent entries, their batches signed; `after` edits entries
   * once signed (before hashing). Returns the entries and the batch inputs.
   */
  function agentChain(after: (e: BundleEntryInput) => void = () => {}, ps: Plan[] = plans()): { entries: BundleEntryInput[]; batches: BundleBatchInput[] } {
    const entries = makeEntries(20, { seq: 9, by: 11 });
    const batches: BundleBatchInput[] = [];
    for (const p of ps) {
      const members = p.seqs.map((s) => entries[s]!);
      for (const e of members) {
        e.agent = p.agent.zid;
        e.source_type = "generic_polling";
        e.idempotency_key = `${p.agent.zid}/items/${e.seq}`;
      }
      const events = members.map((e) => eventCommitment(e as never));
      events.splice(1, 0, ...(p.extra ?? []));
      const signature = p.agent.sign(batchMessage({ agent: p.agent.zid, chain: FIXTURE_CHAIN, batchNumber: p.batchNumber, events }));
      const batch = batchId(p.batchNumber, signature);
      for (const e of members) e.batch = batch;
      batches.push({ agent: p.agent.zid, batch, batchNumber: p.batchNumber, publicKey: p.agent.publicKey, signature, events });
    }
    let prev = ZERO_HASH;
    for (const e of entries) {
      after(e);
      e.prev_hash = prev;
      e.hash = entryHash(e);
      prev = e.hash;
    }
    return { entries, batches };
  }

  /** A bundle of [a, b) over `entries`, checkpoints at `sizes` signed by the current key. */
  async function bundleOf(entries: BundleEntryInput[], batches: BundleBatchInput[], a = 5, b = 13, sizes = [7, 12, 20]): Promise<string[]> {
    const keys = await fixtureKeys();
    const leaves = entries.map(entryLeafHash);
    return linesOf(await buildBundleText({
      chain: FIXTURE_CHAIN,
      origin: FIXTURE_ORIGIN,
      fromSeq: a,
      toSeq: b,
      createdAt: "2026-02-01T12:00:00.000Z",
      keys: [{ key: keys.current, createdAt: "2026-01-01T00:00:10.000Z" }],
      checkpoints: sizes.map((size) => signCheckpoint({ origin: FIXTURE_ORIGIN, size, root: rootOfLeaves(leaves.slice(0, size)), extensions: [] }, keys.current)),
      consistency: sizes.slice(1).map((toSize, i) => ({
        fromSize: sizes[i]!,
        toSize,
        proof: consistencyProofRanges(sizes[i]!, toSize).map(([lo, hi]) => rangeHash(leaves, lo, hi)),
      })),
      frontier: rangeNodes(0, a).map((node) => rangeHash(leaves, ...coverage(node))),
      entries: entries.slice(a, b),
      batches,
      completion: rangeNodes(b, sizes[sizes.length - 1]!).map((node) => rangeHash(leaves, ...coverage(node))),
    }));
  }

  let good: { entries: BundleEntryInput[]; batches: BundleBatchInput[] };
  let ls: string[];
  let current: VerifierKey[];
  beforeAll(async () => {
    good = agentChain();
    ls = await bundleOf(good.entries, good.batches);
    current = [parseVerifierKey(formatVerifierKey((await fixtureKeys()).current))];
  });
  const batchLine = (lines: string[], i: number) => lineWhere(lines, (r) => r.t === "batch" && r.batch === good.batches[i]!.batch);
  const entryLine = (lines: string[], seq: number) => lineWhere(lines, (r) => r.t === "entry" && r.seq === seq);

  it("two batches verify: each signature, and every batched entry (a redacted one too) among its signed events", async () => {
    const v = await verify(ls, { trustedKeys: current });
    expect(v.first_failure).toBeUndefined();
    expect(v).toMatchObject({ ok: true, entries: 8, redacted: [9], batches: 2, batches_checked: 2, warnings: [] });
    const rec = JSON.parse(ls[batchLine(ls, 0) - 1]!) as Rec;
    expect(Object.keys(rec)).toEqual(["t", "agent", "batch", "batch_number", "public_key", "signature", "events", "seqs"]);
    expect(rec).toMatchObject({ agent: agentA.zid, batch_number: 3, seqs: [5, 6, 7], public_key: toBase64(agentA.publicKey) });
    expect(rec.events).toHaveLength(6); // seqs 3..7 and the deduplicated event: the entries are a subset
    expect(JSON.parse(ls[batchLine(ls, 1) - 1]!)).toMatchObject({ agent: agentB.zid, batch_number: 8, seqs: [8, 9, 10] });
    expect(batchLine(ls, 0)).toBeGreaterThan(entryLine(ls, 12));
  });

  it("a window that cuts a batch at its end: the record lists the seqs inside", async () => {
    const cut = await bundleOf(good.entries, good.batches, 5, 9, [7, 12]);
    expect(JSON.parse(cut[lineWhere(cut, (r) => r.t === "batch" && r.agent === agentB.zid) - 1]!)).toMatchObject({ seqs: [8] });
    expect(await verify(cut, { trustedKeys: current })).toMatchObject({ ok: true, batches: 2, batches_checked: 2 });
  });

  it("forged signature (one bit flipped): fails at the batch record", async () => {
    const n = batchLine(ls, 1);
    const v = await verify(edited(ls, n, (r) => {
      const sig = fromBase64(r.signature as string);
      sig[10]! ^= 0x01;
      r.signature = toBase64(sig);
    }), { trustedKeys: current });
    expectFailure(v, n, `batch ${good.batches[1]!.batch}`, /batch signature does not verify: agent ZID-\w+'s key did not sign batch number 8/);
    expect(v.batches_checked).toBe(1);
  });

  it("a committed field of a batched entry edited, with every hash, root and checkpoint redone: only the agent's signature catches it", async () => {
    const forged = agentChain((e) => {
      if (e.seq === 6) e.subject = "svc/other";
    });
    const lines = await bundleOf(forged.entries, forged.batches);
    const v = await verify(lines, { trustedKeys: current });
    expectFailure(v, batchLine(lines, 0), `batch ${good.batches[0]!.batch}`, /entry seq 6 \(line \d+\) is not among the events agent ZID-\w+ signed in batch 3\.[0-9a-f]{16}: its committed fields were edited/);
    expect(v).toMatchObject({ entries: 8, checkpoints_checked: 2, batches_checked: 0 });
  });

  it("the same for a redacted entry: its payload_digest stays in the entry and is committed", async () => {
    const forged = agentChain((e) => {
      if (e.seq === 9) e.payload_size! += 1;
    });
    const lines = await bundleOf(forged.entries, forged.batches);
    expectFailure(await verify(lines, { trustedKeys: current }), batchLine(lines, 1), /^batch 8\./, /entry seq 9 .*is not among the events/);
  });

  it("a missing batch record: fails at the first entry naming the batch", async () => {
    const lines = await bundleOf(good.entries, good.batches.slice(1));
    const v = await verify(lines, { trustedKeys: current });
    expectFailure(v, entryLine(lines, 5), `batch ${good.batches[0]!.batch}`, /entry seq 5 names agent batch 3\.[0-9a-f]{16}, but the bundle has no batch record for it/);
    const none = await bundleOf(good.entries, []);
    expectFailure(await verify(none, { trustedKeys: current }), entryLine(none, 5), /^batch 3\./, /no batch record/);
  });

  it("a batch record with an entry that is not among its events", async () => {
    // The ledger files an API entry under agent B's batch 8 (hashes recomputed).
    const forged = agentChain((e) => {
      if (e.seq === 12) Object.assign(e, { agent: agentB.zid, batch: good.batches[1]!.batch });
    });
    const lines = await bundleOf(forged.entries, forged.batches);
    expect(JSON.parse(lines[batchLine(lines, 1) - 1]!)).toMatchObject({ seqs: [8, 9, 10, 12] });
    expectFailure(await verify(lines, { trustedKeys: current }), batchLine(lines, 1), /^batch 8\./, /entry seq 12 \(line \d+\) is not among the events agent ZID-\w+ signed/);
  });

  it("a public key whose ZID is not the agent's", async () => {
    const n = batchLine(ls, 0);
    const v = await verify(edited(ls, n, (r) => (r.public_key = toBase64(agentC.publicKey))), { trustedKeys: current });
    expectFailure(v, n, /^batch 3\./, new RegExp(`public_key is not agent ${agentA.zid}'s key: its ZID is ${agentC.zid}`));
    // Signed by C in A's name: the same.
    const [p0, p1] = plans();
    const inName = agentChain(undefined, [{ ...p0!, agent: { ...agentC, zid: agentA.zid } }, p1!]);
    const lines = await bundleOf(inName.entries, inName.batches);
    const m = lineWhere(lines, (r) => r.t === "batch" && r.batch_number === 3);
    expectFailure(await verify(lines, { trustedKeys: current }), m, /^batch 3\./, new RegExp(`public_key is not agent ${agentA.zid}'s key: its ZID is ${agentC.zid}`));
  });

  it("an entry of the batch that another agent wrote", async () => {
    const n = batchLine(ls, 1);
    const forged = agentChain((e) => {
      if (e.seq === 10) e.agent = agentA.zid;
    });
    const lines = await bundleOf(forged.entries, forged.batches);
    expectFailure(await verify(lines, { trustedKeys: current }), n, /^batch 8\./, new RegExp(`entry seq 10 \\(line \\d+\\) names batch 8\\.[0-9a-f]{16} but its agent is ${agentA.zid}, not ${agentB.zid}`));
  });

  it("seqs that are not those of the entries naming the batch, an edited batch id, a repeated record, a malformed one", async () => {
    const n = batchLine(ls, 0);
    const item = `batch ${good.batches[0]!.batch}`;
    expectFailure(await verify(edited(ls, n, (r) => (r.seqs = [5, 6])), { trustedKeys: current }), n, item, /entry seq 7 names batch .* the record's seqs do not list it/);
    expectFailure(await verify(edited(ls, n, (r) => (r.seqs = [5, 6, 7, 8])), { trustedKeys: current }), n, item, /lists seq 8, but no entry of the bundle at that seq names batch/);
    expectFailure(await verify(edited(ls, n, (r) => (r.batch = "3.0000000000000000")), { trustedKeys: current }), n, "batch 3.0000000000000000",
      new RegExp(`batch id 3\\.0{16} is not that of this signature and batch number \\(${good.batches[0]!.batch}\\)`));
    expectFailure(await verify(inserted(ls, n, ls[n - 1]!), { trustedKeys: current }), n + 1, item, /a second batch record for batch/);
    expectFailure(await verify(edited(ls, n, (r) => (r.chain = FIXTURE_CHAIN)), { trustedKeys: current }), n, item, /unknown field "chain"/);
    expectFailure(await verify(edited(ls, n, (r) => (r.events = [])), { trustedKeys: current }), n, item, /"events" must be a non-empty list/);
    expectFailure(await verify(edited(ls, n, (r) => (r.public_key = toBase64(new Uint8Array(31)))), { trustedKeys: current }), n, item, /public_key is 31 bytes/);
  });

  it("the builder refuses a batch that names no entry of the window, or one given twice", async () => {
    await expect(bundleOf(good.entries, good.batches, 11, 13, [12, 20])).rejects.toThrow(/batch 3\.[0-9a-f]{16}: no entry of the window \[11, 13\) names it/);
    await expect(bundleOf(good.entries, [good.batches[0]!, good.batches[0]!])).rejects.toThrow(/given twice/);
  });
});

describe("buildBundle", () => {
  it("writes the records in order, entries in canonical field order, ending with a correct end record", async () => {
    const types = lines.map((l) => (JSON.parse(l) as Rec).t);
    expect(types).toEqual([
      "bundle", "key", "key", "checkpoint", "checkpoint", "checkpoint", "consistency", "consistency", "frontier",
      "entry", "entry", "payload", "entry", "entry", "entry", "redacted", "entry", "entry", "payload", "entry", "payload",
      "completion", "end",
    ]);
    const entry = JSON.parse(lines[at.entry(11) - 1]!) as Rec;
    expect(Object.keys(entry)).toEqual(["t", "actor", "agent", "cause", "chain", "kind", "payload_digest", "payload_size", "payload_type", "prev_hash", "seq", "source_type", "subject", "ts", "v", "hash"]);
    const end = JSON.parse(lines[lines.length - 1]!) as Rec;
    expect(end.records).toBe(lines.length - 1);
    expect(f.text.endsWith("\n")).toBe(true);
  });

  it("refuses input the format cannot express", async () => {
    const run = (over: Partial<typeof f.input>) => buildBundleText({ ...f.input, ...over });
    await expect(run({ entries: f.entries.slice(5, 12) })).rejects.toThrow(/the entries end at seq 11; the window ends at seq 12/);
    await expect(run({ entries: [...f.entries.slice(5, 7), ...f.entries.slice(8, 13)] })).rejects.toThrow(/expected entry seq 7, got 8/);
    const noPayload = f.entries.slice(5, 13).map((e) => (e.seq === 6 ? { ...e, payload: null } : e));
    await expect(run({ entries: noPayload })).rejects.toThrow(/entry seq 6 has a payload but neither/);
    await expect(run({ consistency: f.input.consistency.slice(1) })).rejects.toThrow(/3 checkpoints need 2 consistency proofs/);
    await expect(run({ frontier: [] })).rejects.toThrow(/frontier needs 2 hashes/);
    await expect(run({ checkpoints: [f.notes.get(7)!, f.notes.get(12)!] })).rejects.toThrow(/anchor checkpoint \(size 12\) must cover the window/);
    await expect(run({ origin: "elsewhere" })).rejects.toThrow(BundleBuildError);
  });

  it("streams: lines come out as the entries are read", async () => {
    let read = 0;
    async function* entries() {
      for (const e of f.entries.slice(5, 13)) {
        read++;
        yield e;
      }
    }
    const gen = buildBundle({ ...f.input, entries: entries() });
    const first: string[] = [];
    for await (const line of gen) {
      first.push(line);
      if (line.includes('"t":"entry"')) break;
    }
    expect(read).toBe(1);
  });
});

describe("planBundle", () => {
  it("takes every checkpoint inside the window and the smallest one covering its end", () => {
    const plan = planBundle(5, 13, [3, 7, 12, 20, 25]);
    expect(plan.checkpointSizes).toEqual([7, 12, 20]);
    expect(plan.anchorSize).toBe(20);
    expect(plan.frontier).toEqual([{ level: 2, index: 0 }, { level: 0, index: 4 }]);
    expect(plan.completion).toEqual([{ level: 0, index: 13 }, { level: 1, index: 7 }, { level: 2, index: 4 }]);
    expect(plan.consistency.map((c) => [c.fromSize, c.toSize])).toEqual([[7, 12], [12, 20]]);
    expect(planBundle(5, 12, [3, 7, 12, 20]).checkpointSizes).toEqual([7, 12]);
    expect(() => planBundle(5, 13, [3, 7, 12])).toThrow(/no checkpoint covers seq 12 yet/);
  });

  it("matches what the fixture built", () => {
    const plan = planBundle(5, 13, f.notes.keys());
    expect(plan.frontier).toHaveLength(f.input.frontier.length);
    expect(plan.completion).toHaveLength(f.input.completion.length);
    expect(plan.consistency.map((c) => c.ranges.length)).toEqual(f.input.consistency.map((c) => c.proof.length));
  });
});

describe("vectors (chain/vectors/evidence-bundle.*)", () => {
  const vector = readFileSync(new URL("./vectors/evidence-bundle.ndjson", import.meta.url), "utf8");
  const doc = JSON.parse(readFileSync(new URL("./vectors/evidence-bundle.json", import.meta.url), "utf8")) as {
    trusted_keys: string[];
    verdict: Record<string, unknown>;
    cases: TamperedCase[];
  };
  const trustedKeys = () => doc.trusted_keys.map(parseVerifierKey);

  it("the builder reproduces the vector byte for byte, and it verifies with the stated verdict", async () => {
    expect(f.text).toBe(vector);
    const v = await verify(splitBundleLines([vector]), { trustedKeys: trustedKeys() });
    const { checkpoints, ...rest } = doc.verdict as { checkpoints: unknown[] };
    expect(v).toMatchObject(rest);
    expect(v.checkpoints.map(({ size, root, key }) => ({ size, root, key }))).toEqual(checkpoints);
  });

  it.each(doc.cases.map((c) => [c.name, c] as const))("%s", async (_name, c) => {
    const text = applyEdits(vector, c.edits);
    const v = await verify(splitBundleLines([new TextEncoder().encode(text)]), c.trusted_keys === "pinned" ? { trustedKeys: trustedKeys() } : {});
    if (c.expect.ok) {
      expect(v.first_failure).toBeUndefined();
      expect(v.ok).toBe(true);
    } else {
      expect(v.ok).toBe(false);
      expect({ line: v.first_failure?.line, item: v.first_failure?.item }).toEqual({ line: c.expect.line, item: c.expect.item });
    }
  });
});
