// What the source keeps in its state folder: `resume-token.json`, replaced durably
// (agent/state/replace-file.ts) so a crash leaves the old version or the new one. It
// holds where the change stream resumes: the token of the last acknowledged event, the
// server's post-batch token while idle, or, on a server that gives no token, the time
// of the first start. Writes are coalesced: while one is on its way, later requests
// wait and only the newest is written next.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { BSON, type Document } from "mongodb";
import { replaceFile } from "../../state/replace-file.js";

export const RESUME_FILE = "resume-token.json";

/** A cluster time ({t: seconds, i: increment}) as JSON. */
export interface OperationTime {
  t: number;
  i: number;
}

export interface ResumeRecord {
  v: 1;
  /** What is watched ("db.coll", "db", "the deployment"); a state for another scope is refused. */
  scope: string;
  /** The resume token (canonical Extended JSON) to start after; null: none yet. */
  token: string | null;
  /** Used when there is no token: resume at this cluster time (servers that give no post-batch token). */
  start_at_operation_time: OperationTime | null;
  /** Position of the last acknowledged event (the `from` of a gap entry); null: none yet. */
  position: string | null;
  /**
   * A history loss already recorded as a gap entry, and the source has not moved on
   * since (no event acknowledged, no new starting point): a restart does not record it
   * again (unless the agent crashed between the gap entry and this write), and with
   * on_history_lost "fail" it refuses to start.
   */
  history_lost: { reason: string } | null;
  /**
   * An event after the resume point that the server can never return as configured
   * (over 16 MB with its images, a required image gone), already recorded as a gap
   * entry: a restart that hits it again does not record it again. Absent in files
   * written before this field existed (same as null).
   */
  unreadable_event?: { reason: string } | null;
}

interface Waiter {
  generation: number;
  resolve(): void;
  reject(err: Error): void;
}

export function tokenToJson(token: Document): string {
  return BSON.EJSON.stringify(token, { relaxed: false });
}

export function tokenFromJson(text: string): Document {
  return BSON.EJSON.parse(text, { relaxed: false }) as Document;
}

export class ResumeState {
  private requested = 0;
  private written = 0;
  private wanted: ResumeRecord;
  private waiters: Waiter[] = [];
  private writing: Promise<void> | undefined;

  private constructor(
    private readonly dir: string,
    /** The record as last written (or loaded). */
    public record: ResumeRecord,
  ) {
    this.wanted = record;
  }

  /** Loads the state for `scope`; fails naming the file when it is unreadable or for another scope. */
  static async load(dir: string, scope: string): Promise<ResumeState> {
    const path = join(dir, RESUME_FILE);
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw new Error(`cannot read ${path}: ${(err as Error).message}`);
      const empty: ResumeRecord = { v: 1, scope, token: null, start_at_operation_time: null, position: null, history_lost: null, unreadable_event: null };
      return new ResumeState(dir, empty);
    }
    let record: ResumeRecord;
    try {
      record = JSON.parse(text) as ResumeRecord;
      if (record.v !== 1 || typeof record.scope !== "string") throw new Error("not a version 1 resume record");
      if (record.token !== null) tokenFromJson(record.token);
    } catch (err) {
      throw new Error(`${path} is damaged (${(err as Error).message}); remove it to start from the current point (events since the last acknowledged one would be missed)`);
    }
    if (record.scope !== scope) {
      throw new Error(
        `${path} is the resume point of a change stream on ${record.scope}, but the source now watches ${scope}; ` +
          "give the source a new name (a new state folder) to watch something else",
      );
    }
    return new ResumeState(dir, record);
  }

  /** The resume token as a document, or undefined. */
  token(): Document | undefined {
    return this.record.token === null ? undefined : tokenFromJson(this.record.token);
  }

  /** Durably writes the record with `changes`; resolves once it (or a newer one) is on disk. */
  save(changes: Partial<Omit<ResumeRecord, "v" | "scope">>): Promise<void> {
    this.wanted = { ...this.wanted, ...changes };
    const generation = ++this.requested;
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ generation, resolve, reject }));
    this.writing ??= this.writeLoop();
    return done;
  }

  /** Waits for the writes under way. */
  async settled(): Promise<void> {
    await this.writing?.catch(() => undefined);
  }

  private async writeLoop(): Promise<void> {
    try {
      while (this.written < this.requested) {
        const generation = this.requested;
        const record = this.wanted;
        try {
          await replaceFile(this.dir, RESUME_FILE, `${JSON.stringify(record, null, 2)}\n`);
        } catch (err) {
          const failed = this.waiters.filter((w) => w.generation <= generation);
          this.waiters = this.waiters.filter((w) => w.generation > generation);
          // Not on disk: `wanted` keeps it, so the next save writes it again.
          this.written = generation;
          for (const w of failed) w.reject(new Error(`cannot write ${join(this.dir, RESUME_FILE)}: ${(err as Error).message}`));
          continue;
        }
        this.record = record;
        this.written = generation;
        const done = this.waiters.filter((w) => w.generation <= generation);
        this.waiters = this.waiters.filter((w) => w.generation > generation);
        for (const w of done) w.resolve();
      }
    } finally {
      this.writing = undefined;
    }
  }
}
