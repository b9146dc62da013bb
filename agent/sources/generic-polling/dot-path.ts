// Dot paths into parsed JSON ("data.items", "meta.id", "rows.0.key"): how the config
// names the item array in a response and the id inside an item. Keys holding a dot
// cannot be named; a numeric segment also indexes arrays.

export type DotPath = readonly string[];

/** The segments of `text`, or undefined when it is not a dot path (empty, or an empty segment). */
export function parseDotPath(text: string): DotPath | undefined {
  if (text === "") return undefined;
  const segments = text.split(".");
  return segments.every((s) => s !== "") ? segments : undefined;
}

/** The value at `path` in `value`, or undefined when any step is missing. Own keys only. */
export function resolveDotPath(value: unknown, path: DotPath): unknown {
  let current = value;
  for (const segment of path) {
    if (Array.isArray(current)) {
      if (!/^(0|[1-9][0-9]*)$/.test(segment)) return undefined;
      current = current[Number(segment)];
    } else if (current !== null && typeof current === "object") {
      if (!Object.hasOwn(current, segment)) return undefined;
      current = (current as Record<string, unknown>)[segment];
    } else {
      return undefined;
    }
  }
  return current;
}
