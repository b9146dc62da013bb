// The postgres_logical source end to end against the suite's second Postgres cluster
// (wal_level=logical, its own port), through pgoutput (test/sources/source-scenarios.ts).
import { describeSourceScenarios } from "./source-scenarios.js";
import { postgresLogicalUpstream } from "./postgres-logical.upstream.js";

describeSourceScenarios(postgresLogicalUpstream);
