// The agent's own key pair, created on first start in its state folder and reused on
// every start after: the ZID, and every batch signature, hang on it.
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import sodium from "libsodium-wrappers";
import { replaceFile } from "../state/replace-file.js";
import { fromBase64, sodiumReady, toBase64, zidOf } from "../../chain/index.js";

export interface AgentIdentity {
  zid: string;
  publicKey: Uint8Array;
  /** Signs `message` (detached Ed25519). */
  sign(message: Uint8Array): Uint8Array;
  createdAt: string;
}

/** File name of the identity inside the agent's state folder. */
export const IDENTITY_FILE = "identity.json";

interface IdentityDoc {
  algorithm: "ed25519";
  seed: string;
  public_key: string;
  zid: string;
  created_at: string;
}

/**
 * Loads the identity from `stateDir`, creating it (folder 0700, file 0600, written
 * atomically) when there is none. A file that does not parse, or whose public key or
 * ZID does not match its seed, is refused: an agent must never silently change identity.
 */
export async function loadOrCreateIdentity(stateDir: string, now = new Date()): Promise<AgentIdentity> {
  await sodiumReady();
  const file = join(stateDir, IDENTITY_FILE);
  let text: string | null = null;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  if (text === null) return create(stateDir, now);
  let doc: IdentityDoc;
  try {
    doc = JSON.parse(text) as IdentityDoc;
  } catch {
    throw new Error(`agent identity ${file} is not JSON: restore it from a backup (a new key would be a new agent)`);
  }
  if (doc.algorithm !== "ed25519" || typeof doc.seed !== "string") throw new Error(`agent identity ${file} has no ed25519 seed`);
  const seed = fromBase64(doc.seed);
  if (seed.length !== 32) throw new Error(`agent identity ${file}: the seed is ${seed.length} bytes, not 32`);
  const keys = sodium.crypto_sign_seed_keypair(seed);
  if (toBase64(keys.publicKey) !== doc.public_key || zidOf(keys.publicKey) !== doc.zid) {
    throw new Error(`agent identity ${file}: public key or ZID does not match the seed (the file was edited)`);
  }
  return identity(keys.publicKey, keys.privateKey, doc.created_at);
}

async function create(stateDir: string, now: Date): Promise<AgentIdentity> {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const seed = sodium.randombytes_buf(32);
  const keys = sodium.crypto_sign_seed_keypair(seed);
  const doc: IdentityDoc = {
    algorithm: "ed25519",
    seed: toBase64(seed),
    public_key: toBase64(keys.publicKey),
    zid: zidOf(keys.publicKey),
    created_at: now.toISOString(),
  };
  // A crash leaves either no identity or a whole one.
  await replaceFile(stateDir, IDENTITY_FILE, JSON.stringify(doc, null, 2) + "\n");
  return identity(keys.publicKey, keys.privateKey, doc.created_at);
}

function identity(publicKey: Uint8Array, secretKey: Uint8Array, createdAt: string): AgentIdentity {
  return {
    zid: zidOf(publicKey),
    publicKey,
    createdAt,
    sign: (message) => sodium.crypto_sign_detached(message, secretKey),
  };
}
