// MQTT topic filter syntax (MQTT 3.1.1 §4.7, MQTT 5 §4.7 and §4.8.2 for shared
// subscriptions), checked when the configuration is read so that a bad filter names
// itself instead of surfacing as a refused SUBSCRIBE.

/** Longest topic filter MQTT can carry: a 2-byte length prefix. */
export const MAX_FILTER_BYTES = 65_535;

/** Why `filter` is not a valid topic filter, or undefined when it is. */
export function topicFilterProblem(filter: string): string | undefined {
  if (filter.length === 0) return "must not be empty";
  if (!filter.isWellFormed()) return "is not valid UTF-8";
  if (filter.includes("\u0000")) return "must not contain the NUL character";
  if (Buffer.byteLength(filter, "utf8") > MAX_FILTER_BYTES) return `is longer than ${MAX_FILTER_BYTES} bytes`;
  let rest = filter;
  if (filter.startsWith("$share/")) {
    const parts = filter.split("/");
    const group = parts[1] ?? "";
    if (group === "" || /[+#]/.test(group)) return `"${preview(filter)}": a shared subscription needs a group name without + or #, as in $share/<group>/<filter>`;
    rest = parts.slice(2).join("/");
    if (parts.length < 3 || rest === "") return `"${preview(filter)}": a shared subscription needs a filter after the group, as in $share/<group>/<filter>`;
  }
  const levels = rest.split("/");
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]!;
    if (level.includes("#") && (level !== "#" || i !== levels.length - 1)) {
      return `"${preview(filter)}": # must be a whole level, and the last one (as in "site/#")`;
    }
    if (level.includes("+") && level !== "+") {
      return `"${preview(filter)}": + must be a whole level (as in "site/+/temp")`;
    }
  }
  return undefined;
}

function preview(text: string): string {
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
