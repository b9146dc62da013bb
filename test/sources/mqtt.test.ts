// The mqtt source end to end against the local Mosquitto (test/sources/source-scenarios.ts).
import { describeSourceScenarios } from "./source-scenarios.js";
import { mqttUpstream } from "./mqtt.upstream.js";

// Mosquitto keeps at most max_queued_messages (1000 by default) for a session that is not
// taking messages: the stalled-ledger backlog stays under it, with fatter messages so the
// 1 MiB outbox still fills.
describeSourceScenarios(mqttUpstream, { backlogEvents: 900, backlogPadBytes: 4096 });
