// Path → FileState, with an index by inode to find the old name of a renamed file.
import type { FileState } from "./file-state.js";

export class FileTable {
  private readonly files = new Map<string, FileState>();
  private readonly byInode = new Map<string, Set<string>>();

  get size(): number {
    return this.files.size;
  }

  get(path: string): FileState | undefined {
    return this.files.get(path);
  }

  has(path: string): boolean {
    return this.files.has(path);
  }

  set(path: string, state: FileState): void {
    this.delete(path);
    this.files.set(path, state);
    let paths = this.byInode.get(state.inode);
    if (!paths) this.byInode.set(state.inode, (paths = new Set()));
    paths.add(path);
  }

  delete(path: string): void {
    const old = this.files.get(path);
    if (!old) return;
    this.files.delete(path);
    const paths = this.byInode.get(old.inode);
    paths?.delete(path);
    if (paths?.size === 0) this.byInode.delete(old.inode);
  }

  /** Paths recorded with this inode. */
  pathsWithInode(inode: string): string[] {
    return [...(this.byInode.get(inode) ?? [])];
  }

  paths(): IterableIterator<string> {
    return this.files.keys();
  }

  entries(): IterableIterator<[string, FileState]> {
    return this.files.entries();
  }

  clone(): FileTable {
    const copy = new FileTable();
    for (const [p, s] of this.files) copy.set(p, s);
    return copy;
  }
}
