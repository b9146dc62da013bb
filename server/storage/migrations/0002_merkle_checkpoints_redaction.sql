-- The verifiable log (SPEC §2): the RFC 6962 tree over each chain, signed checkpoints,
-- and the one sanctioned deletion: erasing a payload through a recorded redaction.

-- Root of the tree over entries [0, next_seq), moved with the head in every commit.
-- NULL only for chains sequenced before this migration: the sequencer builds their
-- tree on its next commit.
ALTER TABLE chains ADD COLUMN tree_root bytea;

-- Every complete subtree of level >= 1: node (level, idx) covers leaves
-- [idx * 2^level, (idx + 1) * 2^level). Leaves (level 0) are recomputed from entries.
-- Any proof needs O(log n) of these rows, and appending only ever adds rows at the
-- right edge, so the cost of an append does not grow with the chain.
CREATE TABLE merkle_nodes (
  chain text COLLATE "C" NOT NULL,
  level smallint NOT NULL,
  idx   bigint   NOT NULL,
  hash  bytea    NOT NULL,
  PRIMARY KEY (chain, level, idx)
);

-- Signed C2SP tlog-checkpoints, one per tree size at most.
CREATE TABLE checkpoints (
  chain     text COLLATE "C" NOT NULL,
  tree_size bigint      NOT NULL,
  root      bytea       NOT NULL,
  key_id    text COLLATE "C" NOT NULL,
  note      text        NOT NULL,
  cut_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (chain, tree_size)
);

-- Which payloads were erased, by which `redaction` entry, who asked and why.
CREATE TABLE redactions (
  chain         text COLLATE "C" NOT NULL,
  seq           bigint NOT NULL,
  redaction_seq bigint NOT NULL,
  actor         text   NOT NULL,
  reason        text   NOT NULL,
  redacted_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (chain, seq)
);

CREATE TRIGGER merkle_nodes_append_only BEFORE UPDATE OR DELETE ON merkle_nodes
  FOR EACH ROW EXECUTE FUNCTION audit_ledger_refuse_change();
CREATE TRIGGER merkle_nodes_no_truncate BEFORE TRUNCATE ON merkle_nodes
  FOR EACH STATEMENT EXECUTE FUNCTION audit_ledger_refuse_change();
CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE ON checkpoints
  FOR EACH ROW EXECUTE FUNCTION audit_ledger_refuse_change();
CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION audit_ledger_refuse_change();
CREATE TRIGGER redactions_append_only BEFORE UPDATE OR DELETE ON redactions
  FOR EACH ROW EXECUTE FUNCTION audit_ledger_refuse_change();
CREATE TRIGGER redactions_no_truncate BEFORE TRUNCATE ON redactions
  FOR EACH STATEMENT EXECUTE FUNCTION audit_ledger_refuse_change();

-- Payloads: UPDATE stays refused; DELETE is allowed only for a payload whose
-- redaction is recorded (the redaction path writes that row first, in the same
-- transaction).
CREATE FUNCTION audit_ledger_payload_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM redactions r WHERE r.chain = OLD.chain AND r.seq = OLD.seq) THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'audit-ledger: DELETE on payloads is refused: seq % has no recorded redaction', OLD.seq
    USING ERRCODE = 'insufficient_privilege';
END
$$;
DROP TRIGGER payloads_append_only ON payloads;
CREATE TRIGGER payloads_no_update BEFORE UPDATE ON payloads
  FOR EACH ROW EXECUTE FUNCTION audit_ledger_refuse_change();
CREATE TRIGGER payloads_redaction_only BEFORE DELETE ON payloads
  FOR EACH ROW EXECUTE FUNCTION audit_ledger_payload_delete();

GRANT SELECT, INSERT ON merkle_nodes, checkpoints, redactions TO audit_ledger_app;
GRANT DELETE ON payloads TO audit_ledger_app;
