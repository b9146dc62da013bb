// Replacing a small state file so that after any crash it is the old version or the
// new one, never a mix: write a temp file, fsync it, rename it over, fsync the folder.
// Used for the identity, the credential, the outbox's ack position and source state.
import { open, rename } from "node:fs/promises";
import { join } from "node:path";
import { syncDir } from "./sync-dir.js";

/** The temp name `replaceFile` writes first; a crash can leave it behind, harmlessly. */
export function tempNameOf(name: string): string {
  return `${name}.tmp`;
}

/**
 * Durably replaces `dir/name` with `data`, created with `mode` (default 0600: agent state
 * holds secrets). With `durable` false the fsyncs are skipped (outbox fsync policy none).
 */
export async function replaceFile(dir: string, name: string, data: string | Uint8Array, opts: { mode?: number; durable?: boolean } = {}): Promise<void> {
  const mode = opts.mode ?? 0o600;
  const durable = opts.durable ?? true;
  const temp = join(dir, tempNameOf(name));
  const fh = await open(temp, "w", mode);
  try {
    await fh.chmod(mode);
    await fh.writeFile(data);
    if (durable) await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(temp, join(dir, name));
  if (durable) await syncDir(dir);
}
