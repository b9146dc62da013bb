// Prometheus metrics served at /metrics.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export class LedgerMetrics {
  readonly registry = new Registry();
  readonly appendedEntries = new Counter({
    name: "audit_ledger_appended_entries_total",
    help: "Entries sequenced and committed (deduplicated repeats not counted).",
    registers: [this.registry],
  });
  readonly deduplicated = new Counter({
    name: "audit_ledger_deduplicated_events_total",
    help: "Appends answered with an existing entry because their idempotency key was known.",
    registers: [this.registry],
  });
  readonly commitBatchSize = new Histogram({
    name: "audit_ledger_commit_batch_events",
    help: "Events sequenced per group commit.",
    buckets: [1, 2, 5, 10, 50, 100, 500, 1000, 5000, 10000, 20000],
    registers: [this.registry],
  });
  readonly commitSeconds = new Histogram({
    name: "audit_ledger_commit_seconds",
    help: "Latency of one group commit transaction, lock to COMMIT.",
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  readonly rpcErrors = new Counter({
    name: "audit_ledger_rpc_errors_total",
    help: "RPCs that ended in an error, by method and Connect code.",
    labelNames: ["method", "code"],
    registers: [this.registry],
  });
  readonly subscribers = new Gauge({
    name: "audit_ledger_tail_subscribers",
    help: "Open StreamEvents subscriptions.",
    registers: [this.registry],
  });
  readonly tailBufferedEntries = new Gauge({
    name: "audit_ledger_tail_buffered_entries",
    help: "Entries read for live-tail subscribers and not yet handed to them (all subscribers).",
    registers: [this.registry],
  });

  readonly checkpointsCut = new Counter({
    name: "audit_ledger_checkpoints_cut_total",
    help: "Signed checkpoints cut by this server.",
    registers: [this.registry],
  });
  readonly checkpointRefusals = new Counter({
    name: "audit_ledger_checkpoint_refusals_total",
    help: "Checkpoints this server refused to sign because the stored tree is not consistent with the previous checkpoint (tampering).",
    labelNames: ["chain"],
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: "audit_ledger_" });
  }
}
