// Lists every file in scope with its metadata (no content read): the view a restart,
// or a rescan after too many changes at once, compares with what it knew. Folders that
// cannot be read are listed apart, so files known below them are not taken as deleted.
import type { BigIntStats, Dirent } from "node:fs";
import { lstat, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import type { WatchScope } from "./watch-scope.js";

export interface ScannedFile {
  inode: string;
  size: number;
  mtimeNs: string;
}

export interface ScanResult {
  files: Map<string, ScannedFile>;
  /** Folders that could not be listed. */
  unreadable: string[];
}

const GONE = new Set(["ENOENT", "ENOTDIR", "ELOOP"]);
const isGone = (err: unknown) => GONE.has((err as NodeJS.ErrnoException).code ?? "");

export async function scanTree(scope: WatchScope, followSymlinks: boolean, isStopped: () => boolean): Promise<ScanResult> {
  const files = new Map<string, ScannedFile>();
  const unreadable: string[] = [];
  const visited = new Set<string>(); // dev:ino of folders entered, against symlink loops

  const statOf = async (p: string): Promise<BigIntStats | undefined> => {
    try {
      return followSymlinks ? await stat(p, { bigint: true }) : await lstat(p, { bigint: true });
    } catch (err) {
      if (isGone(err)) return undefined;
      throw err;
    }
  };
  const addFile = (p: string, st: BigIntStats) => {
    files.set(p, { inode: st.ino.toString(), size: Number(st.size), mtimeNs: st.mtimeNs.toString() });
  };

  const walk = async (dir: string, st: BigIntStats | undefined): Promise<void> => {
    if (isStopped()) return;
    if (st) {
      const key = `${st.dev}:${st.ino}`;
      if (visited.has(key)) return;
      visited.add(key);
    }
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (!isGone(err)) unreadable.push(dir);
      return;
    }
    for (const e of entries) {
      if (isStopped()) return;
      const full = join(dir, e.name);
      // Files and folders matter, and symlinks when followed; some file systems do not say
      // what an entry is, so those are stat'ed too.
      const untyped = !e.isFile() && !e.isDirectory() && !e.isSymbolicLink() && !e.isFIFO() && !e.isSocket() && !e.isBlockDevice() && !e.isCharacterDevice();
      if (!(e.isFile() || e.isDirectory() || untyped || (followSymlinks && e.isSymbolicLink()))) continue;
      let entryStat: BigIntStats | undefined;
      try {
        entryStat = await statOf(full);
      } catch {
        unreadable.push(full);
        continue;
      }
      if (!entryStat) continue;
      if (entryStat.isDirectory()) {
        if (scope.shouldDescend(full)) await walk(full, followSymlinks ? entryStat : undefined);
      } else if (entryStat.isFile() && scope.isTracked(full)) {
        addFile(full, entryStat);
      }
    }
  };

  for (const root of scope.roots) {
    let st: BigIntStats | undefined;
    try {
      st = await statOf(root.path);
    } catch {
      unreadable.push(root.path);
      continue;
    }
    if (!st) continue; // gone since start: its known files are deleted
    if (root.isDir && st.isDirectory()) await walk(root.path, st);
    else if (!root.isDir && st.isFile()) addFile(root.path, st);
  }
  return { files, unreadable };
}
