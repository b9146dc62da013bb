// The mongo_change_stream source type (SPEC §4): watches a MongoDB collection, database
// or deployment with a change stream and records every change event, persisting the
// resume token only once the event is durable in the agent's outbox. Runs in the
// daemon, with the mongodb driver. See docs/sources/mongo-change-stream.md for the options,
// events, positions and guarantee.
import type { SourceFactory } from "../source-factory.js";
import { mongoChangeStreamConfigSchema, type MongoChangeStreamConfig, type MongoChangeStreamConfigInput } from "./config.js";
import { MongoChangeStreamSource, SOURCE_TYPE } from "./mongo-change-stream-source.js";

const mongoChangeStreamSource: SourceFactory<MongoChangeStreamConfig> = {
  type: SOURCE_TYPE,
  configSchema: mongoChangeStreamConfigSchema,
  create: (config, ctx) => new MongoChangeStreamSource(config, ctx),
};

export default mongoChangeStreamSource;
export { mongoChangeStreamConfigSchema, MongoChangeStreamSource };
export type { MongoChangeStreamConfig, MongoChangeStreamConfigInput };
