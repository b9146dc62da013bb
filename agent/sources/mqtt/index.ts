// The mqtt source type (SPEC §4): subscribes to topic filters at QoS 1 in a persistent
// session and records every message, sending its PUBACK only once the event is durable
// in the agent's outbox, in arrival order. Runs in the daemon, with mqtt.js.
// See docs/sources/mqtt.md for the options, events, positions and guarantee.
import type { SourceFactory } from "../source-factory.js";
import { mqttConfigSchema, type MqttConfig, type MqttConfigInput } from "./config.js";
import { MqttSource, SOURCE_TYPE } from "./mqtt-source.js";

const mqttSource: SourceFactory<MqttConfig> = {
  type: SOURCE_TYPE,
  configSchema: mqttConfigSchema,
  create: (config, ctx) => new MqttSource(config, ctx),
};

export default mqttSource;
export { mqttConfigSchema, MqttSource };
export type { MqttConfig, MqttConfigInput };
