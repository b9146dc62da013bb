// The filesystem_watch source against real files in temp folders, with an in-memory sink
// that records what it is given (the sink is not under test). The tests acknowledge
// positions themselves, as the agent does once events are in its outbox. They wait for
// events rather than sleeping; the one check that nothing happens while paused needs a
// short sleep, said where.
import { afterEach, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, renameSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import type { SourceContext } from "../source-factory.js";
import type { SourceEvent, SourceSink } from "../source.js";
import filesystemWatch, { type FilesystemWatchConfigInput, type FilesystemWatchSource } from "./index.js";
import { subjectOf } from "./file-event.js";
import { globToRegExp, IgnoreRules } from "./ignore-rules.js";
import { SNAPSHOT_FILE } from "./snapshot-store.js";
import { waitFor } from "../../../test/support/wait-for.js";
import { type LogLine } from "../../../test/support/source-context.js";

interface Recorded {
  kind: string;
  subject: string | undefined;
  position: string;
  occurredAt: string | undefined;
  payloadType: string | undefined;
  payload: Record<string, unknown>;
}

/** Records events; emit resolves at once (or after delayMs). Counts overlapping emits and calls after close. */
class FakeSink implements SourceSink {
  readonly events: Recorded[] = [];
  readonly batchSizes: number[] = [];
  delayMs = 0;
  /** The next this many emit() calls reject (the agent failing to store them). */
  failNext = 0;
  readonly refused: string[] = [];
  readonly gaps: string[] = [];
  inFlight = 0;
  maxInFlight = 0;
  closed = false;
  callsAfterClose = 0;

  async emit(events: SourceEvent[]): Promise<void> {
    if (this.closed) this.callsAfterClose++;
    if (this.failNext > 0) {
      this.failNext--;
      this.refused.push(...events.map((e) => e.position));
      throw new Error("outbox write failed");
    }
    this.maxInFlight = Math.max(this.maxInFlight, ++this.inFlight);
    this.batchSizes.push(events.length);
    for (const e of events) {
      this.events.push({
        kind: e.kind,
        subject: e.subject,
        position: e.position,
        occurredAt: e.occurredAt,
        payloadType: e.payloadType,
        payload: JSON.parse(new TextDecoder().decode(e.payload)) as Record<string, unknown>,
      });
    }
    await (this.delayMs > 0 ? new Promise((r) => setTimeout(r, this.delayMs)) : Promise.resolve());
    this.inFlight--;
  }

  async gap(reason: string): Promise<void> {
    if (this.closed) this.callsAfterClose++;
    this.gaps.push(reason);
  }

  find(kind: string, path: string): Recorded | undefined {
    return this.events.find((e) => e.kind === kind && e.payload.path === path);
  }

  last(): Recorded {
    return this.events[this.events.length - 1]!;
  }
}

const dirs: string[] = [];
const running: FilesystemWatchSource[] = [];
afterEach(async () => {
  for (const s of running.splice(0)) await s.stop();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(prefix = "fsw-test-"): string {
  const d = realpathSync(mkdtempSync(join(tmpdir(), prefix)));
  dirs.push(d);
  return d;
}

const sha = (data: string | Uint8Array) => createHash("sha256").update(data).digest("hex");
const inodeOf = (p: string) => statSync(p, { bigint: true }).ino.toString();


function makeContext(stateDir: string, lines: LogLine[] = []): SourceContext {
  return {
    name: "files",
    stateDir,
    log: {
      info: (obj, msg) => lines.push({ level: "info", msg, obj }),
      warn: (obj, msg) => lines.push({ level: "warn", msg, obj }),
      error: (obj, msg) => lines.push({ level: "error", msg, obj }),
    },
  };
}

/** Short timings so tests are quick; rename_window_ms leaves chokidar ample time. */
const FAST = { stability_ms: 50, rename_window_ms: 600 } satisfies Partial<FilesystemWatchConfigInput>;

async function startSource(config: FilesystemWatchConfigInput, stateDir: string, lines: LogLine[] = [], sink = new FakeSink()) {
  const source = filesystemWatch.create(filesystemWatch.configSchema.parse({ ...FAST, ...config }), makeContext(stateDir, lines)) as FilesystemWatchSource;
  running.push(source);
  await source.start(sink);
  return { source, sink };
}

/** Stops as the agent does at shutdown: everything emitted is acknowledged first. */
async function ackAllAndStop(source: FilesystemWatchSource, sink: FakeSink): Promise<void> {
  if (sink.events.length > 0) await source.acknowledge(sink.last().position);
  await source.stop();
  sink.closed = true;
}


const waitForEvent = (sink: FakeSink, kind: string, path: string) => waitFor(`${kind} ${path}`, () => sink.find(kind, path));

const RFC3339_NS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/;

describe("filesystem_watch: live changes", () => {
  it("reports created, modified and deleted files with subject, digest, payload and position", async () => {
    const dir = tempDir();
    const { sink } = await startSource({ paths: [dir] }, tempDir());
    const file = join(dir, "a.txt");

    writeFileSync(file, "hello");
    const created = await waitForEvent(sink, "file.created", file);
    const st = statSync(file, { bigint: true });
    expect(created.subject).toBe(`file://${file}`);
    expect(created.payloadType).toBe("application/json");
    expect(created.payload).toEqual({ path: file, inode: st.ino.toString(), size: 5, mtime: expect.stringMatching(RFC3339_NS), sha256: sha("hello") });
    expect(Math.abs(Date.parse(created.payload.mtime as string) - Number(st.mtimeMs))).toBeLessThan(2);
    expect(created.occurredAt).toBe(new Date(Number(st.mtimeNs / 1_000_000n)).toISOString());
    expect(created.position).toMatch(/^fsw1:put:[0-9a-f]{32}$/);

    writeFileSync(file, "hello world");
    const modified = await waitForEvent(sink, "file.modified", file);
    expect(modified.payload).toMatchObject({ path: file, size: 11, sha256: sha("hello world"), previous_sha256: sha("hello") });
    expect(modified.position).not.toBe(created.position);

    unlinkSync(file);
    const deleted = await waitForEvent(sink, "file.deleted", file);
    // The deleted version: the last one reported.
    expect(deleted.payload).toMatchObject({ path: file, size: 11, sha256: sha("hello world"), inode: modified.payload.inode });
    expect(deleted.position).toMatch(/^fsw1:del:[0-9a-f]{32}$/);

    expect(sink.events.map((e) => e.kind)).toEqual(["file.created", "file.modified", "file.deleted"]);
    expect(sink.maxInFlight).toBe(1);
  });

  it("does not report a rewrite with the same content", async () => {
    const dir = tempDir();
    const file = join(dir, "same.txt");
    writeFileSync(file, "same");
    const { sink } = await startSource({ paths: [dir] }, tempDir());
    await waitForEvent(sink, "file.created", file);
    writeFileSync(file, "same"); // same inode, same content, new mtime
    const marker = join(dir, "marker.txt");
    writeFileSync(marker, "m");
    await waitForEvent(sink, "file.created", marker);
    expect(sink.events.map((e) => `${e.kind} ${String(e.payload.path)}`)).toEqual([`file.created ${file}`, `file.created ${marker}`]);
  });

  it("reports a rename, also of a whole folder, as file.renamed and nothing else", async () => {
    const dir = tempDir();
    mkdirSync(join(dir, "sub"));
    const a = join(dir, "a.txt");
    const inSub = join(dir, "sub", "x.txt");
    const marker = join(dir, "marker.txt");
    writeFileSync(a, "alpha");
    writeFileSync(inSub, "xray");
    writeFileSync(marker, "m");
    const { sink } = await startSource({ paths: [dir] }, tempDir());
    await waitFor("the start-up scan", () => sink.events.length === 3);

    const b = join(dir, "b.txt");
    renameSync(a, b);
    const renamed = await waitForEvent(sink, "file.renamed", b);
    expect(renamed.subject).toBe(`file://${b}`);
    expect(renamed.payload).toMatchObject({ path: b, from_path: a, size: 5, sha256: sha("alpha"), inode: inodeOf(b) });
    expect(renamed.position).toMatch(/^fsw1:mv:[0-9a-f]{32}$/);

    renameSync(join(dir, "sub"), join(dir, "moved"));
    const movedTo = join(dir, "moved", "x.txt");
    expect((await waitForEvent(sink, "file.renamed", movedTo)).payload).toMatchObject({ from_path: inSub, sha256: sha("xray") });

    // A deletion seen after these is reported after them (deletions wait out the rename
    // window in the order seen), so once it is in, a stray delete of a.txt would be too.
    unlinkSync(marker);
    await waitForEvent(sink, "file.deleted", marker);
    expect(sink.events.slice(3).map((e) => `${e.kind} ${String(e.payload.path)}`)).toEqual([
      `file.renamed ${b}`,
      `file.renamed ${movedTo}`,
      `file.deleted ${marker}`,
    ]);
  });

  it("reports a file replaced by a rename over it as file.renamed with replaced_sha256", async () => {
    const dir = tempDir();
    const draft = join(dir, "draft.txt");
    const final = join(dir, "final.txt");
    writeFileSync(draft, "new text");
    writeFileSync(final, "old text");
    const { sink } = await startSource({ paths: [dir] }, tempDir());
    await waitFor("the start-up scan", () => sink.events.length === 2);
    renameSync(draft, final);
    const renamed = await waitForEvent(sink, "file.renamed", final);
    expect(renamed.payload).toMatchObject({ from_path: draft, sha256: sha("new text"), replaced_sha256: sha("old text") });
  });

  it("puts the content in the payload only when configured, up to max_content_bytes", async () => {
    const dir = tempDir();
    const { sink } = await startSource({ paths: [dir], include_content: true, max_content_bytes: 16 }, tempDir());
    const text = join(dir, "text.txt");
    const binary = join(dir, "binary.dat");
    const big = join(dir, "big.txt");
    const bom = join(dir, "bom.txt");
    const bytes = Uint8Array.from([0xff, 0x00, 0xfe, 0x10]);

    writeFileSync(text, "héllo\n");
    writeFileSync(binary, bytes);
    writeFileSync(big, "x".repeat(17));
    writeFileSync(bom, "\uFEFFbom");
    expect((await waitForEvent(sink, "file.created", text)).payload).toMatchObject({ content: "héllo\n", encoding: "utf8", sha256: sha("héllo\n") });
    expect((await waitForEvent(sink, "file.created", binary)).payload).toMatchObject({ content: Buffer.from(bytes).toString("base64"), encoding: "base64", sha256: sha(bytes) });
    const bigEvent = await waitForEvent(sink, "file.created", big);
    expect(bigEvent.payload).toMatchObject({ size: 17, sha256: sha("x".repeat(17)), content_omitted: "too_large" });
    expect(bigEvent.payload).not.toHaveProperty("content");
    // The byte-order mark is kept, so the content still matches the digest.
    const bomEvent = await waitForEvent(sink, "file.created", bom);
    expect(sha(bomEvent.payload.content as string)).toBe(bomEvent.payload.sha256);

    writeFileSync(text, "changed");
    expect((await waitForEvent(sink, "file.modified", text)).payload).toMatchObject({ content: "changed", encoding: "utf8" });
  });

  it("leaves the content out by default", async () => {
    const dir = tempDir();
    const { sink } = await startSource({ paths: [dir] }, tempDir());
    const file = join(dir, "secret.txt");
    writeFileSync(file, "s3cr3t");
    const ev = await waitForEvent(sink, "file.created", file);
    expect(ev.payload).not.toHaveProperty("content");
    expect(ev.payload).not.toHaveProperty("content_omitted");
    expect(JSON.stringify(ev.payload)).not.toContain("s3cr3t");
  });

  it("watches a single configured file, through deletion and re-creation, and nothing beside it", async () => {
    const dir = tempDir();
    const file = join(dir, "app.conf");
    const sibling = join(dir, "other.conf");
    writeFileSync(file, "v1");
    const { sink } = await startSource({ paths: [file] }, tempDir());
    await waitForEvent(sink, "file.created", file);

    writeFileSync(sibling, "not watched");
    writeFileSync(file, "v2");
    await waitForEvent(sink, "file.modified", file);
    unlinkSync(file);
    await waitForEvent(sink, "file.deleted", file);
    writeFileSync(file, "v3");
    await waitFor("the re-created file", () => sink.events.filter((e) => e.kind === "file.created").length === 2);
    expect(sink.last().payload).toMatchObject({ path: file, sha256: sha("v3") });
    expect(sink.events.some((e) => e.payload.path === sibling)).toBe(false);
  });

  it("watches a configured folder through deletion and re-creation, and nothing beside it", async () => {
    const base = tempDir();
    const dir = join(base, "watched");
    mkdirSync(dir);
    const a = join(dir, "a.txt");
    writeFileSync(a, "a");
    const { sink } = await startSource({ paths: [dir] }, tempDir());
    await waitForEvent(sink, "file.created", a);
    rmSync(dir, { recursive: true });
    await waitForEvent(sink, "file.deleted", a);
    writeFileSync(join(base, "beside.txt"), "not watched");
    mkdirSync(dir);
    const b = join(dir, "b.txt");
    writeFileSync(b, "b");
    await waitForEvent(sink, "file.created", b);
    expect(sink.events.map((e) => `${e.kind} ${String(e.payload.path)}`)).toEqual([`file.created ${a}`, `file.deleted ${a}`, `file.created ${b}`]);
  });

  it("skips ignored paths, in the start-up scan and live", async () => {
    const dir = tempDir();
    for (const d of ["node_modules", "build", "sub/build", "logs"]) mkdirSync(join(dir, d), { recursive: true });
    const keep = join(dir, "keep.txt");
    const deepBuild = join(dir, "sub", "build", "deep.js");
    writeFileSync(keep, "k");
    writeFileSync(join(dir, "x.tmp"), "t");
    writeFileSync(join(dir, "node_modules", "dep.js"), "d");
    writeFileSync(join(dir, "build", "out.js"), "o");
    writeFileSync(deepBuild, "b");
    writeFileSync(join(dir, "logs", "a.log"), "l");
    const { sink } = await startSource({ paths: [dir], ignore: ["*.tmp", "node_modules", "build/**", `${dir}/logs`] }, tempDir());

    writeFileSync(join(dir, "y.tmp"), "t");
    writeFileSync(join(dir, "logs", "b.log"), "l");
    writeFileSync(join(dir, "node_modules", "dep2.js"), "d");
    const marker = join(dir, "marker.txt");
    writeFileSync(marker, "m");
    await waitForEvent(sink, "file.created", marker);
    expect(sink.events.map((e) => e.payload.path).sort()).toEqual([deepBuild, keep, marker].sort());
  });

  it("does not watch its own state folder inside a watched folder", async () => {
    const dir = tempDir();
    const stateDir = join(dir, ".state");
    mkdirSync(stateDir);
    const { source, sink } = await startSource({ paths: [dir] }, stateDir);
    const a = join(dir, "a.txt");
    writeFileSync(a, "a");
    await waitForEvent(sink, "file.created", a);
    await source.acknowledge(sink.last().position); // writes the snapshot into the watched folder
    expect(existsSync(join(stateDir, SNAPSHOT_FILE))).toBe(true);
    const b = join(dir, "b.txt");
    writeFileSync(b, "b");
    await waitForEvent(sink, "file.created", b);
    expect(sink.events.map((e) => e.payload.path)).toEqual([a, b]);
  });

  it("with recursive off, reports only the files directly in the folder", async () => {
    const dir = tempDir();
    mkdirSync(join(dir, "sub"));
    writeFileSync(join(dir, "sub", "deep.txt"), "d");
    const top = join(dir, "top.txt");
    writeFileSync(top, "t");
    const { sink } = await startSource({ paths: [dir], recursive: false }, tempDir());
    writeFileSync(join(dir, "sub", "deep2.txt"), "d");
    const marker = join(dir, "marker.txt");
    writeFileSync(marker, "m");
    await waitForEvent(sink, "file.created", marker);
    expect(sink.events.map((e) => e.payload.path).sort()).toEqual([marker, top]); // the scan may find the marker too
  });

  it("emits a big scan in batches, one emit() at a time, in path order", async () => {
    const dir = tempDir();
    const names = Array.from({ length: 250 }, (_, i) => `f${String(i).padStart(3, "0")}.txt`);
    for (const n of names) writeFileSync(join(dir, n), n);
    const sink = new FakeSink();
    sink.delayMs = 20; // a slow outbox: an emit() that did not wait for the last would overlap it
    await startSource({ paths: [dir] }, tempDir(), [], sink);
    await waitFor("250 events", () => sink.events.length === 250);
    expect(sink.events.map((e) => e.payload.path)).toEqual(names.map((n) => join(dir, n)));
    expect(sink.maxInFlight).toBe(1);
    expect(Math.max(...sink.batchSizes)).toBeLessThanOrEqual(100);
    expect(new Set(sink.events.map((e) => e.position)).size).toBe(250);
  });

  it("only follows symlinks when told to", async () => {
    const dir = tempDir();
    const outside = tempDir();
    writeFileSync(join(outside, "target.txt"), "t");
    symlinkSync(join(outside, "target.txt"), join(dir, "link.txt"));
    writeFileSync(join(dir, "plain.txt"), "p");

    const off = await startSource({ paths: [dir] }, tempDir());
    await waitForEvent(off.sink, "file.created", join(dir, "plain.txt"));
    const on = await startSource({ paths: [dir], follow_symlinks: true }, tempDir());
    await waitFor("both files", () => on.sink.events.length === 2);
    expect(on.sink.find("file.created", join(dir, "link.txt"))?.payload).toMatchObject({ sha256: sha("t") });
    // The scan reports files in path order: link.txt would come before plain.txt.
    expect(off.sink.events.map((e) => e.payload.path)).toEqual([join(dir, "plain.txt")]);
  });
});

describe("filesystem_watch: restarts", () => {
  it("reports nothing for unchanged files after a restart", async () => {
    const dir = tempDir();
    const stateDir = tempDir();
    writeFileSync(join(dir, "a.txt"), "a");
    const first = await startSource({ paths: [dir] }, stateDir);
    await waitForEvent(first.sink, "file.created", join(dir, "a.txt"));
    const b = join(dir, "b.txt");
    writeFileSync(b, "b");
    await waitForEvent(first.sink, "file.created", b);
    await ackAllAndStop(first.source, first.sink);

    const second = await startSource({ paths: [dir] }, stateDir);
    // The start-up scan emits before any live change (and in the same batch as the marker,
    // if it finds that too), so once the marker is in, a re-reported file would be as well.
    const marker = join(dir, "marker.txt");
    writeFileSync(marker, "m");
    await waitForEvent(second.sink, "file.created", marker);
    expect(second.sink.events.map((e) => e.payload.path)).toEqual([marker]);
    expect(first.sink.callsAfterClose).toBe(0);
  });

  it("reports what was created, modified, deleted and renamed while stopped", async () => {
    const dir = tempDir();
    const stateDir = tempDir();
    const p = (n: string) => join(dir, n);
    for (const n of ["keep.txt", "mod.txt", "del.txt", "ren.txt", "touch.txt"]) writeFileSync(p(n), n);
    const first = await startSource({ paths: [dir] }, stateDir);
    await waitFor("the start-up scan", () => first.sink.events.length === 5);
    expect(first.sink.events.map((e) => e.kind)).toEqual(Array(5).fill("file.created"));
    await ackAllAndStop(first.source, first.sink);
    expect(JSON.parse(readFileSync(join(stateDir, SNAPSHOT_FILE), "utf8")).files).toHaveProperty([p("keep.txt")]);

    writeFileSync(p("mod.txt"), "modified while stopped");
    unlinkSync(p("del.txt"));
    renameSync(p("ren.txt"), p("ren2.txt"));
    writeFileSync(p("new.txt"), "new");
    writeFileSync(p("touch.txt"), "touch.txt"); // same content: not a change

    const second = await startSource({ paths: [dir] }, stateDir);
    await waitFor("four events", () => second.sink.events.length === 4);
    const seen = second.sink.events.map((e) => `${e.kind} ${String(e.payload.path)}`).sort();
    expect(seen).toEqual([`file.created ${p("new.txt")}`, `file.deleted ${p("del.txt")}`, `file.modified ${p("mod.txt")}`, `file.renamed ${p("ren2.txt")}`].sort());
    expect(second.sink.find("file.renamed", p("ren2.txt"))!.payload.from_path).toBe(p("ren.txt"));
    expect(second.sink.find("file.modified", p("mod.txt"))!.payload).toMatchObject({ sha256: sha("modified while stopped"), previous_sha256: sha("mod.txt") });

    const marker = p("marker.txt");
    writeFileSync(marker, "m");
    await waitForEvent(second.sink, "file.created", marker);
    expect(second.sink.events).toHaveLength(5);
  });

  it("re-emits unacknowledged events after a restart, with the same positions", async () => {
    const dir = tempDir();
    const stateDir = tempDir();
    const a = join(dir, "a.txt");
    const c = join(dir, "c.txt");
    writeFileSync(a, "a");
    writeFileSync(c, "c");
    const first = await startSource({ paths: [dir] }, stateDir);
    await waitFor("the start-up scan", () => first.sink.events.length === 2);

    writeFileSync(a, "a2");
    const modified = await waitForEvent(first.sink, "file.modified", a);
    const b = join(dir, "b.txt");
    writeFileSync(b, "b");
    await waitForEvent(first.sink, "file.created", b);
    unlinkSync(c);
    await waitForEvent(first.sink, "file.deleted", c);
    // The outbox took everything up to the modification, then the agent died.
    await first.source.acknowledge(modified.position);
    await first.source.stop();
    first.sink.closed = true;
    const unacked = first.sink.events.slice(first.sink.events.indexOf(modified) + 1);
    expect(unacked.map((e) => e.kind)).toEqual(["file.created", "file.deleted"]);

    const second = await startSource({ paths: [dir] }, stateDir);
    await waitFor("the re-emitted events", () => second.sink.events.length === 2);
    expect(second.sink.events.map((e) => [e.kind, e.position]).sort()).toEqual(unacked.map((e) => [e.kind, e.position]).sort());
    expect(first.sink.callsAfterClose).toBe(0);
  });

  it("re-emits an unacknowledged rename with the same position", async () => {
    const dir = tempDir();
    const stateDir = tempDir();
    const from = join(dir, "from.txt");
    const to = join(dir, "to.txt");
    writeFileSync(from, "payload");
    const first = await startSource({ paths: [dir] }, stateDir);
    await waitForEvent(first.sink, "file.created", from);
    await first.source.acknowledge(first.sink.last().position);
    renameSync(from, to);
    const renamed = await waitForEvent(first.sink, "file.renamed", to);
    await first.source.stop();
    first.sink.closed = true;

    const second = await startSource({ paths: [dir] }, stateDir);
    const again = await waitForEvent(second.sink, "file.renamed", to);
    expect(again.position).toBe(renamed.position);
  });

  it("refuses to start on a damaged snapshot, naming it", async () => {
    const stateDir = tempDir();
    writeFileSync(join(stateDir, SNAPSHOT_FILE), "{not json");
    const source = filesystemWatch.create(filesystemWatch.configSchema.parse({ paths: [tempDir()] }), makeContext(stateDir));
    running.push(source as FilesystemWatchSource);
    await expect(source.start(new FakeSink())).rejects.toThrow(join(stateDir, SNAPSHOT_FILE));
  });

  it("writes the snapshot only on acknowledge", async () => {
    const dir = tempDir();
    const stateDir = tempDir();
    const { source, sink } = await startSource({ paths: [dir] }, stateDir);
    const a = join(dir, "a.txt");
    writeFileSync(a, "a");
    await waitForEvent(sink, "file.created", a);
    expect(existsSync(join(stateDir, SNAPSHOT_FILE))).toBe(false);
    await source.acknowledge(sink.last().position);
    const files = JSON.parse(readFileSync(join(stateDir, SNAPSHOT_FILE), "utf8")).files as Record<string, { sha256: string }>;
    expect(files[a]!.sha256).toBe(sha("a"));
  });
});

describe("filesystem_watch: backpressure", () => {
  it("emits nothing while paused and the changes after resume", async () => {
    const dir = tempDir();
    const { source, sink } = await startSource({ paths: [dir] }, tempDir());
    source.pause();
    const files = ["p1.txt", "p2.txt", "p3.txt"].map((n) => join(dir, n));
    for (const f of files) writeFileSync(f, f);
    // Absence cannot be awaited: 400 ms is several times what an unpaused source takes
    // to report a new file here (stability_ms 50 plus a poll), so a leak would show.
    await new Promise((r) => setTimeout(r, 400));
    expect(sink.events).toHaveLength(0);
    source.resume();
    await waitFor("three files", () => sink.events.length === 3);
    expect(sink.events.map((e) => e.payload.path).sort()).toEqual(files.sort());
    expect(sink.events.every((e) => e.kind === "file.created")).toBe(true);
  });

  it("rescans after resume when more paths changed while paused than it remembers", async () => {
    const dir = tempDir();
    const lines: LogLine[] = [];
    const { source, sink } = await startSource({ paths: [dir], max_pending_paths: 2 }, tempDir(), lines);
    await waitFor("the start-up scan", () => lines.some((l) => l.msg.includes("scan done")));
    source.pause();
    const files = ["o1.txt", "o2.txt", "o3.txt", "o4.txt", "o5.txt"].map((n) => join(dir, n));
    for (const f of files) writeFileSync(f, f);
    await waitFor("the overflow warning", () => lines.some((l) => l.level === "warn" && l.msg.includes("too many pending changes")));
    expect(sink.events).toHaveLength(0);
    source.resume();
    await waitFor("five files", () => sink.events.length === 5);
    expect(sink.events.map((e) => e.payload.path)).toEqual(files); // a scan reports in path order
  });
});

describe("filesystem_watch: delivery failures", () => {
  it("delivers again, with the same positions, after emit() fails", async () => {
    const dir = tempDir();
    const sink = new FakeSink();
    const lines: LogLine[] = [];
    const { source } = await startSource({ paths: [dir] }, tempDir(), lines, sink);
    const a = join(dir, "a.txt");
    writeFileSync(a, "a");
    const first = await waitForEvent(sink, "file.created", a);
    await source.acknowledge(first.position);

    sink.failNext = 1;
    const b = join(dir, "b.txt");
    writeFileSync(b, "b");
    await waitFor("the failure to be logged", () => lines.some((l) => l.level === "error" && l.msg.includes("delivery failed")));
    const again = await waitForEvent(sink, "file.created", b); // after a pause and a rescan
    expect(sink.refused).toEqual([again.position]);
    expect(sink.events.filter((e) => e.payload.path === b)).toEqual([again]);
    expect(sink.events.filter((e) => e.payload.path === a)).toHaveLength(1);
  });
});

describe("filesystem_watch: configuration", () => {
  const schema = filesystemWatch.configSchema;
  const problem = (input: unknown) => {
    const r = schema.safeParse(input);
    expect(r.success).toBe(false);
    return { issues: r.error!.issues, text: z.prettifyError(r.error!) };
  };

  it("fills in the defaults", () => {
    expect(schema.parse({ paths: ["/var/log"] })).toEqual({
      paths: ["/var/log"],
      ignore: [],
      include_content: false,
      max_content_bytes: 65536,
      follow_symlinks: false,
      stability_ms: 200,
      rename_window_ms: 1000,
      recursive: true,
      max_pending_paths: 10000,
    });
  });

  it("refuses an unknown key, naming it", () => {
    const { issues, text } = problem({ paths: ["/x"], include_contents: true });
    expect(issues[0]).toMatchObject({ code: "unrecognized_keys", keys: ["include_contents"] });
    expect(text).toContain("include_contents");
  });

  it("refuses missing or empty paths", () => {
    expect(problem({ paths: [] }).issues[0]!.path).toEqual(["paths"]);
    expect(problem({}).issues[0]!.path).toEqual(["paths"]);
    expect(problem({ paths: [""] }).issues[0]!.path).toEqual(["paths", 0]);
  });

  it("refuses wrong types and ranges, naming the field", () => {
    expect(problem({ paths: ["/x"], include_content: "yes" }).issues[0]!.path).toEqual(["include_content"]);
    expect(problem({ paths: "/x" }).issues[0]!.path).toEqual(["paths"]);
    expect(problem({ paths: ["/x"], max_content_bytes: 10 * 1024 * 1024 }).issues[0]!.path).toEqual(["max_content_bytes"]);
    expect(problem({ paths: ["/x"], ignore: ["ok", 3] }).issues[0]!.path).toEqual(["ignore", 1]);
    const { issues, text } = problem({ paths: ["/x"], stability_ms: 2000 });
    expect(issues[0]!.path).toEqual(["rename_window_ms"]);
    expect(text).toContain("stability_ms");
  });

  it("fails start() on a path that does not exist, naming it", async () => {
    const dir = tempDir();
    const missing = join(dir, "no-such-folder");
    const source = filesystemWatch.create(filesystemWatch.configSchema.parse({ paths: [dir, missing] }), makeContext(tempDir()));
    running.push(source as FilesystemWatchSource);
    await expect(source.start(new FakeSink())).rejects.toThrow(`filesystem_watch source "files": path "${missing}" does not exist`);
  });
});

describe("subjects", () => {
  it("are file:// and the path, cut with a digest of the path past 1024 characters", () => {
    expect(subjectOf("/var/log/a b.log")).toBe("file:///var/log/a b.log");
    const long = `/data/${"d".repeat(300)}/${"e".repeat(300)}/${"f".repeat(300)}/${"g".repeat(300)}.txt`;
    const s = subjectOf(long);
    expect(s.length).toBeLessThanOrEqual(1024);
    expect(s.startsWith(`file:///data/${"d".repeat(300)}`)).toBe(true);
    expect(subjectOf(`${long}x`)).not.toBe(s);
  });
});

describe("ignore patterns", () => {
  it("compiles globs", () => {
    expect(globToRegExp("*.tmp").test("a.tmp")).toBe(true);
    expect(globToRegExp("*.tmp").test("a/b.tmp")).toBe(false);
    expect(globToRegExp("a?c").test("abc")).toBe(true);
    expect(globToRegExp("**/x.js").test("x.js")).toBe(true);
    expect(globToRegExp("**/x.js").test("a/b/x.js")).toBe(true);
    expect(globToRegExp("a/**").test("a/b/c")).toBe(true);
    expect(globToRegExp("a.(b)+").test("a.(b)+")).toBe(true);
    expect(globToRegExp("a.(b)+").test("aX(b)")).toBe(false);
  });

  it("matches names anywhere, relative paths from the folder, absolute paths, and everything below a match", () => {
    const rules = new IgnoreRules(["*.tmp", ".git", "build/**", "dist", "/srv/data/cache/", "./logs/*.gz"]);
    const at = (rel: string) => rules.ignores(`/srv/data/${rel}`, rel);
    expect(at("a.tmp")).toBe(true);
    expect(at("deep/down/a.tmp")).toBe(true);
    expect(at(".git/HEAD")).toBe(true);
    expect(at("build/x/y.js")).toBe(true);
    expect(at("sub/build/y.js")).toBe(false);
    expect(at("dist")).toBe(true);
    expect(at("dist/a.js")).toBe(true);
    expect(at("cache/a")).toBe(true);
    expect(at("logs/a.gz")).toBe(true);
    expect(at("logs/a.txt")).toBe(false);
    expect(at("keep.txt")).toBe(false);
    expect(at("")).toBe(false);
  });
});
