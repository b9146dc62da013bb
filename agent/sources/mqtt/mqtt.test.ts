// The mqtt source against the real Mosquitto on 127.0.0.1:1883 (persistence on, no
// auth), with fresh client ids and topics per test, and against private Mosquitto
// instances the tests start themselves (credentials, QoS limit, restart without
// persistence). The sink records what it is given and acknowledges as the agent does
// (from inside emit, once the event is "stored"), unless a test holds it back.
// Conditions are awaited; short sleeps only show that something does NOT happen.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, connect as tcpConnect, type Server } from "node:net";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { connectAsync, type IClientPublishOptions, type MqttClient } from "mqtt";
import type { SourceEvent, SourceSink } from "../source.js";
import mqttSource, { type MqttConfigInput, type MqttSource } from "./index.js";
import { fingerprintOf, subjectOf } from "./message-event.js";
import { topicFilterProblem } from "./topic-filter.js";
import { waitFor } from "../../../test/support/wait-for.js";
import { freePort } from "../../../test/support/free-port.js";
import { readCrashLines, startCrashChild } from "../../../test/support/source-crash-process.js";
import { type LogLine, recordingContext } from "../../../test/support/source-context.js";

const BROKER = "mqtt://127.0.0.1:1883";
const MOSQUITTO = "/usr/sbin/mosquitto";
const POSITION = /^mqtt1:([0-9a-f]{16}):(\d+):(\d+):([0-9a-f]{16})$/;

// ---------------------------------------------------------------------------------------
// Harness

/** Records events; by default acknowledges each batch from inside emit, as the agent does. */
class RecordingSink implements SourceSink {
  readonly events: SourceEvent[] = [];
  readonly gaps: string[] = [];
  emitCalls = 0;
  /** Acknowledgements made from inside emit that have resolved. */
  acked = 0;
  /** ack: acknowledge inside emit; manual: the test acknowledges; hang: emit never resolves. */
  mode: "ack" | "manual" | "hang" = "ack";
  source: MqttSource | undefined;
  beforeAck: ((e: SourceEvent) => Promise<void>) | undefined;

  async emit(events: SourceEvent[]): Promise<void> {
    this.emitCalls++;
    this.events.push(...events);
    if (this.mode === "hang") return new Promise<void>(() => undefined);
    if (this.mode === "manual") return;
    const last = events[events.length - 1]!;
    await this.beforeAck?.(last);
    await this.source!.acknowledge(last.position);
    this.acked++;
  }

  async gap(reason: string): Promise<void> {
    this.gaps.push(reason);
  }

  payloads(): string[] {
    return this.events.map((e) => Buffer.from(e.payload ?? new Uint8Array()).toString("utf8"));
  }
}


const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

let publisher: MqttClient;
beforeAll(async () => {
  try {
    publisher = await connectAsync(BROKER, { protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5_000 });
  } catch (err) {
    throw new Error(`the mqtt tests need Mosquitto on ${BROKER} (no auth): ${(err as Error).message}`);
  }
});
afterAll(async () => {
  await publisher?.endAsync();
});

let counter = 0;
/** A name no other test (or earlier run) uses. */
function unique(prefix: string): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${(counter++).toString(36)}`;
}

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "mqtt-source-"));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

const context = (stateDir: string, lines: LogLine[] = []) => recordingContext("mqtt-test", stateDir, lines);

/** Removes a session from the broker (clean start), so test runs leave none behind. */
async function dropSession(url: string, clientId: string): Promise<void> {
  const c = await connectAsync(url, { clientId, clean: true, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5_000 }).catch(() => undefined);
  await c?.endAsync();
}

function create(config: MqttConfigInput, stateDir: string, lines: LogLine[] = []): MqttSource {
  const source = mqttSource.create(mqttSource.configSchema.parse(config), context(stateDir, lines)) as MqttSource;
  cleanups.push(() => source.stop());
  return source;
}

async function startSource(config: MqttConfigInput, stateDir: string, sink = new RecordingSink(), lines: LogLine[] = []) {
  const source = create(config, stateDir, lines);
  sink.source = source;
  await source.start(sink);
  return { source, sink };
}

/** A test's own client id and topic root, with the session dropped afterwards. */
function names(protocol: 4 | 5 = 5, url = BROKER) {
  const clientId = unique(`al-test-v${protocol}`);
  cleanups.push(() => dropSession(url, clientId));
  return { clientId, root: unique("al-test") };
}

async function publish(topic: string, payload: string | Buffer, opts: IClientPublishOptions = {}, via = publisher): Promise<void> {
  await via.publishAsync(topic, payload, { qos: 1, ...opts });
}


function parsePosition(position: string) {
  const m = POSITION.exec(position);
  if (!m) throw new Error(`not an mqtt position: ${position}`);
  return { epoch: m[1]!, seq: Number(m[2]), packetId: Number(m[3]), fingerprint: m[4]! };
}


/** A Mosquitto of the test's own, on a free port, with the given extra configuration. */
class PrivateBroker {
  private proc: ChildProcess | undefined;
  private stderr = "";
  readonly url: string;

  private constructor(
    readonly port: number,
    private readonly confFile: string,
  ) {
    this.url = `mqtt://127.0.0.1:${port}`;
  }

  /** `conf` gets the broker's own folder, for files it refers to. */
  static async start(conf: string[] | ((dir: string) => string[])): Promise<PrivateBroker> {
    if (!existsSync(MOSQUITTO)) throw new Error(`these tests start their own broker and need ${MOSQUITTO} (apt-get install mosquitto)`);
    const dir = tempDir();
    const lines = typeof conf === "function" ? conf(dir) : conf;
    const port = await freePort();
    const confFile = join(dir, "mosquitto.conf");
    // `user` keeps the current user when started as root (mosquitto would switch to "mosquitto").
    writeFileSync(confFile, [`listener ${port} 127.0.0.1`, `user ${userInfo().username}`, "log_dest stderr", ...lines, ""].join("\n"));
    const broker = new PrivateBroker(port, confFile);
    cleanups.push(() => broker.stop());
    await broker.run();
    return broker;
  }

  async run(): Promise<void> {
    const proc = spawn(MOSQUITTO, ["-c", this.confFile], { stdio: ["ignore", "ignore", "pipe"] });
    this.proc = proc;
    proc.stderr!.on("data", (d: Buffer) => (this.stderr += d.toString()));
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`mosquitto exited: ${this.stderr}`);
      const up = await new Promise<boolean>((r) => {
        const s = tcpConnect(this.port, "127.0.0.1");
        s.once("connect", () => (s.destroy(), r(true)));
        s.once("error", () => r(false));
      });
      if (up) return;
      if (Date.now() > deadline) throw new Error(`mosquitto did not listen on ${this.port}: ${this.stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async stop(): Promise<void> {
    const proc = this.proc;
    this.proc = undefined;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise<void>((r) => proc.once("exit", () => r()));
    proc.kill("SIGTERM");
    await exited;
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.run();
  }
}

// ---------------------------------------------------------------------------------------
// Delivery, per protocol version

describe.each([5, 4] as const)("MQTT %s", (protocol) => {
  const base = (clientId: string, root: string): MqttConfigInput => ({ url: BROKER, client_id: clientId, topics: [`${root}/#`], protocol_version: protocol });

  it("records N messages published at QoS 1 as exactly N events, in order, with topic, payload and position", async () => {
    const { clientId, root } = names(protocol);
    const { sink } = await startSource(base(clientId, root), tempDir());
    const N = 60;
    const sent: { topic: string; payload: string }[] = [];
    for (let i = 0; i < N; i++) sent.push({ topic: `${root}/dev${i % 3}/reading`, payload: `{"n":${i}}` });
    for (const s of sent) await publish(s.topic, s.payload);
    await waitFor(`${N} events`, () => sink.events.length >= N);
    await new Promise((r) => setTimeout(r, 200)); // nothing more comes
    expect(sink.events).toHaveLength(N);
    expect(sink.emitCalls).toBe(N); // one message per emit: each PUBACK waits for its own
    const epochs = new Set<string>();
    sink.events.forEach((e, i) => {
      expect(e.kind).toBe("mqtt.message");
      expect(e.subject).toBe(`mqtt://${sent[i]!.topic}`);
      expect(Buffer.from(e.payload!).toString("utf8")).toBe(sent[i]!.payload);
      expect(e.payloadType).toBe("application/octet-stream");
      expect(e.occurredAt).toBeUndefined();
      const p = parsePosition(e.position);
      expect(p.seq).toBe(i + 1);
      expect(p.packetId).toBeGreaterThan(0);
      expect(p.fingerprint).toBe(fingerprintOf(sent[i]!.topic, Buffer.from(sent[i]!.payload)).slice(0, 16));
      epochs.add(p.epoch);
    });
    expect(epochs.size).toBe(1);
    expect(new Set(sink.events.map((e) => e.position)).size).toBe(N);
  });

  it("withholds the PUBACK while emit has not resolved: after a restart the broker redelivers, with the same positions", async () => {
    const { clientId, root } = names(protocol);
    const stateDir = tempDir();
    const hung = new RecordingSink();
    hung.mode = "hang";
    const first = await startSource(base(clientId, root), stateDir, hung);
    for (let i = 0; i < 3; i++) await publish(`${root}/t`, `m${i}`);
    await waitFor("the first emit", () => hung.events.length === 1);
    await new Promise((r) => setTimeout(r, 300)); // one message at a time: no second emit
    expect(hung.emitCalls).toBe(1);
    await first.source.stop();

    const { sink } = await startSource(base(clientId, root), stateDir);
    await waitFor("3 redelivered events", () => sink.events.length >= 3);
    expect(sink.payloads()).toEqual(["m0", "m1", "m2"]);
    expect(sink.events[0]!.position).toBe(hung.events[0]!.position);
    expect(sink.events.map((e) => parsePosition(e.position).seq)).toEqual([1, 2, 3]);
  });

  it("sends the PUBACK only when acknowledged, and only then takes the next message", async () => {
    const { clientId, root } = names(protocol);
    const sink = new RecordingSink();
    sink.mode = "manual";
    const { source } = await startSource(base(clientId, root), tempDir(), sink);
    await publish(`${root}/a`, "one");
    await publish(`${root}/a`, "two");
    await waitFor("the first event", () => sink.events.length === 1);
    await new Promise((r) => setTimeout(r, 300)); // emit resolved, but no acknowledgement yet
    expect(sink.events).toHaveLength(1);
    await source.acknowledge(sink.events[0]!.position);
    await waitFor("the second event", () => sink.events.length === 2);
    await source.acknowledge(sink.events[1]!.position);
    expect(sink.payloads()).toEqual(["one", "two"]);
  });

  it("delivers messages published while stopped after a restart (persistent session), numbering on", async () => {
    const { clientId, root } = names(protocol);
    const stateDir = tempDir();
    const first = await startSource(base(clientId, root), stateDir);
    await publish(`${root}/x`, "before");
    await waitFor("the first event acknowledged", () => first.sink.acked === 1);
    await first.source.stop();
    for (let i = 0; i < 5; i++) await publish(`${root}/x`, `while-stopped-${i}`);

    const { sink } = await startSource(base(clientId, root), stateDir);
    await waitFor("5 queued events", () => sink.events.length >= 5);
    expect(sink.payloads()).toEqual([0, 1, 2, 3, 4].map((i) => `while-stopped-${i}`));
    const before = parsePosition(first.sink.events[0]!.position);
    const after = sink.events.map((e) => parsePosition(e.position));
    expect(after.map((p) => p.seq)).toEqual([2, 3, 4, 5, 6]);
    expect(after.every((p) => p.epoch === before.epoch)).toBe(true);
  });

  it("pause() stops emitting and leaves the messages with the broker; resume() continues in order", async () => {
    const { clientId, root } = names(protocol);
    const stateDir = tempDir();
    const { source, sink } = await startSource(base(clientId, root), stateDir);
    source.pause();
    for (let i = 0; i < 30; i++) await publish(`${root}/p`, `p${i}`);
    await new Promise((r) => setTimeout(r, 300)); // paused: nothing may arrive
    expect(sink.events).toHaveLength(0);
    source.resume();
    await waitFor("30 events after resume", () => sink.events.length >= 30);
    expect(sink.payloads()).toEqual(Array.from({ length: 30 }, (_, i) => `p${i}`));

    // Paused and stopped: nothing was acknowledged, so a restart gets it all.
    source.pause();
    for (let i = 0; i < 10; i++) await publish(`${root}/p`, `q${i}`);
    await new Promise((r) => setTimeout(r, 100));
    await source.stop();
    const again = await startSource(base(clientId, root), stateDir);
    await waitFor("10 events after restart", () => again.sink.events.length >= 10);
    expect(again.sink.payloads()).toEqual(Array.from({ length: 10 }, (_, i) => `q${i}`));
  });

  it("gives a redelivered message its first position after the connection drops with the event in flight", async () => {
    const { clientId, root } = names(protocol);
    const sink = new RecordingSink();
    const { source } = await startSource({ ...base(clientId, root), reconnect_period_ms: 100 }, tempDir(), sink);
    const client = (source as unknown as { client: MqttClient }).client;
    let dropped = false;
    sink.beforeAck = async () => {
      if (dropped) return;
      dropped = true;
      // The event is stored, but the connection goes before the PUBACK can.
      const closed = new Promise((r) => client.once("close", () => r(undefined)));
      client.stream.destroy();
      await closed;
    };
    await publish(`${root}/d`, "same");
    await publish(`${root}/d`, "next");
    await waitFor("the copy and the next message", () => sink.events.length >= 3);
    expect(sink.payloads()).toEqual(["same", "same", "next"]);
    expect(sink.events[1]!.position).toBe(sink.events[0]!.position);
    expect(parsePosition(sink.events[2]!.position).seq).toBe(2);
  });

  it("survives an agent slower than the keepalive: the connection is renewed, nothing is lost or renumbered", async () => {
    const { clientId, root } = names(protocol);
    const sink = new RecordingSink();
    const lines: LogLine[] = [];
    await startSource({ ...base(clientId, root), keepalive_s: 1, reconnect_period_ms: 100 }, tempDir(), sink, lines);
    let slow = true;
    sink.beforeAck = async () => {
      if (!slow) return;
      slow = false;
      // Blocked on this message, mqtt.js reads no PINGRESP: it drops the connection after 1.5 s.
      await waitFor("the connection to drop", () => lines.some((l) => l.msg.startsWith("mqtt: connection lost")));
    };
    for (let i = 0; i < 5; i++) await publish(`${root}/slow`, `s${i}`);
    await waitFor("all 5 messages", () => new Set(sink.payloads()).size === 5 && sink.payloads().at(-1) === "s4");
    const byPosition = new Map<string, string>();
    for (const e of sink.events) {
      const payload = Buffer.from(e.payload!).toString("utf8");
      expect(byPosition.get(e.position) ?? payload).toBe(payload);
      byPosition.set(e.position, payload);
    }
    // s0 was stored but its PUBACK could not go: the broker sent it again, same position.
    expect(sink.payloads()).toEqual(["s0", "s0", "s1", "s2", "s3", "s4"]);
    expect([...byPosition.values()]).toEqual(["s0", "s1", "s2", "s3", "s4"]);
    expect([...byPosition.keys()].map((p) => parsePosition(p).seq)).toEqual([1, 2, 3, 4, 5]);
  });

  it("starts although the SUBACK waits behind queued messages the agent cannot store yet", async () => {
    const { clientId, root } = names(protocol);
    const stateDir = tempDir();
    const first = await startSource(base(clientId, root), stateDir);
    await first.source.stop();
    for (let i = 0; i < 3; i++) await publish(`${root}/q`, `queued-${i}`);
    // As at an agent start with a full outbox: emit waits for the ingest stream, which starts after the sources.
    const hung = new RecordingSink();
    hung.mode = "hang";
    const lines: LogLine[] = [];
    const blocked = await startSource({ ...base(clientId, root), connect_timeout_ms: 500 }, stateDir, hung, lines);
    expect(hung.emitCalls).toBe(1);
    expect(lines.some((l) => l.level === "warn" && l.msg.includes("SUBACK waits behind queued messages"))).toBe(true);
    await blocked.source.stop();
    const { sink } = await startSource(base(clientId, root), stateDir);
    await waitFor("3 events", () => sink.events.length >= 3);
    expect(sink.payloads()).toEqual(["queued-0", "queued-1", "queued-2"]);
    expect(sink.events[0]!.position).toBe(hung.events[0]!.position);
  });

  it("gives two identical messages two positions", async () => {
    const { clientId, root } = names(protocol);
    const { sink } = await startSource(base(clientId, root), tempDir());
    await publish(`${root}/same`, "ping");
    await publish(`${root}/same`, "ping");
    await waitFor("2 events", () => sink.events.length >= 2);
    expect(sink.events[0]!.position).not.toBe(sink.events[1]!.position);
  });

  it("records retained messages published while subscribed, not the ones sent because a subscription was made", async () => {
    const { clientId, root } = names(protocol);
    await publish(`${root}/state`, "old-retained", { retain: true });
    cleanups.push(() => publish(`${root}/state`, "", { retain: true })); // clears it
    const stateDir = tempDir();
    const first = await startSource(base(clientId, root), stateDir);
    await publish(`${root}/state`, "new-retained", { retain: true });
    await publish(`${root}/other`, "plain");
    await waitFor("2 events", () => first.sink.events.length >= 2);
    expect(first.sink.payloads()).toEqual(["new-retained", "plain"]);
    await first.source.stop();
    // A restart subscribes again: the retained value is not recorded a second time.
    const again = await startSource(base(clientId, root), stateDir);
    await publish(`${root}/other`, "after");
    await waitFor("1 event", () => again.sink.events.length >= 1);
    expect(again.sink.payloads()).toEqual(["after"]);
  });

  it("records QoS 0 messages too, with packet id 0 in the position", async () => {
    const { clientId, root } = names(protocol);
    const { sink } = await startSource(base(clientId, root), tempDir());
    await publish(`${root}/q0`, "fire-and-forget", { qos: 0 });
    await waitFor("1 event", () => sink.events.length >= 1);
    expect(parsePosition(sink.events[0]!.position).packetId).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------
// Crash

describe("kill -9", () => {
  const runChild = (config: MqttConfigInput, stateDir: string, outFile: string) => startCrashChild("mqtt", config, stateDir, outFile, "ack", cleanups);
  const readLines = (file: string) => readCrashLines<{ position: string; payload: string }>(file);

  it("killed halfway and restarted: every message exactly once by position, in order", async () => {
    const { clientId, root } = names(5);
    const stateDir = tempDir();
    const outFile = join(tempDir(), "events.jsonl");
    const config: MqttConfigInput = { url: BROKER, client_id: clientId, topics: [`${root}/#`] };
    const N = 300;
    let child = await runChild(config, stateDir, outFile);
    for (let i = 0; i < N; i++) await publish(`${root}/k`, `k${i}`);
    await waitFor("some events before the kill", () => readLines(outFile).length >= 30);
    const killed = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await killed;
    const beforeKill = readLines(outFile).length;
    expect(beforeKill).toBeLessThan(N);

    child = await runChild(config, stateDir, outFile);
    await waitFor(`${N} distinct positions`, () => new Set(readLines(outFile).map((l) => l.position)).size >= N, 30_000);
    child.kill("SIGTERM");
    const lines = readLines(outFile);
    const byPosition = new Map<string, string>();
    const order: string[] = [];
    for (const l of lines) {
      const seen = byPosition.get(l.position);
      if (seen === undefined) {
        byPosition.set(l.position, l.payload);
        order.push(l.payload);
      } else {
        expect(seen).toBe(l.payload); // a replay has the position of the first delivery
      }
    }
    expect(byPosition.size).toBe(N);
    expect(order).toEqual(Array.from({ length: N }, (_, i) => `k${i}`));
  });
});

// ---------------------------------------------------------------------------------------
// Payload types (MQTT 5 content type)

describe("payload type", () => {
  it("uses the MQTT 5 content type, falls back for undeclared or broken JSON, and leaves empty payloads out", async () => {
    const { clientId, root } = names(5);
    const { sink } = await startSource({ url: BROKER, client_id: clientId, topics: [`${root}/#`] }, tempDir());
    await publish(`${root}/a`, '{"ok":true}', { properties: { contentType: "application/json" } });
    await publish(`${root}/b`, "not json", { properties: { contentType: "application/json" } });
    await publish(`${root}/c`, "plain bytes");
    await publish(`${root}/d`, "");
    await waitFor("4 events", () => sink.events.length >= 4);
    expect(sink.events.map((e) => e.payloadType)).toEqual(["application/json", "application/octet-stream", "application/octet-stream", undefined]);
    expect(sink.events[3]!.payload).toBeUndefined();
  });

  it("uses the configured payload_type for messages without a content type", async () => {
    const { clientId, root } = names(4);
    const { sink } = await startSource({ url: BROKER, client_id: clientId, topics: [`${root}/#`], protocol_version: 4, payload_type: "application/json" }, tempDir());
    await publish(`${root}/a`, '{"n":1}');
    await publish(`${root}/a`, "{broken");
    await waitFor("2 events", () => sink.events.length >= 2);
    expect(sink.events.map((e) => e.payloadType)).toEqual(["application/json", "application/octet-stream"]);
  });

  it("cuts subjects beyond the ledger's 1024 characters with a digest of the topic", () => {
    const topic = `a/${"x".repeat(2000)}`;
    const subject = subjectOf(topic);
    expect(subject.length).toBeLessThanOrEqual(1024);
    expect(subject.startsWith("mqtt://a/xxx")).toBe(true);
    expect(subject).toMatch(/#sha256=[0-9a-f]{64}$/);
    expect(subjectOf("plant/7/temp")).toBe("mqtt://plant/7/temp");
  });
});

// ---------------------------------------------------------------------------------------
// Broker-side problems, session loss

describe("start() fails naming the problem", () => {
  it("refused connection (bad port)", async () => {
    const source = create({ url: "mqtt://127.0.0.1:1", client_id: unique("x"), topics: ["a/#"] }, tempDir());
    await expect(source.start(new RecordingSink())).rejects.toThrow(/mqtt source "mqtt-test": cannot connect to mqtt:\/\/127\.0\.0\.1:1: .*ECONNREFUSED/);
  });

  it("unknown host", async () => {
    const source = create({ url: "mqtt://no-such-host.invalid:1883", client_id: unique("x"), topics: ["a/#"], connect_timeout_ms: 5_000 }, tempDir());
    await expect(source.start(new RecordingSink())).rejects.toThrow(/mqtt:\/\/no-such-host\.invalid:1883/);
  });

  it("no CONNACK within connect_timeout_ms", async () => {
    const sockets: import("node:net").Socket[] = [];
    const silent: Server = createServer((s) => void sockets.push(s)); // accepts, never answers
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    cleanups.push(() => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => silent.close(() => r()));
    });
    const port = (silent.address() as { port: number }).port;
    const source = create({ url: `mqtt://127.0.0.1:${port}`, client_id: unique("x"), topics: ["a/#"], connect_timeout_ms: 300 }, tempDir());
    await expect(source.start(new RecordingSink())).rejects.toThrow(`no CONNACK from mqtt://127.0.0.1:${port} within connect_timeout_ms (300 ms)`);
  });

  it("bad credentials", async () => {
    const broker = await PrivateBroker.start((dir) => {
      const r = spawnSync("mosquitto_passwd", ["-b", "-c", join(dir, "passwd"), "agent", "right"]);
      if (r.status !== 0) throw new Error(`mosquitto_passwd failed: ${r.stderr.toString()}`);
      return ["allow_anonymous false", `password_file ${join(dir, "passwd")}`, "persistence false"];
    });
    for (const protocol of [5, 4] as const) {
      const source = create({ url: broker.url, client_id: unique("x"), topics: ["a/#"], protocol_version: protocol, username: "agent", password: "wrong" }, tempDir());
      await expect(source.start(new RecordingSink())).rejects.toThrow(new RegExp(`the broker at mqtt://127\\.0\\.0\\.1:${broker.port} refused the connection: .*(User Name or Password|authori[sz]ed)`, "i"));
    }
    const ok = await startSource({ url: broker.url, client_id: unique("x"), topics: ["a/#"], username: "agent", password: "right" }, tempDir());
    await ok.source.stop();
  });

  it("a broker that grants less than QoS 1", async () => {
    const broker = await PrivateBroker.start(["allow_anonymous true", "max_qos 0", "persistence false"]);
    const source = create({ url: broker.url, client_id: unique("x"), topics: ["plant/#"], protocol_version: 4 }, tempDir());
    await expect(source.start(new RecordingSink())).rejects.toThrow(/granted QoS 0 for topic filter "plant\/#"/);
  });

  it("password_env naming a variable that is not set", async () => {
    const source = create({ url: BROKER, client_id: unique("x"), topics: ["a/#"], username: "u", password_env: "NO_SUCH_VARIABLE_FOR_MQTT_TEST" }, tempDir());
    await expect(source.start(new RecordingSink())).rejects.toThrow("password_env: the environment variable NO_SUCH_VARIABLE_FOR_MQTT_TEST is not set");
  });
});

describe("session loss", () => {
  it("records a gap when the broker lost the session (restarted without persistence), then goes on", async () => {
    const broker = await PrivateBroker.start(["allow_anonymous true", "persistence false"]);
    const { clientId, root } = names(5, broker.url);
    const config: MqttConfigInput = { url: broker.url, client_id: clientId, topics: [`${root}/#`], reconnect_period_ms: 100 };
    const stateDir = tempDir();
    const lines: LogLine[] = [];
    const { sink } = await startSource(config, stateDir, new RecordingSink(), lines);
    const pub = await connectAsync(broker.url, { protocolVersion: 5, reconnectPeriod: 100 });
    cleanups.push(() => pub.endAsync(true));
    await publish(`${root}/s`, "before", {}, pub);
    await waitFor("the first event", () => sink.events.length === 1);

    // While the source runs: it reconnects, finds no session, records a gap and subscribes again.
    await broker.restart();
    await waitFor("a gap entry", () => sink.gaps.length === 1);
    expect(sink.gaps[0]).toContain(`no longer has the session of client id "${clientId}"`);
    await waitFor("the subscriptions renewed", () => lines.some((l) => l.msg === "mqtt: subscribed again in the new session"));
    await waitFor("the publisher back", () => pub.connected);
    await publish(`${root}/s`, "after", {}, pub);
    await waitFor("a message after the session loss", () => sink.events.length === 2);
    expect(sink.payloads()).toEqual(["before", "after"]);
    // Numbering goes on from the state folder, whatever the broker's packet ids do.
    const seqs = sink.events.map((e) => parsePosition(e.position).seq);
    expect(seqs).toEqual(seqs.map((_, i) => i + 1));
    expect(lines.some((l) => l.level === "error" && l.msg.includes("no longer has the session"))).toBe(true);
  });

  it("records a gap at start when the session was lost while the agent was stopped", async () => {
    const broker = await PrivateBroker.start(["allow_anonymous true", "persistence false"]);
    const { clientId, root } = names(4, broker.url);
    const config: MqttConfigInput = { url: broker.url, client_id: clientId, topics: [`${root}/#`], protocol_version: 4 };
    const stateDir = tempDir();
    const first = await startSource(config, stateDir);
    await first.source.stop();
    expect(first.sink.gaps).toHaveLength(0);
    await broker.restart();
    const { sink } = await startSource(config, stateDir);
    await waitFor("a gap entry", () => sink.gaps.length === 1);
    // A second restart with the session intact: no new gap.
    const again = await startSource(config, stateDir);
    await new Promise((r) => setTimeout(r, 200));
    expect(again.sink.gaps).toHaveLength(0);
  });
});

// ---------------------------------------------------------------------------------------
// Configuration

describe("configuration", () => {
  const schema = mqttSource.configSchema;
  const ok: MqttConfigInput = { url: BROKER, client_id: "agent-1", topics: ["plant/+/temp", "alarms/#"] };

  function problems(input: unknown): string[] {
    const r = schema.safeParse(input);
    if (r.success) return [];
    return r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
  }

  it("fills in the defaults", () => {
    const c = schema.parse(ok);
    expect(c).toMatchObject({ protocol_version: 5, keepalive_s: 60, connect_timeout_ms: 10_000, include_retained: false, kind: "mqtt.message", payload_type: "application/octet-stream" });
    expect(mqttSource.type).toBe("mqtt");
  });

  it("names the field in every error", () => {
    expect(problems({ ...ok, url: "http://broker" })).toEqual(["url: must be an mqtt:// or mqtts:// URL, not http://"]);
    expect(problems({ ...ok, url: "mqtt://user:pw@broker" })[0]).toMatch(/^url: must not contain user:password/);
    expect(problems({ ...ok, topics: [] })).toEqual(["topics: list at least one topic filter"]);
    expect(problems({ ...ok, topics: ["a/#/b"] })[0]).toMatch(/^topics\.0: "a\/#\/b": # must be a whole level/);
    expect(problems({ ...ok, topics: ["a/b+"] })[0]).toMatch(/^topics\.0: "a\/b\+": \+ must be a whole level/);
    expect(problems({ ...ok, topics: ["a", "a"] })).toEqual(['topics.1: "a" is listed twice']);
    expect(problems({ ...ok, client_id: undefined })[0]).toMatch(/^client_id: /);
    expect(problems({ ...ok, topic: "x" })[0]).toMatch(/topic/);
    expect(problems({ ...ok, protocol_version: 3 })[0]).toMatch(/^protocol_version: /);
    expect(problems({ ...ok, protocol_version: 4, session_expiry_s: 60 })).toEqual(["session_expiry_s: is an MQTT 5 setting; set protocol_version: 5"]);
    expect(problems({ ...ok, protocol_version: 4, password: "x" })).toEqual(["username: MQTT 3.1.1 sends a password only with a username"]);
    expect(problems({ ...ok, username: "u", password: "p", password_env: "P" })).toEqual(["password_env: give password or password_env, not both"]);
    expect(problems({ ...ok, kind: "bad kind" })[0]).toMatch(/^kind: /);
    expect(problems({ ...ok, payload_type: "json" })[0]).toMatch(/^payload_type: must be a media type/);
    expect(problems({ ...ok, connect_timeout_ms: 5 })[0]).toMatch(/^connect_timeout_ms: /);
  });

  it("checks topic filter syntax", () => {
    for (const good of ["#", "+", "a/b", "a/+/c", "a/#", "/a", "a//b", "$SYS/#", "$share/g/a/#"]) expect(topicFilterProblem(good)).toBeUndefined();
    for (const bad of ["", "a#", "a/#/b", "a/b+", "+a", "$share/g", "$share//a", "$share/g+/a", "a\u0000b"]) expect(topicFilterProblem(bad)).toBeDefined();
  });
});
