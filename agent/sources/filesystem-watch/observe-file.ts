// Reads one file's current state: stat, SHA-256 of the content, and the content itself
// when wanted and no larger than the cap. Digest, size and content come from one read
// through one file handle, checked against fstat before and after, so they describe
// the same version; a file still changing is read again (a later change event follows
// anyway).
import { createHash } from "node:crypto";
import { constants, type BigIntStats } from "node:fs";
import { lstat, open, stat, type FileHandle } from "node:fs/promises";
import type { FileState } from "./file-state.js";

export type Observation =
  | { status: "file"; state: FileState; content?: Buffer }
  /** Nothing there, or not a regular file (folder, symlink not followed, device...). */
  | { status: "absent" }
  /** There but cannot be read (permissions...): reported in the log, not as an event. */
  | { status: "unreadable"; error: string };

export interface ObserveOptions {
  followSymlinks: boolean;
  /** Keep the content of files up to this many bytes; undefined: never. */
  contentCap: number | undefined;
}

const GONE = new Set(["ENOENT", "ENOTDIR", "ELOOP"]);
const CHUNK = 64 * 1024;
const ATTEMPTS = 3;

function errorCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

export function stateOfStats(st: BigIntStats, size: number, sha256: string): FileState {
  return { inode: st.ino.toString(), size, mtimeNs: st.mtimeNs.toString(), ctimeNs: st.ctimeNs.toString(), sha256 };
}

export async function observeFile(path: string, options: ObserveOptions): Promise<Observation> {
  for (let attempt = 1; ; attempt++) {
    let st: BigIntStats;
    try {
      st = options.followSymlinks ? await stat(path, { bigint: true }) : await lstat(path, { bigint: true });
    } catch (err) {
      if (GONE.has(errorCode(err) ?? "")) return { status: "absent" };
      return { status: "unreadable", error: String(err) };
    }
    if (!st.isFile()) return { status: "absent" };
    let fh: FileHandle;
    try {
      // O_NONBLOCK: a FIFO swapped in after the stat must not hang the source.
      const flags = constants.O_RDONLY | constants.O_NONBLOCK | (options.followSymlinks ? 0 : (constants.O_NOFOLLOW ?? 0));
      fh = await open(path, flags);
    } catch (err) {
      if (GONE.has(errorCode(err) ?? "")) return { status: "absent" };
      return { status: "unreadable", error: String(err) };
    }
    try {
      const before = await fh.stat({ bigint: true });
      if (!before.isFile()) return { status: "absent" };
      const hash = createHash("sha256");
      let keep = options.contentCap !== undefined && before.size <= BigInt(options.contentCap);
      let chunks: Buffer[] = [];
      let total = 0;
      const buf = Buffer.allocUnsafe(CHUNK);
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, CHUNK, total);
        if (bytesRead === 0) break;
        const part = buf.subarray(0, bytesRead);
        hash.update(part);
        total += bytesRead;
        if (keep && total > options.contentCap!) {
          keep = false; // grew past the cap while being read
          chunks = [];
        } else if (keep) {
          chunks.push(Buffer.from(part));
        }
      }
      const after = await fh.stat({ bigint: true });
      const settled = after.size === before.size && after.mtimeNs === before.mtimeNs && after.size === BigInt(total);
      if (!settled && attempt < ATTEMPTS) continue;
      const state = stateOfStats(after, total, hash.digest("hex"));
      return keep ? { status: "file", state, content: Buffer.concat(chunks, total) } : { status: "file", state };
    } catch (err) {
      if (GONE.has(errorCode(err) ?? "")) return { status: "absent" };
      return { status: "unreadable", error: String(err) };
    } finally {
      await fh.close().catch(() => undefined);
    }
  }
}

/** Whether `path` still names a file with this inode (a rename's old name must be gone). */
export async function stillHasInode(path: string, inode: string, followSymlinks: boolean): Promise<boolean> {
  try {
    const st = followSymlinks ? await stat(path, { bigint: true }) : await lstat(path, { bigint: true });
    return st.isFile() && st.ino.toString() === inode;
  } catch (err) {
    if (GONE.has(errorCode(err) ?? "")) return false;
    return true; // cannot tell: assume it is still there (no rename is invented)
  }
}
