// The generic_polling source: GETs a JSON endpoint every interval_ms with
// If-None-Match / If-Modified-Since, and emits the items that are new or changed since
// the last acknowledged poll. Errors back off exponentially (with jitter) up to
// max_backoff_ms. Runs in the daemon or inside the server: all it keeps is one state
// file in ctx.stateDir.
import type { SourceContext } from "../source-factory.js";
import type { Source, SourceEvent, SourcePosition, SourceSink } from "../source.js";
import { nextDelayMs } from "./backoff.js";
import { conditionalGet } from "./conditional-get.js";
import type { GenericPollingConfig } from "./config.js";
import { parseDotPath, type DotPath } from "./dot-path.js";
import { diffItems, type ItemChange, type KnownItems } from "./item-diff.js";
import { PendingPolls, type PendingPoll } from "./pending-polls.js";
import { failsStart, isConfigProblem, PollProblemError, type PollProblem } from "./poll-problem.js";
import { loadPollState, savePollState, type PollState, type StateScope } from "./poll-state.js";
import { formatPosition, generationOf } from "./position.js";
import { findItems } from "./response-items.js";
import { subjectFunction, type SubjectOf } from "./subject-template.js";

export const SOURCE_TYPE = "generic_polling";
/** Events handed to the sink per emit() call, so a huge poll still meets backpressure. */
export const EMIT_CHUNK = 1000;

export interface GenericPollingOptions {
  /** Jitter source for the backoff, in [0, 1); Math.random by default. */
  random?: () => number;
}

type PollResult =
  | { outcome: "not_modified" }
  | { outcome: "ok"; items: unknown[]; etag?: string; lastModified?: string }
  | { outcome: "failed"; problem: PollProblem }
  | { outcome: "stopped" };

interface Waiter {
  due: boolean;
  finish(): void;
}

const utf8 = new TextEncoder();

export class GenericPollingSource implements Source {
  readonly type = SOURCE_TYPE;
  private readonly displayUrl: string;
  private readonly itemsPath: DotPath | undefined;
  private readonly idPath: DotPath | undefined;
  private readonly subjectOf: SubjectOf;
  private readonly scope: StateScope;
  private readonly stopController = new AbortController();
  private readonly stopSignal: Promise<"stopped">;
  private sink: SourceSink | undefined;
  private polls: PendingPolls | undefined;
  private loop: Promise<void> | undefined;
  private waiter: Waiter | undefined;
  private writes: Promise<void> = Promise.resolve();
  private started = false;
  private stopped = false;
  private paused = false;
  private failures = 0;

  constructor(
    private readonly config: GenericPollingConfig,
    private readonly ctx: SourceContext,
    private readonly options: GenericPollingOptions = {},
  ) {
    const url = new URL(config.url);
    this.displayUrl = `${url.origin}${url.pathname}`;
    this.itemsPath = config.items_path === undefined ? undefined : parseDotPath(config.items_path);
    this.idPath = config.id_field === undefined ? undefined : parseDotPath(config.id_field);
    this.subjectOf = subjectFunction(config.subject_template, this.displayUrl);
    this.scope = { url: config.url, idField: config.id_field };
    this.stopSignal = new Promise((resolve) => this.stopController.signal.addEventListener("abort", () => resolve("stopped"), { once: true }));
  }

  async start(sink: SourceSink, resumeFrom?: SourcePosition): Promise<void> {
    if (this.started || this.stopped) throw new Error(`generic_polling source "${this.ctx.name}" was already started or stopped`);
    this.started = true;
    const loaded = await loadPollState(this.ctx.stateDir, this.scope);
    const state = loaded.state;
    if (loaded.found === "other_scope") {
      this.ctx.log.warn({ source: this.ctx.name }, "generic_polling: state was kept for another url or id_field; every current item is reported again");
    }
    // The agent's last acknowledged position can be ahead of the state file (a crash
    // between the two, or a lost state folder): never reuse a generation below it.
    // Reusing its own generation is safe: a position there repeats only for content
    // that was already recorded, which the idempotency key then dedups.
    const resumeGeneration = resumeFrom === undefined ? undefined : generationOf(resumeFrom);
    if (resumeGeneration !== undefined && resumeGeneration - 1 > state.generation) {
      if (loaded.found === "none") {
        this.ctx.log.warn({ source: this.ctx.name, resume_from: resumeFrom }, "generic_polling: no state file although events were acknowledged before; every current item is reported again");
      }
      state.generation = resumeGeneration - 1;
    }
    this.sink = sink;
    this.polls = new PendingPolls(state);

    const first = await this.poll();
    if (first.outcome === "stopped") throw new Error(`generic_polling source "${this.ctx.name}" was stopped while starting`);
    if (first.outcome === "failed" && failsStart(first.problem)) {
      this.stopped = true;
      throw new PollProblemError({ ...first.problem, message: `generic_polling source "${this.ctx.name}" cannot start: ${first.problem.message}` });
    }
    this.ctx.log.info({ source: this.ctx.name, url: this.displayUrl, interval_ms: this.config.interval_ms }, "generic_polling: started");
    this.loop = this.run(first);
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    if (this.waiter?.due) this.waiter.finish();
  }

  async acknowledge(position: SourcePosition): Promise<void> {
    const settled = this.polls?.acknowledge(position);
    if (settled !== undefined) await this.persist(settled);
  }

  async stop(): Promise<void> {
    if (!this.stopped) {
      this.stopped = true;
      this.stopController.abort();
      this.waiter?.finish();
    }
    await this.loop;
    await this.writes;
  }

  private async run(first: PollResult): Promise<void> {
    let result = first;
    for (;;) {
      const delay = await this.handle(result);
      if (this.stopped) return;
      await this.waitForNextPoll(delay);
      if (this.stopped) return;
      result = await this.poll();
      if (result.outcome === "stopped") return;
    }
  }

  /** Acts on one poll's outcome; returns the delay before the next one. */
  private async handle(result: PollResult): Promise<number> {
    try {
      switch (result.outcome) {
        case "stopped":
          return 0;
        case "not_modified":
          this.succeeded();
          return this.config.interval_ms;
        case "failed":
          return this.failed(result.problem);
        case "ok":
          return await this.report(result);
      }
    } catch (err) {
      // Nothing above should throw; if it does, keep polling rather than die silently.
      this.ctx.log.error({ source: this.ctx.name, err: String(err) }, "generic_polling: poll handling failed");
      return this.failed({ kind: "server_error", message: String(err) }, false);
    }
  }

  private async report(result: { items: unknown[]; etag?: string; lastModified?: string }): Promise<number> {
    const polls = this.polls!;
    const before = polls.working;
    const diff = diffItems(result.items, before.known, this.idPath);
    if (diff.duplicateIds > 0 || diff.withoutId > 0) {
      this.ctx.log.warn(
        { source: this.ctx.name, duplicate_ids: diff.duplicateIds, without_id: diff.withoutId, id_field: this.config.id_field },
        "generic_polling: some items repeat an id (the first one counts) or have no usable id (told apart by content)",
      );
    }
    const generation = diff.changes.length > 0 ? before.generation + 1 : before.generation;
    const next: PollState = { generation, known: diff.next };
    if (result.etag !== undefined) next.etag = result.etag;
    if (result.lastModified !== undefined) next.lastModified = result.lastModified;

    if (diff.changes.length === 0) {
      this.succeeded();
      if (!sameState(before, next)) {
        polls.add({ generation, lastPosition: undefined, state: next });
        const settled = polls.settleQuiet();
        if (settled !== undefined) await this.persist(settled).catch(() => undefined);
      }
      return this.config.interval_ms;
    }

    const events = diff.changes.map((change) => this.event(generation, change));
    const pending: PendingPoll = { generation, lastPosition: events.at(-1)!.position, state: next };
    polls.add(pending);
    try {
      for (let i = 0; i < events.length; i += EMIT_CHUNK) {
        if (this.stopped) return 0;
        await this.emit(events.slice(i, i + EMIT_CHUNK));
      }
    } catch (err) {
      polls.discard(pending);
      return this.failed({ kind: "server_error", message: `the agent did not take ${events.length} events: ${String(err)}` }, false);
    }
    this.succeeded();
    const count = (kind: ItemChange["change"]) => diff.changes.filter((c) => c.change === kind).length;
    this.ctx.log.info(
      { source: this.ctx.name, generation, items: result.items.length, created: count("created"), changed: count("changed"), seen: count("seen") },
      "generic_polling: reported new or changed items",
    );
    return this.config.interval_ms;
  }

  private event(generation: number, change: ItemChange): SourceEvent {
    return {
      kind: `${this.config.kind_prefix}.${change.change}`,
      subject: this.subjectOf({ id: change.id, digest: change.digest }),
      position: formatPosition(generation, change.id, change.digest),
      payloadType: "application/json",
      payload: utf8.encode(change.canonical),
    };
  }

  /** sink.emit, given up (not cancelled) when the source stops: stop() must not hang on a full outbox. */
  private async emit(events: SourceEvent[]): Promise<void> {
    const emitted = this.sink!.emit(events);
    emitted.catch(() => undefined);
    await Promise.race([emitted, this.stopSignal]);
  }

  private succeeded(): void {
    if (this.failures > 0) this.ctx.log.info({ source: this.ctx.name, failures: this.failures }, "generic_polling: polling works again");
    this.failures = 0;
  }

  private failed(problem: PollProblem, upstream = true): number {
    this.failures++;
    const delay = nextDelayMs(
      this.failures,
      { intervalMs: this.config.interval_ms, maxBackoffMs: this.config.max_backoff_ms, random: this.options.random },
      problem.retryAfterMs,
    );
    const fields = { source: this.ctx.name, problem: problem.kind, status: problem.httpStatus, failures: this.failures, retry_in_ms: delay };
    if (upstream && isConfigProblem(problem)) {
      this.ctx.log.error(fields, `generic_polling: ${problem.message} (configuration problem? backing off)`);
    } else {
      this.ctx.log.warn(fields, `generic_polling: ${problem.message} (backing off)`);
    }
    return delay;
  }

  private async poll(): Promise<PollResult> {
    const working = this.polls!.working;
    const got = await conditionalGet({
      url: this.config.url,
      displayUrl: this.displayUrl,
      headers: this.config.headers,
      etag: working.etag,
      lastModified: working.lastModified,
      timeoutMs: this.config.timeout_ms,
      maxBytes: this.config.max_response_bytes,
      signal: this.stopController.signal,
    });
    if (got.outcome !== "ok") return got;
    const items = findItems(got.body, this.itemsPath);
    if (typeof items === "string") {
      return { outcome: "failed", problem: { kind: "no_items", httpStatus: 200, message: `GET ${this.displayUrl}: ${items}` } };
    }
    const result: PollResult = { outcome: "ok", items };
    if (got.etag !== undefined) result.etag = got.etag;
    if (got.lastModified !== undefined) result.lastModified = got.lastModified;
    return result;
  }

  /** Waits `delay` ms, then, while paused, until resume(); returns at once on stop(). */
  private waitForNextPoll(delay: number): Promise<void> {
    return new Promise((resolve) => {
      const waiter: Waiter = {
        due: false,
        finish: () => {
          clearTimeout(timer);
          if (this.waiter === waiter) this.waiter = undefined;
          resolve();
        },
      };
      const timer = setTimeout(() => {
        waiter.due = true;
        if (!this.paused) waiter.finish();
      }, delay);
      this.waiter = waiter;
    });
  }

  /** Writes `state`, after any write already under way (each write is the whole state). */
  private persist(state: PollState): Promise<void> {
    const write = this.writes.then(() => savePollState(this.ctx.stateDir, this.scope, state));
    this.writes = write.catch((err: unknown) => {
      this.ctx.log.error({ source: this.ctx.name, err: String(err) }, "generic_polling: could not save state; acknowledged items may be reported again after a restart");
    });
    return write;
  }
}

function sameState(a: PollState, b: PollState): boolean {
  return a.etag === b.etag && a.lastModified === b.lastModified && sameKnown(a.known, b.known);
}

function sameKnown(a: KnownItems, b: KnownItems): boolean {
  if (a.byId.size !== b.byId.size || a.digests.size !== b.digests.size) return false;
  for (const [id, digest] of a.byId) if (b.byId.get(id) !== digest) return false;
  for (const digest of a.digests) if (!b.digests.has(digest)) return false;
  return true;
}
