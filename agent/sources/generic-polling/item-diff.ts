// Compares one response's items with what the source remembers and says which are new
// or changed, in response order. An item's version is the SHA-256 of its RFC 8785
// canonical JSON, so key order and number spelling in the response do not matter.
//
// Memory is the latest response only: ids (or digests) absent from it are forgotten,
// so the state is as large as one response (bounded by max_response_bytes), and an item
// that leaves and comes back is reported again as created (or seen).
import { sha256Hex } from "#sha256";
import { canonicalJson } from "../../../chain/canonical-json.js";
import { resolveDotPath, type DotPath } from "./dot-path.js";

export interface KnownItems {
  /** id → digest of its last reported version (with id_field). */
  byId: Map<string, string>;
  /** Digests of items told apart by content alone (no id_field, or an item without a usable id). */
  digests: Set<string>;
}

export interface ItemChange {
  /** created: new id; changed: known id, new content; seen: new content without an id. */
  change: "created" | "changed" | "seen";
  id?: string;
  /** Lowercase hex SHA-256 of `canonical`. */
  digest: string;
  /** The item's RFC 8785 canonical JSON: the event payload. */
  canonical: string;
}

export interface ItemDiff {
  changes: ItemChange[];
  /** What to remember once these changes are durable. */
  next: KnownItems;
  /** Items that repeat an id already met earlier in the same response (the first one counts). */
  duplicateIds: number;
  /** Items (with id_field) whose id is missing, empty, or not a string or number. */
  withoutId: number;
}

export function emptyKnownItems(): KnownItems {
  return { byId: new Map(), digests: new Set() };
}

export function diffItems(items: readonly unknown[], known: KnownItems, idPath: DotPath | undefined): ItemDiff {
  const next = emptyKnownItems();
  const changes: ItemChange[] = [];
  let duplicateIds = 0;
  let withoutId = 0;
  for (const item of items) {
    const canonical = canonicalJson(item);
    const digest = sha256Hex(canonical);
    const id = idPath === undefined ? undefined : idOf(resolveDotPath(item, idPath));
    if (idPath !== undefined && id === undefined) withoutId++;
    if (id === undefined) {
      if (next.digests.has(digest)) continue;
      next.digests.add(digest);
      if (!known.digests.has(digest)) changes.push({ change: "seen", digest, canonical });
      continue;
    }
    if (next.byId.has(id)) {
      duplicateIds++;
      continue;
    }
    next.byId.set(id, digest);
    const before = known.byId.get(id);
    if (before === undefined) changes.push({ change: "created", id, digest, canonical });
    else if (before !== digest) changes.push({ change: "changed", id, digest, canonical });
  }
  return { changes, next, duplicateIds, withoutId };
}

/** An id is a non-empty string or a finite number (as its JSON text); anything else is none. */
function idOf(value: unknown): string | undefined {
  if (typeof value === "string") return value === "" ? undefined : value;
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  return undefined;
}
