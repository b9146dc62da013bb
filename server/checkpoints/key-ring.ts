// The ledger's checkpoint signing keys: one file per Ed25519 key in a folder that
// only the server can read. The newest key of the configured name signs; older keys
// stay in the folder (retired), so checkpoints they signed remain verifiable.
import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  formatSignerKey,
  formatVerifierKey,
  generateSignerKey,
  keyIdHex,
  parseSignerKey,
  sodiumReady,
  type SignerKey,
  type VerifierKey,
} from "../../chain/index.js";

export interface RingKey {
  signer: SignerKey;
  createdAt: string;
  file: string;
}

/** A public key as published (GetPublicKeys, the well-known URL, bundles). */
export interface PublishedKey {
  name: string;
  keyId: string;
  publicKey: Uint8Array;
  verifierKey: string;
  createdAt: string;
  /** When a newer key of the same name took over; empty for the active key. */
  retiredAt: string;
}

const KEY_FILE = /\.key$/;

/** Writes a fresh key file named after the key; returns it. The folder is created 0700. */
export async function generateKeyFile(dir: string, name: string, now = new Date()): Promise<RingKey> {
  await sodiumReady();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const signer = generateSignerKey(name);
  const createdAt = now.toISOString();
  const file = join(dir, `${name.replace(/[^A-Za-z0-9._-]/g, "_")}-${keyIdHex(signer.keyId)}-${createdAt.replace(/[:.]/g, "")}.key`);
  writeFileSync(file, JSON.stringify({ signer_key: formatSignerKey(signer), created_at: createdAt }) + "\n", { mode: 0o600, flag: "wx" });
  chmodSync(file, 0o600);
  return { signer, createdAt, file };
}

/** Reads every key file in `dir` (none if it does not exist), oldest first. */
export async function readKeyFiles(dir: string): Promise<RingKey[]> {
  await sodiumReady();
  let names: string[];
  try {
    names = readdirSync(dir).filter((f) => KEY_FILE.test(f));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const keys = names.map((f): RingKey => {
    const file = join(dir, f);
    try {
      const doc = JSON.parse(readFileSync(file, "utf8")) as { signer_key?: unknown; created_at?: unknown };
      if (typeof doc.signer_key !== "string" || typeof doc.created_at !== "string" || Number.isNaN(Date.parse(doc.created_at))) {
        throw new Error("needs signer_key and created_at");
      }
      return { signer: parseSignerKey(doc.signer_key), createdAt: doc.created_at, file };
    } catch (err) {
      throw new Error(`signing key file ${file} is unreadable: ${(err as Error).message}`);
    }
  });
  return keys.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.file.localeCompare(b.file));
}

export class KeyRing {
  private keys: RingKey[] = [];
  private dirStamp = "";

  private constructor(
    readonly dir: string,
    /** The key name, which is also the prefix of every checkpoint origin. */
    readonly name: string,
  ) {}

  /** Opens the folder, creating the first key of `name` when there is none. */
  static async open(dir: string, name: string): Promise<KeyRing> {
    const ring = new KeyRing(dir, name);
    await ring.reload();
    if (!ring.keys.some((k) => k.signer.name === name)) {
      await generateKeyFile(dir, name);
      await ring.reload();
    }
    return ring;
  }

  /** Picks up keys added since (a rotation by `audit-ledger keys generate`). Cheap when nothing changed. */
  async reloadIfChanged(): Promise<boolean> {
    if (this.stamp() === this.dirStamp) return false;
    await this.reload();
    return true;
  }

  /** The key new checkpoints are signed with: the newest of the configured name. */
  active(): SignerKey {
    const own = this.keys.filter((k) => k.signer.name === this.name);
    const newest = own[own.length - 1];
    if (!newest) throw new Error(`no signing key named ${this.name} in ${this.dir}`);
    return newest.signer;
  }

  /** Every key in the folder: the keys this server trusts for its own checkpoints. */
  verifiers(): VerifierKey[] {
    return this.keys.map((k) => ({ name: k.signer.name, keyId: k.signer.keyId, publicKey: k.signer.publicKey }));
  }

  published(): PublishedKey[] {
    return this.keys.map((k, i): PublishedKey => {
      const successor = this.keys.slice(i + 1).find((n) => n.signer.name === k.signer.name);
      return {
        name: k.signer.name,
        keyId: keyIdHex(k.signer.keyId),
        publicKey: k.signer.publicKey,
        verifierKey: formatVerifierKey(k.signer),
        createdAt: k.createdAt,
        retiredAt: successor?.createdAt ?? "",
      };
    });
  }

  private async reload(): Promise<void> {
    const stamp = this.stamp();
    this.keys = await readKeyFiles(this.dir);
    this.dirStamp = stamp;
  }

  private stamp(): string {
    try {
      const s = statSync(this.dir);
      return `${s.mtimeMs}:${s.ino}`;
    } catch {
      return "missing";
    }
  }
}
