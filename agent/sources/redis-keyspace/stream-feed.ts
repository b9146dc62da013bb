// Redis Streams through a consumer group. An entry is XACKed only in acknowledge(),
// i.e. once the agent has it in its outbox; until then it stays in this consumer's
// pending entries list (PEL). The read loop:
//   1. its own PEL first (XREADGROUP ... 0, paged): entries delivered before a crash or
//      a lost connection but never acknowledged;
//   2. with claim_idle_ms, entries other consumers have held that long (XAUTOCLAIM);
//   3. new entries (XREADGROUP ... BLOCK ... >).
// Any error (connection lost, agent refused the events) goes back to step 1 after a
// backoff, so a reply lost on the wire is found again in the PEL. Positions are
// `<stream>/<entry id>`: a redelivered entry has the same one and the ledger drops it.
import { RESP_TYPES } from "redis";
import type { SourcePosition } from "../source.js";
import type { StreamsConfig } from "./config.js";
import { asText, closeConnection, errorText, openConnection, pairs, RedisSourceError, send, type RedisConnection, type RedisTarget, type Reply } from "./connection.js";
import { streamEntryEvent, streamPosition } from "./event-shape.js";
import { backoffMs, type FeedHost, type Outgoing, type StreamEntryRef } from "./feed-host.js";

const BUFFERS = { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } } as const;
/** Ids per XACK command. */
const XACK_CHUNK = 1000;

interface RawEntry {
  stream: string;
  id: string;
  /** null: the entry is in the PEL but was deleted from the stream (XDEL, trimming). */
  fields: Buffer[] | null;
}

interface Held extends StreamEntryRef {
  /** Durable in the outbox; only the XACK is outstanding (it failed, or is under way). */
  durable: boolean;
}

export interface StreamFeedDeps {
  host: FeedHost;
  target: RedisTarget;
  cmd: RedisConnection;
  consumer: string;
  clientName: string;
  connectTimeoutMs: number;
  maxReconnectDelayMs: number;
  ctx: Parameters<typeof openConnection>[1]["ctx"];
  /** The server's version as [major, minor], when INFO could tell. */
  serverVersion: [number, number] | undefined;
}

const keyOf = (stream: string, id: string) => `${stream}\n${id}`;

export class StreamFeed {
  private readonly host: FeedHost;
  private reader: RedisConnection | undefined;
  private readerId: string | undefined;
  /** Entries handed to the sink and not yet XACKed. */
  private readonly held = new Map<string, Held>();
  private needPending = true;
  private claimDueAt = 0;
  private blocking = false;
  private parkedNow = false;
  /** Streams whose group vanished, reported once per incident. */
  private readonly vanished = new Set<string>();
  private loop: Promise<void> | undefined;

  constructor(
    private readonly config: StreamsConfig,
    private readonly deps: StreamFeedDeps,
  ) {
    this.host = deps.host;
  }

  /** True while the read loop waits for resume() (nothing is being read). */
  get parked(): boolean {
    return this.parkedNow;
  }

  /** Checks every stream and group (creating them when configured to), then connects the reader. */
  async prepare(): Promise<void> {
    const version = this.deps.serverVersion;
    if (version !== undefined && version[0] < 5) {
      throw new RedisSourceError(`Redis ${version.join(".")} at ${this.deps.target.display} has no Streams (streams need Redis 5 or later)`);
    }
    if (this.config.claim_idle_ms !== undefined && version !== undefined && (version[0] < 6 || (version[0] === 6 && version[1] < 2))) {
      throw new RedisSourceError(`streams.claim_idle_ms needs XAUTOCLAIM (Redis 6.2 or later); the server at ${this.deps.target.display} runs ${version.join(".")}`);
    }
    for (const key of this.config.keys) await this.checkStream(key);
    this.reader = await openConnection(this.deps.target, {
      clientName: this.deps.clientName,
      role: "stream",
      connectTimeoutMs: this.deps.connectTimeoutMs,
      maxReconnectDelayMs: this.deps.maxReconnectDelayMs,
      ctx: this.deps.ctx,
      events: {
        onLost: () => {
          this.readerId = undefined;
        },
      },
    });
    this.host.log.info(
      { source: this.host.name, streams: this.config.keys, group: this.config.group, consumer: this.deps.consumer, redis: this.deps.target.display },
      "redis_keyspace: reading streams through the consumer group",
    );
  }

  private async checkStream(key: string): Promise<void> {
    const cmd = this.deps.cmd;
    const { group, create_group: create } = this.config;
    const type = asText(await send(cmd, ["TYPE", key]));
    if (type === "none") {
      if (!create) {
        throw new RedisSourceError(
          `stream "${key}" (streams.keys) does not exist on ${this.deps.target.display}: create it and its group (XGROUP CREATE ${key} ${group} 0 MKSTREAM), or set streams.create_group: true`,
        );
      }
      await this.createGroup(key, this.config.group_start_id);
      return;
    }
    if (type !== "stream") throw new RedisSourceError(`key "${key}" (streams.keys) holds a ${type}, not a stream`);
    const groups = await send(cmd, ["XINFO", "GROUPS", key]);
    const names = Array.isArray(groups) ? groups.map((g) => asText(pairs(g).get("name"))) : [];
    if (names.includes(group)) return;
    if (!create) {
      throw new RedisSourceError(
        `consumer group "${group}" (streams.group) does not exist on stream "${key}": create it (XGROUP CREATE ${key} ${group} 0), or set streams.create_group: true`,
      );
    }
    await this.createGroup(key, this.config.group_start_id);
  }

  private async createGroup(key: string, startId: string): Promise<void> {
    try {
      await this.deps.cmd.sendCommand(["XGROUP", "CREATE", key, this.config.group, startId, "MKSTREAM"]);
      this.host.log.info({ source: this.host.name, stream: key, group: this.config.group, start_id: startId }, "redis_keyspace: created the consumer group");
    } catch (err) {
      if (!/BUSYGROUP/.test(errorText(err))) throw err; // created meanwhile by someone else: fine
    }
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Cuts short a blocking read so pause() takes effect at once. */
  onPause(): void {
    if (!this.blocking || this.readerId === undefined || this.readerId === "") return;
    this.deps.cmd.sendCommand(["CLIENT", "UNBLOCK", this.readerId]).catch(() => undefined);
  }

  async stop(): Promise<void> {
    closeConnection(this.reader);
    await this.loop;
  }

  /** Everything in `entries` is durable: XACK it (a failed XACK is retried by the loop). */
  async acknowledge(entries: StreamEntryRef[]): Promise<void> {
    for (const e of entries) {
      const held = this.held.get(keyOf(e.stream, e.id));
      if (held !== undefined) held.durable = true;
    }
    try {
      await this.xack(entries);
    } catch (err) {
      this.host.log.warn(
        { source: this.host.name, entries: entries.length, err: errorText(err) },
        "redis_keyspace: XACK failed; retrying (the entries are recorded; until then they stay pending in Redis)",
      );
    }
  }

  private async xack(entries: StreamEntryRef[]): Promise<void> {
    const byStream = new Map<string, string[]>();
    for (const e of entries) {
      const ids = byStream.get(e.stream) ?? [];
      ids.push(e.id);
      byStream.set(e.stream, ids);
    }
    for (const [stream, ids] of byStream) {
      for (let i = 0; i < ids.length; i += XACK_CHUNK) {
        const chunk = ids.slice(i, i + XACK_CHUNK);
        await this.deps.cmd.sendCommand(["XACK", stream, this.config.group, ...chunk]);
        for (const id of chunk) this.held.delete(keyOf(stream, id));
      }
    }
  }

  // --- the read loop -------------------------------------------------------------------

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.host.stopped) {
      try {
        if (!(await this.whenRunnable())) return;
        const retry = [...this.held.values()].filter((h) => h.durable);
        if (retry.length > 0) await this.xack(retry);
        if (this.needPending) {
          for (const key of this.config.keys) if (!(await this.readPending(key))) break;
          if (this.host.paused) continue;
          this.needPending = false;
        }
        if (this.config.claim_idle_ms !== undefined && Date.now() >= this.claimDueAt) {
          for (const key of this.config.keys) await this.claimIdle(key, this.config.claim_idle_ms);
          this.claimDueAt = Date.now() + this.config.claim_idle_ms;
        }
        await this.readNew();
        failures = 0;
        this.vanished.clear();
      } catch (err) {
        if (this.host.stopped) return;
        failures++;
        this.needPending = true;
        const text = errorText(err);
        if (/NOGROUP/.test(text)) await this.groupVanished(text);
        const delay = backoffMs(failures, this.deps.maxReconnectDelayMs);
        this.host.log.warn({ source: this.host.name, err: text, retry_in_ms: delay }, "redis_keyspace: reading the streams failed; retrying from the pending entries");
        await this.host.sleep(delay);
      }
    }
  }

  /** Waits while paused; false once stopped. */
  private async whenRunnable(): Promise<boolean> {
    if (this.host.paused && !this.host.stopped) {
      this.parkedNow = true;
      await this.host.runnable();
      this.parkedNow = false;
    }
    return !this.host.stopped;
  }

  /** Delivers this consumer's pending entries of `stream`, oldest first; false if paused or stopped midway. */
  private async readPending(stream: string): Promise<boolean> {
    let cursor = "0";
    for (;;) {
      if (this.host.paused || this.host.stopped) return false;
      const { group, batch_size: count } = this.config;
      const reply = await send(this.reader!, ["XREADGROUP", "GROUP", group, this.deps.consumer, "COUNT", String(count), "STREAMS", stream, cursor], BUFFERS);
      const entries = parseStreams(reply);
      if (entries.length === 0) return true;
      cursor = entries.at(-1)!.id;
      await this.deliver(entries, "pending");
    }
  }

  /** Takes over entries other consumers left pending for `idleMs` (a consumer that died). */
  private async claimIdle(stream: string, idleMs: number): Promise<void> {
    let cursor = "0-0";
    do {
      if (this.host.paused || this.host.stopped) return;
      const { group, batch_size: count } = this.config;
      const reply = await send(this.deps.cmd, ["XAUTOCLAIM", stream, group, this.deps.consumer, String(idleMs), cursor, "COUNT", String(count)], BUFFERS);
      if (!Array.isArray(reply)) return;
      cursor = asText(reply[0]);
      const entries = parseEntries(stream, reply[1]);
      // Redis 7 removes deleted entries from the PEL itself and lists their ids apart.
      const deleted = Array.isArray(reply[2]) ? reply[2].map((id) => ({ stream, id: asText(id), fields: null })) : [];
      if (entries.length + deleted.length > 0) {
        this.host.log.info({ source: this.host.name, stream, claimed: entries.length, deleted: deleted.length }, "redis_keyspace: claimed entries idle in other consumers");
      }
      await this.deliver([...entries, ...deleted], "claimed");
    } while (cursor !== "0-0" && cursor !== "0");
  }

  private async readNew(): Promise<void> {
    const reader = this.reader!;
    if (this.readerId === undefined) {
      try {
        this.readerId = asText(await send(reader, ["CLIENT", "ID"]));
      } catch (err) {
        // Only pause() is slower without it: a blocking read then runs out its block_ms.
        if (!/NOPERM|unknown (sub)?command/i.test(errorText(err))) throw err;
        this.readerId = "";
        this.host.log.warn({ source: this.host.name, err: errorText(err) }, "redis_keyspace: CLIENT ID is not allowed; pause() waits for the blocking read to end");
      }
    }
    if (this.host.paused) return;
    const { keys, group, batch_size: count, block_ms: block } = this.config;
    const args = ["XREADGROUP", "GROUP", group, this.deps.consumer, "COUNT", String(count), "BLOCK", String(block), "STREAMS", ...keys, ...keys.map(() => ">")];
    this.blocking = true;
    let reply: Reply;
    try {
      reply = await send(reader, args, BUFFERS);
    } finally {
      this.blocking = false;
    }
    const entries = parseStreams(reply);
    if (entries.length > 0) await this.deliver(entries, "new");
  }

  /**
   * Hands entries to the sink. Entries already handed out (held) are skipped; deleted
   * ones (no fields) become one gap entry per call, then are XACKed out of the PEL.
   */
  private async deliver(entries: RawEntry[], origin: "pending" | "claimed" | "new"): Promise<void> {
    const deleted = entries.filter((e) => e.fields === null);
    const fresh = entries.filter((e) => e.fields !== null && !this.held.has(keyOf(e.stream, e.id)));
    if (fresh.length > 0) {
      const out: Outgoing[] = fresh.map((e) => ({
        event: streamEntryEvent({ stream: e.stream, db: this.deps.target.db, id: e.id, fields: e.fields!, kind: this.config.kind, maxPayloadBytes: this.config.max_payload_bytes }),
        entry: { stream: e.stream, id: e.id },
      }));
      for (const e of fresh) this.held.set(keyOf(e.stream, e.id), { stream: e.stream, id: e.id, durable: false });
      try {
        await this.host.emit(out);
      } catch (err) {
        for (const e of fresh) {
          const key = keyOf(e.stream, e.id);
          if (this.held.get(key)?.durable === false) this.held.delete(key);
        }
        throw err;
      }
    }
    if (deleted.length > 0 && !this.host.stopped) {
      const byStream = new Map<string, string[]>();
      for (const d of deleted) byStream.set(d.stream, [...(byStream.get(d.stream) ?? []), d.id]);
      for (const [stream, ids] of byStream) {
        const from: SourcePosition = streamPosition(stream, ids[0]!);
        const to: SourcePosition = streamPosition(stream, ids.at(-1)!);
        const where = origin === "claimed" ? "pending in another consumer" : "pending in this consumer";
        this.host.log.error({ source: this.host.name, stream, ids: ids.slice(0, 20), count: ids.length }, "redis_keyspace: pending stream entries were deleted before they were recorded");
        if (!(await this.host.gap(`${ids.length} entr${ids.length === 1 ? "y" : "ies"} of stream "${stream}" (group "${this.config.group}") ${where} were deleted from the stream (XDEL or trimming) before this source acknowledged them; their content is gone (an entry may have been recorded just before a crash)`, from, to))) return;
        if (origin !== "claimed" || !this.deps.serverVersion || this.deps.serverVersion[0] < 7) {
          await this.deps.cmd.sendCommand(["XACK", stream, this.config.group, ...ids]);
        }
      }
    }
  }

  /** The group (or the whole stream) is gone: say entries may be lost, re-create when configured to. */
  private async groupVanished(text: string): Promise<void> {
    const named = /No such key '(.*)' or consumer group/.exec(text)?.[1];
    const streams = named !== undefined && this.config.keys.includes(named) ? [named] : this.config.keys;
    for (const stream of streams) {
      if (this.vanished.has(stream)) continue;
      let exists = false;
      try {
        const groups = await send(this.deps.cmd, ["XINFO", "GROUPS", stream]);
        exists = Array.isArray(groups) && groups.some((g) => asText(pairs(g).get("name")) === this.config.group);
      } catch {
        exists = false;
      }
      if (exists) continue;
      this.vanished.add(stream);
      const reason = `stream "${stream}" or its consumer group "${this.config.group}" was deleted while the source read it: entries added before it was re-created may be lost`;
      this.host.log.error({ source: this.host.name, stream, group: this.config.group }, `redis_keyspace: ${reason}`);
      await this.host.gap(reason);
      // Deleted here, so re-created from the start: whatever the stream holds now is new to the ledger.
      if (this.config.create_group) await this.createGroup(stream, "0");
      else this.host.log.error({ source: this.host.name, stream }, "redis_keyspace: re-create the group (XGROUP CREATE ... MKSTREAM) or set streams.create_group: true; retrying");
    }
  }
}

/** An XREADGROUP reply: [[stream, [[id, fields | null], ...]], ...] or null. */
function parseStreams(reply: Reply): RawEntry[] {
  if (!Array.isArray(reply)) return [];
  const out: RawEntry[] = [];
  for (const s of reply) {
    if (!Array.isArray(s)) continue;
    out.push(...parseEntries(asText(s[0]), s[1]));
  }
  return out;
}

function parseEntries(stream: string, list: Reply | undefined): RawEntry[] {
  if (!Array.isArray(list)) return [];
  const out: RawEntry[] = [];
  for (const m of list) {
    if (!Array.isArray(m)) continue; // Redis 6.2 XAUTOCLAIM: a deleted entry is a bare null
    const fields = Array.isArray(m[1]) ? m[1].map((f) => (Buffer.isBuffer(f) ? f : Buffer.from(asText(f)))) : null;
    out.push({ stream, id: asText(m[0]), fields });
  }
  return out;
}
