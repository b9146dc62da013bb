import { open } from "node:fs/promises";

/**
 * Makes the names created, renamed or removed in `dir` durable: without an fsync of the
 * folder, a new segment whose data was fsynced can still vanish whole in a power loss.
 */
export async function syncDir(dir: string): Promise<void> {
  // Windows cannot open a folder for fsync; its metadata journaling covers this.
  if (process.platform === "win32") return;
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
