// The redis_keyspace source end to end, in its Streams consumer-group mode (the one with
// an exactly-once guarantee), against the local Redis (test/sources/source-scenarios.ts).
import { describeSourceScenarios } from "./source-scenarios.js";
import { redisKeyspaceUpstream } from "./redis-keyspace.upstream.js";

describeSourceScenarios(redisKeyspaceUpstream);
