// The server's `notify-keyspace-events` setting: which flags it holds, whether it lets
// the configured channel through, and what to add to it when the source is configured
// to enable notifications (it only ever adds flags: other programs may rely on the rest).

/** Every flag Redis knows (7.x): K keyspace, E keyevent, then event classes; A = g$lshzxetd. */
export const NOTIFY_FLAG_CHARS = "KEg$lshzxetmdnA";
/** What `A` stands for. */
const ALL_CLASSES = "g$lshzxetd";

export type NotifyChannel = "keyspace" | "keyevent";

/** The flags as a set, `A` expanded. */
export function flagSet(value: string): Set<string> {
  const set = new Set<string>();
  for (const c of value) {
    if (c === "A") for (const a of ALL_CLASSES) set.add(a);
    else set.add(c);
  }
  return set;
}

/** Why `value` lets no notification of `channel` through, or undefined when it does. */
export function notificationsProblem(value: string, channel: NotifyChannel): string | undefined {
  const set = flagSet(value);
  const channelFlag = channel === "keyspace" ? "K" : "E";
  const hasClass = [...set].some((c) => c !== "K" && c !== "E");
  if (set.has(channelFlag) && hasClass) return undefined;
  const missing = [set.has(channelFlag) ? undefined : `"${channelFlag}" (${channel} channel)`, hasClass ? undefined : 'an event class (e.g. "A")']
    .filter((m) => m !== undefined)
    .join(" and ");
  return `notify-keyspace-events is "${value}" on the server: it lacks ${missing}`;
}

/** `current` with the flags of `wanted` added, or undefined when it already holds them all. */
export function withFlags(current: string, wanted: string): string | undefined {
  const have = flagSet(current);
  const add = [...flagSet(wanted)].filter((c) => !have.has(c));
  if (add.length === 0) return undefined;
  // `A` stays `A`: what it stands for varies with the server version (older ones lack t, d).
  const viaA = wanted.includes("A") ? add.filter((c) => ALL_CLASSES.includes(c)) : [];
  const single = add.filter((c) => !viaA.includes(c));
  return current + (viaA.length > 0 ? "A" : "") + single.join("");
}
