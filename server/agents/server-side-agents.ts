// Agents that run inside the server (SPEC §4): `http_webhook` (the bridge, which has
// no loop of its own) and `generic_polling`. They append through the sequencer
// directly, with the same idempotency keys as daemon agents (ZID + source + position),
// so a poll repeated after a restart never duplicates. A poller runs on one replica at a
// time: the one holding its lease in `agents.runner`, renewed every few seconds and taken
// over by another replica when it lapses.
// They sign no batches: they are the server, whose signature is the checkpoint.
import { randomUUID } from "node:crypto";
import { mkdirSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import sodium from "libsodium-wrappers";
import type { z } from "zod";
import { sodiumReady, zidOf } from "../../chain/index.js";
import type { EventInput } from "../../gen/auditledger/v1/entry_pb.js";
import type { Database } from "../storage/database.js";
import type { Sequenced, Sequencer } from "../ledger/sequencer.js";
import type { Limits } from "../ledger/limits.js";
import { prepareEvent, type PreparedEvent } from "../ledger/validate-event.js";
import type { Logger } from "../ops/logger.js";
import type { Source } from "../../agent/sources/source.js";
import genericPolling from "../../agent/sources/generic-polling/index.js";
import { gapEvent, toEventInput } from "../../agent/ingest/event-input.js";
import { webhookConfigSchema } from "../webhooks/webhook-config.js";
import { countAgentEvents, deregisterAgent, getAgent, insertServerSideAgent, isDeregistered, leasePollers, releasePollers, type AgentRecord } from "./agent-store.js";
import type { AgentEvents } from "./agent-events.js";

export const SERVER_SIDE_TYPES = ["http_webhook", "generic_polling"] as const;

/** The name a server-side agent's one source has in idempotency keys. */
const SOURCE_NAME = "main";

export interface ServerSideDeps {
  db: Database;
  sequencer: Sequencer;
  limits: Limits;
  changes: AgentEvents;
  /** Where server-side sources keep their state, one folder per agent. */
  stateDir: string;
  /** Shortest poll interval a server-side poller may ask for. */
  minPollIntervalMs: number;
  /** How often a replica renews its pollers' leases (a lease lasts four times this). */
  leaseSweepMs?: number;
  logger: Logger;
}

export class ServerSideAgents {
  /** Pollers this replica holds the lease of, running or still trying to start. */
  private readonly owned = new Set<string>();
  private readonly running = new Map<string, Source>();
  /** This replica's name in `agents.runner`. */
  private readonly runner = `${hostname()}/${process.pid}/${randomUUID()}`;
  private readonly sweepMs: number;
  private readonly leaseMs: number;
  private closed = false;
  private sweep: NodeJS.Timeout | null = null;

  constructor(private readonly deps: ServerSideDeps) {
    this.sweepMs = deps.leaseSweepMs ?? 5000;
    this.leaseMs = this.sweepMs * 4;
  }

  /**
   * Takes the lease of every registered server-side poller no live replica holds and
   * starts it (after a server restart); one whose endpoint is down now is retried in
   * the background until it starts. Then renews the leases every few seconds, taking
   * over pollers whose replica died, and stopping any deregistered meanwhile.
   */
  async start(): Promise<void> {
    await this.renewLeases();
    this.sweep = setInterval(() => void this.renewLeases().catch((err) => this.deps.logger.warn({ err }, "server-side agents: lease renewal failed")), this.sweepMs);
    this.sweep.unref();
  }

  private async renewLeases(): Promise<void> {
    if (this.closed) return;
    const held = new Set(await leasePollers(this.deps.db, this.runner, this.leaseMs));
    if (this.closed) return;
    // Deregistered (possibly through another replica) or taken over after a lapse.
    for (const zid of this.owned) if (!held.has(zid)) await this.stopAgent(zid);
    for (const zid of held) {
      if (this.owned.has(zid)) continue;
      const agent = await getAgent(this.deps.db, zid);
      if (!agent) continue;
      this.owned.add(zid);
      void this.runUntilStarted(agent);
    }
  }

  /** Validates the config, registers the agent and starts it. */
  async spawn(chain: string, sourceType: string, name: string, configJson: string): Promise<AgentRecord> {
    if (!(SERVER_SIDE_TYPES as readonly string[]).includes(sourceType)) {
      throw new ConnectError(`source_type: "${sourceType}" cannot run in the server; server-side types are ${SERVER_SIDE_TYPES.join(", ")}`, Code.InvalidArgument);
    }
    let raw: unknown;
    try {
      raw = configJson.trim() === "" ? {} : JSON.parse(configJson);
    } catch (err) {
      throw new ConnectError(`config_json: not JSON (${(err as Error).message})`, Code.InvalidArgument);
    }
    const schema: z.ZodType = sourceType === "http_webhook" ? webhookConfigSchema : genericPolling.configSchema;
    const parsed = schema.safeParse(raw);
    if (!parsed.success) throw new ConnectError(`config_json: ${describeIssues(parsed.error)}`, Code.InvalidArgument);
    if (sourceType === "generic_polling") checkServerSidePolling(parsed.data as { interval_ms: number; max_response_bytes: number }, this.deps.minPollIntervalMs);
    await sodiumReady();
    // A key pair only to derive a ZID nobody can choose; the secret half is not kept.
    const { publicKey } = sodium.crypto_sign_keypair();
    const zid = zidOf(publicKey);
    const polls = sourceType === "generic_polling";
    // Owned before the row exists, so a lease renewal that sees the row cannot start a
    // second copy of it.
    if (polls) this.owned.add(zid);
    let agent: AgentRecord;
    try {
      agent = await insertServerSideAgent(this.deps.db, { zid, chain, name, sourceTypes: [sourceType], publicKey }, parsed.data as Record<string, unknown>, this.runner, this.leaseMs);
    } catch (err) {
      this.owned.delete(zid);
      throw err;
    }
    this.deps.changes.changed(chain);
    if (polls) {
      try {
        await this.run(agent);
      } catch (err) {
        // A first poll that fails for good (404, unreachable, not JSON) is a bad config:
        // refuse it rather than keep an agent that never runs.
        this.owned.delete(zid);
        await deregisterAgent(this.deps.db, chain, zid);
        this.deps.changes.changed(chain);
        throw new ConnectError(`config_json: the first poll failed, so no agent was created: ${(err as Error).message}`, Code.FailedPrecondition);
      }
    }
    return agent;
  }

  /** Stops an agent's source, if it runs here (deregistered, or its lease lost). */
  async stopAgent(zid: string): Promise<void> {
    this.owned.delete(zid);
    const source = this.running.get(zid);
    this.running.delete(zid);
    await source?.stop();
  }

  /** Stops every poller and gives up their leases, so another replica takes them at once. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.sweep) clearInterval(this.sweep);
    await Promise.all([...this.owned].map((zid) => this.stopAgent(zid)));
    await releasePollers(this.deps.db, this.runner).catch((err) => this.deps.logger.warn({ err }, "server-side agents: could not release leases"));
  }

  /**
   * Appends events as `agent` (server-side or any registered agent, for SendTestEvent)
   * and counts them on its row in the same transaction.
   */
  appendAs(agent: AgentRecord, inputs: EventInput[]): Promise<Sequenced[]> {
    return this.appendPrepared(agent, inputs.map((e, i) => prepareEvent(e, agent.zid, this.deps.limits, inputs.length > 1 ? `events[${i}]` : "event")));
  }

  /** appendAs for events already validated (by prepareEvent, as `agent`). */
  private async appendPrepared(agent: AgentRecord, events: PreparedEvent[]): Promise<Sequenced[]> {
    const results = await this.deps.sequencer.append(agent.chain, events, (tx, written) => countAgentEvents(tx, agent.zid, written.length));
    this.deps.changes.changed(agent.chain);
    return results;
  }

  private async runUntilStarted(agent: AgentRecord): Promise<void> {
    for (let delay = 1000; !this.closed && this.owned.has(agent.zid); delay = Math.min(delay * 2, 300_000)) {
      try {
        const current = await getAgent(this.deps.db, agent.zid);
        if (!current || current.deregisteredAt) return;
        await this.run(current);
        return;
      } catch (err) {
        this.deps.logger.warn({ err, zid: agent.zid, retryInMs: delay }, "server-side agent could not start; retrying");
        await new Promise((r) => setTimeout(r, delay).unref());
      }
    }
  }

  private async run(agent: AgentRecord): Promise<void> {
    if (this.closed || !this.owned.has(agent.zid)) return;
    const stateDir = join(this.deps.stateDir, agent.zid);
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    const log = this.deps.logger.child({ zid: agent.zid, source: "generic_polling" });
    const source = genericPolling.create(genericPolling.configSchema.parse(agent.config), { name: SOURCE_NAME, stateDir, log });
    const origin = { zid: agent.zid, sourceName: SOURCE_NAME, sourceType: "generic_polling" };
    this.running.set(agent.zid, source);
    try {
      await this.startSource(agent, source, origin);
    } catch (err) {
      this.running.delete(agent.zid);
      throw err;
    }
  }

  private async startSource(agent: AgentRecord, source: Source, origin: { zid: string; sourceName: string; sourceType: string }): Promise<void> {
    await source.start({
      emit: async (events) => {
        if (events.length === 0) return;
        // Deregistered on another replica: stop here too, appending nothing more.
        if (await isDeregistered(this.deps.db, agent.zid)) {
          void this.stopAgent(agent.zid);
          throw new ConnectError(`agent ${agent.zid} was deregistered`, Code.FailedPrecondition);
        }
        // An item the ledger refuses (too large, too deep) becomes a gap entry naming it,
        // so one bad item cannot stall the poller for ever (SPEC §4: never silent loss).
        const prepared = events.map((e) => {
          try {
            return prepareEvent(toEventInput(e, origin), agent.zid, this.deps.limits);
          } catch (err) {
            const reason = `item refused by the ledger: ${ConnectError.from(err).rawMessage}`.slice(0, 2000);
            return prepareEvent(toEventInput({ ...gapEvent(reason, e.position, e.position), position: `refused@${e.position}` }, origin), agent.zid, this.deps.limits);
          }
        });
        await this.appendPrepared(agent, prepared);
        await source.acknowledge(events[events.length - 1]!.position);
      },
      gap: async (reason, from, to) => {
        await this.appendAs(agent, [toEventInput(gapEvent(reason, from, to), origin)]);
      },
    });
  }
}

/**
 * Limits on what one tenant's admin can make the shared server do: poll no more often
 * than AGENT_POLL_MIN_INTERVAL_MS and buffer at most 16 MiB per response.
 */
function checkServerSidePolling(c: { interval_ms: number; max_response_bytes: number }, minIntervalMs: number): void {
  if (c.interval_ms < minIntervalMs) throw new ConnectError(`config_json: interval_ms: at least ${minIntervalMs} for a server-side poller`, Code.InvalidArgument);
  if (c.max_response_bytes > 16 << 20) throw new ConnectError("config_json: max_response_bytes: at most 16777216 for a server-side poller", Code.InvalidArgument);
}

export function describeIssues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.length ? i.path.join(".") : "(top level)"}: ${i.message}`).join("; ");
}
