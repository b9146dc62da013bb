// The kafka_consumer source type (SPEC §4): a consumer-group member (kafkajs) that
// records every message of the configured topics and commits each partition's offset
// only up to what the agent has made durable. Runs in the daemon.
// See docs/sources/kafka-consumer.md for the options, events, positions and guarantee.
import type { SourceFactory } from "../source-factory.js";
import { kafkaConsumerConfigSchema, type KafkaConsumerConfig, type KafkaConsumerConfigInput } from "./config.js";
import { KafkaConsumerSource, SOURCE_TYPE } from "./kafka-consumer-source.js";

const kafkaConsumerSource: SourceFactory<KafkaConsumerConfig> = {
  type: SOURCE_TYPE,
  configSchema: kafkaConsumerConfigSchema,
  create: (config, ctx) => new KafkaConsumerSource(config, ctx),
};

export default kafkaConsumerSource;
export { kafkaConsumerConfigSchema, KafkaConsumerSource };
export type { KafkaConsumerConfig, KafkaConsumerConfigInput };
