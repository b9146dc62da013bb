// Where the items are in a parsed response: at items_path when configured; otherwise
// the response itself when it is an array, else its top-level `items`.
import { resolveDotPath, type DotPath } from "./dot-path.js";

const DEFAULT_PATH: DotPath = ["items"];

/** The item array, or a sentence saying why there is none. */
export function findItems(body: unknown, itemsPath: DotPath | undefined): unknown[] | string {
  if (itemsPath === undefined && Array.isArray(body)) return body;
  const path = itemsPath ?? DEFAULT_PATH;
  const found = resolveDotPath(body, path);
  const named = itemsPath === undefined ? 'the response is not an array and its "items"' : `items_path "${path.join(".")}"`;
  if (found === undefined) return `${named} is missing`;
  if (!Array.isArray(found)) return `${named} is ${found === null ? "null" : typeof found}, not an array`;
  return found;
}
