// The `ignore` option: glob patterns (`*`, `?`, `**`) for paths under a watched folder.
// - no `/` in the pattern: matched against each name along the path ("*.tmp", ".git");
// - starting with `/`: matched against the absolute path ("/srv/app/cache");
// - otherwise: matched against the path relative to the watched folder ("build/**").
// A pattern that matches a folder also leaves out everything beneath it. `*` and `?`
// never cross a `/` (a leading dot is matched like any other character); `**` does.
// Paths are compared with `/` separators on every platform.

/** The regular expression of one glob pattern, anchored at both ends. */
export function globToRegExp(glob: string): RegExp {
  let re = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === "*" && glob[i + 1] === "*") {
      const startsSegment = i === 0 || glob[i - 1] === "/";
      if (startsSegment && glob[i + 2] === "/") {
        re += "(?:.*/)?"; // "**/" is zero or more folders
        i += 2;
      } else {
        re += ".*";
        i += 1;
      }
    } else if (c === "*") {
      re += "[^/]*";
    } else if (c === "?") {
      re += "[^/]";
    } else {
      re += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
    }
  }
  return new RegExp(`^${re}$`);
}

export class IgnoreRules {
  private readonly names: RegExp[] = [];
  private readonly absolute: RegExp[] = [];
  private readonly relative: RegExp[] = [];

  constructor(patterns: readonly string[]) {
    for (const raw of patterns) {
      let p = raw.replace(/\\/g, "/");
      if (p.length > 1) p = p.replace(/\/+$/, "");
      if (p.startsWith("/")) this.absolute.push(globToRegExp(p));
      else if (p.startsWith("./")) this.relative.push(globToRegExp(p.slice(2)));
      else if (p.includes("/")) this.relative.push(globToRegExp(p));
      else this.names.push(globToRegExp(p));
    }
  }

  get empty(): boolean {
    return this.names.length + this.absolute.length + this.relative.length === 0;
  }

  /**
   * Whether a path under a watched folder is left out. `absolute` is its absolute path,
   * `relative` the part below the watched folder, both with `/` separators.
   */
  ignores(absolute: string, relative: string): boolean {
    if (relative === "" || this.empty) return false;
    const segments = relative.split("/");
    if (this.names.length > 0 && segments.some((s) => this.names.some((re) => re.test(s)))) return true;
    const base = absolute.slice(0, absolute.length - relative.length);
    let prefix = "";
    for (const s of segments) {
      prefix = prefix === "" ? s : `${prefix}/${s}`;
      if (this.relative.some((re) => re.test(prefix))) return true;
      if (this.absolute.some((re) => re.test(base + prefix))) return true;
    }
    return false;
  }
}
