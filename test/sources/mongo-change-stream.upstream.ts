// The `mongo_change_stream` source's upstream for the shared source scenarios: the suite's
// MongoDB-compatible server (test/services/, `inject("mongoUrl")`, or TEST_MONGO_URL for
// a real replica set), a fresh database and collection per scenario (mongo-java-server
// hands a collection's watchers the drop of any collection in the same database), and
// one insert `{_id: i, i, pad}` per event.
//
// unconsumed(): MongoDB keeps no consumer state (the resume token lives with the agent),
// so this reads the source's own `resume-token.json` in the agent's state folder. The
// scenario runner makes that folder under the system temp dir (`al-src-*/state`); the
// file is found there by its scope, which names this scenario's unique collection.
// Then it counts the inserts a change stream opened at that resume point still sees.
// -1 ("not measurable") until the file exists.
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BSON, MongoClient, type ChangeStreamOptions, type Db, type Document } from "mongodb";
import { expect, inject } from "vitest";
import { RESUME_FILE, tokenFromJson, type ResumeRecord } from "../../agent/sources/mongo-change-stream/resume-state.js";
import { freePort } from "../support/free-port.js";
import type { StoredEntry } from "../../chain/index.js";
import type { ScenarioUpstream, UpstreamUnderTest } from "./upstream.js";

/** `mongo1:<clusterTime t>.<i>:<32 hex>` (docs/sources/mongo-change-stream.md, "Positions"). */
const POSITION = /^mongo1:(\d+)\.(\d+):[0-9a-f]{32}$/;
/** Where the scenario runner puts agent folders: mkdtemp(tmpdir(), "al-src-") + "/state". */
const AGENT_DIR_PREFIX = "al-src-";

function mongoUrl(): string {
  return process.env.TEST_MONGO_URL ?? inject("mongoUrl");
}

class MongoScenario implements ScenarioUpstream {
  readonly config: Record<string, unknown>;
  private produced = 0;
  private stateFile: string | undefined;

  constructor(
    private readonly client: MongoClient,
    private readonly db: Db,
    private readonly collection: string,
  ) {
    this.config = { url: mongoUrl(), database: db.databaseName, collection, max_await_time_ms: 200, server_selection_timeout_ms: 5_000 };
  }

  private get scope(): string {
    return `${this.db.databaseName}.${this.collection}`;
  }

  async produce(from: number, to: number, padBytes = 0): Promise<void> {
    const pad = "x".repeat(padBytes);
    const coll = this.db.collection(this.collection);
    // In order, one insert (one change event) per i; chunks bound the memory.
    for (let start = from; start < to; start += 100) {
      const docs = Array.from({ length: Math.min(100, to - start) }, (_, k) => ({ _id: start + k, i: start + k, pad }));
      await coll.insertMany(docs as unknown as Document[], { ordered: true });
    }
    this.produced = Math.max(this.produced, to);
  }

  identify(entry: StoredEntry): number {
    expect(entry.kind).toBe("mongo.insert");
    const prefix = `${this.scope}/`;
    expect(entry.subject?.startsWith(prefix), `subject ${entry.subject}`).toBe(true);
    const i = Number(entry.subject!.slice(prefix.length));
    expect(entry.subject).toBe(`${prefix}${i}`);
    expect(entry.payload_type).toBe("application/json");
    expect(entry.payload).toBeDefined();
    const body = JSON.parse(Buffer.from(entry.payload!).toString("utf8")) as {
      operationType: string;
      ns: { db: string; coll: string };
      documentKey: { _id: number };
      fullDocument: { _id: number; i: number; pad: string };
      clusterTime: { $timestamp: { t: number; i: number } };
    };
    expect(body.operationType).toBe("insert");
    expect(body.ns).toEqual({ db: this.db.databaseName, coll: this.collection });
    expect(body.documentKey).toEqual({ _id: i });
    expect(body.fullDocument._id).toBe(i);
    expect(body.fullDocument.i).toBe(i);
    expect(typeof body.fullDocument.pad).toBe("string");
    // The position carries the event's cluster time.
    const match = POSITION.exec(entry.source_position ?? "");
    expect(match, `source_position ${entry.source_position}`).not.toBeNull();
    expect([Number(match![1]), Number(match![2])]).toEqual([body.clusterTime.$timestamp.t, body.clusterTime.$timestamp.i]);
    return i;
  }

  async unconsumed(): Promise<number> {
    const record = this.readState();
    if (record === undefined) return -1;
    const options: ChangeStreamOptions = { batchSize: 1000, maxAwaitTimeMS: 50 };
    if (record.token !== null) options.startAfter = tokenFromJson(record.token);
    else if (record.start_at_operation_time !== null) options.startAtOperationTime = new BSON.Timestamp(record.start_at_operation_time);
    else return -1;
    const stream = this.db.collection(this.collection).watch([], options);
    let left = 0;
    try {
      // Everything after the resume point up to what was produced; an empty read ends it.
      for (let change = await stream.tryNext(); change !== null && left < this.produced; change = await stream.tryNext()) {
        if (change.operationType === "insert") left++;
      }
    } finally {
      await stream.close();
    }
    return left;
  }

  /** The source's saved resume point for this scenario's collection, if the agent wrote one yet. */
  private readState(): ResumeRecord | undefined {
    this.stateFile ??= this.findStateFile();
    if (this.stateFile === undefined) return undefined;
    try {
      return JSON.parse(readFileSync(this.stateFile, "utf8")) as ResumeRecord;
    } catch {
      return undefined; // replaced this very moment, or gone with the agent folder
    }
  }

  private findStateFile(): string | undefined {
    for (const dir of readdirSync(tmpdir())) {
      if (!dir.startsWith(AGENT_DIR_PREFIX)) continue;
      const sources = join(tmpdir(), dir, "state", "sources");
      if (!existsSync(sources)) continue;
      for (const name of readdirSync(sources)) {
        const file = join(sources, name, RESUME_FILE);
        try {
          if ((JSON.parse(readFileSync(file, "utf8")) as ResumeRecord).scope === this.scope) return file;
        } catch {
          // another source type's folder, or not written yet
        }
      }
    }
    return undefined;
  }

  async cleanup(): Promise<void> {
    await this.db.dropDatabase().catch(() => undefined);
    await this.client.close();
  }
}

export const mongoChangeStreamUpstream: UpstreamUnderTest = {
  type: "mongo_change_stream",

  async prepare(): Promise<ScenarioUpstream> {
    const id = randomBytes(6).toString("hex");
    const client = new MongoClient(mongoUrl(), { serverSelectionTimeoutMS: 5_000 });
    await client.connect();
    return new MongoScenario(client, client.db(`al_scenario_${id}`), `events_${id}`);
  },

  async badConfigs() {
    // Nothing listens on a port that was free a moment ago.
    const port = await freePort();
    return [
      {
        what: "unreachable server",
        config: { url: `mongodb://127.0.0.1:${port}/`, database: "audit", collection: "events", server_selection_timeout_ms: 1_000 },
        message: new RegExp(`cannot reach MongoDB at 127\\.0\\.0\\.1:${port} within server_selection_timeout_ms \\(1000 ms\\): connect ECONNREFUSED`),
      },
      {
        what: "URL option the driver does not know",
        config: { url: `${mongoUrl()}${mongoUrl().includes("?") ? "&" : "?"}replicaSett=rs0`, database: "audit", collection: "events" },
        message: /url: option replicasett is not supported/,
      },
    ];
  },
};

export default mongoChangeStreamUpstream;
