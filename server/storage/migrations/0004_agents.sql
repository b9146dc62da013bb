-- Agents (SPEC §4): enrolment tokens, the registry, and the batch signatures agents
-- send, kept so an offline verifier can re-check them.

-- One-time tokens an admin hands to a new agent; only SHA-256 of the secret is kept.
CREATE TABLE enrolment_tokens (
  token_id    text COLLATE "C" PRIMARY KEY,
  chain       text COLLATE "C" NOT NULL,
  secret_hash bytea       NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL,
  used_at     timestamptz,
  used_by     text COLLATE "C"
);

-- The registry. A ZID is derived from the public key, so it is unique across chains
-- (the webhook URL names only the ZID). Deregistered agents keep their row: their
-- entries stay in the chain and their ZID is never handed out again.
CREATE TABLE agents (
  zid               text COLLATE "C" PRIMARY KEY,
  chain             text COLLATE "C" NOT NULL,
  name              text        NOT NULL DEFAULT '',
  source_types      text[]      NOT NULL,
  public_key        bytea       NOT NULL UNIQUE,
  server_side       boolean     NOT NULL DEFAULT false,
  -- Server-side agents: the spawn config, secrets included (never returned by the API).
  config            jsonb,
  -- Daemon agents: SHA-256 of the credential secret.
  credential_hash   bytea,
  registered_at     timestamptz NOT NULL DEFAULT now(),
  deregistered_at   timestamptz,
  last_heartbeat_at timestamptz,
  last_event_at     timestamptz,
  events_total      bigint      NOT NULL DEFAULT 0,
  outbox_depth      bigint      NOT NULL DEFAULT 0,
  lags              jsonb       NOT NULL DEFAULT '[]',
  memory_bytes      bigint      NOT NULL DEFAULT 0,
  -- Bumped on every change, so watchers can ask "what changed since".
  updated_at        timestamptz NOT NULL DEFAULT now(),
  -- Server-side pollers: the replica that runs this one, and until when its lease
  -- holds (renewed while it runs), so one poller runs on one replica at a time.
  runner            text,
  runner_lease_until timestamptz
);
CREATE INDEX agents_chain ON agents (chain, zid);

-- One row per agent batch that added entries: the signed statement (its event
-- commitments, 32 bytes each, in order) and the signature. Append-only like entries.
CREATE TABLE agent_batches (
  chain        text COLLATE "C" NOT NULL,
  agent        text COLLATE "C" NOT NULL,
  batch        text COLLATE "C" NOT NULL,
  batch_number bigint NOT NULL,
  signature    bytea  NOT NULL,
  events       bytea  NOT NULL,
  first_seq    bigint NOT NULL,
  last_seq     bigint NOT NULL,
  PRIMARY KEY (chain, agent, batch)
);
CREATE INDEX agent_batches_seq ON agent_batches (chain, first_seq);
CREATE TRIGGER agent_batches_append_only BEFORE UPDATE OR DELETE ON agent_batches
  FOR EACH ROW EXECUTE FUNCTION audit_ledger_refuse_change();
CREATE TRIGGER agent_batches_no_truncate BEFORE TRUNCATE ON agent_batches
  FOR EACH STATEMENT EXECUTE FUNCTION audit_ledger_refuse_change();

GRANT SELECT, INSERT, UPDATE ON enrolment_tokens, agents TO audit_ledger_app;
GRANT SELECT, INSERT ON agent_batches TO audit_ledger_app;
