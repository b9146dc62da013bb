// One change to one watched file, as the source decided it, and what it does to the
// table of known files once emitted (or, for the snapshot, once acknowledged).
import type { FileState } from "./file-state.js";
import type { FileTable } from "./file-table.js";

export type FileChange =
  | { kind: "created"; path: string; state: FileState; content?: Buffer }
  | { kind: "modified"; path: string; state: FileState; previous: FileState; content?: Buffer }
  /** `previous`: the last state the source reported for the path. */
  | { kind: "deleted"; path: string; previous: FileState }
  /** `replaced`: what `path` held before, when the file was renamed over a watched one. */
  | { kind: "renamed"; path: string; fromPath: string; state: FileState; previous: FileState; replaced?: FileState };

/** The effect of a change on a FileTable, without the content (kept until acknowledged). */
export type TableUpdate =
  | { op: "set"; path: string; state: FileState }
  | { op: "delete"; path: string }
  | { op: "move"; from: string; path: string; state: FileState };

export function tableUpdateOf(change: FileChange): TableUpdate {
  switch (change.kind) {
    case "created":
    case "modified":
      return { op: "set", path: change.path, state: change.state };
    case "deleted":
      return { op: "delete", path: change.path };
    case "renamed":
      return { op: "move", from: change.fromPath, path: change.path, state: change.state };
  }
}

export function applyUpdate(table: FileTable, u: TableUpdate): void {
  if (u.op === "delete") {
    table.delete(u.path);
    return;
  }
  if (u.op === "move") table.delete(u.from);
  table.set(u.path, u.state);
}
