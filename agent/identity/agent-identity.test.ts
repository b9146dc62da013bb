// The agent's identity: created once, stable across restarts, its ZID derived from the
// public key (and recomputable by anyone), and never silently replaced.
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import sodium from "libsodium-wrappers";
import { fromHex, sodiumReady, zidOf, ZID_PATTERN } from "../../chain/index.js";
import { IDENTITY_FILE, loadOrCreateIdentity } from "./agent-identity.js";

const dirs: string[] = [];
const stateDir = () => {
  const d = mkdtempSync(join(tmpdir(), "agent-id-"));
  dirs.push(d);
  return join(d, "state");
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("zidOf", () => {
  it("is ZID- and 8 Crockford base32 characters of SHA-256(public key)", () => {
    // SHA-256 of 32 zero bytes starts 66 68 7a ad f8: 01100 11001 10100 00111 10101 01011 01111 11000.
    expect(zidOf(new Uint8Array(32))).toBe("ZID-CSM7NBFR");
    expect(zidOf(fromHex("11".repeat(32)))).toMatch(ZID_PATTERN);
  });

  it("refuses anything but a 32-byte key", () => {
    expect(() => zidOf(new Uint8Array(31))).toThrow(/32 bytes/);
  });
});

describe("loadOrCreateIdentity", () => {
  it("creates a key on first start (file 0600, folder 0700) and returns the same identity on every start after", async () => {
    const dir = stateDir();
    const first = await loadOrCreateIdentity(dir);
    expect(first.zid).toMatch(ZID_PATTERN);
    expect(first.zid).toBe(zidOf(first.publicKey));
    expect(statSync(join(dir, IDENTITY_FILE)).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const again = await loadOrCreateIdentity(dir);
    expect(again.zid).toBe(first.zid);
    expect(Buffer.from(again.publicKey)).toEqual(Buffer.from(first.publicKey));
    expect(again.createdAt).toBe(first.createdAt);
  });

  it("signs with the key whose public half is published", async () => {
    await sodiumReady();
    const id = await loadOrCreateIdentity(stateDir());
    const msg = new TextEncoder().encode("batch 1");
    const sig = id.sign(msg);
    expect(sodium.crypto_sign_verify_detached(sig, msg, id.publicKey)).toBe(true);
    expect(sodium.crypto_sign_verify_detached(sig, new TextEncoder().encode("batch 2"), id.publicKey)).toBe(false);
  });

  it("refuses an edited or unreadable identity instead of minting a new one", async () => {
    const dir = stateDir();
    const id = await loadOrCreateIdentity(dir);
    const file = join(dir, IDENTITY_FILE);
    const doc = JSON.parse(readFileSync(file, "utf8")) as Record<string, string>;
    writeFileSync(file, JSON.stringify({ ...doc, zid: "ZID-00000000" }));
    await expect(loadOrCreateIdentity(dir)).rejects.toThrow(/does not match the seed/);
    writeFileSync(file, "{not json");
    await expect(loadOrCreateIdentity(dir)).rejects.toThrow(/is not JSON/);
    writeFileSync(file, JSON.stringify(doc));
    expect((await loadOrCreateIdentity(dir)).zid).toBe(id.zid);
  });
});
