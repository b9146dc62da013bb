// The redis_keyspace source type (SPEC §4): Redis keyspace notifications (best effort:
// fire-and-forget upstream, every possible loss recorded as a gap entry) and Redis
// Streams read through a consumer group (at least once: XACK only once the entries are
// durable in the outbox, own pending entries recovered after a restart), one or both per
// source. Runs in the daemon. See docs/sources/redis-keyspace.md for set-up and guarantees.
import type { SourceFactory } from "../source-factory.js";
import { redisKeyspaceConfigSchema, type RedisKeyspaceConfig, type RedisKeyspaceConfigInput } from "./config.js";
import { RedisKeyspaceSource, SOURCE_TYPE } from "./redis-keyspace-source.js";

const redisKeyspace: SourceFactory<RedisKeyspaceConfig> = {
  type: SOURCE_TYPE,
  configSchema: redisKeyspaceConfigSchema,
  create: (config, ctx) => new RedisKeyspaceSource(config, ctx),
};

export default redisKeyspace;
export { redisKeyspaceConfigSchema, RedisKeyspaceSource };
export type { RedisKeyspaceConfig, RedisKeyspaceConfigInput };
export { RedisSourceError } from "./connection.js";
