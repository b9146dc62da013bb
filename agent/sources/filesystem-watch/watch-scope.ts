// Which paths this source reports: the configured files, and the regular files under the
// configured folders (directly, or at any depth when recursive) that no ignore pattern
// matches, minus the source's own state folder. Also what chokidar is told to watch: the
// parent folder of each configured path when it can be listed, so a file or folder that
// is deleted and created again is still seen (else the path itself).
import { dirname, sep } from "node:path";
import type { Stats } from "node:fs";
import type { IgnoreRules } from "./ignore-rules.js";

export interface WatchRoot {
  /** Absolute real path. */
  path: string;
  isDir: boolean;
  /** Watch it through its parent folder (which can be listed). */
  viaParent: boolean;
}

const toPosix = sep === "/" ? (p: string) => p : (p: string) => p.split(sep).join("/");

/** `p` relative to `root` with `/` separators, "" for the root itself, undefined when outside it. */
function relativeInside(root: string, p: string): string | undefined {
  if (p === root) return "";
  const prefix = root.endsWith(sep) ? root : root + sep;
  return p.startsWith(prefix) ? toPosix(p.slice(prefix.length)) : undefined;
}

export class WatchScope {
  private readonly dirRoots: string[];
  private readonly fileRoots: Set<string>;
  private readonly watchedParents: Set<string>;

  constructor(
    readonly roots: readonly WatchRoot[],
    private readonly rules: IgnoreRules,
    private readonly options: { recursive: boolean; excluded: readonly string[] },
  ) {
    this.dirRoots = roots.filter((r) => r.isDir).map((r) => r.path);
    this.fileRoots = new Set(roots.filter((r) => !r.isDir).map((r) => r.path));
    this.watchedParents = new Set(roots.filter((r) => r.viaParent && dirname(r.path) !== r.path).map((r) => dirname(r.path)));
  }

  /** What chokidar watches. */
  watchPaths(): string[] {
    return [...new Set(this.roots.map((r) => (r.viaParent && dirname(r.path) !== r.path ? dirname(r.path) : r.path)))];
  }

  private excluded(p: string): boolean {
    return this.options.excluded.some((x) => relativeInside(x, p) !== undefined);
  }

  /** Whether `p`, strictly below some watched folder, is in scope there (file or folder alike). */
  private underDirRoot(p: string, isDir: boolean | undefined): boolean {
    if (this.excluded(p)) return false;
    for (const root of this.dirRoots) {
      const rel = relativeInside(root, p);
      if (rel === undefined || rel === "") continue;
      if (!this.options.recursive && (rel.includes("/") || isDir === true)) continue;
      if (this.rules.ignores(toPosix(p), rel)) continue;
      return true;
    }
    return false;
  }

  /** Whether a regular file at absolute path `file` is reported. */
  isTracked(file: string): boolean {
    return this.fileRoots.has(file) || this.underDirRoot(file, false);
  }

  /** Whether a scan enters the folder `dir`, found below a watched folder. */
  shouldDescend(dir: string): boolean {
    return this.underDirRoot(dir, true);
  }

  /** chokidar's `ignored`: true for everything out of scope, so it is not even watched. */
  readonly ignoredByWatcher = (p: string, stats?: Stats): boolean => {
    if (this.fileRoots.has(p) || this.watchedParents.has(p) || this.dirRoots.includes(p)) return false;
    return !this.underDirRoot(p, stats ? stats.isDirectory() : undefined);
  };
}
