import { readFileSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import {
  formatSignerKey,
  formatVerifierKey,
  keyIdHex,
  keyIdOf,
  NoteError,
  openNote,
  parseNote,
  parseSignerKey,
  parseVerifierKey,
  signerKeyFromSeed,
  signNote,
  sodiumReady,
  type SignerKey,
  type VerifierKey,
} from "./signed-note.js";
import { formatCheckpoint, openCheckpoint, parseCheckpoint, signCheckpoint } from "./checkpoint.js";
import { fromBase64, toBase64 } from "./base64.js";
import { fromHex, toHex } from "./hex.js";
import { EMPTY_ROOT } from "./merkle-hash.js";

beforeAll(() => sodiumReady());

interface CheckpointVectors {
  keys: Array<{ label: string; name: string; seed: string; public_key: string; key_id: string; verifier_key: string; signer_key: string }>;
  checkpoints: Array<{
    description: string;
    origin: string;
    size: number;
    root: string;
    extensions: string[];
    body: string;
    signed_by: string[];
    signed_note: string;
    opens_with: Record<string, boolean>;
  }>;
}
const vectors = JSON.parse(readFileSync(new URL("./vectors/checkpoints.json", import.meta.url), "utf8")) as CheckpointVectors;
const rfcRoots = (JSON.parse(readFileSync(new URL("./vectors/merkle-rfc6962.json", import.meta.url), "utf8")) as { roots: Array<{ root: string }> }).roots;
const signer = (label: string): SignerKey => parseSignerKey(vectors.keys.find((k) => k.label === label)!.signer_key);
const verifier = (label: string): VerifierKey => parseVerifierKey(vectors.keys.find((k) => k.label === label)!.verifier_key);

/** The NoteError message `fn` throws (fails the test if it throws anything else, or nothing). */
function noteError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(NoteError);
    return (err as Error).message;
  }
  throw new Error("expected a NoteError, nothing was thrown");
}

// ---------------------------------------------------------------------------------
// golang.org/x/mod/sumdb/note, note_test.go (TestNewVerifier, TestNewSigner, TestSign,
// TestOpen): the published keys, text and signatures, used verbatim.
// ---------------------------------------------------------------------------------
const GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const GO_PETER_SIG = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const GO_ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const GO_ENOCH_SIG = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";
// TestSign's `want`: the exact signed note Go's Sign produces for GO_TEXT with GO_SKEY.
const GO_SIGNED = GO_TEXT + "\n" + GO_PETER_SIG;

describe("golang.org/x/mod/sumdb/note published example", () => {
  it("the private key parses, and gives the published verifier key and key ID", () => {
    const s = parseSignerKey(GO_SKEY);
    expect(s.name).toBe("PeterNeumann");
    expect(keyIdHex(s.keyId)).toBe("c74f20a3");
    expect(formatVerifierKey(s)).toBe(GO_VKEY);
    expect(formatSignerKey(s)).toBe(GO_SKEY);
    const v = parseVerifierKey(GO_VKEY);
    expect(v).toEqual({ name: s.name, keyId: s.keyId, publicKey: s.publicKey });
    expect(keyIdOf("PeterNeumann", v.publicKey)).toBe(0xc74f20a3);
  });

  it("signing the published text reproduces the published signed note byte for byte", () => {
    expect(signNote(GO_TEXT, [parseSignerKey(GO_SKEY)])).toBe(GO_SIGNED);
  });

  it("opens the published note; EnochRoot's signature is ignored unless trusted, verified when it is", () => {
    const peter = parseVerifierKey(GO_VKEY);
    const enoch = parseVerifierKey(GO_ENOCH_VKEY);
    const note = GO_TEXT + "\n" + GO_PETER_SIG + GO_ENOCH_SIG;
    expect(openNote(note, [peter])).toEqual({ text: GO_TEXT, signedBy: [peter] });
    expect(openNote(note, [peter, enoch])).toEqual({ text: GO_TEXT, signedBy: [peter, enoch] });
    expect(openNote(note, [enoch])).toEqual({ text: GO_TEXT, signedBy: [enoch] });
    expect(noteError(() => openNote(note, []))).toMatch(/not signed by a trusted key/);
  });

  it("rejects the published invalid signature (4 base64 characters inserted)", () => {
    const bad = GO_TEXT + "\n" + GO_PETER_SIG.slice(0, 60) + "ABCD" + GO_PETER_SIG.slice(60);
    expect(noteError(() => openNote(bad, [parseVerifierKey(GO_VKEY)]))).toBe("signature by PeterNeumann+c74f20a3 does not verify");
  });

  it("rejects the published malformed notes", () => {
    const peter = parseVerifierKey(GO_VKEY);
    const bad = [
      GO_TEXT,
      GO_TEXT + "\n",
      GO_TEXT + "\n" + GO_PETER_SIG.slice(0, -1),
      "\u0001" + GO_TEXT + "\n" + GO_PETER_SIG,
      "\ud800" + GO_TEXT + "\n" + GO_PETER_SIG, // Go's "\xff": not UTF-8 (a lone surrogate has no UTF-8 form)
      GO_TEXT + "\n" + "— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
      GO_TEXT + "\n" + GO_PETER_SIG + "Unexpected line.\n",
    ];
    for (const note of bad) expect(noteError(() => openNote(note, [peter]))).toMatch(/malformed|must end in a newline|control character|UTF-8/);
  });

  it("rejects every truncation and every one-character change of the verifier key (as TestNewVerifier)", () => {
    const b = GO_VKEY;
    for (let i = 0; i <= b.length; i++) {
      for (let j = i + 1; j <= b.length; j++) {
        if (i !== 0 || j !== b.length) expect(() => parseVerifierKey(b.slice(i, j)), b.slice(i, j)).toThrow(NoteError);
      }
    }
    for (let i = 0; i < b.length; i++) {
      const mangled = b.slice(0, i) + String.fromCharCode(b.charCodeAt(i) + 1) + b.slice(i + 1);
      expect(() => parseVerifierKey(mangled), mangled).toThrow(NoteError);
    }
    // Wrong key length and unknown algorithm, each with a key ID adjusted to match.
    expect(() => parseVerifierKey("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==")).toThrow(NoteError);
    expect(() => parseVerifierKey("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")).toThrow(NoteError);
  });

  it("rejects every truncation and every one-character change of the signer key (as TestNewSigner)", () => {
    const b = GO_SKEY;
    for (let i = 0; i <= b.length; i++) {
      for (let j = i + 1; j <= b.length; j++) {
        if (i !== 0 || j !== b.length) expect(() => parseSignerKey(b.slice(i, j)), b.slice(i, j)).toThrow(NoteError);
      }
    }
    for (let i = 0; i < b.length; i++) {
      const mangled = b.slice(0, i) + String.fromCharCode(b.charCodeAt(i) + 1) + b.slice(i + 1);
      expect(() => parseSignerKey(mangled), mangled).toThrow(NoteError);
    }
  });
});

// c2sp.org/signed-note and c2sp.org/tlog-checkpoint examples. Neither spec publishes
// the verifier key, so only the syntax can be checked against them.
describe("C2SP published examples (syntax only: no verifier key is published)", () => {
  it("signed-note: the text keeps its inner blank line; the signature splits into key ID and 64 bytes", () => {
    const note =
      "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n\n" +
      "— quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n";
    const { text, signatures } = parseNote(note);
    expect(text).toBe("Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n");
    expect(signatures).toHaveLength(1);
    expect(signatures[0]!.name).toBe("quasimodo.example/salvatore");
    expect(keyIdHex(signatures[0]!.keyId)).toBe("367ba04b");
    expect(signatures[0]!.signature).toHaveLength(64);
    // Unknown to us: the note must be refused, not passed.
    expect(noteError(() => openNote(note, [parseVerifierKey(GO_VKEY)]))).toMatch(/not signed by a trusted key \(signed by quasimodo.example\/salvatore\+367ba04b\)/);
  });

  it("tlog-checkpoint: the body of the behind-the-sofa example parses", () => {
    const note =
      "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n" +
      "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";
    const { text, signatures } = parseNote(note);
    const cp = parseCheckpoint(text);
    expect(cp).toMatchObject({ origin: "example.com/behind-the-sofa", size: 20852163, extensions: [] });
    expect(toBase64(cp.root)).toBe("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=");
    expect(formatCheckpoint(cp)).toBe(text);
    expect(signatures[0]!.name).toBe("example.com/behind-the-sofa");
    expect(signatures[0]!.signature).toHaveLength(64);
  });
});

// ---------------------------------------------------------------------------------
describe("checkpoints.json", () => {
  it("keys derive from their seeds: public key, key ID, verifier and signer key strings", () => {
    for (const k of vectors.keys) {
      const s = signerKeyFromSeed(k.name, fromHex(k.seed));
      expect(toHex(s.publicKey)).toBe(k.public_key);
      expect(keyIdHex(s.keyId)).toBe(k.key_id);
      expect(formatVerifierKey(s)).toBe(k.verifier_key);
      expect(formatSignerKey(s)).toBe(k.signer_key);
      expect(parseSignerKey(k.signer_key)).toEqual(s);
      expect(parseVerifierKey(k.verifier_key)).toEqual({ name: s.name, keyId: s.keyId, publicKey: s.publicKey });
    }
  });

  it("includes a key rotation: two log keys with one name and different key IDs", () => {
    const [a, b] = [verifier("log-2025"), verifier("log-2026")];
    expect(a.name).toBe(b.name);
    expect(a.keyId).not.toBe(b.keyId);
    // Their key strings contain "+" inside the base64, which the parsers must allow.
    expect(vectors.keys.some((k) => k.verifier_key.split("+").length > 3)).toBe(true);
    expect(vectors.keys.some((k) => k.signer_key.split("+").length > 5)).toBe(true);
  });

  it.each(vectors.checkpoints.map((c) => [c.description, c] as const))("%s: body, signatures, and who may open it", (_d, c) => {
    expect(formatCheckpoint({ origin: c.origin, size: c.size, root: fromHex(c.root), extensions: c.extensions })).toBe(c.body);
    expect(parseCheckpoint(c.body)).toEqual({ origin: c.origin, size: c.size, root: fromHex(c.root), extensions: c.extensions });
    expect(signNote(c.body, c.signed_by.map(signer))).toBe(c.signed_note);
    expect(parseNote(c.signed_note).signatures.map((s) => keyIdHex(s.keyId))).toEqual(c.signed_by.map((l) => keyIdHex(verifier(l).keyId)));
    if (c.size <= 8) expect(c.root).toBe(rfcRoots[c.size]!.root);
    for (const [label, opens] of Object.entries(c.opens_with)) {
      if (opens) {
        const cp = openCheckpoint(c.signed_note, [verifier(label)], c.origin);
        expect(cp).toMatchObject({ origin: c.origin, size: c.size, extensions: c.extensions, note: c.signed_note });
        expect(toHex(cp.root)).toBe(c.root);
        expect(cp.signedBy).toEqual(verifier(label));
      } else {
        expect(noteError(() => openCheckpoint(c.signed_note, [verifier(label)], c.origin))).toMatch(/not signed by a trusted key/);
      }
    }
    // A verifier that trusts both log keys (mid-rotation) opens every checkpoint.
    expect(openCheckpoint(c.signed_note, [verifier("log-2025"), verifier("log-2026")]).size).toBe(c.size);
  });

  it("the rotation checkpoint reports both log keys as signers, and ignores the witness", () => {
    const c = vectors.checkpoints.find((x) => x.signed_by.length === 3)!;
    const { signedBy } = openNote(c.signed_note, [verifier("log-2026"), verifier("log-2025")]);
    expect(signedBy).toEqual([verifier("log-2025"), verifier("log-2026")]);
  });

  it("a checkpoint for another origin is refused", () => {
    const c = vectors.checkpoints[1]!;
    expect(noteError(() => openCheckpoint(c.signed_note, [verifier("log-2025")], "audit-ledger.example/other"))).toMatch(/origin/);
  });
});

// ---------------------------------------------------------------------------------
describe("signed notes are rejected when", () => {
  const cp = vectors.checkpoints.find((c) => c.signed_by.length === 1 && c.signed_by[0] === "log-2025" && c.size > 0)!;
  const note = cp.signed_note;
  const log = verifier("log-2025");
  const sigLine = note.slice(note.lastIndexOf("\n\n") + 2);
  const sigB64 = sigLine.slice(sigLine.lastIndexOf(" ") + 1, -1);
  const withSig = (raw: Uint8Array) => note.slice(0, note.length - sigLine.length) + `— ${log.name} ${toBase64(raw)}\n`;

  it("signed by another key of the same name (other key ID): not signed by a trusted key", () => {
    expect(noteError(() => openNote(note, [verifier("log-2026")]))).toBe(
      `note is not signed by a trusted key (signed by ${log.name}+${keyIdHex(log.keyId)})`,
    );
  });

  it("the trusted key has the same name and key ID but a different public key", () => {
    const impostor: VerifierKey = { name: log.name, keyId: log.keyId, publicKey: verifier("log-2026").publicKey };
    expect(noteError(() => openNote(note, [impostor]))).toMatch(/does not verify/);
    // Such a key cannot even be configured from its string form: the key ID would not match.
    const text = `${log.name}+${keyIdHex(log.keyId)}+${toBase64(Uint8Array.of(1, ...impostor.publicKey))}`;
    expect(noteError(() => parseVerifierKey(text))).toMatch(/does not match the key/);
  });

  it("any bit of the signature is flipped: does not verify", () => {
    const raw = fromBase64(sigB64);
    for (let bit = 32; bit < raw.length * 8; bit++) {
      const bad = Uint8Array.from(raw);
      bad[bit >> 3]! ^= 1 << (bit & 7);
      expect(noteError(() => openNote(withSig(bad), [log])), `bit ${bit}`).toMatch(/does not verify/);
    }
  });

  it("a bit of the key ID is flipped: the signature is no longer from a known key", () => {
    const raw = fromBase64(sigB64);
    for (let bit = 0; bit < 32; bit++) {
      const bad = Uint8Array.from(raw);
      bad[bit >> 3]! ^= 1 << (bit & 7);
      expect(noteError(() => openNote(withSig(bad), [log]))).toMatch(/not signed by a trusted key/);
    }
  });

  it("the signature is truncated or extended: does not verify", () => {
    const raw = fromBase64(sigB64);
    expect(noteError(() => openNote(withSig(raw.subarray(0, 67)), [log]))).toMatch(/does not verify/);
    expect(noteError(() => openNote(withSig(Uint8Array.of(...raw, 0)), [log]))).toMatch(/does not verify/);
    expect(noteError(() => openNote(withSig(raw.subarray(0, 4 + 1)), [log]))).toMatch(/does not verify/);
  });

  it("the text is edited", () => {
    const edits = [
      note.replace(`\n${cp.size}\n`, `\n${cp.size + 1}\n`),
      note.replace(cp.origin, cp.origin.toUpperCase()),
      note.replace("\n\n", "\nextension\n\n"),
      "x" + note,
    ];
    for (const edited of edits) {
      expect(edited).not.toBe(note);
      expect(noteError(() => openNote(edited, [log]))).toMatch(/does not verify/);
    }
  });

  it("signature lines are malformed", () => {
    const body = note.slice(0, note.length - sigLine.length);
    const lines = [
      `- ${log.name} ${sigB64}\n`, // ASCII hyphen, not an em dash
      `—${log.name} ${sigB64}\n`,
      `—  ${log.name} ${sigB64}\n`,
      `— ${log.name}  ${sigB64}\n`,
      `— ${log.name} ${sigB64} \n`,
      `— ${log.name}\n`,
      `— ${log.name} \n`,
      `— ${log.name} ${sigB64.slice(0, -1)}\n`, // not base64 (length)
      `— ${log.name} ${sigB64.replace(/=$/, "")}\n`, // missing padding
      `— ${log.name} ${sigB64.slice(0, 8)}*${sigB64.slice(9)}\n`, // not in the alphabet
      `— ${log.name} ${toBase64(Uint8Array.of(1, 2, 3, 4))}\n`, // key ID and no signature
      `— ${log.name} ${sigB64}`, // no final newline
      `— ${log.name} ${sigB64}\n\n`, // a blank line after the signatures
      sigLine + "not a signature\n",
      "\n", // an empty signature block
    ];
    for (const line of lines) expect(() => openNote(body + line, [log]), JSON.stringify(line)).toThrow(NoteError);
  });

  it("it has no blank line, or too many signatures", () => {
    expect(noteError(() => openNote(cp.body, [log]))).toMatch(/malformed/);
    expect(noteError(() => openNote(cp.body + "\n" + sigLine.repeat(65), [log]))).toMatch(/more than 64 signatures/);
    expect(openNote(cp.body + "\n" + sigLine.repeat(16), [log]).text).toBe(cp.body); // at least 16 are accepted
  });

  it("a verifier key's key ID does not match its name and key", () => {
    const k = vectors.keys.find((x) => x.label === "log-2025")!;
    const other = vectors.keys.find((x) => x.label === "log-2026")!;
    expect(noteError(() => parseVerifierKey(k.verifier_key.replace(k.key_id, other.key_id)))).toMatch(/does not match the key/);
    expect(noteError(() => parseVerifierKey(k.verifier_key.replace(k.name, "audit-ledger.example/renamed")))).toMatch(/does not match the key/);
    expect(noteError(() => parseVerifierKey(k.verifier_key.replace(k.key_id, k.key_id.toUpperCase())))).toMatch(/8 hex digits|does not match/);
    expect(noteError(() => parseSignerKey(k.signer_key.replace(k.key_id, other.key_id)))).toMatch(/does not match the key/);
  });
});

describe("unknown signatures are ignored", () => {
  it("extra signatures by unknown names, by unknown IDs of a known name, and garbage-but-well-formed ones", () => {
    const c = vectors.checkpoints.find((x) => x.signed_by.join() === "log-2025" && x.size > 0)!;
    const log = verifier("log-2025");
    const stranger = signerKeyFromSeed("stranger.example/key", new Uint8Array(32).fill(7));
    const sameNameOtherKey = signerKeyFromSeed(log.name, new Uint8Array(32).fill(9));
    const extra = signNote(c.body, [stranger, sameNameOtherKey]).slice(c.body.length + 1);
    const garbage = `— ${log.name} ${toBase64(Uint8Array.of(0, 0, 0, 0, ...new Uint8Array(64)))}\n`;
    const note = c.body + "\n" + extra + c.signed_note.slice(c.body.length + 1) + garbage + GO_ENOCH_SIG;
    const opened = openNote(note, [log]);
    expect(opened.text).toBe(c.body);
    expect(opened.signedBy).toEqual([log]);
  });
});

describe("checkpoint bodies are rejected when", () => {
  const root = toBase64(fromHex(rfcRoots[8]!.root));
  const good = `audit-ledger.example/vectors\n8\n${root}\n`;

  it("well-formed: parses (sanity check for the cases below)", () => {
    expect(parseCheckpoint(good).size).toBe(8);
    expect(parseCheckpoint(`o\n0\n${toBase64(EMPTY_ROOT)}\n`).size).toBe(0);
    expect(parseCheckpoint(`o\n9007199254740991\n${root}\nextension one\next two\n`)).toMatchObject({ size: 2 ** 53 - 1, extensions: ["extension one", "ext two"] });
  });

  it("the size has leading zeros", () => {
    for (const size of ["08", "00", "0008"]) expect(noteError(() => parseCheckpoint(good.replace("\n8\n", `\n${size}\n`)))).toMatch(/not a decimal integer/);
  });

  it("the size is not plain decimal, or not a safe integer", () => {
    for (const size of ["", "+8", "-8", " 8", "8 ", "8.0", "0x8", "1e3", "８", "Infinity", "NaN", "9007199254740992", "12345678901234567890"]) {
      expect(noteError(() => parseCheckpoint(good.replace("\n8\n", `\n${size}\n`))), size).toMatch(/not a decimal integer/);
    }
  });

  it("the root is not 32 bytes", () => {
    for (const bytes of [0, 31, 33, 64]) {
      expect(noteError(() => parseCheckpoint(good.replace(root, toBase64(new Uint8Array(bytes)))))).toMatch(/bytes, not 32/);
    }
  });

  it("the root is not canonical standard base64", () => {
    const hex = rfcRoots[8]!.root;
    // Unpadded, URL alphabet, spaces, extra padding, non-zero trailing bits.
    for (const bad of [root.replace(/=$/, ""), root.replace("+", "-"), root.replace("/", "_"), ` ${root}`, `${root}=`, root.slice(0, 42) + "h="]) {
      expect(noteError(() => parseCheckpoint(good.replace(root, bad))), bad).toMatch(/not base64/);
    }
    // Hex happens to be valid base64, of the wrong length.
    expect(noteError(() => parseCheckpoint(good.replace(root, hex)))).toMatch(/48 bytes, not 32/);
  });

  it("lines are missing, or an extension line is empty", () => {
    for (const bad of ["audit-ledger.example/vectors\n8\n", "audit-ledger.example/vectors\n", "\n", "", `\n8\n${root}\n`, `${good}\n`, `${good}ext\n\n`]) {
      expect(() => parseCheckpoint(bad), JSON.stringify(bad)).toThrow(NoteError);
    }
  });

  it("the trailing newline is missing", () => {
    expect(noteError(() => parseCheckpoint(good.slice(0, -1)))).toMatch(/must end in a newline/);
  });

  it("formatting refuses what parsing would refuse", () => {
    const r = fromHex(rfcRoots[8]!.root);
    expect(() => formatCheckpoint({ origin: "", size: 8, root: r, extensions: [] })).toThrow(NoteError);
    expect(() => formatCheckpoint({ origin: "a\nb", size: 8, root: r, extensions: [] })).toThrow(NoteError);
    expect(() => formatCheckpoint({ origin: "o", size: -1, root: r, extensions: [] })).toThrow(NoteError);
    expect(() => formatCheckpoint({ origin: "o", size: 1.5, root: r, extensions: [] })).toThrow(NoteError);
    expect(() => formatCheckpoint({ origin: "o", size: 8, root: r.subarray(1), extensions: [] })).toThrow(NoteError);
    expect(() => formatCheckpoint({ origin: "o", size: 8, root: r, extensions: [""] })).toThrow(NoteError);
    expect(() => signCheckpoint({ origin: "o", size: 8, root: r, extensions: ["a\nb"] }, signer("log-2025"))).toThrow(NoteError);
  });
});

describe("signing refuses", () => {
  it("text without a final newline, with control characters, or not UTF-8; and bad key names", () => {
    const s = signer("log-2025");
    expect(noteError(() => signNote("no newline", [s]))).toMatch(/newline/);
    expect(noteError(() => signNote("tab\there\n", [s]))).toMatch(/control character/);
    expect(noteError(() => signNote("lone \ud800 surrogate\n", [s]))).toMatch(/UTF-8/);
    for (const name of ["", "a b", "a+b", "a\u00a0b", "a\u0001b"]) expect(() => signerKeyFromSeed(name, new Uint8Array(32)), name).toThrow(NoteError);
    expect(() => signerKeyFromSeed("ok", new Uint8Array(31))).toThrow(NoteError);
  });
});
