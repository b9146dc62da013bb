// The acknowledged view of the watched files, kept in the source's state folder as
// `snapshot.json`: path → inode, size, mtime, ctime, digest, as of the last event the
// agent acknowledged. Replaced whole (write `snapshot.json.tmp`, fsync, rename over,
// fsync the folder), so a crash leaves the old snapshot or the new one, never a mix.
import { readFile, unlink } from "node:fs/promises";
import { replaceFile, tempNameOf } from "../../state/replace-file.js";
import { join } from "node:path";
import { z } from "zod";
import { FileTable } from "./file-table.js";

export const SNAPSHOT_FILE = "snapshot.json";
export const SNAPSHOT_TEMP_FILE = tempNameOf(SNAPSHOT_FILE);

const decimal = z.string().regex(/^-?[0-9]{1,30}$/);
const snapshotSchema = z.strictObject({
  version: z.literal(1),
  files: z.record(
    z.string(),
    z.strictObject({
      inode: decimal,
      size: z.number().int().min(0),
      mtime_ns: decimal,
      ctime_ns: decimal,
      sha256: z.string().regex(/^[0-9a-f]{64}$/),
    }),
  ),
});

export class SnapshotCorruptError extends Error {
  override readonly name = "SnapshotCorruptError";
  constructor(
    readonly file: string,
    reason: string,
  ) {
    super(`filesystem_watch snapshot ${file} is unreadable (${reason}); move it away to report every file again (unchanged ones dedup by position)`);
  }
}

/** The snapshot in `dir`; empty when none was ever written. */
export async function loadSnapshot(dir: string): Promise<FileTable> {
  const file = join(dir, SNAPSHOT_FILE);
  await unlink(join(dir, SNAPSHOT_TEMP_FILE)).catch(() => undefined); // a write that never happened
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return new FileTable();
    throw err;
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new SnapshotCorruptError(file, String(err));
  }
  const parsed = snapshotSchema.safeParse(doc);
  if (!parsed.success) throw new SnapshotCorruptError(file, z.prettifyError(parsed.error).replace(/\n/g, "; "));
  const table = new FileTable();
  for (const [path, f] of Object.entries(parsed.data.files)) {
    table.set(path, { inode: f.inode, size: f.size, mtimeNs: f.mtime_ns, ctimeNs: f.ctime_ns, sha256: f.sha256 });
  }
  return table;
}

export function encodeSnapshot(table: FileTable): string {
  const files: Record<string, object> = {};
  for (const [path, s] of table.entries()) {
    files[path] = { inode: s.inode, size: s.size, mtime_ns: s.mtimeNs, ctime_ns: s.ctimeNs, sha256: s.sha256 };
  }
  return JSON.stringify({ version: 1, files });
}

/** Durably replaces the snapshot in `dir` with `text` (from encodeSnapshot). */
export async function saveSnapshot(dir: string, text: string): Promise<void> {
  await replaceFile(dir, SNAPSHOT_FILE, text);
}
