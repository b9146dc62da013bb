// The `redis_keyspace` source's upstream for the shared source scenarios, in its Streams
// consumer-group mode (the exactly-once one; keyspace notifications are best effort):
// the local Redis (127.0.0.1:6379, db 0), a fresh stream and group per scenario, and one
// entry `i <i> pad <xxx>` per event.
import { randomBytes } from "node:crypto";
import { createClient } from "redis";
import { expect } from "vitest";
import { streamPosition, subjectFor } from "../../agent/sources/redis-keyspace/event-shape.js";
import { freePort } from "../support/free-port.js";
import type { StoredEntry } from "../../chain/index.js";
import type { ScenarioUpstream, UpstreamUnderTest } from "./upstream.js";

const REDIS = "redis://127.0.0.1:6379";
/** A RESP2 reply as sendCommand gives it. */
type Reply = string | number | null | Reply[];

const newName = () => `audit-ledger-test:${randomBytes(6).toString("hex")}`;
/** A stream id as [ms, seq], for ordering. */
const idParts = (id: string): [bigint, bigint] => {
  const [ms, seq] = id.split("-");
  return [BigInt(ms!), BigInt(seq ?? 0)];
};
const idAfter = (a: string, b: string): boolean => {
  const [am, as] = idParts(a);
  const [bm, bs] = idParts(b);
  return am > bm || (am === bm && as > bs);
};

function makeClient() {
  // RESP2, as the source speaks it.
  return createClient({ url: REDIS, RESP: 2 });
}

class RedisStreamScenario implements ScenarioUpstream {
  readonly config: Record<string, unknown>;
  /** Entry id of each produced event, to check positions against. */
  private readonly ids = new Map<number, string>();

  constructor(
    private readonly client: ReturnType<typeof makeClient>,
    private readonly key: string,
    private readonly group: string,
  ) {
    this.config = { url: REDIS, streams: { keys: [key], group, create_group: true, group_start_id: "0" } };
  }

  async produce(from: number, to: number, padBytes = 0): Promise<void> {
    const pad = "x".repeat(padBytes);
    // Commands sent in the same tick go out pipelined, in order, on the one connection:
    // the entries get increasing ids in the order of i. Chunks bound the memory.
    for (let start = from; start < to; start += 100) {
      const batch = Array.from({ length: Math.min(100, to - start) }, (_, k) => start + k);
      const ids = await Promise.all(batch.map((i) => this.client.xAdd(this.key, "*", { i: String(i), pad })));
      batch.forEach((i, k) => this.ids.set(i, ids[k]!));
    }
  }

  identify(entry: StoredEntry): number {
    expect(entry.kind).toBe("redis.stream_entry");
    expect(entry.subject).toBe(subjectFor(0, this.key));
    expect(entry.payload_type).toBe("application/json");
    expect(entry.payload).toBeDefined();
    const body = JSON.parse(Buffer.from(entry.payload!).toString("utf8")) as { stream: unknown; id: string; fields: Record<string, string> };
    expect(body.stream).toBe(this.key);
    expect(Object.keys(body.fields ?? {})).toEqual(["i", "pad"]);
    const i = Number(body.fields.i);
    expect(Number.isInteger(i) && String(i) === body.fields.i, `fields.i ${body.fields.i}`).toBe(true);
    expect(body.fields.pad).toMatch(/^x*$/);
    // The entry XADD made for event i, and the position built from its id.
    if (this.ids.has(i)) expect(body.id).toBe(this.ids.get(i));
    expect(entry.source_position).toBe(streamPosition(this.key, body.id));
    return i;
  }

  /**
   * Entries of the stream not yet delivered to the group (XREADGROUP ... >): Redis 7's
   * `lag`. Entries delivered but not XACKed (the PEL) count as taken: the source has read
   * them and they are on their way to its outbox, so while the ledger is stalled this
   * number shows what the source left upstream. When `lag` is unknown (null, or Redis < 7),
   * count the produced entries after the group's last-delivered-id.
   */
  async unconsumed(): Promise<number> {
    const groups = (await this.client.sendCommand(["XINFO", "GROUPS", this.key])) as Reply[];
    // Each group is a flat [name, value, name, value...] list.
    const asMap = (flat: Reply[]) => new Map(flat.flatMap((v, k) => (k % 2 === 0 ? [[String(v), flat[k + 1]!] as const] : [])));
    const info = groups.map((g) => asMap(g as Reply[])).find((m) => m.get("name") === this.group);
    if (info === undefined) throw new Error(`stream ${this.key} has no group ${this.group}`);
    const lag = info.get("lag");
    if (typeof lag === "number") return lag;
    const last = String(info.get("last-delivered-id"));
    return [...this.ids.values()].filter((id) => idAfter(id, last)).length;
  }

  async cleanup(): Promise<void> {
    await this.client.del(this.key); // the group goes with the stream
    this.client.destroy();
  }
}

export const redisKeyspaceUpstream: UpstreamUnderTest = {
  type: "redis_keyspace",

  async prepare(): Promise<ScenarioUpstream> {
    const client = makeClient();
    await client.connect();
    const key = newName();
    const group = "audit-ledger-test";
    // Created here (from the start, "0"), not only by the agent: entries produced before
    // the agent first starts are kept for the group, and unconsumed() works from the start.
    await client.sendCommand(["XGROUP", "CREATE", key, group, "0", "MKSTREAM"]);
    return new RedisStreamScenario(client, key, group);
  },

  async badConfigs() {
    const port = await freePort(); // nothing listens there
    const missing = newName();
    return [
      {
        what: "unreachable server",
        config: { url: `redis://127.0.0.1:${port}`, streams: { keys: [newName()], create_group: true } },
        message: new RegExp(`cannot connect to Redis at 127\\.0\\.0\\.1:${port}/0 .*ECONNREFUSED`),
      },
      {
        // An ACL user that does not exist: refused whether or not the server has a password.
        what: "wrong credentials",
        config: { url: REDIS, username: "audit-ledger-test-nobody", password: "wrong", streams: { keys: [newName()], create_group: true } },
        message: /Redis at 127\.0\.0\.1:6379\/0 refused the credentials \(check username and password\)/,
      },
      {
        what: "missing stream (create_group off)",
        config: { url: REDIS, streams: { keys: [missing] } },
        // Matched on the unquoted part: the quoted key is escaped in JSON log lines.
        message: new RegExp(`does not exist on 127\\.0\\.0\\.1:6379/0: create it and its group \\(XGROUP CREATE ${missing} `),
      },
    ];
  },
};

export default redisKeyspaceUpstream;
