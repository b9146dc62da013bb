// ALIVE / STALE / DEAD from the last sign of life (SPEC §4): a heartbeat, a committed
// batch, or a hello. Server-side agents run in the server and are alive with it.
import { AgentStatus } from "../../gen/auditledger/v1/agent_registry_service_pb.js";
import type { AgentRecord } from "./agent-store.js";

export interface StatusThresholds {
  /** Silence after which an agent is STALE. */
  staleAfterMs: number;
  /** Silence after which an agent is DEAD. */
  deadAfterMs: number;
}

export function agentStatus(a: AgentRecord, t: StatusThresholds, now = Date.now()): AgentStatus {
  if (a.serverSide) return AgentStatus.ALIVE;
  const last = Math.max(a.lastHeartbeatAt?.getTime() ?? 0, a.lastEventAt?.getTime() ?? 0, a.registeredAt.getTime());
  const silent = now - last;
  if (silent >= t.deadAfterMs) return AgentStatus.DEAD;
  if (silent >= t.staleAfterMs) return AgentStatus.STALE;
  return AgentStatus.ALIVE;
}
