// What the source knows about one file: enough to tell "unchanged" without reading it
// (inode, size, mtime), to recognise it under a new name (inode, size, digest), and to
// give each of its versions a distinct position (ctime too: it cannot be set back).
// Times are integer nanoseconds as decimal strings, inodes decimal strings: exact, and
// stable across a restart, which the positions rely on.

export interface FileState {
  inode: string;
  size: number;
  mtimeNs: string;
  ctimeNs: string;
  /** Hex SHA-256 of the content. */
  sha256: string;
}

/** The same content in the same file (a touch or chmod alone is not a change). */
export function sameContent(a: FileState, b: FileState): boolean {
  return a.inode === b.inode && a.sha256 === b.sha256 && a.size === b.size;
}

/** Metadata unchanged: a scan takes the file as unchanged without reading it. */
export function sameMetadata(a: Pick<FileState, "inode" | "size" | "mtimeNs">, b: Pick<FileState, "inode" | "size" | "mtimeNs">): boolean {
  return a.inode === b.inode && a.size === b.size && a.mtimeNs === b.mtimeNs;
}

/** RFC 3339 UTC with nanoseconds, from integer nanoseconds since the epoch. */
export function nsToRfc3339(ns: string): string {
  const n = BigInt(ns);
  const iso = new Date(Number(n / 1_000_000n)).toISOString();
  if (n < 0n) return iso;
  return `${iso.slice(0, 19)}.${(n % 1_000_000_000n).toString().padStart(9, "0")}Z`;
}

/** RFC 3339 UTC with milliseconds (what the ledger keeps in occurred_at); undefined outside years 0000-9999. */
export function nsToIsoMillis(ns: string): string | undefined {
  const iso = new Date(Number(BigInt(ns) / 1_000_000n)).toISOString();
  return /^\d{4}-/.test(iso) ? iso : undefined;
}
