// Redis glob patterns (as in KEYS, PSUBSCRIBE): `*` any run of bytes, `?` one byte,
// `[abc]` `[a-z]` `[^a]` a set, `\x` the byte x. Matched on bytes: patterns and names
// are taken as latin1 strings (one character per byte), so binary keys match as Redis
// matches them.

export type ByteMatcher = (name: Buffer) => boolean;

const SPECIAL = /[\\^$.*+?()[\]{}|/-]/g;
const escapeChar = (c: string) => c.replace(SPECIAL, "\\$&");

/** Compiles a Redis glob pattern (UTF-8 text) to a matcher over byte strings. */
export function redisGlob(pattern: string): ByteMatcher {
  const p = Buffer.from(pattern, "utf8").toString("latin1");
  let re = "^";
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!;
    if (c === "*") re += "[\\s\\S]*";
    else if (c === "?") re += "[\\s\\S]";
    else if (c === "\\" && i + 1 < p.length) re += escapeChar(p[++i]!);
    else if (c === "[") {
      let j = i + 1;
      let negate = false;
      if (p[j] === "^") {
        negate = true;
        j++;
      }
      let set = "";
      // As Redis: the set runs to the next unescaped `]` (or the end of the pattern).
      while (j < p.length && p[j] !== "]") {
        if (p[j] === "\\" && j + 1 < p.length) {
          set += escapeChar(p[j + 1]!);
          j += 2;
        } else if (j + 2 < p.length && p[j + 1] === "-" && p[j + 2] !== "]") {
          const [a, b] = [p[j]!, p[j + 2]!].sort();
          set += `${escapeChar(a!)}-${escapeChar(b!)}`;
          j += 3;
        } else {
          set += escapeChar(p[j]!);
          j++;
        }
      }
      re += set === "" ? (negate ? "[\\s\\S]" : "(?!)") : `[${negate ? "^" : ""}${set}]`;
      i = j;
    } else re += escapeChar(c);
  }
  const regex = new RegExp(re + "$");
  return (name) => regex.test(name.toString("latin1"));
}
