// What sources need to know about JSON payloads to hand the ledger only what it accepts
// (server/ledger/validate-event.ts): which media types declare JSON, and how deep a
// parsed value nests.

/** True for application/json and any +json type, parameters ignored. */
export function isJsonType(type: string): boolean {
  const base = type.split(";")[0]!.trim().toLowerCase();
  return base === "application/json" || base.endsWith("+json");
}

/** The nesting depth of a parsed JSON value, counting stops once past `limit`. */
export function jsonDepth(value: unknown, limit: number, level = 1): number {
  if (level > limit || value === null || typeof value !== "object") return level;
  let max = level;
  for (const child of Object.values(value as object)) {
    max = Math.max(max, jsonDepth(child, limit, level + 1));
    if (max > limit) break;
  }
  return max;
}
