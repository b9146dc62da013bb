// The acked position on disk: the `ack` file, replaced whole (write `ack.tmp`, fsync,
// rename over `ack`, fsync the folder) so a crash leaves either the old position or the
// new one, never a mix. A leftover `ack.tmp` is a write that never happened.
import { readFile, unlink } from "node:fs/promises";
import { join } from "node:path";
import { OutboxCorruptError } from "./errors.js";
import { decodeAckCheckpoint, encodeAckCheckpoint } from "./record-format.js";
import { replaceFile, tempNameOf } from "../state/replace-file.js";

export const ACK_FILE = "ack";
export const ACK_TEMP_FILE = tempNameOf(ACK_FILE);

/** The first unacked seq stored in `dir`, or undefined when no checkpoint was ever written. */
export async function readAckCheckpoint(dir: string): Promise<number | undefined> {
  const path = join(dir, ACK_FILE);
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  const decoded = decodeAckCheckpoint(bytes);
  // The rename makes a half-written checkpoint impossible, so an unreadable one is damage.
  if (typeof decoded === "string") throw new OutboxCorruptError(path, 0, decoded);
  return decoded;
}

/** Durably records `firstUnacked`; with `durable` false, skips the fsyncs (fsync policy none). */
export async function writeAckCheckpoint(dir: string, firstUnacked: number, durable: boolean): Promise<void> {
  await replaceFile(dir, ACK_FILE, encodeAckCheckpoint(firstUnacked), { mode: 0o644, durable });
}

/** Removes a temp checkpoint a crash left behind; returns whether there was one. */
export async function removeStaleAckTemp(dir: string): Promise<boolean> {
  try {
    await unlink(join(dir, ACK_TEMP_FILE));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}
