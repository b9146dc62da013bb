// The `mqtt` source's upstream for the shared source scenarios: the local Mosquitto
// (127.0.0.1:1883, anonymous, persistence on), a fresh topic prefix and client id per
// scenario, and QoS 1 JSON messages `{"i": i, "pad": "xxx"}` published to `<prefix>/<i>`.
//
// Mind the broker's queue limit: this machine's /etc/mosquitto/mosquitto.conf does not set
// max_queued_messages, so Mosquitto 2.0's default of 1000 applies. While the agent is down
// or stalled, messages beyond ~1000 queued (+ receive_maximum in flight) for the session are
// dropped silently (see docs/sources/mqtt.md, "Queue limits").
import { randomBytes } from "node:crypto";
import { connectAsync, type MqttClient } from "mqtt";
import { expect } from "vitest";
import { fingerprintOf, subjectOf } from "../../agent/sources/mqtt/message-event.js";
import { freePort } from "../support/free-port.js";
import type { StoredEntry } from "../../chain/index.js";
import type { ScenarioUpstream, UpstreamUnderTest } from "./upstream.js";

const BROKER = "mqtt://127.0.0.1:1883";
/** `mqtt1:<epoch>:<seq>:<packet id>:<fingerprint>` (docs/sources/mqtt.md, "Positions"). */
const POSITION = /^mqtt1:[0-9a-f]{16}:[1-9]\d*:\d+:([0-9a-f]{16})$/;

class MqttScenario implements ScenarioUpstream {
  readonly config: Record<string, unknown>;
  private publisher: MqttClient | undefined;

  constructor(
    private readonly prefix: string,
    private readonly clientId: string,
  ) {
    // The source's persistent session (and so the broker's queue for it) exists only once
    // the agent has connected with this client_id: messages published before that are not
    // kept for it. The scenario runner always starts the agent before the first produce(),
    // so every produced message is queued for the session, also while the agent is down later.
    this.config = { url: BROKER, client_id: clientId, topics: [`${prefix}/#`], payload_type: "application/json" };
  }

  async produce(from: number, to: number, padBytes = 0): Promise<void> {
    // One publisher for the scenario; in-order QoS 1, each publish awaiting its PUBACK, so
    // the broker holds message i before message i + 1 is sent.
    this.publisher ??= await connectAsync(BROKER, { protocolVersion: 5, clean: true, reconnectPeriod: 1_000, connectTimeout: 5_000 });
    const pad = "x".repeat(padBytes);
    for (let i = from; i < to; i++) {
      await this.publisher.publishAsync(`${this.prefix}/${i}`, JSON.stringify({ i, pad }), { qos: 1 });
    }
  }

  identify(entry: StoredEntry): number {
    expect(entry.kind).toBe("mqtt.message");
    expect(entry.payload_type).toBe("application/json");
    expect(entry.payload).toBeDefined();
    const payload = entry.payload!;
    const body = JSON.parse(Buffer.from(payload).toString("utf8")) as { i: number; pad: string };
    const i = body.i;
    expect(Number.isInteger(i), `payload i ${i}`).toBe(true);
    expect(body.pad).toMatch(/^x*$/);
    // Message i was published to <prefix>/<i>.
    const topic = `${this.prefix}/${i}`;
    expect(entry.subject).toBe(subjectOf(topic));
    // The position's fingerprint is over this very topic and payload.
    const match = POSITION.exec(entry.source_position ?? "");
    expect(match, `source_position ${entry.source_position}`).not.toBeNull();
    expect(match![1]).toBe(fingerprintOf(topic, payload).slice(0, 16));
    return i;
  }

  /**
   * MQTT cannot report it: the broker offers no per-session queue depth (Mosquitto's
   * `$SYS/broker/store/messages/count` is broker-wide, shared with every other test using
   * this broker, and only refreshed every sys_interval, 10 s by default), and peeking at
   * the session with its client id would take it over from the agent. -1 means "not
   * measurable" to the scenario runner.
   */
  async unconsumed(): Promise<number> {
    return -1;
  }

  /** Call with the agent stopped: connecting with its client id takes the session over. */
  async cleanup(): Promise<void> {
    await this.publisher?.endAsync();
    this.publisher = undefined;
    // Clean start with session expiry 0 (MQTT 5 default) discards the queued session,
    // and the broker forgets it at the disconnect.
    const c = await connectAsync(BROKER, { clientId: this.clientId, protocolVersion: 5, clean: true, reconnectPeriod: 0, connectTimeout: 5_000 });
    await c.endAsync();
  }
}

export const mqttUpstream: UpstreamUnderTest = {
  type: "mqtt",

  async prepare(): Promise<ScenarioUpstream> {
    const id = randomBytes(6).toString("hex");
    return new MqttScenario(`audit-ledger-test/${id}`, `audit-ledger-test-${id}`);
  },

  async badConfigs() {
    // Nothing listens on a port that was free a moment ago.
    const port = await freePort();
    return [
      {
        what: "unreachable broker",
        config: { url: `mqtt://127.0.0.1:${port}`, client_id: `audit-ledger-test-${randomBytes(6).toString("hex")}`, topics: ["audit-ledger-test/#"] },
        message: new RegExp(`cannot connect to mqtt://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`),
      },
    ];
  },
};

export default mqttUpstream;
