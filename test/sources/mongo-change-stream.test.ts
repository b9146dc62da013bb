// The mongo_change_stream source end to end against the suite's MongoDB-compatible test
// server (mongo-java-server with an oplog; test/services/README.md says what it lacks),
// watching one collection (test/sources/source-scenarios.ts).
import { describeSourceScenarios } from "./source-scenarios.js";
import { mongoChangeStreamUpstream } from "./mongo-change-stream.upstream.js";

describeSourceScenarios(mongoChangeStreamUpstream);
