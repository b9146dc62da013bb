-- The ledger: chain heads, entries and their payloads, append-only by construction.

-- One row per chain: the head that the sequencer locks (FOR UPDATE) so several
-- server replicas sequence one chain without gaps or forks.
CREATE TABLE chains (
  chain      text COLLATE "C" PRIMARY KEY,
  next_seq   bigint      NOT NULL DEFAULT 0,
  head_hash  bytea       NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000',
  head_ts    timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- Envelope columns are exactly the hashed fields of SPEC §2; timestamps have
-- millisecond precision, hashes and digests are raw 32-byte values.
CREATE TABLE entries (
  chain           text COLLATE "C" NOT NULL,
  seq             bigint      NOT NULL,
  v               smallint    NOT NULL,
  ts              timestamptz NOT NULL,
  occurred_at     timestamptz,
  source_type     text COLLATE "C" NOT NULL,
  agent           text COLLATE "C" NOT NULL,
  kind            text COLLATE "C" NOT NULL,
  subject         text COLLATE "C",
  actor           text COLLATE "C",
  trace_id        text COLLATE "C",
  span_id         text COLLATE "C",
  cause           text COLLATE "C",
  idempotency_key text COLLATE "C",
  source_position text COLLATE "C",
  payload_type    text COLLATE "C",
  payload_size    bigint      NOT NULL,
  payload_digest  bytea,
  batch           text COLLATE "C",
  prev_hash       bytea       NOT NULL,
  hash            bytea       NOT NULL,
  PRIMARY KEY (chain, seq)
);

-- Query paths of SPEC §6. Partial indexes skip the many rows without the field.
CREATE UNIQUE INDEX entries_idempotency ON entries (chain, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX entries_ts ON entries (chain, ts);
CREATE INDEX entries_kind ON entries (chain, kind, seq);
CREATE INDEX entries_subject ON entries (chain, subject, seq) WHERE subject IS NOT NULL;
CREATE INDEX entries_agent ON entries (chain, agent, seq);
CREATE INDEX entries_actor ON entries (chain, actor, seq) WHERE actor IS NOT NULL;
CREATE INDEX entries_trace ON entries (chain, trace_id, seq) WHERE trace_id IS NOT NULL;

-- Payload bytes and their salt, beside the entry. Erasing both (redaction) is the
-- only change ever allowed here, and only through the redaction path.
CREATE TABLE payloads (
  chain   text COLLATE "C" NOT NULL,
  seq     bigint NOT NULL,
  salt    bytea  NOT NULL,
  payload bytea  NOT NULL,
  PRIMARY KEY (chain, seq)
);

CREATE FUNCTION audit_ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit-ledger: % on % is refused: the ledger is append-only', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON entries
  FOR EACH ROW EXECUTE FUNCTION audit_ledger_refuse_change();
CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON entries
  FOR EACH STATEMENT EXECUTE FUNCTION audit_ledger_refuse_change();
CREATE TRIGGER payloads_append_only BEFORE UPDATE OR DELETE ON payloads
  FOR EACH ROW EXECUTE FUNCTION audit_ledger_refuse_change();
CREATE TRIGGER payloads_no_truncate BEFORE TRUNCATE ON payloads
  FOR EACH STATEMENT EXECUTE FUNCTION audit_ledger_refuse_change();

-- API keys: bearer tokens bound to one chain; only a SHA-256 of the secret is kept.
CREATE TABLE api_keys (
  key_id      text COLLATE "C" PRIMARY KEY,
  chain       text COLLATE "C" NOT NULL,
  scopes      text[]      NOT NULL,
  name        text        NOT NULL DEFAULT '',
  secret_hash bytea       NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  revoked_at  timestamptz
);
CREATE INDEX api_keys_chain ON api_keys (chain);

-- The least-privilege role the server's sessions run as: it may read and append,
-- never rewrite. Roles are cluster-wide, so create it only once.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'audit_ledger_app') THEN
    CREATE ROLE audit_ledger_app NOLOGIN;
  END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO audit_ledger_app;
GRANT SELECT, INSERT ON entries, payloads TO audit_ledger_app;
GRANT SELECT, INSERT, UPDATE ON chains TO audit_ledger_app;
GRANT SELECT, INSERT, UPDATE ON api_keys TO audit_ledger_app;
