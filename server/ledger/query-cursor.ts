// Opaque pagination cursors: base64url JSON naming the last seq returned and a
// fingerprint of the query, so a cursor cannot be replayed against another query.
import { Code, ConnectError } from "@connectrpc/connect";
import { canonicalJson, toHex } from "../../chain/index.js";
import { sha256 } from "#sha256";
import type { EntryFilter } from "./ledger-reader.js";

interface CursorBody {
  v: 1;
  /** Last seq returned. */
  s: number;
  /** Fingerprint of chain, filter and order. */
  q: string;
}

export function queryFingerprint(chain: string, filter: EntryFilter, descending: boolean): string {
  return toHex(sha256(canonicalJson({ chain, filter, descending }))).slice(0, 16);
}

export function encodeCursor(lastSeq: number, fingerprint: string): string {
  const body: CursorBody = { v: 1, s: lastSeq, q: fingerprint };
  return Buffer.from(JSON.stringify(body)).toString("base64url");
}

/** The last seq a cursor names; InvalidArgument when it is malformed or for another query. */
export function decodeCursor(cursor: string, fingerprint: string): number {
  let body: Partial<CursorBody>;
  try {
    if (!/^[A-Za-z0-9_-]{1,200}$/.test(cursor)) throw new Error("bad characters");
    body = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as Partial<CursorBody>;
  } catch {
    throw new ConnectError("cursor: malformed (pass back the next_cursor of a previous response unchanged)", Code.InvalidArgument);
  }
  if (body === null || typeof body !== "object" || body.v !== 1 || !Number.isSafeInteger(body.s) || (body.s as number) < 0 || typeof body.q !== "string") {
    throw new ConnectError("cursor: malformed (pass back the next_cursor of a previous response unchanged)", Code.InvalidArgument);
  }
  if (body.q !== fingerprint) {
    throw new ConnectError("cursor: belongs to a different query (chain, filter and order must stay the same)", Code.InvalidArgument);
  }
  return body.s as number;
}
