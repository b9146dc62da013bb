// Every source type the daemon can run, by type. A new source is a new folder under
// agent/sources/ and one entry here. Only each source's config schema is loaded up
// front (to validate the config file); its implementation and upstream driver (mqtt,
// redis, chokidar...) load when an agent actually runs it, so an agent carries in
// memory only the drivers it uses.
import type { z } from "zod";
import type { SourceFactory } from "./source-factory.js";
import { filesystemWatchConfigSchema } from "./filesystem-watch/config.js";
import { genericPollingConfigSchema } from "./generic-polling/config.js";
import { mqttConfigSchema } from "./mqtt/config.js";
import { redisKeyspaceConfigSchema } from "./redis-keyspace/config.js";
import { postgresLogicalConfigSchema } from "./postgres-logical/config.js";
import { mongoChangeStreamConfigSchema } from "./mongo-change-stream/config.js";
import { kafkaConsumerConfigSchema } from "./kafka-consumer/config.js";
import { s3NotificationConfigSchema } from "./s3-notification/config.js";

export interface RegisteredSource {
  /** The SPEC §2 source type. */
  type: string;
  configSchema: z.ZodType;
  /** The source's factory, loaded on first use. */
  load(): Promise<SourceFactory<any>>;
}

const entries: RegisteredSource[] = [
  { type: "filesystem_watch", configSchema: filesystemWatchConfigSchema, load: async () => (await import("./filesystem-watch/index.js")).default },
  { type: "generic_polling", configSchema: genericPollingConfigSchema, load: async () => (await import("./generic-polling/index.js")).default },
  { type: "mqtt", configSchema: mqttConfigSchema, load: async () => (await import("./mqtt/index.js")).default },
  { type: "redis_keyspace", configSchema: redisKeyspaceConfigSchema, load: async () => (await import("./redis-keyspace/index.js")).default },
  { type: "postgres_logical", configSchema: postgresLogicalConfigSchema, load: async () => (await import("./postgres-logical/index.js")).default },
  { type: "mongo_change_stream", configSchema: mongoChangeStreamConfigSchema, load: async () => (await import("./mongo-change-stream/index.js")).default },
  { type: "kafka_consumer", configSchema: kafkaConsumerConfigSchema, load: async () => (await import("./kafka-consumer/index.js")).default },
  { type: "s3_notification", configSchema: s3NotificationConfigSchema, load: async () => (await import("./s3-notification/index.js")).default },
];

export const SOURCES: ReadonlyMap<string, RegisteredSource> = new Map(entries.map((e) => [e.type, e]));
