// What the mqtt source keeps in its state folder, so that positions stay the same for
// a message the broker redelivers after a crash, and never repeat for a new one:
//
// - `session.json` (rewritten atomically, rarely): the position epoch, which broker
//   session it belongs to (URL, client id, protocol), the subscriptions that session is
//   known to hold, and a session loss still to be recorded as a `gap` entry;
// - `acked.slots` (two 4 KiB slots, written alternately, fdatasync'ed): the last message
//   acknowledged — its sequence number, packet id and fingerprint. A torn write spoils
//   one slot only; the other holds the one before, which is what the broker has then.
import { createHash, randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { open, readFile, rename, type FileHandle } from "node:fs/promises";
import { join } from "node:path";

export const SESSION_FILE = "session.json";
export const ACK_FILE = "acked.slots";
const SLOT_BYTES = 4096;

/** The broker session a state folder belongs to; another one starts a new epoch. */
export interface SessionIdentity {
  url: string;
  client_id: string;
  protocol_version: number;
}

export interface SessionRecord {
  v: 1;
  /** 16 hex characters, drawn when the state is created for this identity. */
  epoch: string;
  identity: SessionIdentity;
  /**
   * Filters the broker session holds, as last confirmed by SUBACKs; null: none known
   * (new state, or the session was lost). Non-null means the source had a session, so
   * a CONNACK without one is a loss to record.
   */
  subscribed: string[] | null;
  /** A session loss seen but not yet recorded durably as a gap entry. */
  pending_gap: string | null;
}

/** The last message acknowledged (PUBACK sent, or about to be). */
export interface AckedMessage {
  seq: number;
  /** 0 for QoS 0. */
  packetId: number;
  fingerprint: string;
}

interface Slot extends AckedMessage {
  gen: number;
  epoch: string;
}

function sameIdentity(a: SessionIdentity, b: SessionIdentity): boolean {
  return a.url === b.url && a.client_id === b.client_id && a.protocol_version === b.protocol_version;
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function parseSlot(bytes: Buffer): Slot | undefined {
  const end = bytes.indexOf(0x0a);
  if (end < 0) return undefined;
  const line = bytes.subarray(0, end).toString("utf8");
  const tab = line.lastIndexOf("\t");
  if (tab < 0) return undefined;
  const body = line.slice(0, tab);
  if (createHash("sha256").update(body).digest("hex") !== line.slice(tab + 1)) return undefined;
  try {
    const s = JSON.parse(body) as Slot;
    if (!Number.isSafeInteger(s.gen) || !Number.isSafeInteger(s.seq) || typeof s.epoch !== "string" || typeof s.fingerprint !== "string") return undefined;
    return s;
  } catch {
    return undefined;
  }
}

export class SessionState {
  private gen = 0;
  private ackFile: FileHandle | undefined;
  private writes: Promise<void> = Promise.resolve();

  private constructor(
    private readonly dir: string,
    public session: SessionRecord,
    public acked: AckedMessage,
    /** True when this start began a new epoch (no state, or another broker session). */
    public readonly fresh: boolean,
  ) {}

  /**
   * Loads the state for `identity`, or starts a new epoch (written before it returns, so
   * no event carries an epoch a restart could forget).
   */
  static async load(dir: string, identity: SessionIdentity): Promise<SessionState> {
    let session: SessionRecord | undefined;
    try {
      const parsed = JSON.parse(await readFile(join(dir, SESSION_FILE), "utf8")) as SessionRecord;
      if (parsed.v === 1 && /^[0-9a-f]{16}$/.test(parsed.epoch) && sameIdentity(parsed.identity, identity)) session = parsed;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
        throw new Error(`cannot read ${join(dir, SESSION_FILE)}: ${(err as Error).message}`);
      }
    }
    const fresh = session === undefined;
    session ??= { v: 1, epoch: randomBytes(8).toString("hex"), identity, subscribed: null, pending_gap: null };
    const state = new SessionState(dir, session, { seq: 0, packetId: 0, fingerprint: "" }, fresh);
    if (fresh) {
      await state.saveSession({});
    } else {
      await state.loadAcked();
    }
    return state;
  }

  private async loadAcked(): Promise<void> {
    let bytes: Buffer;
    try {
      bytes = await readFile(join(this.dir, ACK_FILE));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      throw new Error(`cannot read ${join(this.dir, ACK_FILE)}: ${(err as Error).message}`);
    }
    let best: Slot | undefined;
    for (const offset of [0, SLOT_BYTES]) {
      const slot = offset < bytes.length ? parseSlot(bytes.subarray(offset, offset + SLOT_BYTES)) : undefined;
      if (slot && slot.epoch === this.session.epoch && (!best || slot.gen > best.gen)) best = slot;
    }
    if (best) {
      this.gen = best.gen;
      this.acked = { seq: best.seq, packetId: best.packetId, fingerprint: best.fingerprint };
    }
  }

  /** Rewrites session.json with `changes` (tmp file, fsync, rename, fsync the folder). */
  saveSession(changes: Partial<Omit<SessionRecord, "v" | "epoch" | "identity">>): Promise<void> {
    return this.serial(async () => {
      const next = { ...this.session, ...changes };
      const path = join(this.dir, SESSION_FILE);
      const tmp = `${path}.tmp`;
      const fh = await open(tmp, "w", 0o600);
      try {
        await fh.writeFile(`${JSON.stringify(next, null, 2)}\n`);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, path);
      await fsyncDir(this.dir);
      this.session = next;
    });
  }

  /** Records `acked` durably; resolves once it is on disk. */
  saveAcked(acked: AckedMessage): Promise<void> {
    return this.serial(async () => {
      if (!this.ackFile) {
        this.ackFile = await open(join(this.dir, ACK_FILE), constants.O_RDWR | constants.O_CREAT, 0o600);
        await fsyncDir(this.dir);
      }
      const gen = this.gen + 1;
      const body = JSON.stringify({ gen, epoch: this.session.epoch, ...acked } satisfies Slot);
      const line = Buffer.from(`${body}\t${createHash("sha256").update(body).digest("hex")}\n`, "utf8");
      if (line.length > SLOT_BYTES) throw new Error("acknowledgement record too large"); // cannot happen: fixed fields
      await this.ackFile.write(line, 0, line.length, (gen % 2) * SLOT_BYTES);
      await this.ackFile.datasync();
      this.gen = gen;
      this.acked = acked;
    });
  }

  /** Waits for pending writes, then releases the file. */
  async close(): Promise<void> {
    await this.writes;
    await this.ackFile?.close().catch(() => undefined);
    this.ackFile = undefined;
  }

  private serial(task: () => Promise<void>): Promise<void> {
    const run = this.writes.then(task);
    this.writes = run.catch(() => undefined);
    return run;
  }
}
