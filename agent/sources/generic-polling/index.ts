// The generic_polling source type (SPEC §4): polls an HTTP endpoint returning JSON on an
// interval, with ETag / If-None-Match, and reports items that are new or changed, by a
// configured id field or else by content digest. Runs in the daemon or in the server.
import type { SourceFactory } from "../source-factory.js";
import { genericPollingConfigSchema, type GenericPollingConfig } from "./config.js";
import { GenericPollingSource, SOURCE_TYPE } from "./generic-polling-source.js";

const genericPolling: SourceFactory<GenericPollingConfig> = {
  type: SOURCE_TYPE,
  configSchema: genericPollingConfigSchema,
  create: (config, ctx) => new GenericPollingSource(config, ctx),
};

export default genericPolling;
export { genericPollingConfigSchema, GenericPollingSource };
export type { GenericPollingConfig };
export { PollProblemError } from "./poll-problem.js";
