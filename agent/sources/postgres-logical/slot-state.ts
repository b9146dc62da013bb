// What the source remembers in its state folder about the slot it reads (slot.json,
// replaced atomically): which cluster, database and slot it belongs to, the position
// epoch its events carry, and the highest LSN it ever reported to the slot as flushed.
//
// It also keeps the publication the positions were numbered for: a position's index
// counts the published changes of its transaction, so another publication numbers the
// same transaction differently, and needs another epoch.
//
// The LSN is written BEFORE the server hears it, so the slot's confirmed position
// can never be ahead of it unless something else moved the slot (another consumer, a
// pg_replication_slot_advance, a dropped and recreated slot): that is history the
// source never saw, recorded as a gap. The epoch changes whenever the slot's history
// starts over, so positions of a new slot never repeat those of an old one (a restored
// cluster reuses LSNs).
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { replaceFile } from "../../state/replace-file.js";
import { formatLsn, parseLsn } from "./lsn.js";

export const SLOT_STATE_FILE = "slot.json";

/** The slot a state belongs to. */
export interface SlotIdentity {
  /** IDENTIFY_SYSTEM's systemid: which cluster. */
  system_identifier: string;
  database: string;
  slot: string;
}

interface SlotStateRecord extends SlotIdentity {
  v: 1;
  epoch: string;
  flushed_lsn: string;
  /** The slot was found lost or invalidated and that gap is recorded: not to be recorded again. */
  lost_recorded?: boolean;
  /** The publication the epoch's positions count changes of (absent in files of earlier versions). */
  publication?: string;
}

/** What a slot.json of another slot, database or cluster says: history this source can no longer read. */
export interface ForeignSlotState {
  identity: SlotIdentity;
  flushed: bigint;
  lostRecorded: boolean;
}

/** slot.json as found: this slot's state, another slot's (foreign), or neither (no file). */
export interface LoadedSlotState {
  state?: SlotState;
  foreign?: ForeignSlotState;
}

export function newEpoch(): string {
  return randomBytes(8).toString("hex");
}

export class SlotState {
  private writes: Promise<void> = Promise.resolve();

  private constructor(
    private readonly dir: string,
    public identity: SlotIdentity,
    public epoch: string,
    /** The highest LSN written here as flushed (and so allowed to be reported). */
    public flushed: bigint,
    public lostRecorded = false,
    /** Undefined only for a state read from a file of an earlier version (it takes the configured one). */
    public publication: string | undefined = undefined,
  ) {}

  /** The state saved for `identity`; or, when slot.json belongs to another slot, what it says. */
  static async load(dir: string, identity: SlotIdentity): Promise<LoadedSlotState> {
    let text: string;
    try {
      text = await readFile(join(dir, SLOT_STATE_FILE), "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return {};
      throw new Error(`cannot read ${join(dir, SLOT_STATE_FILE)}: ${(err as Error).message}`);
    }
    let record: SlotStateRecord;
    try {
      record = JSON.parse(text) as SlotStateRecord;
      if (record.v !== 1 || !/^[0-9a-f]{16}$/.test(record.epoch)) throw new Error("unknown layout");
      parseLsn(record.flushed_lsn);
    } catch (err) {
      throw new Error(`${join(dir, SLOT_STATE_FILE)} is damaged (${(err as Error).message}); remove it to start a new position epoch`);
    }
    const same = record.system_identifier === identity.system_identifier && record.database === identity.database && record.slot === identity.slot;
    const flushed = parseLsn(record.flushed_lsn);
    const lost = record.lost_recorded === true;
    if (same) return { state: new SlotState(dir, identity, record.epoch, flushed, lost, record.publication) };
    return { foreign: { identity: { system_identifier: record.system_identifier, database: record.database, slot: record.slot }, flushed, lostRecorded: lost } };
  }

  /** Starts a new epoch for `identity` at `flushed`, durably, before any event carries it. */
  static async create(dir: string, identity: SlotIdentity, flushed: bigint, publication: string): Promise<SlotState> {
    const state = new SlotState(dir, identity, newEpoch(), flushed, false, publication);
    await state.save(flushed);
    return state;
  }

  /** Durably records `flushed` as reportable. */
  save(flushed: bigint): Promise<void> {
    const run = this.writes.then(async () => {
      const record: SlotStateRecord = {
        v: 1,
        ...this.identity,
        epoch: this.epoch,
        flushed_lsn: formatLsn(flushed),
        ...(this.lostRecorded ? { lost_recorded: true } : {}),
        ...(this.publication !== undefined ? { publication: this.publication } : {}),
      };
      await replaceFile(this.dir, SLOT_STATE_FILE, `${JSON.stringify(record, null, 2)}\n`);
      if (flushed > this.flushed) this.flushed = flushed;
    });
    this.writes = run.catch(() => undefined);
    return run;
  }

  /** Remembers that the slot's loss is recorded as a gap. */
  async markLost(): Promise<void> {
    this.lostRecorded = true;
    await this.save(this.flushed);
  }

  /** Waits for writes under way. */
  async settle(): Promise<void> {
    await this.writes;
  }
}
