// Positions: `fsw1:<tag>:<32 hex>`, the tag `put` (created or modified), `del` or `mv`,
// the hex the first 128 bits of SHA-256 over the JSON array
//   put: ["put", path, inode, size, mtimeNs, ctimeNs, sha256]        (the new version)
//   del: ["del", path, inode, size, mtimeNs, ctimeNs, sha256]        (the version deleted)
//   mv:  ["mv", fromPath, path, inode, size, mtimeNs, ctimeNs, sha256] (the version renamed)
// They depend only on the file version, never on when or how it was seen, so the same
// change found again after a crash (live, or by the restart scan) gets the same position
// and the ledger's idempotency key drops the replay. Created and modified share `put`:
// a version re-reported as created (say after a lost snapshot) dedups too. A version is
// unique over time (ctime cannot be set back), so two real changes never share one.
// Hashed because paths can be 4 KiB long and the idempotency key holds 256 characters.
import { createHash } from "node:crypto";
import type { FileChange } from "./file-change.js";
import type { FileState } from "./file-state.js";

export const POSITION_PREFIX = "fsw1:";

const versionOf = (s: FileState) => [s.inode, s.size, s.mtimeNs, s.ctimeNs, s.sha256];

export function positionOf(change: FileChange): string {
  let tag: string;
  let tuple: unknown[];
  switch (change.kind) {
    case "created":
    case "modified":
      tag = "put";
      tuple = [tag, change.path, ...versionOf(change.state)];
      break;
    case "deleted":
      tag = "del";
      tuple = [tag, change.path, ...versionOf(change.previous)];
      break;
    case "renamed":
      tag = "mv";
      tuple = [tag, change.fromPath, change.path, ...versionOf(change.state)];
      break;
  }
  const digest = createHash("sha256").update(JSON.stringify(tuple)).digest("hex").slice(0, 32);
  return `${POSITION_PREFIX}${tag}:${digest}`;
}
