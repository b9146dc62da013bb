// What the source remembers across restarts, in one file in ctx.stateDir, replaced
// whole (temp file, fsync, rename, folder fsync) so a crash leaves the old state or the
// new one. It is written only for polls whose events the agent has acknowledged, and
// the ETag / Last-Modified travel with the items they describe: a conditional request
// never skips a response whose changes were not made durable.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { sha256Hex } from "#sha256";
import { replaceFile } from "../../state/replace-file.js";
import { emptyKnownItems, type KnownItems } from "./item-diff.js";

export const STATE_FILE = "generic-polling-state.json";
const DIGEST = /^[0-9a-f]{64}$/;

export interface PollState {
  /** Polls that reported something, so far (see position.ts). */
  generation: number;
  etag?: string;
  lastModified?: string;
  known: KnownItems;
}

/** What the remembered items are about: state from another url or id_field is not reused. */
export interface StateScope {
  url: string;
  idField: string | undefined;
}

export type LoadedState =
  | { found: "none"; state: PollState }
  /** The file was written for another url or id_field: only its generation is kept. */
  | { found: "other_scope"; state: PollState }
  | { found: "same_scope"; state: PollState };

interface StateFileV1 {
  version: 1;
  /** SHA-256 of url and id_field, not the url itself: a query string may hold a token. */
  scope: string;
  generation: number;
  etag?: string;
  last_modified?: string;
  /** [id, digest] pairs. */
  items: [string, string][];
  digests: string[];
}

export function initialState(): PollState {
  return { generation: 0, known: emptyKnownItems() };
}

export async function loadPollState(dir: string, scope: StateScope): Promise<LoadedState> {
  const path = join(dir, STATE_FILE);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { found: "none", state: initialState() };
    throw err;
  }
  const doc = parseStateFile(text);
  if (typeof doc === "string") {
    // The rename makes a torn write impossible, so this is damage or a foreign file.
    throw new Error(`generic_polling state file ${path} is unreadable (${doc}); remove it to start over (every current item is then reported again)`);
  }
  if (doc.scope !== scopeDigest(scope)) return { found: "other_scope", state: { ...initialState(), generation: doc.generation } };
  const state: PollState = {
    generation: doc.generation,
    known: { byId: new Map(doc.items), digests: new Set(doc.digests) },
  };
  if (doc.etag !== undefined) state.etag = doc.etag;
  if (doc.last_modified !== undefined) state.lastModified = doc.last_modified;
  return { found: "same_scope", state };
}

export async function savePollState(dir: string, scope: StateScope, state: PollState): Promise<void> {
  const doc: StateFileV1 = {
    version: 1,
    scope: scopeDigest(scope),
    generation: state.generation,
    items: [...state.known.byId],
    digests: [...state.known.digests],
  };
  if (state.etag !== undefined) doc.etag = state.etag;
  if (state.lastModified !== undefined) doc.last_modified = state.lastModified;
  await replaceFile(dir, STATE_FILE, JSON.stringify(doc) + "\n");
}

function scopeDigest(scope: StateScope): string {
  return sha256Hex(JSON.stringify([scope.url, scope.idField ?? null]));
}

function parseStateFile(text: string): StateFileV1 | string {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    return `not JSON: ${(err as Error).message}`;
  }
  if (doc === null || typeof doc !== "object") return "not an object";
  const d = doc as Record<string, unknown>;
  if (d.version !== 1) return `unknown version ${JSON.stringify(d.version)}`;
  if (typeof d.scope !== "string" || !DIGEST.test(d.scope)) return "bad scope";
  if (typeof d.generation !== "number" || !Number.isSafeInteger(d.generation) || d.generation < 0) return "bad generation";
  if (d.etag !== undefined && typeof d.etag !== "string") return "bad etag";
  if (d.last_modified !== undefined && typeof d.last_modified !== "string") return "bad last_modified";
  const pairOk = (p: unknown) => Array.isArray(p) && p.length === 2 && typeof p[0] === "string" && typeof p[1] === "string" && DIGEST.test(p[1]);
  if (!Array.isArray(d.items) || !d.items.every(pairOk)) return "bad items";
  if (!Array.isArray(d.digests) || !d.digests.every((x) => typeof x === "string" && DIGEST.test(x))) return "bad digests";
  return d as unknown as StateFileV1;
}
