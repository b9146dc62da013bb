// The kafka_consumer source end to end against the suite's Kafka 3.9 broker (KRaft, one
// node; test/services/README.md), a fresh topic of several partitions per scenario
// (test/sources/source-scenarios.ts).
import { describeSourceScenarios } from "./source-scenarios.js";
import { kafkaConsumerUpstream } from "./kafka-consumer.upstream.js";

describeSourceScenarios(kafkaConsumerUpstream);
