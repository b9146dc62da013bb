// The postgres_logical source type (SPEC §4): streams row changes of a publication
// through a logical replication slot (pgoutput) and confirms the slot's position only up
// to what the agent has durable. Runs in the daemon, with pg and pg-copy-streams.
// See docs/sources/postgres-logical.md for the options, events, positions and guarantee.
import type { SourceFactory } from "../source-factory.js";
import { postgresLogicalConfigSchema, type PostgresLogicalConfig, type PostgresLogicalConfigInput } from "./config.js";
import { PostgresLogicalSource, SOURCE_TYPE } from "./postgres-logical-source.js";

const postgresLogicalSource: SourceFactory<PostgresLogicalConfig> = {
  type: SOURCE_TYPE,
  configSchema: postgresLogicalConfigSchema,
  create: (config, ctx) => new PostgresLogicalSource(config, ctx),
};

export default postgresLogicalSource;
export { postgresLogicalConfigSchema, PostgresLogicalSource };
export type { PostgresLogicalConfig, PostgresLogicalConfigInput };
