// The filesystem_watch source: reports files created, modified (content digest changed),
// deleted and renamed under the configured paths.
//
// Three views of the files:
// - `snapshot`: as of the last acknowledged event; persisted in ctx.stateDir on every
//   acknowledge(), never on emit, so whatever the outbox did not get is found again;
// - `known`: as of the last event handed out: snapshot + unacked + outgoing updates;
// - the disk.
// start() watches (chokidar, ignoreInitial), then scans and reports the difference
// between the disk and `known`: what changed while the agent was down. Live, chokidar
// only says which paths to look at ("dirty"); each is read (stat + SHA-256) and
// compared with `known`. A deletion waits rename_window_ms for a new path with the
// same inode, size and digest, which makes it one file.renamed. While paused, dirty
// paths pile up (at most max_pending_paths, then a rescan replaces them).
// Events go out in batches, each awaited before the next; nothing reaches the sink
// after stop().
import { constants } from "node:fs";
import { access, lstat, realpath, stat } from "node:fs/promises";
import { dirname, join, resolve, sep } from "node:path";
import { watch, type FSWatcher } from "chokidar";
import type { SourceContext } from "../source-factory.js";
import type { Source, SourceEvent, SourcePosition, SourceSink } from "../source.js";
import type { FilesystemWatchConfig } from "./config.js";
import { applyUpdate, tableUpdateOf, type FileChange, type TableUpdate } from "./file-change.js";
import { toSourceEvent } from "./file-event.js";
import { sameContent, sameMetadata, type FileState } from "./file-state.js";
import { FileTable } from "./file-table.js";
import { positionOf } from "./event-position.js";
import { IgnoreRules } from "./ignore-rules.js";
import { observeFile, stillHasInode, type ObserveOptions } from "./observe-file.js";
import { scanTree } from "./scan-tree.js";
import { encodeSnapshot, loadSnapshot, saveSnapshot } from "./snapshot-store.js";
import { WatchScope, type WatchRoot } from "./watch-scope.js";

export const SOURCE_TYPE = "filesystem_watch";
/** Most events per emit() call, so a big scan still meets backpressure between calls. */
export const EMIT_BATCH_EVENTS = 100;
/** Most payload bytes per emit() call. */
export const EMIT_BATCH_BYTES = 4 * 1024 * 1024;
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 30_000;

interface Outgoing {
  event: SourceEvent;
  update: TableUpdate;
  bytes: number;
}

interface Unacked {
  position: SourcePosition;
  update: TableUpdate;
}

function isUnder(dir: string, p: string): boolean {
  return p === dir || p.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

/** Each configured path, resolved to its real absolute path; rejects naming a bad one. */
async function resolveRoots(paths: readonly string[], name: string): Promise<WatchRoot[]> {
  const roots = new Map<string, WatchRoot>();
  for (const p of paths) {
    const where = `filesystem_watch source "${name}": path "${p}"`;
    let real: string;
    try {
      real = await realpath(resolve(p));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new Error(`${where} does not exist`);
      throw new Error(`${where} cannot be resolved: ${(err as Error).message}`);
    }
    const st = await stat(real);
    if (!st.isDirectory() && !st.isFile()) throw new Error(`${where} is neither a file nor a folder`);
    try {
      await access(real, st.isDirectory() ? constants.R_OK | constants.X_OK : constants.R_OK);
    } catch {
      throw new Error(`${where} is not readable by this process`);
    }
    const viaParent = await access(dirname(real), constants.R_OK | constants.X_OK).then(
      () => true,
      () => false,
    );
    roots.set(real, { path: real, isDir: st.isDirectory(), viaParent });
  }
  return [...roots.values()];
}

export class FilesystemWatchSource implements Source {
  readonly type = SOURCE_TYPE;
  private readonly observeOptions: ObserveOptions;
  private sink: SourceSink | undefined;
  private scope: WatchScope | undefined;
  private watcher: FSWatcher | undefined;
  /** As of the last acknowledged event (what is on disk in stateDir). */
  private snapshot = new FileTable();
  /** As of the last event built: snapshot + unacked + outgoing. */
  private known = new FileTable();
  private unacked: Unacked[] = [];
  private outgoing: Outgoing[] = [];
  private outgoingBytes = 0;
  /** Paths to look at, in the order first seen. */
  private readonly dirty = new Set<string>();
  /** Known paths found missing, with when (ms): reported as deleted unless a rename turns up. */
  private readonly pendingDeletes = new Map<string, number>();
  private scanNeeded = false;
  private started = false;
  private stopped = false;
  private paused = false;
  private draining: Promise<void> | undefined;
  private deleteTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private writes: Promise<void> = Promise.resolve();
  private writesRequested = 0;
  private writesDone = 0;
  private signalStop: () => void = () => undefined;
  private readonly stopSignal = new Promise<void>((resolveStop) => (this.signalStop = resolveStop));

  constructor(
    private readonly config: FilesystemWatchConfig,
    private readonly ctx: SourceContext,
  ) {
    this.observeOptions = {
      followSymlinks: config.follow_symlinks,
      contentCap: config.include_content ? config.max_content_bytes : undefined,
    };
  }

  /**
   * `resumeFrom` is not needed: the snapshot in ctx.stateDir is the acknowledged state,
   * and the start-up scan reports everything that differs from it.
   */
  async start(sink: SourceSink, _resumeFrom?: SourcePosition): Promise<void> {
    if (this.started) throw new Error(`filesystem_watch source "${this.ctx.name}" was already started`);
    this.started = true;
    const roots = await resolveRoots(this.config.paths, this.ctx.name);
    const stateDir = await realpath(this.ctx.stateDir);
    const scope = new WatchScope(roots, new IgnoreRules(this.config.ignore), { recursive: this.config.recursive, excluded: [stateDir] });
    this.scope = scope;
    const loaded = await loadSnapshot(this.ctx.stateDir);
    // Files no longer in scope (config changed) are dropped silently, not reported deleted.
    for (const [p, s] of loaded.entries()) if (scope.isTracked(p)) this.snapshot.set(p, s);
    this.known = this.snapshot.clone();
    await this.startWatcher(scope);
    if (this.stopped) return;
    this.sink = sink;
    this.scanNeeded = true;
    this.ctx.log.info({ paths: roots.map((r) => r.path), known: this.snapshot.size }, "filesystem_watch: watching; scanning for changes made while stopped");
    this.kick();
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.kick();
  }

  async acknowledge(position: SourcePosition): Promise<void> {
    const i = this.unacked.findIndex((u) => u.position === position);
    if (i < 0) {
      this.ctx.log.warn({ position }, "filesystem_watch: acknowledged a position it is not waiting for; ignored");
      return;
    }
    for (const u of this.unacked.splice(0, i + 1)) applyUpdate(this.snapshot, u.update);
    await this.persist();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.signalStop();
    clearTimeout(this.deleteTimer);
    clearTimeout(this.retryTimer);
    await this.watcher?.close().catch((err: unknown) => this.ctx.log.warn({ err: String(err) }, "filesystem_watch: closing the watcher failed"));
    await this.draining;
    // Built but never emitted: the snapshot does not have them, so a restart finds them again.
    this.outgoing = [];
    this.outgoingBytes = 0;
    await this.writes;
  }

  // --- watching --------------------------------------------------------------------

  private async startWatcher(scope: WatchScope): Promise<void> {
    const stability = this.config.stability_ms;
    const watcher = watch(scope.watchPaths(), {
      ignoreInitial: true, // start() scans and diffs itself
      atomic: false, // unlinks at once (rename pairing is done here), and no editor files hidden
      followSymlinks: this.config.follow_symlinks,
      ignorePermissionErrors: true, // an unreadable file is logged when read, not silently skipped
      ignored: scope.ignoredByWatcher,
      awaitWriteFinish: stability > 0 ? { stabilityThreshold: stability, pollInterval: Math.min(100, Math.max(10, Math.round(stability / 2))) } : false,
    });
    this.watcher = watcher;
    watcher.on("add", (p) => this.markDirty(p));
    watcher.on("change", (p) => this.markDirty(p));
    watcher.on("unlink", (p) => this.markDirty(p));
    // chokidar can miss a file replaced by a rename over it (it takes an unchanged mtime for
    // an access-time-only change), so a raw rename on a known path gets it looked at too.
    watcher.on("raw", (rawEvent, name, details) => {
      const watched = (details as { watchedPath?: unknown } | undefined)?.watchedPath;
      if (rawEvent !== "rename" || typeof name !== "string" || typeof watched !== "string") return;
      for (const p of [watched, join(watched, name)]) if (this.known.has(p)) this.markDirty(p);
    });
    watcher.on("unlinkDir", (dir) => {
      for (const p of [...this.known.paths()]) if (isUnder(dir, p)) this.markDirty(p);
    });
    watcher.on("error", (err) => {
      if (this.stopped) return;
      // Watching may be incomplete now (e.g. out of inotify watches): catch up by a rescan.
      this.ctx.log.error({ err: String(err) }, "filesystem_watch: watcher error; rescanning");
      this.requestRescan();
    });
    // stop() during start-up closes the watcher, after which "ready" may never come.
    await Promise.race([new Promise<void>((resolveReady) => watcher.once("ready", () => resolveReady())), this.stopSignal]);
    if (this.stopped) await watcher.close();
  }

  private markDirty(path: string): void {
    if (this.stopped || this.scanNeeded) return; // a scan still to come covers it
    if (!this.dirty.has(path)) {
      if (this.dirty.size >= this.config.max_pending_paths) {
        this.ctx.log.warn({ max_pending_paths: this.config.max_pending_paths }, "filesystem_watch: too many pending changes; rescanning instead");
        this.requestRescan();
        return;
      }
      this.dirty.add(path);
    }
    this.kick();
  }

  private requestRescan(): void {
    this.scanNeeded = true;
    this.dirty.clear();
    this.pendingDeletes.clear();
    clearTimeout(this.deleteTimer);
    this.kick();
  }

  // --- the worker: one at a time, in order ---------------------------------------

  private kick(): void {
    if (this.draining || this.stopped || this.paused || !this.sink || this.retryTimer) return;
    this.draining = this.drain()
      .catch((err: unknown) => this.failed(err))
      .finally(() => {
        this.draining = undefined;
        if (this.hasWork()) this.kick();
      });
  }

  private hasWork(): boolean {
    return this.outgoing.length > 0 || this.scanNeeded || this.dirty.size > 0 || this.firstDeleteDue() <= Date.now();
  }

  private async drain(): Promise<void> {
    while (!this.stopped && !this.paused) {
      if (this.outgoing.length > 0) {
        if (!(await this.flush())) return;
      } else if (this.scanNeeded) {
        this.scanNeeded = false;
        await this.rescan();
      } else if (this.dirty.size > 0) {
        await this.processDirty();
      } else if (!(await this.processDueDeletes())) {
        return;
      }
    }
  }

  /** Something went wrong (the sink refused, or reading failed): start over from the snapshot view. */
  private failed(err: unknown): void {
    if (this.stopped) return;
    this.outgoing = [];
    this.outgoingBytes = 0;
    this.known = this.snapshot.clone();
    for (const u of this.unacked) applyUpdate(this.known, u.update);
    this.scanNeeded = true;
    this.dirty.clear();
    this.pendingDeletes.clear();
    const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** this.failures++);
    this.ctx.log.error({ err: String(err), retryInMs: delay }, "filesystem_watch: delivery failed; rescanning after a pause");
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.kick();
    }, delay);
  }

  /** Emits the outgoing events, batch by batch; false when paused or stopped first. */
  private async flush(): Promise<boolean> {
    while (this.outgoing.length > 0) {
      if (this.stopped || this.paused) return false;
      let n = 0;
      let bytes = 0;
      while (n < this.outgoing.length && n < EMIT_BATCH_EVENTS && (n === 0 || bytes + this.outgoing[n]!.bytes <= EMIT_BATCH_BYTES)) bytes += this.outgoing[n++]!.bytes;
      const batch = this.outgoing.splice(0, n);
      this.outgoingBytes -= bytes;
      // Awaiting acknowledgement from before the call: the agent may acknowledge inside emit().
      const entries = batch.map((o): Unacked => ({ position: o.event.position, update: o.update }));
      this.unacked.push(...entries);
      try {
        await this.sink!.emit(batch.map((o) => o.event));
      } catch (err) {
        const sent = new Set(entries);
        this.unacked = this.unacked.filter((u) => !sent.has(u));
        throw err;
      }
      this.failures = 0;
    }
    return true;
  }

  private outgoingFull(): boolean {
    return this.outgoing.length >= EMIT_BATCH_EVENTS || this.outgoingBytes >= EMIT_BATCH_BYTES;
  }

  private build(change: FileChange): void {
    const update = tableUpdateOf(change);
    const event = toSourceEvent(change, positionOf(change), {
      includeContent: this.config.include_content,
      maxContentBytes: this.config.max_content_bytes,
      now: new Date(),
    });
    applyUpdate(this.known, update);
    const bytes = (event.payload?.length ?? 0) + 256;
    this.outgoing.push({ event, update, bytes });
    this.outgoingBytes += bytes;
  }

  private async processDirty(): Promise<void> {
    while (this.dirty.size > 0 && !this.outgoingFull() && !this.stopped && !this.paused && !this.scanNeeded) {
      const path = this.dirty.values().next().value!;
      this.dirty.delete(path);
      await this.examine(path, "live");
    }
  }

  /**
   * Reads `path` and builds the event its difference from `known` calls for, if any.
   * Live, a missing file waits in pendingDeletes; in a scan (which sees every path at
   * once, so renames are already paired) it is deleted at once.
   */
  private async examine(path: string, mode: "live" | "scan"): Promise<void> {
    if (!this.scope!.isTracked(path)) return;
    const seen = await observeFile(path, this.observeOptions);
    if (this.stopped) return;
    if (seen.status === "unreadable") {
      this.ctx.log.warn({ path, err: seen.error }, "filesystem_watch: cannot read a file; it is reported once it can be read and changes");
      return;
    }
    const prev = this.known.get(path);
    if (seen.status === "absent") {
      if (!prev) return;
      if (mode === "scan") {
        this.build({ kind: "deleted", path, previous: prev });
      } else if (!this.pendingDeletes.has(path)) {
        this.pendingDeletes.set(path, Date.now());
        this.armDeleteTimer();
      }
      return;
    }
    this.pendingDeletes.delete(path); // back within the window: an atomic save, say
    const state = seen.state;
    if (prev && sameContent(prev, state)) return;
    const from = prev && prev.inode === state.inode ? undefined : await this.renameSource(path, state);
    if (this.stopped) return;
    if (from !== undefined) {
      const previous = this.known.get(from)!;
      this.pendingDeletes.delete(from);
      this.dirty.delete(from);
      this.build({ kind: "renamed", path, fromPath: from, state, previous, ...(prev ? { replaced: prev } : {}) });
    } else if (prev) {
      this.build({ kind: "modified", path, state, previous: prev, ...(seen.content ? { content: seen.content } : {}) });
    } else {
      this.build({ kind: "created", path, state, ...(seen.content ? { content: seen.content } : {}) });
    }
  }

  /** A known path, now gone, that held this very file (inode, size, digest). */
  private async renameSource(path: string, state: FileState): Promise<string | undefined> {
    for (const candidate of this.known.pathsWithInode(state.inode)) {
      if (candidate === path) continue;
      const k = this.known.get(candidate)!;
      if (k.size !== state.size || k.sha256 !== state.sha256) continue;
      if (this.pendingDeletes.has(candidate) || !(await stillHasInode(candidate, state.inode, this.config.follow_symlinks))) return candidate;
    }
    return undefined;
  }

  private firstDeleteDue(): number {
    for (const seenAt of this.pendingDeletes.values()) return seenAt + this.config.rename_window_ms;
    return Infinity;
  }

  private armDeleteTimer(): void {
    clearTimeout(this.deleteTimer);
    this.deleteTimer = undefined;
    const due = this.firstDeleteDue();
    if (due === Infinity || this.stopped) return;
    this.deleteTimer = setTimeout(() => {
      this.deleteTimer = undefined;
      this.kick();
    }, Math.max(0, due - Date.now()) + 1);
    this.deleteTimer.unref?.();
  }

  /** Reports the deletions whose rename window is over; false when none was due. */
  private async processDueDeletes(): Promise<boolean> {
    let any = false;
    for (const [path, seenAt] of this.pendingDeletes) {
      if (seenAt + this.config.rename_window_ms > Date.now() || this.outgoingFull() || this.stopped) break;
      this.pendingDeletes.delete(path);
      any = true;
      const prev = this.known.get(path);
      if (!prev) continue;
      if (await this.exists(path)) {
        this.markDirty(path); // back again: examine it
        continue;
      }
      this.build({ kind: "deleted", path, previous: prev });
    }
    this.armDeleteTimer();
    return any;
  }

  private async exists(path: string): Promise<boolean> {
    try {
      const st = this.config.follow_symlinks ? await stat(path) : await lstat(path);
      return st.isFile();
    } catch {
      return false;
    }
  }

  /**
   * Compares every file in scope with `known`: files whose inode, size and mtime are
   * unchanged are not read. Paused part-way, it stops and runs again on resume (the
   * events it built are kept, so nothing is reported twice).
   */
  private async rescan(): Promise<void> {
    this.dirty.clear();
    this.pendingDeletes.clear();
    clearTimeout(this.deleteTimer);
    const scan = await scanTree(this.scope!, this.config.follow_symlinks, () => this.stopped);
    if (this.stopped) return;
    const makeRoom = async (): Promise<boolean> => {
      if (this.paused || this.stopped) {
        this.scanNeeded = true;
        return false;
      }
      if (this.outgoingFull() && !(await this.flush())) {
        this.scanNeeded = true;
        return false;
      }
      return true;
    };
    for (const path of [...scan.files.keys()].sort()) {
      if (!(await makeRoom())) return;
      const k = this.known.get(path);
      if (k && sameMetadata(k, scan.files.get(path)!)) continue;
      await this.examine(path, "scan");
    }
    const unreadable = scan.unreadable;
    if (unreadable.length > 0) this.ctx.log.warn({ folders: unreadable.slice(0, 20) }, "filesystem_watch: folders that cannot be read; their files are not taken as deleted");
    for (const path of [...this.known.paths()].sort()) {
      if (scan.files.has(path) || unreadable.some((u) => isUnder(u, path))) continue;
      if (!(await makeRoom())) return;
      await this.examine(path, "scan");
    }
    this.ctx.log.info({ files: scan.files.size }, "filesystem_watch: scan done");
  }

  // --- the acknowledged snapshot ---------------------------------------------------

  /** Writes the snapshot; concurrent calls share one write when they can. */
  private persist(): Promise<void> {
    const ticket = ++this.writesRequested;
    const run = this.writes.then(async () => {
      if (this.writesDone >= ticket) return;
      const upTo = this.writesRequested;
      await saveSnapshot(this.ctx.stateDir, encodeSnapshot(this.snapshot));
      this.writesDone = upTo;
    });
    this.writes = run.catch(() => undefined);
    return run;
  }
}
