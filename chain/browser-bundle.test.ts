// The chain module as a browser gets it: bundled by esbuild for platform "browser",
// then run in a fresh node:vm context that has web globals only (no require, process
// or Buffer), where it must verify proofs and signed checkpoints from the vectors.
import { webcrypto } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import vm from "node:vm";
import { build, type Metafile } from "esbuild";
import { beforeAll, describe, expect, it } from "vitest";

const projectRoot = fileURLToPath(new URL("..", import.meta.url));
const readVectors = (name: string) => readFileSync(new URL(`./vectors/${name}`, import.meta.url), "utf8");

let code = "";
let metafile: Metafile;
let warnings: string[] = [];

beforeAll(async () => {
  // platform "browser" makes esbuild resolve with the "browser" and "default"
  // conditions and never "node", so package.json "imports" sends #sha256 to
  // chain/sha256-web.ts. IIFE because node:vm runs scripts; ES modules in vm need
  // --experimental-vm-modules.
  const result = await build({
    absWorkingDir: projectRoot,
    entryPoints: ["chain/index.ts"],
    bundle: true,
    platform: "browser",
    format: "iife",
    globalName: "auditLedgerChain",
    target: "es2022",
    write: false,
    metafile: true,
    logLevel: "silent",
  });
  code = result.outputFiles[0]!.text;
  metafile = result.metafile;
  warnings = result.warnings.map((w) => w.text);
});

/**
 * A fresh vm context with only the web platform globals the chain code uses:
 *
 * - TextEncoder, TextDecoder, atob, btoa, crypto.getRandomValues: present in every
 *   browser, absent from a bare V8 context, so supplied here backed by Node's own.
 *   TextEncoder is wrapped to return Uint8Arrays of the context's realm: Node's would
 *   return the host realm's, which fail libsodium-wrappers' `instanceof Uint8Array`
 *   input check. That is an artefact of vm, not of browsers. libsodium-wrappers' ESM
 *   build reads its randomness from globalThis.crypto.getRandomValues (it throws at load
 *   without it), never from Node's crypto module.
 * - WebAssembly and console: V8 builtins, already in every context (as in browsers).
 *   libsodium's ESM build carries its wasm inline and instantiates it with
 *   WebAssembly.instantiate, so no fetch, URL or file access is needed.
 *
 * Deliberately absent: require, module, process, Buffer, setTimeout, window, self.
 */
function webContext(): vm.Context {
  const host = {
    encode: (s: string) => new TextEncoder().encode(s),
    decoder: (label?: string, options?: TextDecoderOptions) => new TextDecoder(label, options),
    atob: (s: string) => atob(s),
    btoa: (s: string) => btoa(s),
    getRandomValues: (a: Uint8Array) => webcrypto.getRandomValues(a),
  };
  const ctx = vm.createContext({ __host: host });
  vm.runInContext(
    `(() => {
      const host = globalThis.__host;
      delete globalThis.__host;
      globalThis.TextEncoder = class TextEncoder {
        get encoding() { return "utf-8"; }
        encode(s = "") { return new Uint8Array(host.encode(String(s))); }
      };
      globalThis.TextDecoder = class TextDecoder {
        #d;
        constructor(label = "utf-8", options) { this.#d = host.decoder(label, options); }
        get encoding() { return this.#d.encoding; }
        decode(input, options) { return this.#d.decode(input, options); }
      };
      globalThis.atob = (s) => host.atob(String(s));
      globalThis.btoa = (s) => host.btoa(String(s));
      globalThis.crypto = { getRandomValues(a) { host.getRandomValues(a); return a; } };
    })()`,
    ctx,
  );
  return ctx;
}

describe("the chain module bundled for browsers", () => {
  it("resolves #sha256 to the web implementation and references no Node module", () => {
    const inputs = Object.keys(metafile.inputs);
    expect(inputs).toContain("chain/sha256-web.ts");
    expect(inputs).not.toContain("chain/sha256-node.ts");
    expect(inputs).toContain("node_modules/libsodium-wrappers/dist/modules-esm/libsodium-wrappers.mjs");
    expect(inputs.filter((i) => i.startsWith("node:"))).toEqual([]);
    // libsodium's Emscripten glue has a require("crypto") fallback that the package's
    // "browser" field maps to an empty module; esbuild reports it as disabled.
    expect(inputs.filter((i) => !i.startsWith("chain/") && !i.startsWith("node_modules/"))).toEqual(["(disabled):crypto"]);
    const output = Object.values(metafile.outputs)[0]!;
    expect(output.imports.filter((i) => i.external)).toEqual([]);
    expect(code).not.toMatch(/node:crypto/);
    expect(code).not.toMatch(/["']node:/);
    expect(warnings).toEqual([]);
  });

  it("verifies proofs and signed checkpoints in a context with web globals only", async () => {
    const ctx = webContext();
    const globals = vm.runInContext(
      `[typeof require, typeof module, typeof process, typeof Buffer, typeof setTimeout, typeof window, typeof self,
        typeof TextEncoder, typeof TextDecoder, typeof atob, typeof btoa, typeof crypto.getRandomValues, typeof WebAssembly, typeof console].join()`,
      ctx,
    );
    expect(globals).toBe("undefined,undefined,undefined,undefined,undefined,undefined,undefined,function,function,function,function,function,object,object");

    vm.runInContext(code, ctx, { filename: "chain.browser.js" });
    const input = JSON.stringify({
      rfc: JSON.parse(readVectors("merkle-rfc6962.json")),
      checkpoints: JSON.parse(readVectors("checkpoints.json")),
    });
    const resultJson: string = await vm.runInContext(
      `(async () => {
        const c = globalThis.auditLedgerChain;
        const { rfc, checkpoints } = JSON.parse(${JSON.stringify(input)});
        await c.sodiumReady();
        const out = {};
        const bytes = (hexes) => hexes.map(c.fromHex);
        const flip = (h, bit) => { const x = Uint8Array.from(h); x[bit >> 3] ^= 1 << (bit & 7); return x; };
        const rejection = (fn) => { try { fn(); return "accepted"; } catch (e) { return e.name + ": " + e.message; } };
        const key = (label) => checkpoints.keys.find((k) => k.label === label);
        const cp = (size, signer) => checkpoints.checkpoints.find((x) => x.size === size && x.signed_by.join() === signer);

        // SHA-256 (the bundled sha256-web) on the RFC 6962 leaves.
        out.leafHashes = rfc.leaves.every((l) => c.toHex(c.leafHash(c.fromHex(l.data))) === l.hash);

        // Signed checkpoints of sizes 7 and 8 (the rotated key's), opened with verifier key strings.
        const cp7 = c.openCheckpoint(cp(7, "log-2025").signed_note, [c.parseVerifierKey(key("log-2025").verifier_key)], "audit-ledger.example/vectors");
        const cp8 = c.openCheckpoint(cp(8, "log-2026").signed_note, [c.parseVerifierKey(key("log-2026").verifier_key)], "audit-ledger.example/vectors");
        out.opened = [cp7.size, c.toHex(cp7.root), cp8.size, c.toHex(cp8.root), c.formatVerifierKey(cp8.signedBy)];

        // Inclusion of leaf 5 in the signed size-8 tree.
        const inc = rfc.inclusion.find((v) => v.index === 5 && v.size === 8);
        out.inclusion = c.verifyInclusion(5, 8, c.fromHex(inc.leaf_hash), bytes(inc.proof), cp8.root);
        out.inclusionFlipped = inc.proof.map((_, e) => c.verifyInclusion(5, 8, c.fromHex(inc.leaf_hash), bytes(inc.proof).map((h, k) => (k === e ? flip(h, 77) : h)), cp8.root));
        out.inclusionShape = JSON.stringify(c.inclusionProofRanges(5, 8)) === JSON.stringify(inc.proof_ranges);

        // Consistency of the signed size-7 tree with the signed size-8 tree.
        const con = rfc.consistency.find((v) => v.size1 === 7 && v.size2 === 8);
        out.consistency = c.verifyConsistency(7, 8, cp7.root, cp8.root, bytes(con.proof));
        out.consistencyFlipped = con.proof.map((_, e) => c.verifyConsistency(7, 8, cp7.root, cp8.root, bytes(con.proof).map((h, k) => (k === e ? flip(h, 200) : h))));
        out.consistencyError = rejection(() => c.checkConsistency(7, 8, cp7.root, cp8.root, bytes(con.proof).map((h, k) => (k === 0 ? flip(h, 0) : h))));

        // A flipped bit in the checkpoint's signature, and an edited checkpoint.
        const note = cp(8, "log-2026").signed_note;
        const line = note.slice(note.lastIndexOf("\\n\\n") + 2, -1);
        const sig = c.fromBase64(line.slice(line.lastIndexOf(" ") + 1));
        const badNote = note.slice(0, note.length - line.length - 1) + line.slice(0, line.lastIndexOf(" ") + 1) + c.toBase64(flip(sig, 4 * 8 + 100)) + "\\n";
        out.flippedSignature = rejection(() => c.openCheckpoint(badNote, [c.parseVerifierKey(key("log-2026").verifier_key)]));
        out.editedCheckpoint = rejection(() => c.openCheckpoint(note.replace("\\n8\\n", "\\n9\\n"), [c.parseVerifierKey(key("log-2026").verifier_key)]));
        out.otherKey = rejection(() => c.openCheckpoint(note, [c.parseVerifierKey(key("log-2025").verifier_key)]));

        // Signing in the browser reproduces the vector (Ed25519 is deterministic).
        const signer = c.parseSignerKey(key("log-2026").signer_key);
        out.signsSame = c.signCheckpoint(c.parseCheckpoint(cp(8, "log-2026").body), signer) === note;
        out.randomKey = c.formatVerifierKey(c.generateSignerKey("browser.example/k")).startsWith("browser.example/k+");
        return JSON.stringify(out);
      })()`,
      ctx,
    );
    const result = JSON.parse(resultJson);

    const rfc = JSON.parse(readVectors("merkle-rfc6962.json")) as { roots: Array<{ root: string }> };
    const cps = JSON.parse(readVectors("checkpoints.json")) as { keys: Array<{ label: string; verifier_key: string }> };
    expect(result.leafHashes).toBe(true);
    expect(result.opened).toEqual([7, rfc.roots[7]!.root, 8, rfc.roots[8]!.root, cps.keys.find((k) => k.label === "log-2026")!.verifier_key]);
    expect(result.inclusion).toBe(true);
    expect(result.inclusionShape).toBe(true);
    expect(result.inclusionFlipped).toEqual([false, false, false]);
    expect(result.consistency).toBe(true);
    expect(result.consistencyFlipped.length).toBeGreaterThan(0);
    expect(result.consistencyFlipped.every((ok: boolean) => ok === false)).toBe(true);
    expect(result.consistencyError).toMatch(/^ProofError: consistency proof does not lead to the root/);
    expect(result.flippedSignature).toMatch(/^NoteError: signature by audit-ledger\.example\/vectors\+[0-9a-f]{8} does not verify$/);
    expect(result.editedCheckpoint).toMatch(/^NoteError: .*does not verify$/);
    expect(result.otherKey).toMatch(/^NoteError: note is not signed by a trusted key/);
    expect(result.signsSame).toBe(true);
    expect(result.randomKey).toBe(true);
  });
});
