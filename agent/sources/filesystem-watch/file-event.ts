// A FileChange as the SourceEvent the agent records.
// kind: file.created | file.modified | file.deleted | file.renamed
// subject: file://<absolute path> (cut, with a digest of the whole path, past 1024 characters)
// payload (application/json): path, inode (decimal string), size, mtime (RFC 3339, ns),
// sha256 (hex) of the version concerned (for file.deleted the last one reported), plus
// from_path (renamed), previous_sha256 (modified), replaced_sha256 (renamed over a
// watched file), and, with include_content, content + encoding ("utf8" when the bytes
// are valid UTF-8, else "base64") for created/modified files up to max_content_bytes,
// or content_omitted ("too_large", or "payload_too_large" when even base64 would break
// the ledger's payload limit) otherwise.
// occurred_at: the mtime for created/modified (left out if absurd), when it was seen for
// deleted/renamed.
import { createHash } from "node:crypto";
import type { SourceEvent } from "../source.js";
import type { FileChange } from "./file-change.js";
import { nsToIsoMillis, nsToRfc3339 } from "./file-state.js";

export const KIND_OF = {
  created: "file.created",
  modified: "file.modified",
  deleted: "file.deleted",
  renamed: "file.renamed",
} as const;

/** The ledger's subject limit (server/ledger/limits.ts). */
const SUBJECT_MAX = 1024;
/** Under the ledger's default 1 MiB payload limit, with room to spare. */
const PAYLOAD_BUDGET = 1_000_000;

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export function subjectOf(path: string): string {
  const full = `file://${path}`;
  if (full.length <= SUBJECT_MAX) return full;
  const tag = `…#${createHash("sha256").update(path).digest("hex").slice(0, 16)}`;
  let head = full.slice(0, SUBJECT_MAX - tag.length);
  if (/[\uD800-\uDBFF]$/.test(head)) head = head.slice(0, -1); // never split a surrogate pair
  return head + tag;
}

export interface EventOptions {
  includeContent: boolean;
  maxContentBytes: number;
  now: Date;
}

function decodeUtf8(bytes: Buffer): string | undefined {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return undefined;
  }
}

export function toSourceEvent(change: FileChange, position: string, o: EventOptions): SourceEvent {
  const state = change.kind === "deleted" ? change.previous : change.state;
  const base: Record<string, unknown> = { path: change.path };
  if (change.kind === "renamed") base.from_path = change.fromPath;
  Object.assign(base, { inode: state.inode, size: state.size, mtime: nsToRfc3339(state.mtimeNs), sha256: state.sha256 });
  if (change.kind === "modified") base.previous_sha256 = change.previous.sha256;
  if (change.kind === "renamed" && change.replaced) base.replaced_sha256 = change.replaced.sha256;

  let payload = utf8.encode(JSON.stringify(base));
  if (o.includeContent && (change.kind === "created" || change.kind === "modified")) {
    const attempt = (extra: Record<string, unknown>) => utf8.encode(JSON.stringify({ ...base, ...extra }));
    const content = change.content;
    if (content === undefined) {
      payload = attempt({ content_omitted: state.size > o.maxContentBytes ? "too_large" : "unavailable" });
    } else {
      const text = decodeUtf8(content);
      payload = text === undefined ? new Uint8Array(0) : attempt({ content: text, encoding: "utf8" });
      // JSON escapes can make text far larger than its bytes; base64 is bounded.
      if (text === undefined || payload.length > PAYLOAD_BUDGET) payload = attempt({ content: content.toString("base64"), encoding: "base64" });
      if (payload.length > PAYLOAD_BUDGET) payload = attempt({ content_omitted: "payload_too_large" });
    }
  }
  const event: SourceEvent = { kind: KIND_OF[change.kind], subject: subjectOf(change.path), position, payloadType: "application/json", payload };
  const occurredAt = change.kind === "created" || change.kind === "modified" ? nsToIsoMillis(state.mtimeNs) : o.now.toISOString();
  if (occurredAt !== undefined) event.occurredAt = occurredAt;
  return event;
}
